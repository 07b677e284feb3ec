#include "control/ctl_commands.h"

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

namespace conduit::ctl {

namespace {

// ---------------------------------------------------------------------------------------
// Output helpers

// Left-aligned columns sized to their widest cell; numbers right-aligned.
class Table {
  public:
    explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
    void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
    void print(std::ostream& out) const {
        std::vector<std::size_t> width(rows_[0].size(), 0);
        for (const auto& row : rows_) {
            for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
                width[i] = std::max(width[i], row[i].size());
            }
        }
        for (const auto& row : rows_) {
            std::string line;
            for (std::size_t i = 0; i < row.size(); ++i) {
                const bool number = !row[i].empty() &&
                                    row[i].find_first_not_of("0123456789.%") == std::string::npos;
                const std::size_t pad = width[i] - row[i].size();
                const bool last = i + 1 == row.size();
                if (number && &row != &rows_[0]) {
                    line += std::string(pad, ' ') + row[i];
                } else {
                    line += row[i] + (last ? "" : std::string(pad, ' '));
                }
                if (!last) {
                    line += "  ";
                }
            }
            out << line << '\n';
        }
    }

  private:
    std::vector<std::vector<std::string>> rows_;
};

std::string num(const json& v) {
    if (v.is_number_float()) {
        std::ostringstream s;
        s << std::fixed << std::setprecision(1) << v.get<double>();
        return s.str();
    }
    return v.is_null() ? "-" : v.dump();
}

std::string text(const json& v) {
    return v.is_string() ? v.get<std::string>() : v.dump();
}

uint64_t drop_total(const json& counters) {
    uint64_t sum = 0;
    for (const auto& [name, value] : counters.items()) {
        if (name.rfind("drop_", 0) == 0) {
            sum += value.get<uint64_t>();
        }
    }
    return sum;
}

std::string drop_list(const json& counters) {
    std::string out;
    for (const auto& [name, value] : counters.items()) {
        if (name.rfind("drop_", 0) == 0 && value.get<uint64_t>() != 0) {
            out += (out.empty() ? "" : ", ") + name.substr(5) + "=" + num(value);
        }
    }
    return out.empty() ? "-" : out;
}

void print_json(std::ostream& out, const json& value) {
    out << value.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
}

// A change's result: the changes made, one per line (or the whole JSON).
int print_change(Context& c, const json& result) {
    if (c.globals.json) {
        print_json(c.out, result);
    } else if (!c.globals.quiet) {
        c.out << result.value("text", std::string("no changes\n"));
    }
    return kOk;
}

std::string absolute(const std::string& path) {
    std::error_code ec;
    const auto p = std::filesystem::absolute(path, ec);
    return ec ? path : p.lexically_normal().string();
}

bool parse_switch(const std::string& what, const std::string& value) {
    if (value == "true" || value == "on" || value == "yes") {
        return true;
    }
    if (value == "false" || value == "off" || value == "no") {
        return false;
    }
    throw UsageError(what + " must be on or off, not '" + value + "'");
}

uint64_t parse_number(const std::string& what, const std::string& value) {
    std::size_t used = 0;
    unsigned long long n = 0;
    try {
        n = std::stoull(value, &used, 10);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != value.size() || value[0] == '-') {
        throw UsageError(what + " must be a whole number, not '" + value + "'");
    }
    return n;
}

// ---------------------------------------------------------------------------------------
// Commands

int show_bridges(Context& c, const Parsed& p) {
    json params = json::object();
    if (!p.args.empty()) {
        params["name"] = p.args[0];
    }
    const json bridges = c.client.call("bridge.list", params);
    if (c.globals.json) {
        print_json(c.out, bridges);
        return kOk;
    }
    Table t({"BRIDGE", "PORTS", "MACS", "TABLE", "AGING", "LEARNED", "FLOODED", "KNOWN"});
    for (const auto& b : bridges) {
        std::string ports;
        for (const auto& name : b["ports"]) {
            ports += (ports.empty() ? "" : ",") + text(name);
        }
        t.add({text(b["name"]), ports.empty() ? "-" : ports, num(b["mac_entries"]),
               num(b["mac_table_size"]), num(b["mac_aging"]) + "s",
               num(b["counters"]["mac_learned"]), num(b["counters"]["flooded"]),
               num(b["counters"]["unicast_known"])});
    }
    t.print(c.out);
    return kOk;
}

int show_ports(Context& c, const Parsed& p) {
    json params = json::object();
    if (!p.args.empty()) {
        params["name"] = p.args[0];
    }
    const json ports = c.client.call("port.list", params);
    if (c.globals.json) {
        print_json(c.out, ports);
        return kOk;
    }
    if (!p.args.empty()) {
        const json& port = ports.at(0);
        for (const char* key :
             {"name", "bridge", "type", "endpoint", "mode", "queues", "state", "admin",
              "rx_descriptors", "tx_descriptors", "mtu", "offloads", "capturing"}) {
            if (port.contains(key)) {
                c.out << std::left << std::setw(20) << key << text(port[key]) << '\n';
            }
        }
        for (const char* key : {"offloads_from_port", "offloads_to_port"}) {
            std::string list;
            for (const auto& o : port.value(key, json::array())) {
                list += (list.empty() ? "" : ",") + text(o);
            }
            c.out << std::left << std::setw(20) << key << (list.empty() ? "-" : list) << '\n';
        }
        for (const auto& [name, value] : port["counters"].items()) {
            c.out << std::left << std::setw(20) << name << num(value) << '\n';
        }
        return kOk;
    }
    Table t({"PORT", "BRIDGE", "TYPE", "STATE", "ADMIN", "RX", "TX", "DROPS", "ENDPOINT"});
    for (const auto& port : ports) {
        t.add({text(port["name"]), text(port["bridge"]), text(port["type"]), text(port["state"]),
               text(port["admin"]), num(port["counters"]["rx_packets"]),
               num(port["counters"]["tx_packets"]), std::to_string(drop_total(port["counters"])),
               text(port["endpoint"])});
    }
    t.print(c.out);
    return kOk;
}

int show_fdb(Context& c, const Parsed& p) {
    const json fdb = c.client.call("fdb.list", {{"bridge", p.args[0]}});
    if (c.globals.json) {
        print_json(c.out, fdb);
        return kOk;
    }
    Table t({"MAC", "PORT", "AGE", "TYPE"});
    for (const auto& e : fdb["entries"]) {
        const bool is_static = e["static"].get<bool>();
        t.add({text(e["mac"]), text(e["port"]), is_static ? "-" : num(e["age_s"]) + "s",
               is_static ? "static" : "learned"});
    }
    t.print(c.out);
    c.out << num(fdb["count"]) << " entries (table size " << num(fdb["capacity"]) << ")\n";
    return kOk;
}

int show_stats(Context& c, const Parsed& p) {
    json params = json::object();
    if (!p.args.empty()) {
        params["port"] = p.args[0];
    }
    const json stats = c.client.call("stats.get", params);
    if (c.globals.json) {
        print_json(c.out, stats);
        return kOk;
    }
    Table t({"PORT", "RX_PACKETS", "RX_BYTES", "TX_PACKETS", "TX_BYTES", "DROPS"});
    for (const auto& [name, counters] : stats["ports"].items()) {
        t.add({name, num(counters["rx_packets"]), num(counters["rx_bytes"]),
               num(counters["tx_packets"]), num(counters["tx_bytes"]), drop_list(counters)});
    }
    t.print(c.out);
    if (!stats["bridges"].empty()) {
        c.out << '\n';
        Table b(
            {"BRIDGE", "LEARNED", "MOVED", "TABLE_FULL", "STATIC_CONFLICT", "FLOODED", "KNOWN"});
        for (const auto& [name, counters] : stats["bridges"].items()) {
            b.add({name, num(counters["mac_learned"]), num(counters["mac_moved"]),
                   num(counters["mac_learn_table_full"]), num(counters["mac_static_conflict"]),
                   num(counters["flooded"]), num(counters["unicast_known"])});
        }
        b.print(c.out);
    }
    const json& pool = stats["mempool"];
    c.out << "\nmbufs: " << num(pool["in_use"]) << " in use of " << num(pool["size"]) << '\n';
    return kOk;
}

int show_pmd(Context& c, const Parsed&) {
    const json pmd = c.client.call("pmd.stats");
    if (c.globals.json) {
        print_json(c.out, pmd);
        return kOk;
    }
    for (const auto& w : pmd["workers"]) {
        std::string queues;
        for (const auto& q : w["queues"]) {
            queues += (queues.empty() ? "" : " ") + text(q);
        }
        c.out << "worker " << num(w["id"]) << " (cpu " << num(w["cpu"]) << ", lcore "
              << num(w["lcore"]) << "):\n";
        c.out << "  queues:             " << (queues.empty() ? "-" : queues) << '\n';
        c.out << "  packets received:   " << num(w["rx_packets"]) << '\n';
        c.out << "  receive bursts:     " << num(w["rx_bursts"]) << " ("
              << num(w["packets_per_burst"]) << " packets per burst)\n";
        c.out << "  polls:              " << num(w["polls"]) << " (" << num(w["busy_polls"])
              << " found frames)\n";
        c.out << "  busy cycles:        " << num(w["busy_cycles"]) << " (" << num(w["busy_percent"])
              << "%)\n";
        c.out << "  idle cycles:        " << num(w["idle_cycles"]) << " (" << num(w["idle_percent"])
              << "%, polling)\n";
        c.out << "  idle back-off:      " << num(w["sleep_ms"]) << " ms asleep ("
              << num(w["sleep_percent"]) << "%) in " << num(w["idle_sleeps"]) << " sleeps, longest "
              << num(w["longest_sleep_us"]) << " us, " << num(w["idle_holds"])
              << " idle spells held polling after a high rate\n";
        c.out << "  cycles per packet:  " << num(w["cycles_per_packet"]) << '\n';
        c.out << "  stalls:             " << num(w["stalls"])
              << " times held up over 500 us (CPU taken away), longest "
              << num(w["longest_stall_us"]) << " us\n";
    }
    return kOk;
}

int show_config(Context& c, const Parsed&) {
    const json config = c.client.call("config.get");
    if (c.globals.json) {
        print_json(c.out, config["config"]);
    } else {
        c.out << "# running config (conduitd started with " << text(config["path"]) << ")\n"
              << text(config["yaml"]);
    }
    return kOk;
}

std::string capture_line(const json& s) {
    std::ostringstream line;
    line << "capture " << num(s["id"]) << ": port " << text(s["port"]) << " ("
         << text(s["direction"]) << "), " << num(s["written"]) << " frames";
    if (s["count"].get<uint64_t>() != 0) {
        line << " of " << num(s["count"]);
    }
    line << " in " << text(s["file"]);
    if (s["dropped"].get<uint64_t>() != 0) {
        line << ", " << num(s["dropped"]) << " not captured (capture buffer full)";
    }
    line << (s["done"].get<bool>() ? ", done" : ", running");
    if (s.contains("error")) {
        line << ": " << text(s["error"]);
    }
    return line.str();
}

int show_captures(Context& c, const Parsed&) {
    const json list = c.client.call("capture.list");
    if (c.globals.json) {
        print_json(c.out, list);
        return kOk;
    }
    for (const auto& s : list) {
        c.out << capture_line(s) << '\n';
    }
    if (list.empty()) {
        c.out << "no captures\n";
    }
    return kOk;
}

int show_mempool(Context& c, const Parsed&) {
    const json pool = c.client.call("mempool.get");
    if (c.globals.json) {
        print_json(c.out, pool);
    } else {
        c.out << "mbuf pool " << text(pool["name"]) << ": " << num(pool["in_use"]) << " in use, "
              << num(pool["available"]) << " available, " << num(pool["size"]) << " in all\n";
    }
    return kOk;
}

int version(Context& c, const Parsed&) {
    const json v = c.client.call("system.version");
    if (c.globals.json) {
        print_json(
            c.out,
            {{"conduitctl", CONDUIT_VERSION}, {"conduitd", v["version"]}, {"api", v["api"]}});
    } else {
        c.out << "conduitctl " CONDUIT_VERSION ", conduitd " << text(v["version"]) << " (API "
              << num(v["api"]) << ")\n";
    }
    return kOk;
}

int add_bridge(Context& c, const Parsed& p) {
    json params = {{"name", p.args[0]}, {"may_exist", p.has("may-exist")}};
    if (p.has("mac-aging")) {
        params["mac_aging"] = parse_number("--mac-aging", p.get("mac-aging"));
    }
    if (p.has("mac-table-size")) {
        params["mac_table_size"] = parse_number("--mac-table-size", p.get("mac-table-size"));
    }
    return print_change(c, c.client.call("bridge.add", params));
}

int del_bridge(Context& c, const Parsed& p) {
    return print_change(
        c, c.client.call("bridge.del", {{"name", p.args[0]}, {"if_exists", p.has("if-exists")}}));
}

int add_port(Context& c, const Parsed& p) {
    json params = {{"bridge", p.args[0]}, {"name", p.args[1]}, {"may_exist", p.has("may-exist")}};
    if (p.has("socket") == p.has("devargs")) {
        throw UsageError("give either --socket (vhost-user) or --devargs (ethdev)");
    }
    if (p.has("socket")) {
        params["type"] = "vhost-user";
        params["socket"] = absolute(p.get("socket"));
        if (p.has("mode")) {
            params["mode"] = p.get("mode");
        }
    } else {
        params["type"] = "ethdev";
        params["devargs"] = p.get("devargs");
        for (const char* d : {"rx-descriptors", "tx-descriptors"}) {
            if (p.has(d)) {
                std::string key = d;
                key[2] = '_';
                params[key] = parse_number(std::string("--") + d, p.get(d));
            }
        }
    }
    if (p.has("queues")) {
        params["queues"] = parse_number("--queues", p.get("queues"));
    }
    if (p.has("mtu")) {
        params["mtu"] = parse_number("--mtu", p.get("mtu"));
    }
    if (p.has("offloads")) {
        params["offloads"] = parse_switch("--offloads", p.get("offloads"));
    }
    if (p.has("admin")) {
        params["admin"] = p.get("admin");
    }
    return print_change(c, c.client.call("port.add", params));
}

int del_port(Context& c, const Parsed& p) {
    return print_change(
        c, c.client.call("port.del", {{"name", p.args[0]}, {"if_exists", p.has("if-exists")}}));
}

// KEY=VALUE words into params; numeric keys become numbers, switches booleans.
json settings(const std::vector<std::string>& words, const std::set<std::string>& keys,
              const std::set<std::string>& numeric, const std::set<std::string>& switches = {}) {
    json params = json::object();
    for (const auto& word : words) {
        const auto eq = word.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw UsageError("'" + word + "' is not KEY=VALUE");
        }
        std::string key = word.substr(0, eq);
        std::replace(key.begin(), key.end(), '-', '_');
        const std::string value = word.substr(eq + 1);
        if (!keys.contains(key)) {
            std::string known;
            for (const auto& k : keys) {
                known += (known.empty() ? "" : ", ") + k;
            }
            throw UsageError("unknown setting '" + key + "' (known: " + known + ")");
        }
        if (numeric.contains(key)) {
            params[key] = parse_number(key, value);
        } else if (switches.contains(key)) {
            params[key] = parse_switch(key, value);
        } else {
            params[key] = key == "socket" ? absolute(value) : value;
        }
    }
    if (params.empty()) {
        throw UsageError("nothing to set");
    }
    return params;
}

int set_port(Context& c, const Parsed& p) {
    json params = settings({p.args.begin() + 1, p.args.end()},
                           {"admin", "socket", "mode", "queues", "devargs", "rx_descriptors",
                            "tx_descriptors", "mtu", "offloads"},
                           {"queues", "rx_descriptors", "tx_descriptors", "mtu"}, {"offloads"});
    params["name"] = p.args[0];
    return print_change(c, c.client.call("port.set", params));
}

int set_bridge(Context& c, const Parsed& p) {
    json params = settings({p.args.begin() + 1, p.args.end()}, {"mac_aging", "mac_table_size"},
                           {"mac_aging", "mac_table_size"});
    params["name"] = p.args[0];
    return print_change(c, c.client.call("bridge.set", params));
}

int add_mac(Context& c, const Parsed& p) {
    return print_change(c, c.client.call("fdb.add", {{"bridge", p.args[0]},
                                                     {"mac", p.args[1]},
                                                     {"port", p.args[2]},
                                                     {"may_exist", p.has("may-exist")}}));
}

int del_mac(Context& c, const Parsed& p) {
    return print_change(c, c.client.call("fdb.del", {{"bridge", p.args[0]},
                                                     {"mac", p.args[1]},
                                                     {"if_exists", p.has("if-exists")}}));
}

int flush_fdb(Context& c, const Parsed& p) {
    json params = {{"bridge", p.args[0]}};
    if (p.args.size() > 1) {
        params["port"] = p.args[1];
    }
    const json result = c.client.call("fdb.flush", params);
    if (c.globals.json) {
        print_json(c.out, result);
    } else if (!c.globals.quiet) {
        c.out << "flushed " << num(result["flushed"]) << " learned entries\n";
    }
    return kOk;
}

int clear_stats(Context& c, const Parsed& p) {
    json params = json::object();
    if (!p.args.empty()) {
        params["port"] = p.args[0];
    }
    const json result = c.client.call("stats.clear", params);
    if (c.globals.json) {
        print_json(c.out, result);
    } else if (!c.globals.quiet) {
        c.out << "cleared the counters of "
              << (p.args.empty() ? "every port, bridge and worker" : "port " + p.args[0]) << '\n';
    }
    return kOk;
}

int apply(Context& c, const Parsed& p) {
    const std::string path = absolute(p.args[0]);
    std::ifstream in(path);
    if (!in) {
        std::cerr << "conduitctl: cannot read " << path << '\n';
        return kUsage;
    }
    std::stringstream content;
    content << in.rdbuf();
    const bool dry_run = p.has("dry-run");
    const json result = c.client.call(
        "config.apply", {{"text", content.str()}, {"path", path}, {"dry_run", dry_run}});
    if (c.globals.json) {
        print_json(c.out, result);
    } else if (!c.globals.quiet || dry_run) {
        c.out << text(result["text"]);
    }
    return dry_run && !result["restart_required"].empty() ? kRestart : kOk;
}

int save(Context& c, const Parsed&) {
    const json result = c.client.call("config.save");
    if (c.globals.json) {
        print_json(c.out, result);
    } else if (!c.globals.quiet) {
        c.out << "saved the running config to " << text(result["path"])
              << " (previous version: " << text(result["previous"]) << ")\n";
    }
    return kOk;
}

volatile std::sig_atomic_t g_interrupted = 0;

int capture(Context& c, const Parsed& p) {
    json params = {{"port", p.args[0]}, {"file", absolute(p.get("write"))}};
    const uint64_t count = p.has("count") ? parse_number("--count", p.get("count")) : 0;
    params["count"] = count;
    params["direction"] = p.get("direction", "both");
    if (p.has("snaplen")) {
        params["snaplen"] = parse_number("--snaplen", p.get("snaplen"));
    }
    const double timeout_s =
        p.has("timeout") ? static_cast<double>(parse_number("--timeout", p.get("timeout"))) : 0.0;
    const uint64_t id = c.client.call("capture.start", params)["id"].get<uint64_t>();
    if (!c.globals.quiet && !c.globals.json) {
        std::cerr << "capturing port " << p.args[0] << " into " << text(params["file"])
                  << (count ? " (" + std::to_string(count) + " frames)" : " (Ctrl-C to stop)")
                  << '\n';
    }
    // Ctrl-C ends the capture cleanly (the file is closed by conduitd) rather than this
    // process.
    g_interrupted = 0;
    auto previous = std::signal(SIGINT, [](int) { g_interrupted = 1; });
    const auto started = std::chrono::steady_clock::now();
    json status;
    bool timed_out = false;
    for (;;) {
        status = c.client.call("capture.status", {{"id", id}});
        if (status["done"].get<bool>()) {
            break;
        }
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (g_interrupted || (timeout_s > 0 && elapsed >= timeout_s)) {
            timed_out = !g_interrupted;
            status = c.client.call("capture.stop", {{"id", id}});
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::signal(SIGINT, previous);
    if (c.globals.json) {
        print_json(c.out, status);
    } else if (!c.globals.quiet) {
        c.out << capture_line(status) << '\n';
    }
    if (status.contains("error") || (count != 0 && status["written"].get<uint64_t>() < count)) {
        return timed_out || status.contains("error") ? kIncomplete : kOk;
    }
    return kOk;
}

// ---------------------------------------------------------------------------------------
// The table

const OptionSpec kMayExist{"may-exist", 0, "", "do nothing if it already exists", {}, false};
const OptionSpec kIfExists{"if-exists", 0, "", "do nothing if it does not exist", {}, false};

std::vector<Command> build_commands() {
    using K = ArgKind;
    std::vector<Command> list;
    list.push_back({"show bridges",
                    "bridges: ports, MAC table use, learning counters",
                    "",
                    {{"BRIDGE", K::kBridge, false}},
                    {},
                    show_bridges});
    list.push_back({"show ports",
                    "ports: type, state, counters (one port in detail)",
                    "",
                    {{"PORT", K::kPort, false}},
                    {},
                    show_ports});
    list.push_back({"show fdb",
                    "a bridge's MAC table (learned and static entries)",
                    "",
                    {{"BRIDGE", K::kBridge}},
                    {},
                    show_fdb});
    list.push_back({"show stats",
                    "counters of every port (or one), bridge, and the mbuf pool",
                    "Drops are listed by reason; see docs/operating.md for each counter.",
                    {{"PORT", K::kPort, false}},
                    {},
                    show_stats});
    list.push_back({"show pmd",
                    "per worker: busy and idle cycles, cycles per packet, "
                    "packets per burst, idle back-off",
                    "Busy cycles are spent in poll loops that received frames, idle cycles in "
                    "loops that found none, back-off is time asleep.\n`conduitctl clear stats` "
                    "starts a new measurement.",
                    {},
                    {},
                    show_pmd});
    list.push_back({"show config",
                    "the running config as YAML (what `save` would write)",
                    "",
                    {},
                    {},
                    show_config});
    list.push_back(
        {"show captures", "running and recently finished captures", "", {}, {}, show_captures});
    list.push_back({"show mempool", "the mbuf pool: in use, available", "", {}, {}, show_mempool});
    list.push_back({"version",
                    "conduitctl's and conduitd's versions and the API version",
                    "",
                    {},
                    {},
                    version});
    list.push_back({"add-bridge",
                    "add a bridge",
                    "",
                    {{"BRIDGE", K::kText}},
                    {{"mac-aging", 0, "SECONDS", "MAC aging time (default 300)", {}, false},
                     {"mac-table-size", 0, "N", "MAC entries at most (default 8192)", {}, false},
                     kMayExist},
                    add_bridge});
    list.push_back({"del-bridge",
                    "remove a bridge and all its ports",
                    "",
                    {{"BRIDGE", K::kBridge}},
                    {kIfExists},
                    del_bridge});
    list.push_back(
        {"add-port",
         "add a guest (vhost-user) or uplink (ethdev) port to a bridge",
         "vhost-user: --socket PATH; client mode (the default) connects to the guest's socket "
         "and reconnects, server mode listens.\nethdev: --devargs DEVARGS (a PCI address, or "
         "net_af_packet0,iface=eth1 and the like); one per conduitd.",
         {{"BRIDGE", K::kBridge}, {"PORT", K::kText}},
         {{"socket", 0, "PATH", "vhost-user socket", {}, true},
          {"mode", 0, "MODE", "vhost-user: client or server", {"client", "server"}, false},
          {"devargs", 0, "DEVARGS", "ethdev devargs", {}, false},
          {"queues", 0, "N", "queue pairs (default 1)", {}, false},
          {"rx-descriptors", 0, "N", "ethdev receive ring size", {}, false},
          {"tx-descriptors", 0, "N", "ethdev transmit ring size", {}, false},
          {"mtu", 0, "N", "largest packet carried (default 1500; 68-9216)", {}, false},
          {"offloads",
           0,
           "on|off",
           "checksum and TCP segmentation offloads: negotiated with the guest, or the "
           "device's (default on)",
           {"on", "off"},
           false},
          {"admin", 0, "STATE", "up (default) or down", {"up", "down"}, false},
          kMayExist},
         add_port});
    list.push_back({"del-port",
                    "remove a port (and its static MAC entries)",
                    "",
                    {{"PORT", K::kPort}},
                    {kIfExists},
                    del_port});
    list.push_back(
        {"set port",
         "change a port's settings",
         "admin=up|down takes effect at once (down: kept and connected, not forwarded to or "
         "from). socket, mode, queues, devargs, rx_descriptors, tx_descriptors, mtu and "
         "offloads=on|off re-create the port: its guest reconnects (a guest that already "
         "negotiated offloads must reset its card to drop them).",
         {{"PORT", K::kPort},
          {"KEY=VALUE",
           K::kSetting,
           true,
           true,
           {"admin=", "socket=", "mode=", "queues=", "devargs=", "rx_descriptors=",
            "tx_descriptors=", "mtu=", "offloads="}}},
         {},
         set_port});
    list.push_back({"set bridge",
                    "change a bridge's MAC aging time or table size",
                    "mac_aging=SECONDS, mac_table_size=N (a table rebuilt at the new size keeps "
                    "its entries, static ones first).",
                    {{"BRIDGE", K::kBridge},
                     {"KEY=VALUE", K::kSetting, true, true, {"mac_aging=", "mac_table_size="}}},
                    {},
                    set_bridge});
    list.push_back({"add-mac",
                    "add a static MAC entry (kept in the config)",
                    "",
                    {{"BRIDGE", K::kBridge}, {"MAC", K::kMac}, {"PORT", K::kPort}},
                    {kMayExist},
                    add_mac});
    list.push_back({"del-mac",
                    "remove a static MAC entry, or forget a learned one",
                    "",
                    {{"BRIDGE", K::kBridge}, {"MAC", K::kMac}},
                    {kIfExists},
                    del_mac});
    list.push_back({"flush-fdb",
                    "forget the learned MAC entries of a bridge (or of one port)",
                    "",
                    {{"BRIDGE", K::kBridge}, {"PORT", K::kPort, false}},
                    {},
                    flush_fdb});
    list.push_back({"clear stats",
                    "reset the counters of every port, bridge and worker "
                    "(or of one port)",
                    "",
                    {{"PORT", K::kPort, false}},
                    {},
                    clear_stats});
    list.push_back({"apply",
                    "replace the running config with a YAML file",
                    "The file is validated as a whole and applied as one change: every "
                    "difference or none. Ports it does not change keep forwarding. Sections "
                    "left out of the file (conduitd, control) keep their running values; "
                    "settings read only at start cannot change (exit code 7).",
                    {{"FILE", K::kFile}},
                    {{"dry-run", 0, "", "print the difference, change nothing", {}, false}},
                    apply});
    list.push_back({"save",
                    "write the running config to conduitd's config file",
                    "Atomic: a new file replaces the old one, kept as FILE.prev. A restart "
                    "runs what was saved.",
                    {},
                    {},
                    save});
    list.push_back(
        {"capture",
         "capture a port's frames into a pcapng file (tshark, wireshark read it)",
         "Any port, guest ports included. --direction in: frames the port sent into the "
         "switch; out: frames the switch sent to the port. Ctrl-C ends it early, the file "
         "complete. The file is written by conduitd (as root).",
         {{"PORT", K::kPort}},
         {{"count",
           'c',
           "N",
           "stop after N frames (default: until Ctrl-C or --timeout)",
           {},
           false},
          {"write", 'w', "FILE", "the pcapng file to write", {}, true},
          {"direction", 0, "DIR", "in, out or both (default)", {"in", "out", "both"}, false},
          {"snaplen", 's', "BYTES", "bytes kept of each frame (default 2048)", {}, false},
          {"timeout", 0, "SECONDS", "stop after this long (exit 8 if short of N)", {}, false}},
         capture});
    return list;
}

int exit_for(int rpc_code) {
    switch (rpc_code) {
        case -32001:
            return kNotFound;
        case -32002:
            return kExists;
        case -32003:
        case -32602:
            return kInvalid;
        case -32005:
            return kRestart;
        default:
            return kFailed;
    }
}

const OptionSpec* find_option(const Command& cmd, const std::string& word) {
    for (const auto& o : cmd.options) {
        if (word == "--" + o.name ||
            (o.short_name != 0 && word == std::string("-") + o.short_name)) {
            return &o;
        }
    }
    return nullptr;
}

Parsed parse_arguments(const Command& cmd, const std::vector<std::string>& words) {
    Parsed p;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w.size() > 1 && w[0] == '-' && !std::isdigit(static_cast<unsigned char>(w[1]))) {
            std::string name = w;
            std::optional<std::string> value;
            if (const auto eq = w.find('='); eq != std::string::npos && w.rfind("--", 0) == 0) {
                name = w.substr(0, eq);
                value = w.substr(eq + 1);
            }
            const OptionSpec* o = find_option(cmd, name);
            if (o == nullptr) {
                throw UsageError("unknown option " + name + " for '" + cmd.name + "'");
            }
            if (o->value.empty()) {
                if (value) {
                    throw UsageError("--" + o->name + " takes no value");
                }
                p.options[o->name] = "";
                continue;
            }
            if (!value) {
                if (i + 1 >= words.size()) {
                    throw UsageError("--" + o->name + " needs a value (" + o->value + ")");
                }
                value = words[++i];
            }
            if (!o->choices.empty() &&
                std::find(o->choices.begin(), o->choices.end(), *value) == o->choices.end()) {
                std::string known;
                for (const auto& ch : o->choices) {
                    known += (known.empty() ? "" : ", ") + ch;
                }
                throw UsageError("--" + o->name + " must be one of " + known + ", not '" + *value +
                                 "'");
            }
            p.options[o->name] = *value;
            continue;
        }
        p.args.push_back(w);
    }
    std::size_t required = 0;
    bool repeats = false;
    for (const auto& a : cmd.args) {
        required += a.required ? 1 : 0;
        repeats = repeats || a.repeats;
    }
    if (p.args.size() < required) {
        throw UsageError("'" + cmd.name + "' needs " + cmd.args[p.args.size()].name);
    }
    if (!repeats && p.args.size() > cmd.args.size()) {
        throw UsageError("'" + cmd.name + "' takes no argument '" + p.args[cmd.args.size()] + "'");
    }
    for (const auto& o : cmd.options) {
        if (o.name == "write" && !p.has("write")) {
            throw UsageError("'" + cmd.name + "' needs -w FILE");
        }
    }
    return p;
}

std::string usage_line(const Command& cmd) {
    std::string line = "conduitctl " + cmd.name;
    for (const auto& a : cmd.args) {
        const std::string name = a.name + (a.repeats ? "..." : "");
        line += a.required ? " " + name : " [" + name + "]";
    }
    if (!cmd.options.empty()) {
        line += " [options]";
    }
    return line;
}

std::vector<std::string> names_from(Client* client, const char* method) {
    std::vector<std::string> out;
    if (client == nullptr) {
        return out;
    }
    try {
        for (const auto& item : client->call(method)) {
            out.push_back(item["name"].get<std::string>());
        }
    } catch (const std::exception&) {
        // No conduitd: nothing to offer, the rest still completes.
    }
    return out;
}

const std::vector<std::string> kGlobalOptions = {"--socket",  "--json", "--quiet",
                                                 "--timeout", "--help", "--version"};

}  // namespace

const std::vector<Command>& commands() {
    static const std::vector<Command> list = build_commands();
    return list;
}

std::pair<const Command*, std::size_t> find_command(const std::vector<std::string>& words) {
    if (words.empty()) {
        return {nullptr, 0};
    }
    for (const auto& cmd : commands()) {
        const auto space = cmd.name.find(' ');
        if (space == std::string::npos) {
            if (words[0] == cmd.name) {
                return {&cmd, 1};
            }
        } else if (words.size() >= 2 && words[0] == cmd.name.substr(0, space) &&
                   words[1] == cmd.name.substr(space + 1)) {
            return {&cmd, 2};
        }
    }
    return {nullptr, 0};
}

std::string command_help(const Command& cmd) {
    std::ostringstream h;
    h << "usage: " << usage_line(cmd) << "\n\n" << cmd.summary << ".\n";
    if (!cmd.details.empty()) {
        h << '\n' << cmd.details << '\n';
    }
    if (!cmd.options.empty()) {
        h << "\noptions:\n";
        for (const auto& o : cmd.options) {
            std::string flag = "  --" + o.name + (o.value.empty() ? "" : " " + o.value);
            if (o.short_name != 0) {
                flag += ", -" + std::string(1, o.short_name);
            }
            h << std::left << std::setw(30) << flag << o.help << '\n';
        }
    }
    h << "\nglobal options (before the command): --json, --quiet, --socket PATH, --timeout "
         "SECONDS\n";
    return h.str();
}

std::string general_help() {
    std::ostringstream h;
    h << "usage: conduitctl [--socket PATH] [--json] [--quiet] [--timeout SECONDS] COMMAND "
         "[ARGS]\n"
         "       conduitctl                  (interactive, with line editing and completion)\n"
         "       conduitctl COMMAND --help   (one command's help)\n\n"
         "conduitctl talks to conduitd over its control socket (JSON-RPC 2.0; default "
         "/run/conduit/conduitd.sock, or $CONDUIT_SOCKET).\n\ncommands:\n";
    for (const auto& cmd : commands()) {
        h << "  " << std::left << std::setw(18) << cmd.name << cmd.summary << '\n';
    }
    h << "  " << std::left << std::setw(18) << "interactive"
      << "a prompt with line editing, "
      << "history and completion\n";
    h << "  " << std::left << std::setw(18) << "completion bash"
      << "print the bash completion script (source <(conduitctl completion bash))\n";
    h << "\nglobal options:\n"
         "  --socket PATH, -s PATH   conduitd's control socket\n"
         "  --json                   print results as JSON (every command)\n"
         "  --quiet, -q              print nothing on success (changes)\n"
         "  --timeout SECONDS        how long to wait for conduitd (default 30)\n"
         "\nexit codes: 0 done, 1 failed (nothing changed), 2 bad command line, 3 conduitd "
         "unreachable,\n4 not found, 5 already exists, 6 invalid value or config, 7 needs a "
         "restart, 8 capture incomplete\n";
    return h.str();
}

int run_words(const std::vector<std::string>& words, Client& client, const Globals& globals,
              std::ostream& out) {
    const auto [cmd, used] = find_command(words);
    if (cmd == nullptr) {
        if (!words.empty() && (words[0] == "help" || words[0] == "--help" || words[0] == "-h")) {
            const std::vector<std::string> rest(words.begin() + 1, words.end());
            const auto [topic, n] = find_command(rest);
            out << (topic != nullptr ? command_help(*topic) : general_help());
            return kOk;
        }
        std::cerr << "conduitctl: unknown command '"
                  << (words.empty() ? "" : words[0] + (words.size() > 1 ? " " + words[1] : ""))
                  << "' (conduitctl --help lists them)\n";
        return kUsage;
    }
    const std::vector<std::string> rest(words.begin() + static_cast<long>(used), words.end());
    if (std::find(rest.begin(), rest.end(), "--help") != rest.end() ||
        std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
        out << command_help(*cmd);
        return kOk;
    }
    try {
        const Parsed parsed = parse_arguments(*cmd, rest);
        Context context{client, globals, out};
        return cmd->run(context, parsed);
    } catch (const UsageError& e) {
        std::cerr << "conduitctl: " << e.what() << "\nusage: " << usage_line(*cmd) << '\n';
        return kUsage;
    } catch (const RpcError& e) {
        std::cerr << "conduitctl: " << e.what() << '\n';
        return exit_for(e.code());
    } catch (const ConnectError& e) {
        std::cerr << "conduitctl: " << e.what() << '\n';
        return kUnreachable;
    } catch (const json::exception& e) {
        std::cerr << "conduitctl: unexpected answer from conduitd: " << e.what() << '\n';
        return kFailed;
    }
}

std::vector<std::string> complete(const std::vector<std::string>& all_words, std::size_t index,
                                  Client* client) {
    // Global options first.
    std::size_t start = 0;
    while (start < index && start < all_words.size() && all_words[start].rfind("-", 0) == 0) {
        const std::string& w = all_words[start];
        start += (w == "--socket" || w == "-s" || w == "--timeout") ? 2 : 1;
    }
    if (start > index) {  // completing a global option's value
        return all_words[index - 1] == "--timeout" ? std::vector<std::string>{}
                                                   : std::vector<std::string>{"__files__"};
    }
    const std::string current = index < all_words.size() ? all_words[index] : "";
    const std::vector<std::string> words(all_words.begin() + static_cast<long>(start),
                                         all_words.begin() + static_cast<long>(index));
    if (words.empty()) {
        if (current.rfind("-", 0) == 0) {
            return kGlobalOptions;
        }
        std::set<std::string> first{"help", "interactive", "completion"};
        for (const auto& cmd : commands()) {
            first.insert(cmd.name.substr(0, cmd.name.find(' ')));
        }
        return {first.begin(), first.end()};
    }
    if (words.size() == 1) {
        std::vector<std::string> second;
        for (const auto& cmd : commands()) {
            const auto space = cmd.name.find(' ');
            if (space != std::string::npos && cmd.name.substr(0, space) == words[0]) {
                second.push_back(cmd.name.substr(space + 1));
            }
        }
        if (words[0] == "completion") {
            return {"bash"};
        }
        if (words[0] == "help") {
            std::vector<std::string> all;
            for (const auto& cmd : commands()) {
                all.push_back(cmd.name.substr(0, cmd.name.find(' ')));
            }
            return all;
        }
        if (!second.empty()) {
            return second;
        }
    }
    const auto [cmd, used] = find_command(words);
    if (cmd == nullptr) {
        return {};
    }
    // Which positional argument is being completed, or which option wants a value.
    std::size_t positional = 0;
    for (std::size_t i = used; i < words.size(); ++i) {
        if (words[i].rfind("-", 0) == 0) {
            const OptionSpec* o = find_option(*cmd, words[i]);
            if (o != nullptr && !o->value.empty() && words[i].find('=') == std::string::npos) {
                if (i + 1 == words.size()) {
                    return o->file ? std::vector<std::string>{"__files__"} : o->choices;
                }
                ++i;
            }
            continue;
        }
        ++positional;
    }
    if (current.rfind("-", 0) == 0) {
        std::vector<std::string> options{"--help"};
        for (const auto& o : cmd->options) {
            options.push_back("--" + o.name);
        }
        return options;
    }
    if (cmd->args.empty()) {
        return {};
    }
    const ArgSpec& arg = positional < cmd->args.size() ? cmd->args[positional] : cmd->args.back();
    if (positional >= cmd->args.size() && !arg.repeats) {
        return {};
    }
    switch (arg.kind) {
        case ArgKind::kBridge:
            return names_from(client, "bridge.list");
        case ArgKind::kPort:
            return names_from(client, "port.list");
        case ArgKind::kFile:
            return {"__files__"};
        case ArgKind::kChoice:
            return arg.choices;
        case ArgKind::kSetting: {
            const auto eq = current.find('=');
            if (eq == std::string::npos) {
                return arg.choices;
            }
            const std::string key = current.substr(0, eq);
            if (key == "admin") {
                return {"admin=up", "admin=down"};
            }
            if (key == "mode") {
                return {"mode=client", "mode=server"};
            }
            if (key == "offloads") {
                return {"offloads=on", "offloads=off"};
            }
            if (key == "socket") {
                return {"__files__"};
            }
            return {};
        }
        case ArgKind::kMac:
        case ArgKind::kText:
            return {};
    }
    return {};
}

std::string bash_completion_script() {
    // COMP_WORDS splits MAC addresses and KEY=VALUE at ':' and '='; the line is split
    // here on blanks only, and replies are trimmed to what bash replaces.
    return R"BASH(# bash completion for conduitctl: source <(conduitctl completion bash)
_conduitctl() {
    local line=${COMP_LINE:0:COMP_POINT}
    local -a words
    read -ra words <<< "$line"
    [[ $line =~ [[:space:]]$ ]] && words+=("")
    local index=$(( ${#words[@]} - 2 ))
    local cur=${words[-1]}
    local IFS=$'\n'
    local candidates
    candidates=$("${words[0]}" __complete "$index" "${words[@]:1}" 2>/dev/null)
    if [[ $candidates == __files__* ]]; then
        [[ $cur == *=* ]] && cur=${cur#*=}
        COMPREPLY=($(compgen -f -- "$cur"))
        compopt -o filenames 2>/dev/null
        return
    fi
    COMPREPLY=($(compgen -W "$candidates" -- "$cur"))
    # bash replaces only the text after the last ':' or '=' of the word.
    if [[ $cur == *[:=]* ]]; then
        local keep=${cur%"${cur##*[:=]}"}
        local i
        for i in "${!COMPREPLY[@]}"; do COMPREPLY[$i]=${COMPREPLY[$i]#"$keep"}; done
    fi
    [[ ${#COMPREPLY[@]} == 1 && ${COMPREPLY[0]} == *= ]] && compopt -o nospace 2>/dev/null
    return 0
}
complete -F _conduitctl conduitctl
)BASH";
}

std::vector<std::string> split_line(const std::string& line) {
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;
    char quote = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quote != 0) {
            if (c == quote) {
                quote = 0;
            } else if (c == '\\' && quote == '"' && i + 1 < line.size()) {
                word += line[++i];
            } else {
                word += c;
            }
        } else if (c == '\'' || c == '"') {
            quote = c;
            in_word = true;
        } else if (c == '\\' && i + 1 < line.size()) {
            word += line[++i];
            in_word = true;
        } else if (c == ' ' || c == '\t') {
            if (in_word) {
                words.push_back(word);
                word.clear();
                in_word = false;
            }
        } else {
            word += c;
            in_word = true;
        }
    }
    if (in_word) {
        words.push_back(word);
    }
    return words;
}

}  // namespace conduit::ctl
