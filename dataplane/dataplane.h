// dataplane/dataplane: conduitd's datapath as a whole: the mbuf pool, the ports, the
// bridges and their MAC tables, the workers and which queues each one polls.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "control/config.h"
#include "dataplane/port.h"
#include "dataplane/rcu.h"
#include "dataplane/worker.h"
#include "switch/forwarding.h"
#include "switch/mac_table.h"

struct rte_mempool;

namespace conduit::dp {

class EthPort;

struct Bridge {
    std::string name;
    uint16_t id;
    std::unique_ptr<sw::MacTable> fdb;
    std::vector<sw::PortIndex> ports;
};

class Dataplane {
  public:
    explicit Dataplane(const control::Config& config);  // the EAL must be up
    ~Dataplane();
    Dataplane(const Dataplane&) = delete;
    Dataplane& operator=(const Dataplane&) = delete;

    void start();  // ports up, workers launched
    void stop();   // guests detached, workers joined, ports closed
    void tick();   // control thread, about once a second: aging, link state

    // Read by workers.
    bool running() const { return running_.load(std::memory_order_relaxed); }
    uint64_t epoch_tsc() const { return epoch_tsc_; }
    const sw::ForwardingState& forwarding_state() const {
        return *state_.load(std::memory_order_acquire);
    }
    Port* port(sw::PortIndex index) const {
        return index < ports_.size() ? ports_[index].get() : nullptr;
    }
    Rcu& rcu() { return rcu_; }

    // Introspection (telemetry, control thread).
    uint64_t now_ms() const;
    rte_mempool* pool() const { return pool_; }
    const std::vector<std::unique_ptr<Port>>& ports() const { return ports_; }
    const std::vector<Bridge>& bridges() const { return bridges_; }
    const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
    const Bridge& bridge_of(sw::PortIndex port) const;
    Port* find_port(const std::string& name) const;
    const Bridge* find_bridge(const std::string& name) const;
    // A port's counters summed over all workers, by counter name.
    std::vector<std::pair<const char*, uint64_t>> port_counters(sw::PortIndex port) const;
    std::vector<std::pair<const char*, uint64_t>> bridge_counters(uint16_t bridge) const;

  private:
    void place_queues();
    static int launch(void* worker);

    control::Config config_;
    rte_mempool* pool_ = nullptr;
    Rcu rcu_;
    uint64_t epoch_tsc_;
    std::atomic<bool> running_{false};
    std::vector<std::unique_ptr<Port>> ports_;
    std::vector<Bridge> bridges_;
    std::unique_ptr<sw::ForwardingState> state_owner_;
    std::atomic<const sw::ForwardingState*> state_{nullptr};
    std::vector<std::unique_ptr<Worker>> workers_;
    EthPort* uplink_ = nullptr;
    bool started_ = false;
};

}  // namespace conduit::dp
