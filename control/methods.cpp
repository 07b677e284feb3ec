#include "control/methods.h"

#include <rte_cycles.h>
#include <rte_mempool.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "control/config.h"
#include "control/config_diff.h"
#include "control/running_config.h"
#include "dataplane/dataplane.h"
#include "switch/offload.h"

namespace conduit::control {

using rpc::Error;
using rpc::json;
using rpc::Params;

namespace {

json plan_to_json(const ConfigPlan& plan, bool changed) {
    json changes = json::array();
    for (const auto& c : plan.changes) {
        json item = {{"kind", change_kind_name(c.kind)}, {"text", c.text}};
        if (!c.bridge.empty()) {
            item["bridge"] = c.bridge;
        }
        if (!c.port.empty()) {
            item["port"] = c.port;
        }
        if (c.mac != 0) {
            item["mac"] = sw::mac_to_string(c.mac);
        }
        changes.push_back(std::move(item));
    }
    return {{"changed", changed},
            {"changes", std::move(changes)},
            {"restart_required", plan.restart_required},
            {"text", plan.text()}};
}

json unchanged() {
    return {{"changed", false},
            {"changes", json::array()},
            {"restart_required", json::array()},
            {"text", "no changes\n"}};
}

// Runs a config change, turning each kind of failure into its error code.
template <typename F>
json run_change(F&& f, bool dry_run = false) {
    try {
        const ConfigPlan plan = f();
        return plan_to_json(plan, !dry_run && !plan.changes.empty());
    } catch (const ConfigError& e) {
        throw Error(rpc::kInvalidConfig, e.what());
    } catch (const RestartRequired& e) {
        throw Error(rpc::kRestartRequired, e.what());
    } catch (const dp::ChangeError& e) {
        throw Error(rpc::kFailed, std::string(e.what()) + " (nothing was changed)");
    }
}

void need_name(const std::string& what, const std::string& name) {
    if (!valid_name(name)) {
        throw Error(rpc::kInvalidParams,
                    what + " name '" + name + "' must be 1-32 letters, digits or '_'");
    }
}

sw::Mac need_mac(const std::string& text) {
    sw::Mac mac = 0;
    if (!sw::mac_from_string(text, mac) || sw::mac_is_group(mac) || mac == 0) {
        throw Error(rpc::kInvalidParams,
                    "'" + text + "' is not a unicast MAC address (aa:bb:cc:dd:ee:ff)");
    }
    return mac;
}

[[noreturn]] void not_found(const std::string& what) {
    throw Error(rpc::kNotFound, "no " + what);
}

json counters_json(const dp::CounterList& list) {
    json out = json::object();
    for (const auto& [name, value] : list) {
        out[name] = value;
    }
    return out;
}

// TxCaps bits as names.
json offload_list(uint8_t offloads) {
    json out = json::array();
    if (offloads & sw::TxCaps::kTcpCsum) {
        out.push_back("tcp_csum");
    }
    if (offloads & sw::TxCaps::kUdpCsum) {
        out.push_back("udp_csum");
    }
    if (offloads & sw::TxCaps::kTso4) {
        out.push_back("tso4");
    }
    if (offloads & sw::TxCaps::kTso6) {
        out.push_back("tso6");
    }
    return out;
}

json port_json(const dp::Dataplane& dp, const dp::PortEntry& e) {
    const PortConfig& c = e.config;
    // A guest's offloads are those of its current connection; a device's, once started.
    const bool negotiated = e.port->is_up() || c.type == PortType::kEthdev;
    json p = {{"name", c.name},
              {"bridge", dp.bridge(e.bridge).name},
              {"type", port_type_name(c.type)},
              {"endpoint", e.port->endpoint()},
              {"queues", c.queues},
              {"mtu", c.mtu},
              {"offloads", c.offloads},
              {"offloads_from_port", offload_list(negotiated ? e.port->rx_offloads() : 0)},
              {"offloads_to_port", offload_list(negotiated ? e.port->tx_caps().offloads : 0)},
              {"state", e.port->is_up() ? "up" : "down"},
              {"admin", c.admin_up ? "up" : "down"},
              {"capturing", e.port->capture() != nullptr},
              {"counters", counters_json(dp.port_counters(e.port->index()))}};
    if (c.type == PortType::kVhostUser) {
        p["mode"] = vhost_mode_name(c.mode);
    } else {
        p["rx_descriptors"] = c.rx_descriptors;
        p["tx_descriptors"] = c.tx_descriptors;
    }
    return p;
}

json bridge_json(const dp::Dataplane& dp, const dp::Bridge& b) {
    json ports = json::array();
    for (const auto* e : dp.ports()) {
        if (e->bridge == b.id) {
            ports.push_back(e->port->name());
        }
    }
    return {{"name", b.name},
            {"mac_aging", b.fdb->aging_ms() / 1000},
            {"mac_table_size", b.fdb->capacity()},
            {"mac_entries", b.fdb->size()},
            {"ports", std::move(ports)},
            {"counters", counters_json(dp.bridge_counters(b.id))}};
}

json mempool_json(const dp::Dataplane& dp) {
    const rte_mempool* pool = dp.pool();
    return {{"name", pool->name},
            {"size", pool->size},
            {"in_use", rte_mempool_in_use_count(pool)},
            {"available", rte_mempool_avail_count(pool)},
            {"cache_size", pool->cache_size}};
}

json worker_json(const dp::WorkerReport& w, double hz) {
    const auto& s = w.stats;
    const uint64_t polling = s.busy_cycles + s.idle_cycles;
    const uint64_t total = polling + s.sleep_cycles;
    auto pct = [&](uint64_t part) {
        return total == 0 ? 0.0 : 100.0 * static_cast<double>(part) / static_cast<double>(total);
    };
    return {{"id", w.id},
            {"cpu", w.cpu},
            {"lcore", w.lcore},
            {"queues", w.queues},
            {"polls", s.polls},
            {"busy_polls", s.busy_polls},
            {"rx_packets", s.rx_packets},
            {"rx_bursts", s.rx_bursts},
            {"busy_cycles", s.busy_cycles},
            {"idle_cycles", s.idle_cycles},
            {"sleep_cycles", s.sleep_cycles},
            {"idle_sleeps", s.sleeps},
            {"idle_holds", s.holds},
            {"busy_percent", pct(s.busy_cycles)},
            {"idle_percent", pct(s.idle_cycles)},
            {"sleep_percent", pct(s.sleep_cycles)},
            {"sleep_ms", static_cast<double>(s.sleep_cycles) * 1000.0 / hz},
            {"cycles_per_packet", s.rx_packets == 0 ? 0.0
                                                    : static_cast<double>(s.busy_cycles) /
                                                          static_cast<double>(s.rx_packets)},
            {"packets_per_burst", s.rx_bursts == 0 ? 0.0
                                                   : static_cast<double>(s.rx_packets) /
                                                         static_cast<double>(s.rx_bursts)},
            {"longest_sleep_us", s.longest_sleep_us},
            {"stalls", s.stalls},
            {"longest_stall_us", s.longest_stall_us}};
}

json capture_json(const dp::CaptureStatus& s) {
    const char* direction = s.directions == (dp::Capture::kIn | dp::Capture::kOut) ? "both"
                            : s.directions == dp::Capture::kIn                     ? "in"
                                                                                   : "out";
    json out = {{"id", s.id},           {"port", s.port},
                {"file", s.path},       {"direction", direction},
                {"count", s.count},     {"written", s.written},
                {"dropped", s.dropped}, {"done", s.done}};
    if (!s.error.empty()) {
        out["error"] = s.error;
    }
    return out;
}

// Reads a port's settings from params into `p` (only those given).
void read_port_settings(Params& params, PortConfig& p) {
    if (auto v = params.opt_string("socket")) {
        p.socket = *v;
    }
    if (auto v = params.opt_string("mode")) {
        if (*v != "client" && *v != "server") {
            throw Error(rpc::kInvalidParams, "mode must be 'client' or 'server', not '" + *v + "'");
        }
        p.mode = *v == "client" ? VhostMode::kClient : VhostMode::kServer;
    }
    if (auto v = params.opt_integer("queues", 1, kMaxEthQueues)) {
        p.queues = static_cast<uint16_t>(*v);
    }
    if (auto v = params.opt_string("devargs")) {
        p.devargs = *v;
    }
    if (auto v = params.opt_integer("rx_descriptors", kMinDescriptors, kMaxDescriptors)) {
        p.rx_descriptors = static_cast<uint16_t>(*v);
    }
    if (auto v = params.opt_integer("tx_descriptors", kMinDescriptors, kMaxDescriptors)) {
        p.tx_descriptors = static_cast<uint16_t>(*v);
    }
    if (auto v = params.opt_string("admin")) {
        if (*v != "up" && *v != "down") {
            throw Error(rpc::kInvalidParams, "admin must be 'up' or 'down', not '" + *v + "'");
        }
        p.admin_up = *v == "up";
    }
    if (auto v = params.opt_integer("mtu", kMinPortMtu, kMaxPortMtu)) {
        p.mtu = static_cast<uint32_t>(*v);
    }
    if (auto v = params.opt_flag("offloads")) {
        p.offloads = *v;
    }
}

Config parse_params_config(Params& params) {
    const std::string text = params.string("text");
    const std::string path = params.opt_string("path").value_or("<request>");
    try {
        return parse_config(text, path);
    } catch (const ConfigError& e) {
        throw Error(rpc::kInvalidConfig, e.what());
    }
}

}  // namespace

json config_to_json(const Config& c) {
    json bridges = json::array();
    for (const auto& b : c.bridges) {
        json ports = json::array();
        for (const auto& p : b.ports) {
            json port = {{"name", p.name},
                         {"type", port_type_name(p.type)},
                         {"admin", p.admin_up ? "up" : "down"},
                         {"queues", p.queues},
                         {"mtu", p.mtu},
                         {"offloads", p.offloads}};
            if (p.type == PortType::kVhostUser) {
                port["socket"] = p.socket;
                port["mode"] = vhost_mode_name(p.mode);
            } else {
                port["devargs"] = p.devargs;
                port["rx_descriptors"] = p.rx_descriptors;
                port["tx_descriptors"] = p.tx_descriptors;
            }
            ports.push_back(std::move(port));
        }
        json macs = json::array();
        for (const auto& m : b.static_macs) {
            macs.push_back({{"mac", sw::mac_to_string(m.mac)}, {"port", m.port}});
        }
        bridges.push_back({{"name", b.name},
                           {"mac_aging", b.mac_aging_ms / 1000},
                           {"mac_table_size", b.mac_table_size},
                           {"static_macs", std::move(macs)},
                           {"ports", std::move(ports)}});
    }
    const auto& d = c.daemon;
    const auto& ctl = c.control;
    return {{"conduitd",
             {{"file_prefix", d.file_prefix},
              {"main_cpu", d.main_cpu},
              {"workers", d.worker_cpus},
              {"hugepages", d.hugepages},
              {"memory_mb", d.memory_mb},
              {"mbufs", d.mbufs},
              {"mbuf_cache", d.mbuf_cache},
              {"idle_backoff", d.idle_backoff},
              {"worker_nice", d.worker_nice},
              {"log_level", d.log_level}}},
            {"control",
             {{"socket", ctl.socket},
              {"socket_group", ctl.socket_group},
              {"metrics", ctl.metrics},
              {"stall_timeout_ms", ctl.stall_timeout_ms},
              {"max_clients", ctl.max_clients}}},
            {"bridges", std::move(bridges)}};
}

void register_methods(rpc::Dispatcher& d, dp::Dataplane& dp, RunningConfig& running,
                      ServerInfo info) {
    const auto started = std::chrono::steady_clock::now();

    // ---- system
    d.add("system.version", "API and conduitd versions", "", [](Params& p) {
        p.done();
        return json{{"api", rpc::kApiVersion}, {"version", CONDUIT_VERSION}};
    });
    d.add("system.info", "versions, process, config file, control and metrics endpoints", "",
          [&running, info, started](Params& p) {
              p.done();
              const auto up = std::chrono::steady_clock::now() - started;
              return json{
                  {"api", rpc::kApiVersion},
                  {"version", CONDUIT_VERSION},
                  {"pid", getpid()},
                  {"config", running.path()},
                  {"uptime_s", std::chrono::duration_cast<std::chrono::seconds>(up).count()},
                  {"socket", info.socket},
                  {"metrics", info.metrics},
                  {"server", info.stats ? info.stats() : json::object()}};
          });
    d.add("system.methods", "every method with its parameters", "", [&d](Params& p) {
        p.done();
        json out = json::array();
        for (const auto& [name, m] : d.methods()) {
            out.push_back({{"name", name}, {"summary", m.summary}, {"params", m.params}});
        }
        return out;
    });

    // ---- bridges
    d.add("bridge.list", "bridges with their ports, MAC table use and counters", "[name]",
          [&dp](Params& p) {
              const auto name = p.opt_string("name");
              p.done();
              const auto lock = dp.lock();
              json out = json::array();
              for (const dp::Bridge* b : dp.bridges()) {
                  if (!name || b->name == *name) {
                      out.push_back(bridge_json(dp, *b));
                  }
              }
              if (name && out.empty()) {
                  not_found("bridge '" + *name + "'");
              }
              return out;
          });
    d.add("bridge.add", "add a bridge", "name, [mac_aging], [mac_table_size], [may_exist]",
          [&running](Params& p) {
              BridgeConfig b;
              b.name = p.string("name");
              need_name("bridge", b.name);
              if (auto v = p.opt_integer("mac_aging", 1, kMaxAgingSeconds)) {
                  b.mac_aging_ms = *v * 1000;
              }
              if (auto v = p.opt_integer("mac_table_size", 1, kMaxMacTableSize)) {
                  b.mac_table_size = static_cast<uint32_t>(*v);
              }
              const bool may_exist = p.flag("may_exist", false);
              p.done();
              if (running.snapshot().find_bridge(b.name) != nullptr) {
                  if (may_exist) {
                      return unchanged();
                  }
                  throw Error(rpc::kAlreadyExists, "bridge '" + b.name + "' already exists");
              }
              return run_change(
                  [&] { return running.change([&](Config& c) { c.bridges.push_back(b); }); });
          });
    d.add(
        "bridge.del", "remove a bridge and its ports", "name, [if_exists]", [&running](Params& p) {
            const std::string name = p.string("name");
            const bool if_exists = p.flag("if_exists", false);
            p.done();
            if (running.snapshot().find_bridge(name) == nullptr) {
                if (if_exists) {
                    return unchanged();
                }
                not_found("bridge '" + name + "'");
            }
            return run_change([&] {
                return running.change([&](Config& c) {
                    std::erase_if(c.bridges, [&](const BridgeConfig& b) { return b.name == name; });
                });
            });
        });
    d.add("bridge.set", "change a bridge's MAC aging time or table size",
          "name, [mac_aging], [mac_table_size]", [&running](Params& p) {
              const std::string name = p.string("name");
              const auto aging = p.opt_integer("mac_aging", 1, kMaxAgingSeconds);
              const auto size = p.opt_integer("mac_table_size", 1, kMaxMacTableSize);
              p.done();
              if (!aging && !size) {
                  throw Error(rpc::kInvalidParams,
                              "nothing to set: give mac_aging or mac_table_size");
              }
              if (running.snapshot().find_bridge(name) == nullptr) {
                  not_found("bridge '" + name + "'");
              }
              return run_change([&] {
                  return running.change([&](Config& c) {
                      BridgeConfig& b = *c.find_bridge(name);
                      if (aging) {
                          b.mac_aging_ms = *aging * 1000;
                      }
                      if (size) {
                          b.mac_table_size = static_cast<uint32_t>(*size);
                      }
                  });
              });
          });

    // ---- ports
    d.add("port.list", "ports with their state and counters", "[name]", [&dp](Params& p) {
        const auto name = p.opt_string("name");
        p.done();
        const auto lock = dp.lock();
        json out = json::array();
        for (const dp::PortEntry* e : dp.ports()) {
            if (!name || e->config.name == *name) {
                out.push_back(port_json(dp, *e));
            }
        }
        if (name && out.empty()) {
            not_found("port '" + *name + "'");
        }
        return out;
    });
    d.add("port.add", "add a vhost-user or ethdev port to a bridge",
          "bridge, name, [type], socket | devargs, [mode], [queues], [rx_descriptors], "
          "[tx_descriptors], [mtu], [offloads], [admin], [may_exist]",
          [&running](Params& p) {
              const std::string bridge = p.string("bridge");
              PortConfig port;
              port.name = p.string("name");
              need_name("port", port.name);
              const auto type = p.opt_string("type");
              read_port_settings(p, port);
              const bool may_exist = p.flag("may_exist", false);
              p.done();
              if (type && *type != "vhost-user" && *type != "ethdev") {
                  throw Error(rpc::kInvalidParams,
                              "type must be 'vhost-user' or 'ethdev', not '" + *type + "'");
              }
              port.type = (type ? *type == "ethdev" : !port.devargs.empty() && port.socket.empty())
                              ? PortType::kEthdev
                              : PortType::kVhostUser;
              if (port.type == PortType::kVhostUser && !port.devargs.empty()) {
                  throw Error(rpc::kInvalidParams, "a vhost-user port takes a socket, not devargs");
              }
              if (port.type == PortType::kEthdev && !port.socket.empty()) {
                  throw Error(rpc::kInvalidParams, "an ethdev port takes devargs, not a socket");
              }
              if (port.type == PortType::kVhostUser && port.queues > kMaxVhostQueues) {
                  throw Error(rpc::kInvalidParams,
                              "queues must be between 1 and " + std::to_string(kMaxVhostQueues));
              }
              const Config current = running.snapshot();
              if (current.find_port(port.name).second != nullptr) {
                  if (may_exist) {
                      return unchanged();
                  }
                  throw Error(rpc::kAlreadyExists, "port '" + port.name + "' already exists");
              }
              if (current.find_bridge(bridge) == nullptr) {
                  not_found("bridge '" + bridge + "'");
              }
              if (auto problem = port_problem(port)) {
                  throw Error(rpc::kInvalidParams, *problem);
              }
              return run_change([&] {
                  return running.change(
                      [&](Config& c) { c.find_bridge(bridge)->ports.push_back(port); });
              });
          });
    d.add("port.del", "remove a port (and its static MAC entries)", "name, [if_exists]",
          [&running](Params& p) {
              const std::string name = p.string("name");
              const bool if_exists = p.flag("if_exists", false);
              p.done();
              if (running.snapshot().find_port(name).second == nullptr) {
                  if (if_exists) {
                      return unchanged();
                  }
                  not_found("port '" + name + "'");
              }
              return run_change([&] {
                  return running.change([&](Config& c) {
                      for (auto& b : c.bridges) {
                          std::erase_if(b.ports,
                                        [&](const PortConfig& x) { return x.name == name; });
                          std::erase_if(b.static_macs,
                                        [&](const StaticMac& m) { return m.port == name; });
                      }
                  });
              });
          });
    d.add("port.set",
          "change a port: admin state (live), or its endpoint settings (the port is re-created)",
          "name, [admin], [socket], [mode], [queues], [devargs], [rx_descriptors], "
          "[tx_descriptors], [mtu], [offloads]",
          [&running](Params& p) {
              const std::string name = p.string("name");
              const Config current = running.snapshot();
              const auto [bridge, existing] = current.find_port(name);
              PortConfig port = existing != nullptr ? *existing : PortConfig{};
              const bool any = p.has("admin") || p.has("socket") || p.has("mode") ||
                               p.has("queues") || p.has("devargs") || p.has("rx_descriptors") ||
                               p.has("tx_descriptors") || p.has("mtu") || p.has("offloads");
              read_port_settings(p, port);
              p.done();
              if (existing == nullptr) {
                  not_found("port '" + name + "'");
              }
              if (!any) {
                  throw Error(rpc::kInvalidParams, "nothing to set");
              }
              if (port.type == PortType::kVhostUser && !port.devargs.empty()) {
                  throw Error(rpc::kInvalidParams, "a vhost-user port has no devargs");
              }
              if (port.type == PortType::kEthdev && !port.socket.empty()) {
                  throw Error(rpc::kInvalidParams, "an ethdev port has no socket");
              }
              if (auto problem = port_problem(port)) {
                  throw Error(rpc::kInvalidParams, *problem);
              }
              const std::string bridge_name = bridge->name;
              return run_change([&] {
                  return running.change([&](Config& c) {
                      for (auto& x : c.find_bridge(bridge_name)->ports) {
                          if (x.name == name) {
                              const int line = x.line;
                              x = port;
                              x.line = line;
                          }
                      }
                  });
              });
          });

    // ---- MAC tables
    d.add("fdb.list", "a bridge's MAC table", "bridge", [&dp](Params& p) {
        const std::string bridge = p.string("bridge");
        p.done();
        const auto lock = dp.lock();
        const dp::Bridge* b = dp.find_bridge(bridge);
        if (b == nullptr) {
            not_found("bridge '" + bridge + "'");
        }
        std::map<sw::PortIndex, std::string> names;
        for (const auto* e : dp.ports()) {
            names[e->port->index()] = e->port->name();
        }
        auto entries = b->fdb->entries(dp.now_ms());
        std::sort(entries.begin(), entries.end(),
                  [](const auto& x, const auto& y) { return x.mac < y.mac; });
        json table = json::array();
        for (const auto& e : entries) {
            table.push_back({{"mac", sw::mac_to_string(e.mac)},
                             {"port", names[e.port]},
                             {"age_s", e.age_ms / 1000},
                             {"static", e.is_static}});
        }
        return json{{"bridge", bridge},
                    {"count", entries.size()},
                    {"capacity", b->fdb->capacity()},
                    {"entries", std::move(table)}};
    });
    d.add("fdb.add", "add a static MAC entry (kept in the config)",
          "bridge, mac, port, [may_exist]", [&running](Params& p) {
              const std::string bridge = p.string("bridge");
              StaticMac m;
              m.mac = need_mac(p.string("mac"));
              m.port = p.string("port");
              const bool may_exist = p.flag("may_exist", false);
              p.done();
              const Config current = running.snapshot();
              const BridgeConfig* b = current.find_bridge(bridge);
              if (b == nullptr) {
                  not_found("bridge '" + bridge + "'");
              }
              if (b->find_port(m.port) == nullptr) {
                  not_found("port '" + m.port + "' in bridge '" + bridge + "'");
              }
              for (const auto& x : b->static_macs) {
                  if (x.mac == m.mac) {
                      if (may_exist && x.port == m.port) {
                          return unchanged();
                      }
                      throw Error(rpc::kAlreadyExists, "static MAC " + sw::mac_to_string(m.mac) +
                                                           " already exists on port " + x.port);
                  }
              }
              return run_change([&] {
                  return running.change(
                      [&](Config& c) { c.find_bridge(bridge)->static_macs.push_back(m); });
              });
          });
    d.add("fdb.del", "remove a static MAC entry, or forget a learned one",
          "bridge, mac, [if_exists]", [&running, &dp](Params& p) {
              const std::string bridge = p.string("bridge");
              const sw::Mac mac = need_mac(p.string("mac"));
              const bool if_exists = p.flag("if_exists", false);
              p.done();
              const Config current = running.snapshot();
              const BridgeConfig* b = current.find_bridge(bridge);
              if (b == nullptr) {
                  not_found("bridge '" + bridge + "'");
              }
              const bool is_static = std::any_of(b->static_macs.begin(), b->static_macs.end(),
                                                 [&](const StaticMac& m) { return m.mac == mac; });
              if (is_static) {
                  return run_change([&] {
                      return running.change([&](Config& c) {
                          std::erase_if(c.find_bridge(bridge)->static_macs,
                                        [&](const StaticMac& m) { return m.mac == mac; });
                      });
                  });
              }
              bool forgotten = false;
              try {
                  forgotten = dp.forget_mac(bridge, mac);
              } catch (const dp::ChangeError& e) {
                  throw Error(rpc::kFailed, e.what());
              }
              if (!forgotten && !if_exists) {
                  not_found("MAC " + sw::mac_to_string(mac) + " in bridge '" + bridge + "'");
              }
              json out = unchanged();
              out["changed"] = forgotten;
              return out;
          });
    d.add("fdb.flush", "forget learned MAC entries of a bridge, or of one of its ports",
          "bridge, [port]", [&dp](Params& p) {
              const std::string bridge = p.string("bridge");
              const std::string port = p.opt_string("port").value_or("");
              p.done();
              try {
                  return json{{"flushed", dp.flush_fdb(bridge, port)}};
              } catch (const dp::ChangeError& e) {
                  throw Error(rpc::kNotFound, e.what());
              }
          });

    // ---- statistics
    d.add("stats.get", "counters of ports (or one port), bridges and the mbuf pool", "[port]",
          [&dp](Params& p) {
              const auto port = p.opt_string("port");
              p.done();
              const auto lock = dp.lock();
              json ports = json::object();
              for (const dp::PortEntry* e : dp.ports()) {
                  if (!port || e->config.name == *port) {
                      ports[e->config.name] = counters_json(dp.port_counters(e->port->index()));
                  }
              }
              if (port && ports.empty()) {
                  not_found("port '" + *port + "'");
              }
              json bridges = json::object();
              if (!port) {
                  for (const dp::Bridge* b : dp.bridges()) {
                      bridges[b->name] = counters_json(dp.bridge_counters(b->id));
                  }
              }
              return json{{"ports", std::move(ports)},
                          {"bridges", std::move(bridges)},
                          {"mempool", mempool_json(dp)}};
          });
    d.add("stats.clear", "reset the counters of every port, bridge and worker (or of one port)",
          "[port]", [&dp](Params& p) {
              const std::string port = p.opt_string("port").value_or("");
              p.done();
              try {
                  dp.clear_stats(port);
              } catch (const dp::ChangeError& e) {
                  throw Error(rpc::kNotFound, e.what());
              }
              return json{{"cleared", port.empty() ? "all" : port}};
          });
    d.add("pmd.stats",
          "per worker: busy and idle cycles, cycles per packet, packets per burst, "
          "idle back-off",
          "", [&dp](Params& p) {
              p.done();
              const auto lock = dp.lock();
              const double hz = static_cast<double>(rte_get_tsc_hz());
              json workers = json::array();
              for (const auto& w : dp.workers()) {
                  workers.push_back(worker_json(w, hz));
              }
              return json{{"tsc_hz", rte_get_tsc_hz()}, {"workers", std::move(workers)}};
          });
    d.add("mempool.get", "the mbuf pool: size, in use, available", "", [&dp](Params& p) {
        p.done();
        const auto lock = dp.lock();
        return mempool_json(dp);
    });

    // ---- configuration
    d.add("config.get", "the running config, as YAML and as JSON", "", [&running](Params& p) {
        p.done();
        const Config c = running.snapshot();
        return json{
            {"path", running.path()}, {"yaml", config_to_yaml(c)}, {"config", config_to_json(c)}};
    });
    d.add("config.apply",
          "replace the running config (validated as a whole, applied as one change)",
          "text, [path], [dry_run]", [&running](Params& p) {
              Config target = parse_params_config(p);
              const bool dry_run = p.flag("dry_run", false);
              p.done();
              return run_change([&] { return running.apply(std::move(target), dry_run); }, dry_run);
          });
    d.add("config.save", "write the running config to conduitd's config file (FILE.prev kept)", "",
          [&running](Params& p) {
              p.done();
              try {
                  const std::string path = running.save();
                  return json{{"path", path}, {"previous", path + ".prev"}};
              } catch (const std::runtime_error& e) {
                  throw Error(rpc::kFailed, e.what());
              }
          });

    // ---- capture
    d.add("capture.start", "capture a port's frames into a pcapng file",
          "port, file, [count], [direction], [snaplen]", [&dp](Params& p) {
              const std::string port = p.string("port");
              dp::CaptureOptions o;
              o.path = p.string("file");
              o.count = p.opt_integer("count", 0, uint64_t{1} << 40).value_or(0);
              const std::string direction = p.opt_string("direction").value_or("both");
              o.snaplen =
                  static_cast<uint32_t>(p.opt_integer("snaplen", 64, 65535).value_or(o.snaplen));
              p.done();
              if (direction == "in" || direction == "rx") {
                  o.directions = dp::Capture::kIn;
              } else if (direction == "out" || direction == "tx") {
                  o.directions = dp::Capture::kOut;
              } else if (direction == "both") {
                  o.directions = dp::Capture::kIn | dp::Capture::kOut;
              } else {
                  throw Error(rpc::kInvalidParams,
                              "direction must be 'in', 'out' or 'both', not '" + direction + "'");
              }
              if (o.path.empty() || o.path[0] != '/') {
                  throw Error(rpc::kInvalidParams, "file must be an absolute path");
              }
              try {
                  const uint64_t id = dp.capture_start(port, o);
                  return json{{"id", id}};
              } catch (const dp::ChangeError& e) {
                  const std::string what = e.what();
                  throw Error(what.rfind("no port", 0) == 0 ? rpc::kNotFound : rpc::kFailed, what);
              }
          });
    d.add("capture.status", "a capture's progress", "id", [&dp](Params& p) {
        const uint64_t id = p.integer("id", 1, UINT64_MAX);
        p.done();
        const auto status = dp.capture_status(id);
        if (!status) {
            not_found("capture " + std::to_string(id));
        }
        return capture_json(*status);
    });
    d.add("capture.stop", "end a capture and close its file", "id", [&dp](Params& p) {
        const uint64_t id = p.integer("id", 1, UINT64_MAX);
        p.done();
        const auto status = dp.capture_stop(id);
        if (!status) {
            not_found("capture " + std::to_string(id));
        }
        return capture_json(*status);
    });
    d.add("capture.list", "running and recently finished captures", "", [&dp](Params& p) {
        p.done();
        json out = json::array();
        for (const auto& s : dp.captures()) {
            out.push_back(capture_json(s));
        }
        return out;
    });
}

}  // namespace conduit::control
