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

// "HOST:PORT" with a numeric IPv4 host, or "off".
std::optional<std::string> metrics_address_problem(const std::string& address) {
    if (address == "off") {
        return std::nullopt;
    }
    const auto colon = address.rfind(':');
    const std::string why =
        "control.metrics must be 'off' or IPV4:PORT (e.g. 127.0.0.1:9477), not '" + address + "'";
    if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
        return why;
    }
    const std::string host = address.substr(0, colon);
    const std::string port = address.substr(colon + 1);
    int dots = 0;
    for (const char ch : host) {
        if (ch == '.') {
            ++dots;
        } else if (!std::isdigit(static_cast<unsigned char>(ch))) {
            return why;
        }
    }
    if (dots != 3 || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(),
                     [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); }) ||
        std::stoul(port) > 65535) {
        return why;
    }
    return std::nullopt;
}

void parse_daemon(const Reader& r, const YAML::Node& n, DaemonConfig& d) {
    r.only_keys(n,
                {"file_prefix", "main_cpu", "workers", "hugepages", "memory_mb", "mbufs",
                 "mbuf_cache", "idle_backoff", "worker_nice", "log_level"},
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
    if (n["worker_nice"]) {
        d.worker_nice = r.integer<int>(n["worker_nice"], "conduitd.worker_nice", -20, 19);
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
        r.only_keys(n, {"name", "type", "admin", "socket", "mode", "queues", "mtu", "offloads"},
                    "vhost-user port");
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
            p.queues = r.integer<uint16_t>(n["queues"], "queues", 1, kMaxVhostQueues);
        }
    } else if (type == "ethdev") {
        p.type = PortType::kEthdev;
        r.only_keys(n,
                    {"name", "type", "admin", "devargs", "queues", "rx_descriptors",
                     "tx_descriptors", "mtu", "offloads"},
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
            p.queues = r.integer<uint16_t>(n["queues"], "queues", 1, kMaxEthQueues);
        }
        if (n["rx_descriptors"]) {
            p.rx_descriptors = r.integer<uint16_t>(n["rx_descriptors"], "rx_descriptors",
                                                   kMinDescriptors, kMaxDescriptors);
        }
        if (n["tx_descriptors"]) {
            p.tx_descriptors = r.integer<uint16_t>(n["tx_descriptors"], "tx_descriptors",
                                                   kMinDescriptors, kMaxDescriptors);
        }
    } else {
        r.fail(n["type"], "unknown port type '" + type + "' (known: vhost-user, ethdev)");
    }
    if (n["mtu"]) {
        p.mtu = r.integer<uint32_t>(n["mtu"], "mtu", kMinPortMtu, kMaxPortMtu);
    }
    if (n["offloads"]) {
        p.offloads = r.boolean(n["offloads"], "offloads");
    }
    if (n["admin"]) {
        const std::string admin = r.string(n["admin"], "admin");
        if (admin != "up" && admin != "down") {
            r.fail(n["admin"], "admin must be 'up' or 'down', not '" + admin + "'");
        }
        p.admin_up = admin == "up";
    }
    return p;
}

BridgeConfig parse_bridge(const Reader& r, const YAML::Node& n) {
    BridgeConfig b;
    b.line = Reader::line_of(n);
    r.only_keys(n, {"name", "mac_aging", "mac_table_size", "static_macs", "ports"}, "bridge");
    if (!n["name"]) {
        r.fail(n, "bridge has no 'name'");
    }
    b.name = r.string(n["name"], "bridge name");
    if (!valid_name(b.name)) {
        r.fail(n["name"], "bridge name '" + b.name + "' must be 1-32 letters, digits or '_'");
    }
    if (n["mac_aging"]) {
        b.mac_aging_ms =
            r.integer<uint64_t>(n["mac_aging"], "mac_aging (seconds)", 1, kMaxAgingSeconds) * 1000;
    }
    if (n["mac_table_size"]) {
        b.mac_table_size =
            r.integer<uint32_t>(n["mac_table_size"], "mac_table_size", 1, kMaxMacTableSize);
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
    if (n["static_macs"]) {
        const YAML::Node macs = n["static_macs"];
        if (!macs.IsSequence()) {
            r.fail(macs, "static_macs of bridge '" + b.name + "' must be a list of {mac, port}");
        }
        for (const auto& m : macs) {
            r.only_keys(m, {"mac", "port"}, "a static MAC entry");
            if (!m["mac"] || !m["port"]) {
                r.fail(m, "a static MAC entry needs 'mac' and 'port'");
            }
            StaticMac entry;
            entry.line = Reader::line_of(m);
            const std::string text = r.string(m["mac"], "mac");
            if (!sw::mac_from_string(text, entry.mac) || sw::mac_is_group(entry.mac) ||
                entry.mac == 0) {
                r.fail(m["mac"], "'" + text + "' is not a unicast MAC address (aa:bb:cc:dd:ee:ff)");
            }
            entry.port = r.string(m["port"], "port");
            b.static_macs.push_back(entry);
        }
    }
    return b;
}

void parse_control(const Reader& r, const YAML::Node& n, ControlConfig& c) {
    r.only_keys(n, {"socket", "socket_group", "metrics", "stall_timeout_ms", "max_clients"},
                "control");
    if (n["socket"]) {
        c.socket = r.string(n["socket"], "control.socket");
        if (c.socket.empty() || c.socket[0] != '/' || c.socket.size() >= 108) {
            r.fail(n["socket"], "control.socket must be an absolute path of at most 107 bytes");
        }
    }
    if (n["socket_group"]) {
        c.socket_group = r.string(n["socket_group"], "control.socket_group");
    }
    if (n["metrics"]) {
        c.metrics = r.string(n["metrics"], "control.metrics");
        if (auto problem = metrics_address_problem(c.metrics)) {
            r.fail(n["metrics"], *problem);
        }
    }
    if (n["stall_timeout_ms"]) {
        c.stall_timeout_ms =
            r.integer<unsigned>(n["stall_timeout_ms"], "control.stall_timeout_ms", 100, 600'000);
    }
    if (n["max_clients"]) {
        c.max_clients = r.integer<unsigned>(n["max_clients"], "control.max_clients", 1, 4096);
    }
}

}  // namespace

std::size_t Config::port_count() const {
    std::size_t n = 0;
    for (const auto& b : bridges) {
        n += b.ports.size();
    }
    return n;
}

BridgeConfig* Config::find_bridge(const std::string& name) {
    for (auto& b : bridges) {
        if (b.name == name) {
            return &b;
        }
    }
    return nullptr;
}

const BridgeConfig* Config::find_bridge(const std::string& name) const {
    return const_cast<Config*>(this)->find_bridge(name);
}

std::pair<const BridgeConfig*, const PortConfig*> Config::find_port(const std::string& name) const {
    for (const auto& b : bridges) {
        if (const PortConfig* p = b.find_port(name)) {
            return {&b, p};
        }
    }
    return {nullptr, nullptr};
}

const PortConfig* BridgeConfig::find_port(const std::string& port) const {
    for (const auto& p : ports) {
        if (p.name == port) {
            return &p;
        }
    }
    return nullptr;
}

bool PortConfig::same_endpoint(const PortConfig& o) const {
    if (type != o.type) {
        return false;
    }
    if (mtu != o.mtu || offloads != o.offloads) {
        return false;  // a guest negotiates features once per connection; a device is configured
                       // once
    }
    if (type == PortType::kVhostUser) {
        return socket == o.socket && mode == o.mode && queues == o.queues;
    }
    return devargs == o.devargs && queues == o.queues && rx_descriptors == o.rx_descriptors &&
           tx_descriptors == o.tx_descriptors;
}

const char* port_type_name(PortType type) {
    return type == PortType::kVhostUser ? "vhost-user" : "ethdev";
}

const char* vhost_mode_name(VhostMode mode) {
    return mode == VhostMode::kClient ? "client" : "server";
}

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

std::optional<std::string> port_problem(const PortConfig& p) {
    if (!valid_name(p.name)) {
        return "port name '" + p.name + "' must be 1-32 letters, digits or '_'";
    }
    if (p.mtu < kMinPortMtu || p.mtu > kMaxPortMtu) {
        return "mtu must be between " + std::to_string(kMinPortMtu) + " and " +
               std::to_string(kMaxPortMtu);
    }
    if (p.type == PortType::kVhostUser) {
        if (p.socket.empty() || p.socket[0] != '/') {
            return "socket must be an absolute path";
        }
        if (p.socket.size() >= 108) {
            return "socket path is longer than a unix socket allows (107 bytes)";
        }
        if (p.queues < 1 || p.queues > kMaxVhostQueues) {
            return "queues must be between 1 and " + std::to_string(kMaxVhostQueues);
        }
        return std::nullopt;
    }
    if (p.devargs.empty()) {
        return "devargs is empty";
    }
    if (p.queues < 1 || p.queues > kMaxEthQueues) {
        return "queues must be between 1 and " + std::to_string(kMaxEthQueues);
    }
    for (const uint16_t d : {p.rx_descriptors, p.tx_descriptors}) {
        if (d < kMinDescriptors || d > kMaxDescriptors) {
            return "descriptors must be between " + std::to_string(kMinDescriptors) + " and " +
                   std::to_string(kMaxDescriptors);
        }
    }
    return std::nullopt;
}

namespace {

[[noreturn]] void fail_at(const Config& c, int line, const std::string& reason) {
    if (line > 0) {
        throw ConfigError(c.path + ':' + std::to_string(line) + ": " + reason);
    }
    throw ConfigError(reason);
}

}  // namespace

void validate_config(const Config& c) {
    std::set<std::string> bridge_names, port_names, sockets;
    std::size_t ethdevs = 0;
    for (const auto& b : c.bridges) {
        if (!bridge_names.insert(b.name).second) {
            fail_at(c, b.line, "bridge name '" + b.name + "' is used twice");
        }
        for (const auto& p : b.ports) {
            if (!port_names.insert(p.name).second) {
                fail_at(c, p.line, "port name '" + p.name + "' is used twice");
            }
            if (p.type == PortType::kVhostUser && !sockets.insert(p.socket).second) {
                fail_at(c, p.line, "socket '" + p.socket + "' is used by two ports");
            }
            if (p.type == PortType::kEthdev && ++ethdevs > 1) {
                fail_at(
                    c, p.line,
                    "only one uplink (ethdev) port per conduitd; '" + p.name + "' is a second one");
            }
        }
        std::set<uint64_t> macs;
        for (const auto& m : b.static_macs) {
            if (b.find_port(m.port) == nullptr) {
                fail_at(c, m.line,
                        "static MAC " + sw::mac_to_string(m.mac) + " names port '" + m.port +
                            "', which is not a port of bridge '" + b.name + "'");
            }
            if (!macs.insert(m.mac).second) {
                fail_at(c, m.line,
                        "static MAC " + sw::mac_to_string(m.mac) + " is listed twice in bridge '" +
                            b.name + "'");
            }
        }
        if (b.static_macs.size() > b.mac_table_size) {
            fail_at(c, b.line,
                    "bridge '" + b.name + "' has more static MACs than its mac_table_size");
        }
    }
    if (c.bridges.size() > kMaxBridges) {
        fail_at(c, 1, "at most " + std::to_string(kMaxBridges) + " bridges");
    }
    if (c.port_count() > sw::kMaxPorts) {
        fail_at(c, 1, "at most " + std::to_string(sw::kMaxPorts) + " ports");
    }
    for (const unsigned cpu : c.daemon.worker_cpus) {
        int uses = 0;
        for (const unsigned other : c.daemon.worker_cpus) {
            uses += other == cpu;
        }
        if (uses > 1) {
            fail_at(c, 1, "worker CPU " + std::to_string(cpu) + " is listed twice");
        }
    }
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
    r.only_keys(root, {"conduitd", "control", "bridges"}, "the top level");
    if (root["conduitd"]) {
        parse_daemon(r, root["conduitd"], c.daemon);
        c.has_daemon_section = true;
    }
    if (root["control"]) {
        parse_control(r, root["control"], c.control);
        c.has_control_section = true;
    }
    // An empty list is a switch with nothing configured yet (bridges added at run time).
    if (!root["bridges"] || !root["bridges"].IsSequence()) {
        r.fail(root["bridges"] ? root["bridges"] : root,
               "'bridges' must be a list of bridges ([] for none)");
    }
    for (const auto& b : root["bridges"]) {
        c.bridges.push_back(parse_bridge(r, b));
    }
    validate_config(c);
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
