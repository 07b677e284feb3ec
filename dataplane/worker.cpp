#include "dataplane/worker.h"

#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <sys/prctl.h>

#include <ctime>

#include "dataplane/dataplane.h"
#include "dataplane/port.h"
#include "dataplane/rcu.h"

namespace conduit::dp {

Worker::Worker(Dataplane& dp, unsigned id, unsigned lcore, unsigned cpu, BackoffPolicy backoff)
    : dp_(dp),
      id_(id),
      lcore_(lcore),
      cpu_(cpu),
      backoff_(backoff),
      counters_(std::make_unique<sw::WorkerCounters>()),
      forwarder_(*this, *counters_) {}

void Worker::transmit(sw::PortIndex port, rte_mbuf** pkts, uint16_t count) {
    Port* p = dp_.port(port);
    if (p == nullptr) {
        // Removed while its frames were queued; nothing to send them to.
        counters_->ports[port].drop_tx_port_down.add(count);
        rte_pktmbuf_free_bulk(pkts, count);
        return;
    }
    p->transmit(id_, pkts, count, counters_->ports[port]);
}

int Worker::run() {
    // Sleeps are short; the default 50 us timer slack would stretch every one of them.
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    Rcu& rcu = dp_.rcu();
    rcu.register_reader(id_);

    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t tsc_per_ms = hz / 1000;
    const uint64_t idle_ticks = backoff_.idle_before_sleep_us * hz / 1'000'000;
    uint64_t last_busy = rte_rdtsc();
    uint64_t sleep_us = backoff_.first_sleep_us;
    rte_mbuf* pkts[sw::kBurstSize];

    while (dp_.running()) {
        const uint64_t now_tsc = rte_rdtsc();
        const uint64_t now_ms = (now_tsc - dp_.epoch_tsc()) / tsc_per_ms;
        const sw::ForwardingState& state = dp_.forwarding_state();
        uint64_t received = 0;
        for (const RxQueueRef& q : queues_) {
            sw::PortCounters& counters = counters_->ports[q.port->index()];
            const uint16_t n = q.port->receive(q.queue, pkts, sw::kBurstSize, counters);
            if (n != 0) {
                received += n;
                forwarder_.process(state, q.port->index(), pkts, n, now_ms);
            }
        }
        rcu.quiescent(id_);
        stats_.polls.store(stats_.polls.load(std::memory_order_relaxed) + 1,
                           std::memory_order_relaxed);
        if (received != 0) {
            stats_.busy_polls.store(stats_.busy_polls.load(std::memory_order_relaxed) + 1,
                                    std::memory_order_relaxed);
            stats_.rx_packets.store(stats_.rx_packets.load(std::memory_order_relaxed) + received,
                                    std::memory_order_relaxed);
            last_busy = now_tsc;
            sleep_us = backoff_.first_sleep_us;
            continue;
        }
        if (!backoff_.enabled || now_tsc - last_busy < idle_ticks) {
            continue;
        }
        // Idle: sleep offline, so RCU writers need not wait for us.
        rcu.offline(id_);
        const timespec ts{0, static_cast<long>(sleep_us * 1000)};
        nanosleep(&ts, nullptr);
        rcu.online(id_);
        const uint64_t slept_us = (rte_rdtsc() - now_tsc) * 1'000'000 / hz;
        if (slept_us > stats_.longest_sleep_us.load(std::memory_order_relaxed)) {
            stats_.longest_sleep_us.store(slept_us, std::memory_order_relaxed);
        }
        stats_.sleeps.store(stats_.sleeps.load(std::memory_order_relaxed) + 1,
                            std::memory_order_relaxed);
        stats_.sleep_us.store(stats_.sleep_us.load(std::memory_order_relaxed) + sleep_us,
                              std::memory_order_relaxed);
        sleep_us = std::min(sleep_us * 2, backoff_.max_sleep_us);
    }
    rcu.unregister_reader(id_);
    return 0;
}

}  // namespace conduit::dp
