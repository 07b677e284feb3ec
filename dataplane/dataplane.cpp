#include "dataplane/dataplane.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <algorithm>
#include <set>
#include <stdexcept>

#include "dataplane/eth_port.h"
#include "dataplane/log.h"
#include "dataplane/vhost_port.h"

namespace conduit::dp {

// The config checks MTUs without DPDK headers; the datapath's limits must be the same.
static_assert(control::kMinPortMtu == sw::kMinMtu && control::kMaxPortMtu == sw::kMaxMtu &&
              control::kDefaultPortMtu == sw::kDefaultMtu);

bool ChangeSet::empty() const {
    return remove_macs.empty() && remove_ports.empty() && remove_bridges.empty() &&
           set_bridges.empty() && set_admin.empty() && add_bridges.empty() && add_ports.empty() &&
           add_macs.empty();
}

struct Dataplane::Undo {
    // Everything a commit did so far, to be reversed if a later step fails.
    std::vector<std::string> added_ports;
    std::vector<std::string> added_bridges;
    std::vector<ChangeSet::MacEntry> added_macs;
    std::vector<ChangeSet::PortAdd> removed_ports;  // with their configs
    std::vector<ChangeSet::BridgeSettings> removed_bridges;
    std::vector<ChangeSet::MacEntry> removed_macs;  // static entries that went away
    std::vector<ChangeSet::BridgeSettings> old_settings;
    std::vector<std::pair<std::string, bool>> old_admin;
};

Dataplane::Dataplane(const control::DaemonConfig& config)
    : config_(config),
      rcu_(static_cast<unsigned>(config.worker_cpus.size())),
      epoch_tsc_(rte_rdtsc()),
      port_baseline_(sw::kMaxPorts),
      bridge_baseline_(control::kMaxBridges),
      worker_baseline_(config.worker_cpus.size()) {
    pool_ = rte_pktmbuf_pool_create("conduit_mbufs", config_.mbufs, config_.mbuf_cache, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
    if (pool_ == nullptr) {
        throw std::runtime_error("cannot create a pool of " + std::to_string(config_.mbufs) +
                                 " mbufs: " + rte_strerror(rte_errno) +
                                 " (raise conduitd.memory_mb or lower conduitd.mbufs)");
    }
    for (sw::PortIndex i = 0; i < sw::kMaxPorts; ++i) {
        free_ports_.push_back(i);
    }
    const unsigned workers = static_cast<unsigned>(config_.worker_cpus.size());
    placement_.resize(workers);
    BackoffPolicy backoff;
    backoff.enabled = config_.idle_backoff;
    for (unsigned i = 0; i < workers; ++i) {
        workers_.push_back(std::make_unique<Worker>(*this, i, i + 1, config_.worker_cpus[i],
                                                    backoff, config_.worker_nice));
    }
    std::lock_guard lock(control_mutex_);
    publish_locked();
}

Dataplane::~Dataplane() {
    stop();
    std::lock_guard lock(control_mutex_);
    while (!captures_.active.empty()) {
        stop_capture_locked(captures_.active.begin()->first, "conduitd stopped");
    }
    workers_.clear();
    for (auto& entry : ports_) {
        entry.reset();
    }
    for (auto& bridge : bridges_) {
        bridge.reset();
    }
    if (pool_ != nullptr) {
        rte_mempool_free(pool_);
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
        CLOG_INFO("worker", "worker %u on CPU %u", w->id(), w->cpu());
    }
    started_ = true;
}

void Dataplane::stop() {
    std::lock_guard lock(control_mutex_);
    if (!started_) {
        return;
    }
    // Guests first, while workers still pass quiescent states for destroy_device.
    for (auto& entry : ports_) {
        if (entry && dynamic_cast<VhostUserPort*>(entry->port.get()) != nullptr) {
            entry->port->stop();
        }
    }
    running_.store(false);
    rte_eal_mp_wait_lcore();
    for (auto& entry : ports_) {
        if (entry) {
            entry->port->stop();
        }
    }
    started_ = false;
}

// ---------------------------------------------------------------------------------------
// Publishing

void Dataplane::publish_locked() {
    auto next = std::make_unique<DatapathState>();
    next->worker_queues.resize(workers_.size());
    uint16_t highest = 0;
    for (const uint16_t id : bridge_order_) {
        highest = std::max<uint16_t>(highest, static_cast<uint16_t>(id + 1));
    }
    // Indexed by bridge id; ids not in use stay empty and no port names them.
    next->forwarding.bridges.resize(highest);
    for (const uint16_t id : bridge_order_) {
        const Bridge& b = *bridges_[id];
        sw::BridgeView& view = next->forwarding.bridges[id];
        view.id = id;
        view.fdb = b.fdb.get();
        for (const sw::PortIndex index : b.ports) {
            const PortEntry& entry = *ports_[index];
            if (!entry.config.admin_up) {
                continue;
            }
            view.ports.push_back(index);
            next->forwarding.bridge_of_port[index] = id;
            next->ports[index] = entry.port.get();
        }
    }
    for (std::size_t w = 0; w < placement_.size(); ++w) {
        for (const RxQueueRef& q : placement_[w]) {
            if (next->ports[q.port->index()] != nullptr) {
                next->worker_queues[w].push_back(q);
            }
        }
    }
    state_.store(next.get(), std::memory_order_release);
    // After this no worker is inside a loop that read the old state.
    rcu_.synchronize();
    state_owner_ = std::move(next);
}

void Dataplane::place_queues_locked(sw::PortIndex index) {
    // Each queue to the worker polling the fewest; queues already placed never move, so
    // adding or removing a port never disturbs how the others are polled.
    Port* port = ports_[index]->port.get();
    for (uint16_t q = 0; q < port->rx_queue_count(); ++q) {
        auto least =
            std::min_element(placement_.begin(), placement_.end(),
                             [](const auto& a, const auto& b) { return a.size() < b.size(); });
        least->push_back({port, q});
    }
}

void Dataplane::unplace_queues_locked(sw::PortIndex index) {
    for (auto& queues : placement_) {
        std::erase_if(queues, [index](const RxQueueRef& q) { return q.port->index() == index; });
    }
}

// ---------------------------------------------------------------------------------------
// Changes

std::optional<sw::PortIndex> Dataplane::index_of(const std::string& port) const {
    for (const auto& entry : ports_) {
        if (entry && entry->port->name() == port) {
            return entry->port->index();
        }
    }
    return std::nullopt;
}

std::optional<uint16_t> Dataplane::bridge_id_of(const std::string& bridge) const {
    for (const uint16_t id : bridge_order_) {
        if (bridges_[id]->name == bridge) {
            return id;
        }
    }
    return std::nullopt;
}

void Dataplane::check(const ChangeSet& c) const {
    std::set<std::string> ports, bridges;
    for (const auto& entry : ports_) {
        if (entry) {
            ports.insert(entry->port->name());
        }
    }
    for (const uint16_t id : bridge_order_) {
        bridges.insert(bridges_[id]->name);
    }
    for (const auto& m : c.remove_macs) {
        if (!bridges.contains(m.bridge)) {
            throw ChangeError("no bridge '" + m.bridge + "'");
        }
    }
    for (const auto& name : c.remove_ports) {
        if (ports.erase(name) == 0) {
            throw ChangeError("no port '" + name + "'");
        }
    }
    for (const auto& name : c.remove_bridges) {
        const auto id = bridge_id_of(name);
        if (!id) {
            throw ChangeError("no bridge '" + name + "'");
        }
        for (const sw::PortIndex index : bridges_[*id]->ports) {
            if (ports.contains(ports_[index]->port->name())) {
                throw ChangeError("bridge '" + name + "' still has port '" +
                                  ports_[index]->port->name() + "'");
            }
        }
        bridges.erase(name);
    }
    for (const auto& s : c.set_bridges) {
        if (!bridges.contains(s.name)) {
            throw ChangeError("no bridge '" + s.name + "'");
        }
    }
    for (const auto& [name, up] : c.set_admin) {
        if (!ports.contains(name)) {
            throw ChangeError("no port '" + name + "'");
        }
    }
    for (const auto& b : c.add_bridges) {
        if (!bridges.insert(b.name).second) {
            throw ChangeError("bridge '" + b.name + "' already exists");
        }
    }
    if (bridges.size() > control::kMaxBridges) {
        throw ChangeError("at most " + std::to_string(control::kMaxBridges) + " bridges");
    }
    bool uplink = uplink_ != nullptr && std::find(c.remove_ports.begin(), c.remove_ports.end(),
                                                  uplink_->name()) == c.remove_ports.end();
    for (const auto& a : c.add_ports) {
        if (!bridges.contains(a.bridge)) {
            throw ChangeError("no bridge '" + a.bridge + "'");
        }
        if (!ports.insert(a.config.name).second) {
            throw ChangeError("port '" + a.config.name + "' already exists");
        }
        if (a.config.type == control::PortType::kEthdev) {
            if (uplink) {
                throw ChangeError("only one uplink (ethdev) port per conduitd");
            }
            uplink = true;
        }
    }
    if (ports.size() > sw::kMaxPorts) {
        throw ChangeError("at most " + std::to_string(sw::kMaxPorts) + " ports");
    }
    for (const auto& m : c.add_macs) {
        if (!bridges.contains(m.bridge) || !ports.contains(m.port)) {
            throw ChangeError("static MAC " + sw::mac_to_string(m.mac) + ": no port '" + m.port +
                              "' in bridge '" + m.bridge + "'");
        }
    }
}

void Dataplane::commit(const ChangeSet& changes) {
    std::lock_guard lock(control_mutex_);
    check(changes);
    Undo undo;
    try {
        apply_locked(changes, undo);
    } catch (const std::exception& e) {
        CLOG_WARN("control", "change failed, putting back what was there: %s", e.what());
        rollback_locked(undo);
        throw ChangeError(e.what());
    }
}

void Dataplane::apply_locked(const ChangeSet& c, Undo& undo) {
    // Removals: static MACs, then ports (one publish for all of them), then bridges.
    for (const auto& m : c.remove_macs) {
        const Bridge& b = *bridges_[*bridge_id_of(m.bridge)];
        for (const auto& e : b.fdb->entries(now_ms())) {
            if (e.mac == m.mac && e.is_static) {
                undo.removed_macs.push_back({m.bridge, m.mac, ports_[e.port]->port->name()});
            }
        }
        b.fdb->remove(m.mac);
    }
    std::vector<sw::PortIndex> removed;
    for (const auto& name : c.remove_ports) {
        const sw::PortIndex index = *index_of(name);
        const PortEntry& entry = *ports_[index];
        const Bridge& b = *bridges_[entry.bridge];
        for (const auto& e : b.fdb->entries(now_ms())) {
            if (e.port == index && e.is_static) {
                undo.removed_macs.push_back({b.name, e.mac, name});
            }
        }
        undo.removed_ports.push_back({b.name, entry.config});
        removed.push_back(index);
    }
    if (!removed.empty()) {
        remove_ports_locked(removed);
    }
    for (const auto& name : c.remove_bridges) {
        const uint16_t id = *bridge_id_of(name);
        const Bridge& b = *bridges_[id];
        undo.removed_bridges.push_back({name, b.fdb->aging_ms(), b.fdb->capacity()});
        remove_bridge_locked(id);
    }

    // Settings.
    for (const auto& s : c.set_bridges) {
        Bridge& b = *bridges_[*bridge_id_of(s.name)];
        undo.old_settings.push_back({s.name, b.fdb->aging_ms(), b.fdb->capacity()});
        b.fdb->set_aging_ms(s.mac_aging_ms);
        if (s.mac_table_size != b.fdb->capacity()) {
            b.fdb->set_capacity(s.mac_table_size);
        }
    }
    bool admin_changed = false;
    for (const auto& [name, up] : c.set_admin) {
        const sw::PortIndex index = *index_of(name);
        undo.old_admin.emplace_back(name, ports_[index]->config.admin_up);
        if (ports_[index]->config.admin_up != up) {
            ports_[index]->config.admin_up = up;
            admin_changed = true;
        }
    }
    if (admin_changed) {
        publish_locked();
        for (const auto& [name, up] : c.set_admin) {
            const sw::PortIndex index = *index_of(name);
            if (!up) {
                // Its hosts are unreachable through it now; learn them afresh when it is back.
                bridges_[ports_[index]->bridge]->fdb->flush_port(index);
            }
        }
    }

    // Additions: bridges, ports (started before they are published), static MACs.
    for (const auto& b : c.add_bridges) {
        add_bridge_locked(b);
        undo.added_bridges.push_back(b.name);
    }
    for (const auto& a : c.add_ports) {
        add_port_locked(*bridge_id_of(a.bridge), a.config);
        undo.added_ports.push_back(a.config.name);
    }
    if (!c.add_ports.empty() || !c.add_bridges.empty()) {
        publish_locked();
    }
    for (const auto& m : c.add_macs) {
        const Bridge& b = *bridges_[*bridge_id_of(m.bridge)];
        if (!b.fdb->add_static(m.mac, *index_of(m.port))) {
            throw ChangeError("static MAC " + sw::mac_to_string(m.mac) + ": bridge '" + m.bridge +
                              "' MAC table is full");
        }
        undo.added_macs.push_back(m);
    }
}

void Dataplane::rollback_locked(Undo& undo) {
    // Best effort: each step on its own, so one failure does not stop the others.
    auto attempt = [](const char* what, auto&& step) {
        try {
            step();
        } catch (const std::exception& e) {
            CLOG_ERR("control", "rollback: %s: %s", what, e.what());
        }
    };
    for (const auto& m : undo.added_macs) {
        attempt("static MAC", [&] { bridges_[*bridge_id_of(m.bridge)]->fdb->remove(m.mac); });
    }
    std::vector<sw::PortIndex> added;
    for (const auto& name : undo.added_ports) {
        if (auto index = index_of(name)) {
            added.push_back(*index);
        }
    }
    if (!added.empty()) {
        attempt("added ports", [&] { remove_ports_locked(added); });
    }
    for (const auto& name : undo.added_bridges) {
        attempt("added bridge", [&] {
            if (auto id = bridge_id_of(name)) {
                remove_bridge_locked(*id);
            }
        });
    }
    for (const auto& [name, up] : undo.old_admin) {
        if (auto index = index_of(name)) {
            ports_[*index]->config.admin_up = up;
        }
    }
    for (const auto& s : undo.old_settings) {
        attempt("bridge settings", [&] {
            Bridge& b = *bridges_[*bridge_id_of(s.name)];
            b.fdb->set_aging_ms(s.mac_aging_ms);
            if (b.fdb->capacity() != s.mac_table_size) {
                b.fdb->set_capacity(s.mac_table_size);
            }
        });
    }
    for (const auto& b : undo.removed_bridges) {
        attempt("removed bridge", [&] { add_bridge_locked(b); });
    }
    for (const auto& p : undo.removed_ports) {
        attempt("removed port", [&] { add_port_locked(*bridge_id_of(p.bridge), p.config); });
    }
    publish_locked();
    for (const auto& m : undo.removed_macs) {
        attempt("removed static MAC", [&] {
            bridges_[*bridge_id_of(m.bridge)]->fdb->add_static(m.mac, *index_of(m.port));
        });
    }
}

uint16_t Dataplane::add_bridge_locked(const ChangeSet::BridgeSettings& s) {
    uint16_t id = 0;
    while (id < bridges_.size() && bridges_[id]) {
        ++id;
    }
    if (id == bridges_.size()) {
        throw ChangeError("at most " + std::to_string(control::kMaxBridges) + " bridges");
    }
    auto bridge = std::make_unique<Bridge>();
    bridge->name = s.name;
    bridge->id = id;
    bridge->fdb = std::make_unique<sw::MacTable>(s.mac_table_size, s.mac_aging_ms,
                                                 [this] { rcu_.synchronize(); });
    bridges_[id] = std::move(bridge);
    bridge_order_.push_back(id);
    CLOG_INFO("control", "bridge %s added", s.name.c_str());
    return id;
}

void Dataplane::remove_bridge_locked(uint16_t id) {
    std::erase(bridge_order_, id);
    publish_locked();  // no state names the bridge any more
    for (const auto& w : workers_) {
        auto& counters = w->counters_for_reset().bridges[id];
        for (const auto member : sw::BridgeCounters::kMembers) {
            (counters.*member).reset();
        }
    }
    bridge_baseline_[id] = {};
    CLOG_INFO("control", "bridge %s removed", bridges_[id]->name.c_str());
    bridges_[id].reset();
}

sw::PortIndex Dataplane::add_port_locked(uint16_t bridge_id, const control::PortConfig& config) {
    if (free_ports_.empty()) {
        throw ChangeError("at most " + std::to_string(sw::kMaxPorts) + " ports");
    }
    const sw::PortIndex index = free_ports_.front();
    Bridge& bridge = *bridges_[bridge_id];
    std::unique_ptr<Port> port;
    if (config.type == control::PortType::kVhostUser) {
        VhostUserPort::Options o{config.socket, config.mode == control::VhostMode::kClient,
                                 config.queues, config.mtu, config.offloads};
        sw::MacTable* fdb = bridge.fdb.get();
        // Runs on the vhost thread; it must not take the control lock (unregistering a
        // port under that lock waits for this callback).
        port = std::make_unique<VhostUserPort>(config.name, index, o, pool_, rcu_,
                                               [fdb](VhostUserPort& p) {
                                                   // A guest that went away may come back
                                                   // elsewhere: forget its MACs.
                                                   fdb->flush_port(p.index());
                                               });
    } else {
        EthPort::Options o{config.devargs,
                           config.queues,
                           config.rx_descriptors,
                           config.tx_descriptors,
                           static_cast<unsigned>(workers_.size()),
                           config.mtu,
                           config.offloads};
        port = std::make_unique<EthPort>(config.name, index, o, pool_);
    }
    port->start();  // throws; nothing is recorded yet
    free_ports_.pop_front();
    ports_[index].emplace(PortEntry{std::move(port), config, bridge_id});
    if (auto* eth = dynamic_cast<EthPort*>(ports_[index]->port.get())) {
        uplink_ = eth;
        eth_baseline_ = {};
    }
    bridge.ports.push_back(index);
    place_queues_locked(index);
    CLOG_INFO("control", "port %s added to bridge %s", config.name.c_str(), bridge.name.c_str());
    return index;
}

void Dataplane::remove_ports_locked(const std::vector<sw::PortIndex>& indices) {
    for (const sw::PortIndex index : indices) {
        std::erase(bridges_[ports_[index]->bridge]->ports, index);
        unplace_queues_locked(index);
    }
    publish_locked();  // no worker polls them or sends to them now
    for (const sw::PortIndex index : indices) {
        PortEntry& entry = *ports_[index];
        for (auto it = captures_.active.begin(); it != captures_.active.end();) {
            const uint64_t id = it->first;
            ++it;
            if (captures_.active[id]->port().index() == index) {
                stop_capture_locked(id, "port removed");
            }
        }
        bridges_[entry.bridge]->fdb->flush_port(index, true);
    }
    // Lookups that found a flushed entry before the flush are over after this.
    rcu_.synchronize();
    for (const sw::PortIndex index : indices) {
        PortEntry& entry = *ports_[index];
        entry.port->stop();
        if (entry.port.get() == uplink_) {
            uplink_ = nullptr;
        }
        CLOG_INFO("control", "port %s removed", entry.port->name().c_str());
        ports_[index].reset();
        for (const auto& w : workers_) {
            auto& counters = w->counters_for_reset().ports[index];
            for (const auto member : sw::PortCounters::kMembers) {
                (counters.*member).reset();
            }
        }
        port_baseline_[index] = {};
        free_ports_.push_back(index);
    }
}

// ---------------------------------------------------------------------------------------
// Periodic work and statistics

void Dataplane::tick() {
    std::lock_guard lock(control_mutex_);
    const uint64_t now = now_ms();
    for (const uint16_t id : bridge_order_) {
        Bridge& b = *bridges_[id];
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

std::array<uint64_t, sw::PortCounters::kCount> Dataplane::raw_port_counters(
    sw::PortIndex port) const {
    std::array<uint64_t, sw::PortCounters::kCount> sums{};
    for (const auto& w : workers_) {
        const sw::PortCounters& c = w->counters().ports[port];
        for (std::size_t i = 0; i < sums.size(); ++i) {
            sums[i] += (c.*sw::PortCounters::kMembers[i]).get();
        }
    }
    return sums;
}

std::array<uint64_t, sw::BridgeCounters::kCount> Dataplane::raw_bridge_counters(
    uint16_t bridge) const {
    std::array<uint64_t, sw::BridgeCounters::kCount> sums{};
    for (const auto& w : workers_) {
        const sw::BridgeCounters& c = w->counters().bridges[bridge];
        for (std::size_t i = 0; i < sums.size(); ++i) {
            sums[i] += (c.*sw::BridgeCounters::kMembers[i]).get();
        }
    }
    return sums;
}

std::array<uint64_t, 2> Dataplane::raw_eth_stats(sw::PortIndex port) const {
    const auto* eth = dynamic_cast<const EthPort*>(ports_[port]->port.get());
    rte_eth_stats stats{};
    if (eth != nullptr && eth->started() && rte_eth_stats_get(eth->port_id(), &stats) == 0) {
        return {stats.rx_nombuf, stats.imissed};
    }
    return {0, 0};
}

CounterList Dataplane::port_counters(sw::PortIndex port, bool raw) const {
    const auto sums = raw_port_counters(port);
    CounterList out;
    for (std::size_t i = 0; i < sums.size(); ++i) {
        out.emplace_back(sw::PortCounters::kNames[i],
                         sums[i] - (raw ? 0 : port_baseline_[port][i]));
    }
    // An ethdev's PMD counts its own allocation failures and the frames the NIC had no
    // room for.
    uint64_t missed = 0;
    if (ports_[port] && ports_[port]->port.get() == uplink_) {
        const auto eth = raw_eth_stats(port);
        const auto base = raw ? std::array<uint64_t, 2>{} : eth_baseline_;
        for (auto& [name, value] : out) {
            if (std::string_view(name) == "drop_rx_nombuf") {
                value += eth[0] - std::min(eth[0], base[0]);
            }
        }
        missed = eth[1] - std::min(eth[1], base[1]);
    }
    out.emplace_back("drop_rx_missed", missed);
    return out;
}

CounterList Dataplane::bridge_counters(uint16_t bridge, bool raw) const {
    const auto sums = raw_bridge_counters(bridge);
    CounterList out;
    for (std::size_t i = 0; i < sums.size(); ++i) {
        out.emplace_back(sw::BridgeCounters::kNames[i],
                         sums[i] - (raw ? 0 : bridge_baseline_[bridge][i]));
    }
    return out;
}

bool Dataplane::forget_mac(const std::string& bridge, sw::Mac mac) {
    std::lock_guard lock(control_mutex_);
    const auto id = bridge_id_of(bridge);
    if (!id) {
        throw ChangeError("no bridge '" + bridge + "'");
    }
    const sw::MacTable& fdb = *bridges_[*id]->fdb;
    for (const auto& e : fdb.entries(now_ms())) {
        if (e.mac == mac && e.is_static) {
            throw ChangeError(sw::mac_to_string(mac) +
                              " is a static entry: remove it from the config (del-mac)");
        }
    }
    return bridges_[*id]->fdb->remove(mac);
}

uint32_t Dataplane::flush_fdb(const std::string& bridge, const std::string& port) {
    std::lock_guard lock(control_mutex_);
    const auto id = bridge_id_of(bridge);
    if (!id) {
        throw ChangeError("no bridge '" + bridge + "'");
    }
    if (port.empty()) {
        return bridges_[*id]->fdb->flush_learned();
    }
    const auto index = index_of(port);
    if (!index || ports_[*index]->bridge != *id) {
        throw ChangeError("no port '" + port + "' in bridge '" + bridge + "'");
    }
    return bridges_[*id]->fdb->flush_port(*index);
}

void Dataplane::clear_stats(const std::string& port) {
    std::lock_guard lock(control_mutex_);
    std::vector<sw::PortIndex> which;
    if (!port.empty()) {
        const auto index = index_of(port);
        if (!index) {
            throw ChangeError("no port '" + port + "'");
        }
        which.push_back(*index);
    } else {
        for (const auto& entry : ports_) {
            if (entry) {
                which.push_back(entry->port->index());
            }
        }
        for (const uint16_t id : bridge_order_) {
            bridge_baseline_[id] = raw_bridge_counters(id);
        }
        for (std::size_t w = 0; w < workers_.size(); ++w) {
            worker_baseline_[w] = workers_[w]->stats().snapshot();
        }
    }
    for (const sw::PortIndex index : which) {
        port_baseline_[index] = raw_port_counters(index);
        if (ports_[index]->port.get() == uplink_) {
            eth_baseline_ = raw_eth_stats(index);
        }
    }
}

std::vector<WorkerReport> Dataplane::workers(bool raw) const {
    std::vector<WorkerReport> out;
    for (std::size_t w = 0; w < workers_.size(); ++w) {
        const Worker& worker = *workers_[w];
        WorkerReport r{worker.id(), worker.cpu(), worker.lcore(), {}, {}};
        for (const RxQueueRef& q : placement_[w]) {
            r.queues.push_back(q.port->name() + ":" + std::to_string(q.queue));
        }
        r.stats = raw ? worker.stats().snapshot() : worker.stats().snapshot() - worker_baseline_[w];
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<const Bridge*> Dataplane::bridges() const {
    std::vector<const Bridge*> out;
    for (const uint16_t id : bridge_order_) {
        out.push_back(bridges_[id].get());
    }
    return out;
}

std::vector<const PortEntry*> Dataplane::ports() const {
    std::vector<const PortEntry*> out;
    for (const uint16_t id : bridge_order_) {
        for (const sw::PortIndex index : bridges_[id]->ports) {
            out.push_back(&*ports_[index]);
        }
    }
    return out;
}

const PortEntry* Dataplane::find_port(const std::string& name) const {
    const auto index = index_of(name);
    return index ? &*ports_[*index] : nullptr;
}

const Bridge* Dataplane::find_bridge(const std::string& name) const {
    const auto id = bridge_id_of(name);
    return id ? bridges_[*id].get() : nullptr;
}

// ---------------------------------------------------------------------------------------
// Captures

uint64_t Dataplane::capture_start(const std::string& port, const CaptureOptions& options) {
    std::lock_guard lock(control_mutex_);
    const auto index = index_of(port);
    if (!index) {
        throw ChangeError("no port '" + port + "'");
    }
    Port& p = *ports_[*index]->port;
    if (p.capture() != nullptr) {
        throw ChangeError("port '" + port + "' is already being captured");
    }
    const uint64_t id = captures_.next_id++;
    std::unique_ptr<Capture> capture;
    try {
        capture = std::make_unique<Capture>(id, p, options);
    } catch (const std::runtime_error& e) {
        throw ChangeError(e.what());
    }
    p.set_capture(capture.get());
    captures_.active[id] = std::move(capture);
    CLOG_INFO("capture", "capture %lu of port %s into %s", static_cast<unsigned long>(id),
              port.c_str(), options.path.c_str());
    return id;
}

void Dataplane::stop_capture_locked(uint64_t id, const std::string& error) {
    auto it = captures_.active.find(id);
    if (it == captures_.active.end()) {
        return;
    }
    Capture& capture = *it->second;
    ports_[capture.port().index()]->port->set_capture(nullptr);
    rcu_.synchronize();  // no worker is still offering frames to it
    capture.finish(error);
    captures_.finished.push_front(capture.status());
    if (captures_.finished.size() > CaptureRegistry::kKeepFinished) {
        captures_.finished.pop_back();
    }
    captures_.active.erase(it);
}

void Dataplane::capture_poll() {
    std::lock_guard lock(control_mutex_);
    std::vector<uint64_t> complete;
    for (auto& [id, capture] : captures_.active) {
        capture->drain();
        if (capture->has_all()) {
            complete.push_back(id);
        }
    }
    for (const uint64_t id : complete) {
        stop_capture_locked(id);
    }
}

std::optional<CaptureStatus> Dataplane::capture_status(uint64_t id) {
    std::lock_guard lock(control_mutex_);
    if (auto it = captures_.active.find(id); it != captures_.active.end()) {
        it->second->drain();
        return it->second->status();
    }
    for (const auto& s : captures_.finished) {
        if (s.id == id) {
            return s;
        }
    }
    return std::nullopt;
}

std::optional<CaptureStatus> Dataplane::capture_stop(uint64_t id) {
    {
        std::lock_guard lock(control_mutex_);
        stop_capture_locked(id);
    }
    return capture_status(id);
}

std::vector<CaptureStatus> Dataplane::captures() {
    std::lock_guard lock(control_mutex_);
    std::vector<CaptureStatus> out;
    for (auto& [id, capture] : captures_.active) {
        out.push_back(capture->status());
    }
    out.insert(out.end(), captures_.finished.begin(), captures_.finished.end());
    return out;
}

}  // namespace conduit::dp
