#include "dataplane/worker.h"

#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "dataplane/capture.h"
#include "dataplane/dataplane.h"
#include "dataplane/log.h"
#include "dataplane/port.h"
#include "dataplane/rcu.h"

namespace conduit::dp {

namespace {

// The single writer's increment: no locked instruction.
inline void bump(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace

WorkerStatsSnapshot WorkerStats::snapshot() const {
    WorkerStatsSnapshot s;
    s.polls = polls.load(std::memory_order_relaxed);
    s.busy_polls = busy_polls.load(std::memory_order_relaxed);
    s.rx_packets = rx_packets.load(std::memory_order_relaxed);
    s.rx_bursts = rx_bursts.load(std::memory_order_relaxed);
    s.busy_cycles = busy_cycles.load(std::memory_order_relaxed);
    s.idle_cycles = idle_cycles.load(std::memory_order_relaxed);
    s.sleep_cycles = sleep_cycles.load(std::memory_order_relaxed);
    s.sleeps = sleeps.load(std::memory_order_relaxed);
    s.holds = holds.load(std::memory_order_relaxed);
    s.longest_sleep_us = longest_sleep_us.load(std::memory_order_relaxed);
    s.stalls = stalls.load(std::memory_order_relaxed);
    s.longest_stall_us = longest_stall_us.load(std::memory_order_relaxed);
    return s;
}

WorkerStatsSnapshot WorkerStatsSnapshot::operator-(const WorkerStatsSnapshot& base) const {
    WorkerStatsSnapshot d = *this;
    d.polls -= base.polls;
    d.busy_polls -= base.busy_polls;
    d.rx_packets -= base.rx_packets;
    d.rx_bursts -= base.rx_bursts;
    d.busy_cycles -= base.busy_cycles;
    d.idle_cycles -= base.idle_cycles;
    d.sleep_cycles -= base.sleep_cycles;
    d.sleeps -= base.sleeps;
    d.holds -= base.holds;
    d.stalls -= base.stalls;
    return d;
}

Worker::Worker(Dataplane& dp, unsigned id, unsigned lcore, unsigned cpu, BackoffPolicy backoff,
               int nice)
    : dp_(dp),
      id_(id),
      lcore_(lcore),
      cpu_(cpu),
      backoff_(backoff),
      nice_(nice),
      counters_(std::make_unique<sw::WorkerCounters>()),
      forwarder_(*this, *counters_),
      fitter_(dp.pool()) {}

namespace {

// Hands the bursts the fitter makes to the port (and to its capture, if one runs): a
// capture of what goes out shows what the port was given, segments and all.
class PortSender final : public sw::BurstSender {
  public:
    PortSender(Port& port, unsigned worker, sw::PortCounters& counters)
        : port_(port), worker_(worker), counters_(counters), capture_(port.capture()) {}

    void send(rte_mbuf** pkts, uint16_t count) override {
        if (capture_ != nullptr) [[unlikely]] {
            capture_->offer(pkts, count, Capture::kOut, static_cast<uint16_t>(worker_));
        }
        port_.transmit(worker_, pkts, count, counters_);
    }

  private:
    Port& port_;
    unsigned worker_;
    sw::PortCounters& counters_;
    Capture* capture_;
};

}  // namespace

void Worker::transmit(sw::PortIndex port, rte_mbuf** pkts, uint16_t count) {
    Port* p = state_->ports[port];
    sw::PortCounters& counters = counters_->ports[port];
    if (p == nullptr) {
        // Removed (or set admin down) while a MAC entry still named it.
        counters.drop_tx_port_down.add(count);
        rte_pktmbuf_free_bulk(pkts, count);
        return;
    }
    PortSender sender(*p, id_, counters);
    if (!p->is_up()) [[unlikely]] {
        sender.send(pkts, count);  // nothing to fit: the port counts them as not sent
        return;
    }
    fitter_.send(p->tx_caps(), pkts, count, counters, sender);
}

int Worker::run() {
    // Sleeps are short; the default 50 us timer slack would stretch every one of them.
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    // A polling thread is always runnable: at the default weight, anything else the
    // scheduler puts on this CPU would get whole time slices of several milliseconds,
    // long enough for a guest's ring to overflow.
    if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice_) != 0) {
        CLOG_WARN("worker", "worker %u: cannot set nice %d: %s", id_, nice_, std::strerror(errno));
    }
    Rcu& rcu = dp_.rcu();
    rcu.register_reader(id_);

    const uint64_t hz = rte_get_tsc_hz();
    const uint64_t tsc_per_ms = hz / 1000;
    const uint64_t idle_ticks = backoff_.idle_before_sleep_us * hz / 1'000'000;
    const uint64_t hold_ticks = backoff_.busy_hold_us * hz / 1'000'000;
    const uint64_t window_ticks = backoff_.rate_window_us * hz / 1'000'000;
    const uint64_t stall_ticks = WorkerStats::kStallUs * hz / 1'000'000;
    // The rate window: frames since window_start; evaluated on busy loops only.
    uint64_t window_start = rte_rdtsc();
    uint64_t window_frames = 0;
    uint64_t wait_ticks = idle_ticks;  // idle time before sleeping: short, or the hold
    bool hold_counted = false;         // this idle spell was counted as a hold
    uint64_t last_busy = rte_rdtsc();
    uint64_t loop_start = last_busy;
    // TSC cycles, from what an earlier run of this worker published (never cleared).
    uint64_t longest_stall =
        stats_.longest_stall_us.load(std::memory_order_relaxed) * hz / 1'000'000;
    // The last TSC reading: at each loop's start and after each burst forwarded, so that
    // the time between two readings is one burst's work at most (or empty polls).
    uint64_t mark = loop_start;
    auto check_stall = [&](uint64_t now) {
        if (now - mark > stall_ticks) [[unlikely]] {
            bump(stats_.stalls, 1);
            if (now - mark > longest_stall) {
                longest_stall = now - mark;
                stats_.longest_stall_us.store(longest_stall * 1'000'000 / hz,
                                              std::memory_order_relaxed);
            }
        }
        mark = now;
    };
    bool last_loop_busy = false;
    uint64_t sleep_us = backoff_.first_sleep_us;
    rte_mbuf* pkts[sw::kBurstSize];

    while (dp_.running()) {
        // One TSC read per loop: it ends the previous loop's accounting and starts this one.
        const uint64_t now_tsc = rte_rdtsc();
        bump(last_loop_busy ? stats_.busy_cycles : stats_.idle_cycles, now_tsc - loop_start);
        check_stall(now_tsc);
        loop_start = now_tsc;
        const uint64_t now_ms = (now_tsc - dp_.epoch_tsc()) / tsc_per_ms;
        state_ = &dp_.state();
        uint64_t received = 0;
        uint64_t bursts = 0;
        for (const RxQueueRef& q : state_->worker_queues[id_]) {
            sw::PortCounters& counters = counters_->ports[q.port->index()];
            const uint16_t n = q.port->receive(q.queue, pkts, sw::kBurstSize, counters);
            if (n != 0) {
                received += n;
                ++bursts;
                if (Capture* capture = q.port->capture(); capture != nullptr) [[unlikely]] {
                    capture->offer(pkts, n, Capture::kIn, q.queue);
                }
                forwarder_.process(state_->forwarding, q.port->index(), pkts, n, now_ms);
                // One more TSC read per burst (not per frame): a loop over many ports
                // of jumbo frames takes milliseconds of real work, a burst never does.
                check_stall(rte_rdtsc());
            }
        }
        rcu.quiescent(id_);
        bump(stats_.polls, 1);
        last_loop_busy = received != 0;
        if (received != 0) {
            bump(stats_.busy_polls, 1);
            bump(stats_.rx_packets, received);
            bump(stats_.rx_bursts, bursts);
            last_busy = now_tsc;
            sleep_us = backoff_.first_sleep_us;
            hold_counted = false;
            window_frames += received;
            if (const uint64_t elapsed = now_tsc - window_start; elapsed >= window_ticks) {
                // The window's rate, over the time it really lasted (an idle spell
                // included): at least busy_rate_pps means hold.
                const bool high = window_frames * hz >= backoff_.busy_rate_pps * elapsed;
                wait_ticks = high ? hold_ticks : idle_ticks;
                window_start = now_tsc;
                window_frames = 0;
            }
            continue;
        }
        if (!backoff_.enabled || now_tsc - last_busy < wait_ticks) {
            if (backoff_.enabled && !hold_counted && now_tsc - last_busy >= idle_ticks) {
                // Past the short wait, still polling: the hold after a high rate.
                hold_counted = true;
                bump(stats_.holds, 1);
            }
            continue;
        }
        // Idle: sleep offline, so RCU writers need not wait for us.
        rcu.offline(id_);
        const uint64_t before = rte_rdtsc();
        const timespec ts{0, static_cast<long>(sleep_us * 1000)};
        nanosleep(&ts, nullptr);
        rcu.online(id_);
        const uint64_t after = rte_rdtsc();
        bump(stats_.idle_cycles, before - loop_start);
        bump(stats_.sleep_cycles, after - before);
        loop_start = after;
        mark = after;  // asleep is not held up
        last_loop_busy = false;
        const uint64_t slept_us = (after - before) * 1'000'000 / hz;
        if (slept_us > stats_.longest_sleep_us.load(std::memory_order_relaxed)) {
            stats_.longest_sleep_us.store(slept_us, std::memory_order_relaxed);
        }
        bump(stats_.sleeps, 1);
        sleep_us = std::min(sleep_us * 2, backoff_.max_sleep_us);
    }
    rcu.unregister_reader(id_);
    return 0;
}

}  // namespace conduit::dp
