// dataplane/dataplane: conduitd's datapath as a whole: the mbuf pool, the ports, the
// bridges and their MAC tables, the workers and which queues each one polls.
//
// Ports and bridges come and go while the workers run. What a worker reads (which
// queues to poll, which port an index names, each bridge's flood list) is one immutable
// DatapathState behind an atomic pointer: a change builds a new state, publishes it and
// frees the old one after an RCU grace period. A worker sees either the old or the new
// state for a whole poll loop, so ports a change does not touch never lose a frame.
#pragma once

#include <array>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/config.h"
#include "dataplane/capture.h"
#include "dataplane/port.h"
#include "dataplane/rcu.h"
#include "dataplane/worker.h"
#include "switch/forwarding.h"
#include "switch/mac_table.h"

struct rte_mempool;

namespace conduit::dp {

class EthPort;

// What the workers read; immutable once published.
struct DatapathState {
    sw::ForwardingState forwarding;
    std::array<Port*, sw::kMaxPorts> ports{};  // transmit targets; nullptr: gone or admin down
    std::vector<std::vector<RxQueueRef>> worker_queues;  // per worker, what it polls
};

struct Bridge {
    std::string name;
    uint16_t id;
    std::unique_ptr<sw::MacTable> fdb;
    std::vector<sw::PortIndex> ports;  // members in the order they were added
};

// A port as the control side knows it.
struct PortEntry {
    std::unique_ptr<Port> port;
    control::PortConfig config;
    uint16_t bridge;
};

// A set of changes applied as one: every part is checked first, and a failure part-way
// (a port that cannot start) puts back what was there, so either all of it happens or
// none of it does.
struct ChangeSet {
    struct BridgeSettings {
        std::string name;
        uint64_t mac_aging_ms;
        uint32_t mac_table_size;
    };
    struct PortAdd {
        std::string bridge;
        control::PortConfig config;
    };
    struct MacEntry {
        std::string bridge;
        sw::Mac mac;
        std::string port;  // for additions
    };
    std::vector<MacEntry> remove_macs;
    std::vector<std::string> remove_ports;    // a replaced port is removed and added
    std::vector<std::string> remove_bridges;  // their ports must be in remove_ports
    std::vector<BridgeSettings> set_bridges;
    std::vector<std::pair<std::string, bool>> set_admin;
    std::vector<BridgeSettings> add_bridges;
    std::vector<PortAdd> add_ports;
    std::vector<MacEntry> add_macs;

    bool empty() const;
};

class ChangeError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Counter values by name, as read (minus what `clear_stats` recorded).
using CounterList = std::vector<std::pair<const char*, uint64_t>>;

struct WorkerReport {
    unsigned id, cpu, lcore;
    std::vector<std::string> queues;  // "port:queue"
    WorkerStatsSnapshot stats;        // since the last clear
};

class Dataplane {
  public:
    explicit Dataplane(const control::DaemonConfig& config);  // the EAL must be up
    ~Dataplane();
    Dataplane(const Dataplane&) = delete;
    Dataplane& operator=(const Dataplane&) = delete;

    void start();  // workers launched (with whatever state is published)
    void stop();   // guests detached, workers joined, ports closed

    // Control side. Each call takes the control lock itself; none may be called while
    // holding it.
    void commit(const ChangeSet& changes);           // throws ChangeError, leaving things unchanged
    void tick();                                     // about once a second: aging, link state
    void clear_stats(const std::string& port = "");  // "" clears every port and worker
    // Learned MAC entries (static ones belong to the config): forget one, or every one of
    // a bridge (or of one of its ports). Throw ChangeError for an unknown bridge or port.
    bool forget_mac(const std::string& bridge, sw::Mac mac);
    uint32_t flush_fdb(const std::string& bridge, const std::string& port = "");

    // Captures (see dataplane/capture.h).
    uint64_t capture_start(const std::string& port, const CaptureOptions& options);
    std::optional<CaptureStatus> capture_status(uint64_t id);
    std::optional<CaptureStatus> capture_stop(uint64_t id);
    std::vector<CaptureStatus> captures();
    void capture_poll();  // control loop, often: writes captured frames, ends full captures

    // Introspection: take the lock with lock() and hold it while using what these return.
    std::unique_lock<std::mutex> lock() const { return std::unique_lock(control_mutex_); }
    std::vector<const Bridge*> bridges() const;   // in creation order
    std::vector<const PortEntry*> ports() const;  // by bridge, then member order
    const PortEntry* find_port(const std::string& name) const;
    const Bridge* find_bridge(const std::string& name) const;
    const Bridge& bridge(uint16_t id) const { return *bridges_[id]; }
    // Counters since the last clear_stats, or since the port or bridge was created (raw:
    // what Prometheus wants, never going back).
    CounterList port_counters(sw::PortIndex port, bool raw = false) const;
    CounterList bridge_counters(uint16_t bridge, bool raw = false) const;
    std::vector<WorkerReport> workers(bool raw = false) const;
    rte_mempool* pool() const { return pool_; }
    uint64_t now_ms() const;

    // Read by workers.
    bool running() const { return running_.load(std::memory_order_relaxed); }
    uint64_t epoch_tsc() const { return epoch_tsc_; }
    const DatapathState& state() const { return *state_.load(std::memory_order_acquire); }
    Rcu& rcu() { return rcu_; }

  private:
    // What a failed commit must put back, in reverse.
    struct Undo;
    void check(const ChangeSet& changes) const;
    void apply_locked(const ChangeSet& changes, Undo& undo);
    void rollback_locked(Undo& undo);
    void remove_ports_locked(const std::vector<sw::PortIndex>& indices);
    void remove_bridge_locked(uint16_t id);
    sw::PortIndex add_port_locked(uint16_t bridge, const control::PortConfig& config);
    uint16_t add_bridge_locked(const ChangeSet::BridgeSettings& settings);
    void set_admin_locked(sw::PortIndex index, bool up);
    void publish_locked();
    void place_queues_locked(sw::PortIndex index);
    void unplace_queues_locked(sw::PortIndex index);
    std::optional<sw::PortIndex> index_of(const std::string& port) const;
    std::optional<uint16_t> bridge_id_of(const std::string& bridge) const;
    std::array<uint64_t, sw::PortCounters::kCount> raw_port_counters(sw::PortIndex port) const;
    std::array<uint64_t, sw::BridgeCounters::kCount> raw_bridge_counters(uint16_t bridge) const;
    std::array<uint64_t, 2> raw_eth_stats(sw::PortIndex port) const;  // rx_nombuf, imissed
    void stop_capture_locked(uint64_t id, const std::string& error = "");
    static int launch(void* worker);

    control::DaemonConfig config_;
    mutable std::mutex control_mutex_;
    rte_mempool* pool_ = nullptr;
    Rcu rcu_;
    uint64_t epoch_tsc_;
    std::atomic<bool> running_{false};

    std::array<std::optional<PortEntry>, sw::kMaxPorts> ports_;
    std::array<std::unique_ptr<Bridge>, control::kMaxBridges> bridges_;
    std::vector<uint16_t> bridge_order_;
    std::deque<sw::PortIndex> free_ports_;  // oldest freed first, so indices are not reused soon
    std::vector<std::vector<RxQueueRef>> placement_;  // per worker, every port's queues
    EthPort* uplink_ = nullptr;

    std::unique_ptr<DatapathState> state_owner_;
    std::atomic<const DatapathState*> state_{nullptr};
    std::vector<std::unique_ptr<Worker>> workers_;
    bool started_ = false;

    // clear_stats records the counters here; readers subtract it.
    std::vector<std::array<uint64_t, sw::PortCounters::kCount>> port_baseline_;
    std::vector<std::array<uint64_t, sw::BridgeCounters::kCount>> bridge_baseline_;
    std::array<uint64_t, 2> eth_baseline_{};  // the uplink's own rx_nombuf and imissed
    std::vector<WorkerStatsSnapshot> worker_baseline_;

    CaptureRegistry captures_;
};

}  // namespace conduit::dp
