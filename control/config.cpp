#include "control/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <thread>

#include "switch/types.h"

namespace conduit::control {

namespace {

// Reads one YAML document while remembering where each value came from.
class Reader {
  public:
    explicit Reader(std::string path) : path_(std::move(path)) {}

    [[noreturn]] void fail(const YAML::Node& at, const std::string& reason) const {
        fail_line(line_of(at), reason);
    }
    [[noreturn]] void fail_line(int line, const std::string& reason) const {
        std::ostringstream msg;
        msg << path_ << ':' << line << ": " << reason;
        throw ConfigError(msg.str());
    }
    static int line_of(const YAML::Node& n) { return n.Mark().line + 1; }

    // Rejects keys this level does not know, so a typo never silently means "default".
    void only_keys(const YAML::Node& map, std::initializer_list<const char*> allowed,
                   const std::string& where) const {
        if (!map.IsMap()) {
            fail(map, where + " must be a mapping");
        }
        for (const auto& kv : map) {
            if (!kv.first.IsScalar()) {
                fail(kv.first, "keys in " + where + " must be plain names");
            }
            const auto key = kv.first.Scalar();
            bool known = false;
            for (const char* a : allowed) {
                known = known || key == a;
            }
            if (!known) {
                std::string list;
                for (const char* a : allowed) {
                    list += list.empty() ? a : std::string(", ") + a;
                }
                fail(kv.first, "unknown key '" + key + "' in " + where + " (known: " + list + ")");
            }
        }
    }

    std::string string(const YAML::Node& n, const std::string& what) const {
        if (!n.IsScalar()) {
            fail(n, what + " must be a string");
        }
        return n.as<std::string>();
    }

    template <typename T>
    T integer(const YAML::Node& n, const std::string& what, T min, T max) const {
        if (!n.IsScalar()) {
            fail(n, what + " must be a number");
        }
        const std::string text = n.Scalar();
        long long value = 0;
        std::size_t used = 0;
        try {
            value = std::stoll(text, &used, 10);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != text.size()) {
            fail(n, what + " must be a whole number, not '" + text + "'");
        }
        if (value < static_cast<long long>(min) || value > static_cast<long long>(max)) {
            fail(n, what + " must be between " + std::to_string(min) + " and " +
                        std::to_string(max) + ", not " + text);
        }
        return static_cast<T>(value);
    }

    bool boolean(const YAML::Node& n, const std::string& what) const {
        if (n.IsScalar()) {
            const std::string t = n.Scalar();
            if (t == "true" || t == "yes" || t == "on") {
                return true;
            }
            if (t == "false" || t == "no" || t == "off") {
                return false;
            }
        }
        fail(n, what + " must be true or false");
    }

  private:
    std::string path_;
};

bool valid_name(const std::string& name) {
    if (name.empty() || name.size() > 32) {
        return false;
    }
    for (const char c : name) {
        // DPDK telemetry, which reports counters by name, accepts no other characters.
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
            return false;
        }
    }
    return true;
}

void parse_daemon(const Reader& r, const YAML::Node& n, DaemonConfig& d) {
    r.only_keys(n,
                {"file_prefix", "main_cpu", "workers", "hugepages", "memory_mb", "mbufs",
                 "mbuf_cache", "idle_backoff", "log_level"},
                "conduitd");
    const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    if (n["file_prefix"]) {
        d.file_prefix = r.string(n["file_prefix"], "conduitd.file_prefix");
        const bool ok =
            !d.file_prefix.empty() && d.file_prefix.size() <= 32 &&
            std::all_of(d.file_prefix.begin(), d.file_prefix.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
            });
        if (!ok) {
            r.fail(n["file_prefix"], "file_prefix must be 1-32 letters, digits, '-' or '_'");
        }
    }
    if (n["main_cpu"]) {
        d.main_cpu = r.integer<unsigned>(n["main_cpu"], "conduitd.main_cpu", 0, cpus - 1);
    }
    if (n["workers"]) {
        const YAML::Node w = n["workers"];
        if (!w.IsSequence() || w.size() == 0) {
            r.fail(w, "conduitd.workers must be a non-empty list of CPU numbers");
        }
        d.worker_cpus.clear();
        for (const auto& cpu : w) {
            d.worker_cpus.push_back(r.integer<unsigned>(cpu, "a worker CPU", 0, cpus - 1));
        }
        if (d.worker_cpus.size() > 64) {
            r.fail(w, "at most 64 workers");
        }
    }
    if (n["hugepages"]) {
        d.hugepages = r.boolean(n["hugepages"], "conduitd.hugepages");
    }
    if (n["memory_mb"]) {
        d.memory_mb = r.integer<unsigned>(n["memory_mb"], "conduitd.memory_mb", 64, 1 << 20);
    }
    if (n["mbufs"]) {
        d.mbufs = r.integer<uint32_t>(n["mbufs"], "conduitd.mbufs", 1023, 1 << 24);
    }
    if (n["mbuf_cache"]) {
        d.mbuf_cache = r.integer<uint32_t>(n["mbuf_cache"], "conduitd.mbuf_cache", 0, 512);
    }
    if (n["idle_backoff"]) {
        d.idle_backoff = r.boolean(n["idle_backoff"], "conduitd.idle_backoff");
    }
    if (n["log_level"]) {
        d.log_level = r.string(n["log_level"], "conduitd.log_level");
        static const std::set<std::string> levels{"error", "warning", "notice", "info", "debug"};
        if (!levels.contains(d.log_level)) {
            r.fail(n["log_level"], "log_level must be one of error, warning, notice, info, debug");
        }
    }
}

PortConfig parse_port(const Reader& r, const YAML::Node& n) {
    PortConfig p;
    p.line = Reader::line_of(n);
    if (!n.IsMap()) {
        r.fail(n, "a port must be a mapping with at least 'name' and 'type'");
    }
    if (!n["name"]) {
        r.fail(n, "port has no 'name'");
    }
    p.name = r.string(n["name"], "port name");
    if (!valid_name(p.name)) {
        r.fail(n["name"], "port name '" + p.name + "' must be 1-32 letters, digits or '_'");
    }
    if (!n["type"]) {
        r.fail(n, "port '" + p.name + "' has no 'type' (vhost-user or ethdev)");
    }
    const std::string type = r.string(n["type"], "port type");
    if (type == "vhost-user") {
        p.type = PortType::kVhostUser;
        r.only_keys(n, {"name", "type", "socket", "mode", "queues"}, "vhost-user port");
        if (!n["socket"]) {
            r.fail(n, "vhost-user port '" + p.name + "' has no 'socket' path");
        }
        p.socket = r.string(n["socket"], "socket");
        if (p.socket.empty() || p.socket[0] != '/') {
            r.fail(n["socket"], "socket must be an absolute path");
        }
        if (p.socket.size() >= 108) {
            r.fail(n["socket"], "socket path is longer than a unix socket allows (107 bytes)");
        }
        if (n["mode"]) {
            const std::string mode = r.string(n["mode"], "mode");
            if (mode == "client") {
                p.mode = VhostMode::kClient;
            } else if (mode == "server") {
                p.mode = VhostMode::kServer;
            } else {
                r.fail(n["mode"],
                       "mode must be 'client' (connect to the guest's socket) or "
                       "'server' (listen), not '" +
                           mode + "'");
            }
        }
        if (n["queues"]) {
            p.queues = r.integer<uint16_t>(n["queues"], "queues", 1, 16);
        }
    } else if (type == "ethdev") {
        p.type = PortType::kEthdev;
        r.only_keys(n, {"name", "type", "devargs", "queues", "rx_descriptors", "tx_descriptors"},
                    "ethdev port");
        if (!n["devargs"]) {
            r.fail(n, "ethdev port '" + p.name +
                          "' has no 'devargs' (a PCI address or a vdev such as "
                          "net_af_packet0,iface=eth1)");
        }
        p.devargs = r.string(n["devargs"], "devargs");
        if (p.devargs.empty()) {
            r.fail(n["devargs"], "devargs is empty");
        }
        if (n["queues"]) {
            p.queues = r.integer<uint16_t>(n["queues"], "queues", 1, 64);
        }
        if (n["rx_descriptors"]) {
            p.rx_descriptors =
                r.integer<uint16_t>(n["rx_descriptors"], "rx_descriptors", 64, 16384);
        }
        if (n["tx_descriptors"]) {
            p.tx_descriptors =
                r.integer<uint16_t>(n["tx_descriptors"], "tx_descriptors", 64, 16384);
        }
    } else {
        r.fail(n["type"], "unknown port type '" + type + "' (known: vhost-user, ethdev)");
    }
    return p;
}

BridgeConfig parse_bridge(const Reader& r, const YAML::Node& n) {
    BridgeConfig b;
    b.line = Reader::line_of(n);
    r.only_keys(n, {"name", "mac_aging", "mac_table_size", "ports"}, "bridge");
    if (!n["name"]) {
        r.fail(n, "bridge has no 'name'");
    }
    b.name = r.string(n["name"], "bridge name");
    if (!valid_name(b.name)) {
        r.fail(n["name"], "bridge name '" + b.name + "' must be 1-32 letters, digits or '_'");
    }
    if (n["mac_aging"]) {
        b.mac_aging_ms =
            r.integer<uint64_t>(n["mac_aging"], "mac_aging (seconds)", 1, 1'000'000) * 1000;
    }
    if (n["mac_table_size"]) {
        b.mac_table_size = r.integer<uint32_t>(n["mac_table_size"], "mac_table_size", 1, 1u << 24);
    }
    if (n["ports"]) {
        const YAML::Node ports = n["ports"];
        if (!ports.IsSequence()) {
            r.fail(ports, "ports of bridge '" + b.name + "' must be a list");
        }
        for (const auto& p : ports) {
            b.ports.push_back(parse_port(r, p));
        }
    }
    return b;
}

}  // namespace

std::size_t Config::port_count() const {
    std::size_t n = 0;
    for (const auto& b : bridges) {
        n += b.ports.size();
    }
    return n;
}

namespace {
Config parse_config_checked(const std::string& text, const std::string& path);
}

Config parse_config(const std::string& text, const std::string& path) {
    try {
        return parse_config_checked(text, path);
    } catch (const YAML::Exception& e) {
        // A conversion this parser did not foresee still gets a file, line and reason.
        std::ostringstream msg;
        msg << path << ':' << (e.mark.is_null() ? 1 : e.mark.line + 1) << ": " << e.msg;
        throw ConfigError(msg.str());
    }
}

namespace {
Config parse_config_checked(const std::string& text, const std::string& path) {
    Reader r(path);
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
        r.fail_line(e.mark.line + 1, "not valid YAML: " + e.msg);
    }
    if (!root.IsMap()) {
        r.fail_line(1, "the config must be a mapping with 'conduitd' and 'bridges'");
    }
    Config c;
    c.path = path;
    r.only_keys(root, {"conduitd", "bridges"}, "the top level");
    if (root["conduitd"]) {
        parse_daemon(r, root["conduitd"], c.daemon);
    }
    if (!root["bridges"] || !root["bridges"].IsSequence() || root["bridges"].size() == 0) {
        r.fail(root["bridges"] ? root["bridges"] : root, "'bridges' must list at least one bridge");
    }
    for (const auto& b : root["bridges"]) {
        c.bridges.push_back(parse_bridge(r, b));
    }

    // Whole-config checks.
    std::set<std::string> bridge_names, port_names, sockets;
    std::size_t ethdevs = 0;
    for (const auto& b : c.bridges) {
        if (!bridge_names.insert(b.name).second) {
            r.fail_line(b.line, "bridge name '" + b.name + "' is used twice");
        }
        for (const auto& p : b.ports) {
            if (!port_names.insert(p.name).second) {
                r.fail_line(p.line, "port name '" + p.name + "' is used twice");
            }
            if (p.type == PortType::kVhostUser && !sockets.insert(p.socket).second) {
                r.fail_line(p.line, "socket '" + p.socket + "' is used by two ports");
            }
            if (p.type == PortType::kEthdev && ++ethdevs > 1) {
                r.fail_line(p.line, "only one uplink (ethdev) port per conduitd; '" + p.name +
                                        "' is a second one");
            }
        }
    }
    if (c.bridges.size() > 256) {
        r.fail_line(1, "at most 256 bridges");
    }
    if (c.port_count() > sw::kMaxPorts) {
        r.fail_line(1, "at most " + std::to_string(sw::kMaxPorts) + " ports");
    }
    for (const unsigned cpu : c.daemon.worker_cpus) {
        int uses = 0;
        for (const unsigned other : c.daemon.worker_cpus) {
            uses += other == cpu;
        }
        if (uses > 1) {
            r.fail_line(1, "worker CPU " + std::to_string(cpu) + " is listed twice");
        }
    }
    return c;
}
}  // namespace

Config load_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw ConfigError(path + ":0: cannot read the file");
    }
    std::stringstream text;
    text << in.rdbuf();
    return parse_config(text.str(), path);
}

}  // namespace conduit::control
