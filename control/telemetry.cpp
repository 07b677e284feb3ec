#include "control/telemetry.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_telemetry.h>

#include <rte_cycles.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "dataplane/dataplane.h"
#include "dataplane/log.h"

namespace conduit::control {

namespace {

// Telemetry callbacks take no user pointer: they reach the dataplane through this one,
// under a mutex so that shutdown can withdraw it while a query is in flight. Each query
// then holds the dataplane's control lock while it reads ports and bridges, which the
// control server may change at any time.
std::mutex g_mutex;
dp::Dataplane* g_dp = nullptr;

// Mbufs taken out of the pool by /conduit/debug/mempool_hold (fault injection).
std::vector<rte_mbuf*> g_held;

void add_port(rte_tel_data* d, const dp::Dataplane& dp, const dp::PortEntry& entry) {
    const dp::Port& port = *entry.port;
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "type", port.type());
    rte_tel_data_add_dict_string(d, "endpoint", port.endpoint().c_str());
    rte_tel_data_add_dict_string(d, "bridge", dp.bridge(entry.bridge).name.c_str());
    rte_tel_data_add_dict_string(d, "state", port.is_up() ? "up" : "down");
    rte_tel_data_add_dict_string(d, "admin", entry.config.admin_up ? "up" : "down");
    rte_tel_data_add_dict_u64(d, "mtu", entry.config.mtu);
    rte_tel_data_add_dict_string(d, "offloads", entry.config.offloads ? "on" : "off");
    // Negotiated with the connected guest, or the device's.
    const bool negotiated = port.is_up() || entry.config.type == PortType::kEthdev;
    rte_tel_data_add_dict_string(
        d, "offloads_from_port",
        sw::describe_offloads(negotiated ? port.rx_offloads() : 0).c_str());
    rte_tel_data_add_dict_string(
        d, "offloads_to_port",
        sw::describe_offloads(negotiated ? port.tx_caps().offloads : 0).c_str());
    for (const auto& [name, value] : dp.port_counters(port.index())) {
        rte_tel_data_add_dict_u64(d, name, value);
    }
}

int cmd_ports(const char*, const char*, rte_tel_data* d) {
    std::lock_guard lock(g_mutex);
    if (g_dp == nullptr) {
        return -1;
    }
    const auto dp_lock = g_dp->lock();
    rte_tel_data_start_dict(d);
    for (const auto* entry : g_dp->ports()) {
        rte_tel_data* child = rte_tel_data_alloc();
        add_port(child, *g_dp, *entry);
        rte_tel_data_add_dict_container(d, entry->port->name().c_str(), child, 0);
    }
    return 0;
}

int cmd_port(const char*, const char* params, rte_tel_data* d) {
    std::lock_guard lock(g_mutex);
    if (g_dp == nullptr || params == nullptr) {
        return -1;
    }
    const auto dp_lock = g_dp->lock();
    const dp::PortEntry* entry = g_dp->find_port(params);
    if (entry == nullptr) {
        return -1;
    }
    add_port(d, *g_dp, *entry);
    return 0;
}

int cmd_mempool(const char*, const char*, rte_tel_data* d) {
    std::lock_guard lock(g_mutex);
    if (g_dp == nullptr) {
        return -1;
    }
    const rte_mempool* pool = g_dp->pool();
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "name", pool->name);
    rte_tel_data_add_dict_u64(d, "size", pool->size);
    // Mbufs held in per-lcore caches count as available, so in_use is exactly the mbufs
    // that frames, rings and queues hold: the figure a leak moves.
    rte_tel_data_add_dict_u64(d, "in_use", rte_mempool_in_use_count(pool));
    rte_tel_data_add_dict_u64(d, "available", rte_mempool_avail_count(pool));
    rte_tel_data_add_dict_u64(d, "cache_size", pool->cache_size);
    rte_tel_data_add_dict_u64(d, "held_by_debug", g_held.size());
    return 0;
}

int cmd_bridges(const char*, const char*, rte_tel_data* d) {
    std::lock_guard lock(g_mutex);
    if (g_dp == nullptr) {
        return -1;
    }
    const auto dp_lock = g_dp->lock();
    rte_tel_data_start_dict(d);
    for (const dp::Bridge* b : g_dp->bridges()) {
        rte_tel_data* child = rte_tel_data_alloc();
        rte_tel_data_start_dict(child);
        std::string ports;
        for (const auto* entry : g_dp->ports()) {
            if (entry->bridge == b->id) {
                ports += (ports.empty() ? "" : ",") + entry->port->name();
            }
        }
        rte_tel_data_add_dict_string(child, "ports", ports.c_str());
        rte_tel_data_add_dict_u64(child, "mac_entries", b->fdb->size());
        rte_tel_data_add_dict_u64(child, "mac_table_size", b->fdb->capacity());
        rte_tel_data_add_dict_u64(child, "mac_aging_s", b->fdb->aging_ms() / 1000);
        for (const auto& [name, value] : g_dp->bridge_counters(b->id)) {
            rte_tel_data_add_dict_u64(child, name, value);
        }
        rte_tel_data_add_dict_container(d, b->name.c_str(), child, 0);
    }
    return 0;
}

int cmd_fdb(const char*, const char* params, rte_tel_data* d) {
    std::lock_guard lock(g_mutex);
    if (g_dp == nullptr || params == nullptr) {
        return -1;
    }
    const auto dp_lock = g_dp->lock();
    const dp::Bridge* b = g_dp->find_bridge(params);
    if (b == nullptr) {
        return -1;
    }
    std::map<sw::PortIndex, std::string> names;
    for (const auto* entry : g_dp->ports()) {
        names[entry->port->index()] = entry->port->name();
    }
    rte_tel_data_start_dict(d);
    const auto entries = b->fdb->entries(g_dp->now_ms());
    rte_tel_data_add_dict_u64(d, "entries", entries.size());
    // MACs are not valid telemetry key names, so the table is a list of
    // "MAC PORT AGEs [static]" strings; a telemetry array holds at most
    // RTE_TEL_MAX_ARRAY_ENTRIES, and "entries" says how many there are in all.
    rte_tel_data* table = rte_tel_data_alloc();
    rte_tel_data_start_array(table, RTE_TEL_STRING_VAL);
    int room = RTE_TEL_MAX_ARRAY_ENTRIES;
    for (const auto& e : entries) {
        if (room-- <= 0) {
            break;
        }
        const std::string line = sw::mac_to_string(e.mac) + " " + names[e.port] + " " +
                                 std::to_string(e.age_ms / 1000) + "s" +
                                 (e.is_static ? " static" : "");
        rte_tel_data_add_array_string(table, line.c_str());
    }
    rte_tel_data_add_dict_container(d, "table", table, 0);
    return 0;
}

int cmd_workers(const char*, const char*, rte_tel_data* d) {
    std::lock_guard lock(g_mutex);
    if (g_dp == nullptr) {
        return -1;
    }
    const auto dp_lock = g_dp->lock();
    rte_tel_data_start_dict(d);
    const double hz = static_cast<double>(rte_get_tsc_hz());
    for (const auto& w : g_dp->workers()) {
        rte_tel_data* child = rte_tel_data_alloc();
        rte_tel_data_start_dict(child);
        rte_tel_data_add_dict_u64(child, "cpu", w.cpu);
        rte_tel_data_add_dict_u64(child, "lcore", w.lcore);
        std::string queues;
        for (const auto& q : w.queues) {
            queues += (queues.empty() ? "" : ",") + q;
        }
        rte_tel_data_add_dict_string(child, "queues", queues.c_str());
        const auto& s = w.stats;
        rte_tel_data_add_dict_u64(child, "polls", s.polls);
        rte_tel_data_add_dict_u64(child, "busy_polls", s.busy_polls);
        rte_tel_data_add_dict_u64(child, "rx_packets", s.rx_packets);
        rte_tel_data_add_dict_u64(child, "rx_bursts", s.rx_bursts);
        rte_tel_data_add_dict_u64(child, "busy_cycles", s.busy_cycles);
        rte_tel_data_add_dict_u64(child, "idle_cycles", s.idle_cycles);
        rte_tel_data_add_dict_u64(child, "idle_sleeps", s.sleeps);
        rte_tel_data_add_dict_u64(child, "idle_holds", s.holds);
        rte_tel_data_add_dict_u64(child, "idle_sleep_us",
                                  static_cast<uint64_t>(s.sleep_cycles * 1e6 / hz));
        rte_tel_data_add_dict_u64(child, "longest_sleep_us", s.longest_sleep_us);
        rte_tel_data_add_dict_u64(child, "stalls", s.stalls);
        rte_tel_data_add_dict_u64(child, "longest_stall_us", s.longest_stall_us);
        rte_tel_data_add_dict_container(d, ("worker" + std::to_string(w.id)).c_str(), child, 0);
    }
    return 0;
}

// Fault injection for tests: takes N mbufs out of the pool and keeps them (0 gives them
// back), to provoke and observe the "no mbuf" path with real guests.
int cmd_mempool_hold(const char*, const char* params, rte_tel_data* d) {
    std::lock_guard lock(g_mutex);
    if (g_dp == nullptr || params == nullptr) {
        return -1;
    }
    char* end = nullptr;
    const unsigned long want = std::strtoul(params, &end, 10);
    if (end == params || *end != '\0' || want > g_dp->pool()->size) {
        return -1;
    }
    if (want == 0) {
        for (rte_mbuf* m : g_held) {
            rte_pktmbuf_free(m);
        }
        g_held.clear();
    }
    while (g_held.size() < want) {
        rte_mbuf* m = rte_pktmbuf_alloc(g_dp->pool());
        if (m == nullptr) {
            break;
        }
        g_held.push_back(m);
    }
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_u64(d, "held", g_held.size());
    return 0;
}

}  // namespace

void telemetry_attach(dp::Dataplane& dp) {
    {
        std::lock_guard lock(g_mutex);
        g_dp = &dp;
    }
    static bool registered = false;
    if (registered) {
        return;
    }
    registered = true;
    rte_telemetry_register_cmd("/conduit/ports", cmd_ports,
                               "Every port with its state and counters. No parameters.");
    rte_telemetry_register_cmd("/conduit/port", cmd_port,
                               "One port's state and counters. Parameter: port name.");
    rte_telemetry_register_cmd("/conduit/mempool", cmd_mempool,
                               "The mbuf pool: size, in_use, available. No parameters.");
    rte_telemetry_register_cmd("/conduit/bridges", cmd_bridges,
                               "Bridges: ports, MAC table use, learning counters.");
    rte_telemetry_register_cmd("/conduit/fdb", cmd_fdb,
                               "A bridge's MAC table (mac: port age). Parameter: bridge name.");
    rte_telemetry_register_cmd("/conduit/workers", cmd_workers,
                               "Worker threads (PMD statistics): CPU, queues polled, polls, "
                               "busy and idle cycles, idle sleeps.");
    rte_telemetry_register_cmd("/conduit/debug/mempool_hold", cmd_mempool_hold,
                               "Test hook: hold N mbufs out of the pool (0 releases). "
                               "Parameter: N.");
}

void telemetry_detach() {
    std::lock_guard lock(g_mutex);
    for (rte_mbuf* m : g_held) {
        rte_pktmbuf_free(m);
    }
    g_held.clear();
    g_dp = nullptr;
}

}  // namespace conduit::control
