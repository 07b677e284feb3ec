#include "control/config_diff.h"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "switch/types.h"

namespace conduit::control {

namespace {

std::string workers_text(const std::vector<unsigned>& cpus) {
    std::string out = "[";
    for (std::size_t i = 0; i < cpus.size(); ++i) {
        out += (i ? ", " : "") + std::to_string(cpus[i]);
    }
    return out + "]";
}

std::string flag(bool value) {
    return value ? "true" : "false";
}

void restart_only(ConfigPlan& plan, const std::string& what, const std::string& from,
                  const std::string& to) {
    if (from != to) {
        plan.restart_required.push_back(what + ": " + from + " -> " + to);
    }
}

void daemon_and_control(ConfigPlan& plan, const Config& a, const Config& b) {
    const DaemonConfig& x = a.daemon;
    const DaemonConfig& y = b.daemon;
    restart_only(plan, "conduitd.file_prefix", x.file_prefix, y.file_prefix);
    restart_only(plan, "conduitd.main_cpu", std::to_string(x.main_cpu), std::to_string(y.main_cpu));
    restart_only(plan, "conduitd.workers", workers_text(x.worker_cpus),
                 workers_text(y.worker_cpus));
    restart_only(plan, "conduitd.hugepages", flag(x.hugepages), flag(y.hugepages));
    restart_only(plan, "conduitd.memory_mb", std::to_string(x.memory_mb),
                 std::to_string(y.memory_mb));
    restart_only(plan, "conduitd.mbufs", std::to_string(x.mbufs), std::to_string(y.mbufs));
    restart_only(plan, "conduitd.mbuf_cache", std::to_string(x.mbuf_cache),
                 std::to_string(y.mbuf_cache));
    restart_only(plan, "conduitd.idle_backoff", flag(x.idle_backoff), flag(y.idle_backoff));
    restart_only(plan, "conduitd.worker_nice", std::to_string(x.worker_nice),
                 std::to_string(y.worker_nice));
    const ControlConfig& c = a.control;
    const ControlConfig& d = b.control;
    restart_only(plan, "control.socket", c.socket, d.socket);
    restart_only(plan, "control.socket_group", c.socket_group, d.socket_group);
    restart_only(plan, "control.metrics", c.metrics, d.metrics);
    restart_only(plan, "control.stall_timeout_ms", std::to_string(c.stall_timeout_ms),
                 std::to_string(d.stall_timeout_ms));
    restart_only(plan, "control.max_clients", std::to_string(c.max_clients),
                 std::to_string(d.max_clients));
}

ConfigChange change(ConfigChange::Kind kind, std::string bridge, std::string port,
                    std::string text) {
    return ConfigChange{kind, std::move(bridge), std::move(port), 0, std::move(text)};
}

ConfigChange mac_change(ConfigChange::Kind kind, const std::string& bridge, const StaticMac& m) {
    const bool add = kind == ConfigChange::Kind::kAddMac;
    return ConfigChange{kind, bridge, m.port, m.mac,
                        std::string(add ? "+" : "-") + " mac " + bridge + " " +
                            sw::mac_to_string(m.mac) + " -> " + m.port + " (static)"};
}

std::string bridge_settings(const BridgeConfig& b) {
    return "mac_aging " + std::to_string(b.mac_aging_ms / 1000) + "s, mac_table_size " +
           std::to_string(b.mac_table_size);
}

}  // namespace

std::string describe_port(const PortConfig& p) {
    std::string out = port_type_name(p.type);
    if (p.type == PortType::kVhostUser) {
        out += " " + p.socket + " " + vhost_mode_name(p.mode);
    } else {
        out += " " + p.devargs;
    }
    out += ", " + std::to_string(p.queues) + (p.queues == 1 ? " queue" : " queues");
    if (p.mtu != kDefaultPortMtu) {
        out += ", mtu " + std::to_string(p.mtu);
    }
    if (!p.offloads) {
        out += ", offloads off";
    }
    if (p.type == PortType::kEthdev) {
        out += ", " + std::to_string(p.rx_descriptors) + "/" + std::to_string(p.tx_descriptors) +
               " descriptors";
    }
    if (!p.admin_up) {
        out += ", admin down";
    }
    return out;
}

ConfigPlan diff_configs(const Config& from, const Config& to) {
    using Kind = ConfigChange::Kind;
    ConfigPlan plan;
    daemon_and_control(plan, from, to);

    std::vector<ConfigChange> removals, settings, additions;
    // Ports whose static MACs disappear with them (removed, moved or re-created).
    std::set<std::string> recreated;

    for (const auto& fb : from.bridges) {
        const BridgeConfig* tb = to.find_bridge(fb.name);
        for (const auto& fp : fb.ports) {
            const auto [to_bridge, tp] = to.find_port(fp.name);
            if (tp == nullptr) {
                removals.push_back(
                    change(Kind::kRemovePort, fb.name, fp.name,
                           "- port " + fb.name + "/" + fp.name + ": " + describe_port(fp)));
                recreated.insert(fp.name);
            } else if (to_bridge->name != fb.name || tb == nullptr) {
                // Moves to another bridge: removed here, added there below.
                removals.push_back(
                    change(Kind::kRemovePort, fb.name, fp.name,
                           "- port " + fb.name + "/" + fp.name + ": moves to " + to_bridge->name));
                recreated.insert(fp.name);
            } else if (!fp.same_endpoint(*tp)) {
                settings.push_back(change(Kind::kReplacePort, fb.name, fp.name,
                                          "~ port " + fb.name + "/" + fp.name + ": " +
                                              describe_port(fp) + " -> " + describe_port(*tp) +
                                              " (re-created; its guest reconnects)"));
                recreated.insert(fp.name);
            } else if (fp.admin_up != tp->admin_up) {
                settings.push_back(change(Kind::kSetAdmin, fb.name, fp.name,
                                          "~ port " + fb.name + "/" + fp.name + ": admin " +
                                              (fp.admin_up ? "up" : "down") + " -> " +
                                              (tp->admin_up ? "up" : "down")));
            }
        }
        if (tb == nullptr) {
            removals.push_back(change(Kind::kRemoveBridge, fb.name, "",
                                      "- bridge " + fb.name + " (" + bridge_settings(fb) + ")"));
            continue;
        }
        if (fb.mac_aging_ms != tb->mac_aging_ms || fb.mac_table_size != tb->mac_table_size) {
            settings.push_back(change(Kind::kSetBridge, fb.name, "",
                                      "~ bridge " + fb.name + ": " + bridge_settings(fb) + " -> " +
                                          bridge_settings(*tb)));
        }
        // Static MACs: those on ports that go away go with them (and come back below if
        // the new config still names them).
        std::map<uint64_t, std::string> kept;
        for (const auto& m : fb.static_macs) {
            if (!recreated.contains(m.port)) {
                kept[m.mac] = m.port;
            }
        }
        for (const auto& m : fb.static_macs) {
            if (recreated.contains(m.port)) {
                continue;
            }
            const auto same = std::find_if(
                tb->static_macs.begin(), tb->static_macs.end(),
                [&](const StaticMac& t) { return t.mac == m.mac && t.port == m.port; });
            if (same == tb->static_macs.end()) {
                removals.insert(removals.begin(), mac_change(Kind::kRemoveMac, fb.name, m));
                kept.erase(m.mac);
            }
        }
        for (const auto& m : tb->static_macs) {
            auto it = kept.find(m.mac);
            if (it == kept.end() || it->second != m.port) {
                additions.push_back(mac_change(Kind::kAddMac, tb->name, m));
            }
        }
    }
    if (from.daemon.log_level != to.daemon.log_level) {
        settings.push_back(change(
            Kind::kSetLogLevel, "", "",
            "~ conduitd.log_level: " + from.daemon.log_level + " -> " + to.daemon.log_level));
    }

    std::vector<ConfigChange> port_additions;
    for (const auto& tb : to.bridges) {
        const BridgeConfig* fb = from.find_bridge(tb.name);
        if (fb == nullptr) {
            additions.insert(additions.begin(),
                             change(Kind::kAddBridge, tb.name, "",
                                    "+ bridge " + tb.name + " (" + bridge_settings(tb) + ")"));
            for (const auto& m : tb.static_macs) {
                additions.push_back(mac_change(Kind::kAddMac, tb.name, m));
            }
        }
        for (const auto& tp : tb.ports) {
            const auto [from_bridge, fp] = from.find_port(tp.name);
            if (fp == nullptr || from_bridge->name != tb.name || fb == nullptr) {
                port_additions.push_back(
                    change(Kind::kAddPort, tb.name, tp.name,
                           "+ port " + tb.name + "/" + tp.name + ": " + describe_port(tp)));
            }
        }
    }
    // Bridges first, then their ports, then static MACs that name those ports.
    auto first_mac = std::find_if(additions.begin(), additions.end(),
                                  [](const ConfigChange& c) { return c.kind == Kind::kAddMac; });
    additions.insert(first_mac, port_additions.begin(), port_additions.end());

    // Ports go before their bridge; MAC removals before anything else.
    std::stable_sort(removals.begin(), removals.end(),
                     [](const ConfigChange& a, const ConfigChange& b) { return a.kind < b.kind; });
    for (auto* list : {&removals, &settings, &additions}) {
        plan.changes.insert(plan.changes.end(), list->begin(), list->end());
    }
    return plan;
}

std::string ConfigPlan::text() const {
    if (empty()) {
        return "no changes\n";
    }
    std::ostringstream out;
    for (const auto& c : changes) {
        out << c.text << '\n';
    }
    for (const auto& r : restart_required) {
        out << "! " << r << " (only a restart changes this)\n";
    }
    return out.str();
}

const char* change_kind_name(ConfigChange::Kind kind) {
    switch (kind) {
        case ConfigChange::Kind::kRemoveMac:
            return "remove_mac";
        case ConfigChange::Kind::kRemovePort:
            return "remove_port";
        case ConfigChange::Kind::kRemoveBridge:
            return "remove_bridge";
        case ConfigChange::Kind::kSetBridge:
            return "set_bridge";
        case ConfigChange::Kind::kSetAdmin:
            return "set_admin";
        case ConfigChange::Kind::kReplacePort:
            return "replace_port";
        case ConfigChange::Kind::kSetLogLevel:
            return "set_log_level";
        case ConfigChange::Kind::kAddBridge:
            return "add_bridge";
        case ConfigChange::Kind::kAddPort:
            return "add_port";
        case ConfigChange::Kind::kAddMac:
            return "add_mac";
    }
    return "unknown";
}

}  // namespace conduit::control
