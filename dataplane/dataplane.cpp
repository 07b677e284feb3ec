#include "dataplane/dataplane.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <stdexcept>

#include "dataplane/eth_port.h"
#include "dataplane/log.h"
#include "dataplane/vhost_port.h"

namespace conduit::dp {

Dataplane::Dataplane(const control::Config& config)
    : config_(config),
      rcu_(static_cast<unsigned>(config.daemon.worker_cpus.size())),
      epoch_tsc_(rte_rdtsc()) {
    const auto& d = config_.daemon;
    pool_ = rte_pktmbuf_pool_create("conduit_mbufs", d.mbufs, d.mbuf_cache, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
    if (pool_ == nullptr) {
        throw std::runtime_error("cannot create a pool of " + std::to_string(d.mbufs) +
                                 " mbufs: " + rte_strerror(rte_errno) +
                                 " (raise conduitd.memory_mb or lower conduitd.mbufs)");
    }

    auto state = std::make_unique<sw::ForwardingState>();
    const unsigned workers = static_cast<unsigned>(d.worker_cpus.size());
    for (const auto& bc : config_.bridges) {
        Bridge bridge;
        bridge.name = bc.name;
        bridge.id = static_cast<uint16_t>(bridges_.size());
        bridge.fdb = std::make_unique<sw::MacTable>(bc.mac_table_size, bc.mac_aging_ms,
                                                    [this] { rcu_.synchronize(); });
        for (const auto& pc : bc.ports) {
            const auto index = static_cast<sw::PortIndex>(ports_.size());
            if (pc.type == control::PortType::kVhostUser) {
                VhostUserPort::Options o{pc.socket, pc.mode == control::VhostMode::kClient,
                                         pc.queues};
                const uint16_t bridge_id = bridge.id;
                ports_.push_back(std::make_unique<VhostUserPort>(
                    pc.name, index, o, pool_, rcu_, [this, bridge_id](VhostUserPort& port) {
                        // A guest that went away may come back elsewhere: forget its MACs.
                        bridges_[bridge_id].fdb->flush_port(port.index());
                    }));
            } else {
                EthPort::Options o{pc.devargs, pc.queues, pc.rx_descriptors, pc.tx_descriptors,
                                   workers};
                auto eth = std::make_unique<EthPort>(pc.name, index, o, pool_);
                uplink_ = eth.get();
                ports_.push_back(std::move(eth));
            }
            bridge.ports.push_back(index);
            state->bridge_of_port[index] = bridge.id;
        }
        bridges_.push_back(std::move(bridge));
    }
    for (const Bridge& b : bridges_) {
        state->bridges.push_back(sw::BridgeView{b.id, b.fdb.get(), b.ports});
    }
    state_owner_ = std::move(state);
    state_.store(state_owner_.get(), std::memory_order_release);

    BackoffPolicy backoff;
    backoff.enabled = d.idle_backoff;
    for (unsigned i = 0; i < workers; ++i) {
        workers_.push_back(std::make_unique<Worker>(*this, i, i + 1, d.worker_cpus[i], backoff));
    }
    place_queues();
}

Dataplane::~Dataplane() {
    stop();
    workers_.clear();
    ports_.clear();
    bridges_.clear();
    if (pool_ != nullptr) {
        rte_mempool_free(pool_);
    }
}

void Dataplane::place_queues() {
    // Round-robin over every port's receive queues, in config order, so each worker polls
    // about as many queues as the next.
    std::size_t next = 0;
    for (const auto& port : ports_) {
        for (uint16_t q = 0; q < port->rx_queue_count(); ++q) {
            workers_[next++ % workers_.size()]->add_queue({port.get(), q});
        }
    }
}

uint64_t Dataplane::now_ms() const {
    return (rte_rdtsc() - epoch_tsc_) / (rte_get_tsc_hz() / 1000);
}

int Dataplane::launch(void* worker) {
    return static_cast<Worker*>(worker)->run();
}

void Dataplane::start() {
    running_.store(true);
    // Workers first: a guest may connect as soon as its port starts, and its
    // destroy_device waits for the workers' quiescent states.
    for (auto& w : workers_) {
        const int rc = rte_eal_remote_launch(&Dataplane::launch, w.get(), w->lcore());
        if (rc != 0) {
            throw std::runtime_error("cannot launch worker on lcore " + std::to_string(w->lcore()));
        }
        CLOG_INFO("worker", "worker %u on CPU %u polls %zu queue(s)", w->id(), w->cpu(),
                  w->queues().size());
    }
    started_ = true;
    // Ethdevs are restarted after their queues are set up; no worker touches a port that
    // is not up (receive on a stopped ethdev returns nothing).
    for (auto& p : ports_) {
        p->start();
    }
}

void Dataplane::stop() {
    if (!started_) {
        return;
    }
    // Guests first, while workers still pass quiescent states for destroy_device.
    for (auto& p : ports_) {
        if (std::string(p->type()) == "vhost-user") {
            p->stop();
        }
    }
    running_.store(false);
    rte_eal_mp_wait_lcore();
    for (auto& p : ports_) {
        p->stop();
    }
    started_ = false;
}

void Dataplane::tick() {
    const uint64_t now = now_ms();
    for (auto& b : bridges_) {
        const auto result = b.fdb->age(now);
        if (result.expired != 0) {
            CLOG_DEBUG("fdb", "bridge %s: %u entries aged out%s", b.name.c_str(), result.expired,
                       result.compacted ? ", table compacted" : "");
        }
    }
    if (uplink_ != nullptr) {
        uplink_->poll_link();
    }
}

const Bridge& Dataplane::bridge_of(sw::PortIndex port) const {
    return bridges_[forwarding_state().bridge_of_port[port]];
}

Port* Dataplane::find_port(const std::string& name) const {
    for (const auto& p : ports_) {
        if (p->name() == name) {
            return p.get();
        }
    }
    return nullptr;
}

const Bridge* Dataplane::find_bridge(const std::string& name) const {
    for (const auto& b : bridges_) {
        if (b.name == name) {
            return &b;
        }
    }
    return nullptr;
}

std::vector<std::pair<const char*, uint64_t>> Dataplane::port_counters(sw::PortIndex port) const {
    std::vector<std::pair<const char*, uint64_t>> out;
#define CONDUIT_SUM(name, help)                          \
    {                                                    \
        uint64_t sum = 0;                                \
        for (const auto& w : workers_) {                 \
            sum += w->counters().ports[port].name.get(); \
        }                                                \
        out.emplace_back(#name, sum);                    \
    }
    CONDUIT_PORT_COUNTERS(CONDUIT_SUM)
#undef CONDUIT_SUM
    return out;
}

std::vector<std::pair<const char*, uint64_t>> Dataplane::bridge_counters(uint16_t bridge) const {
    std::vector<std::pair<const char*, uint64_t>> out;
#define CONDUIT_SUM(name, help)                              \
    {                                                        \
        uint64_t sum = 0;                                    \
        for (const auto& w : workers_) {                     \
            sum += w->counters().bridges[bridge].name.get(); \
        }                                                    \
        out.emplace_back(#name, sum);                        \
    }
    CONDUIT_BRIDGE_COUNTERS(CONDUIT_SUM)
#undef CONDUIT_SUM
    return out;
}

}  // namespace conduit::dp
