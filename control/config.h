// control/config: conduitd's YAML configuration, parsed and validated as a whole.
//
// Every error names the file, the line and the reason; a config with any error is
// rejected, never partly applied. The same whole-config checks run on every change made
// at run time (conduitctl), so a running switch can always be saved as a valid file.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace conduit::control {

class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

enum class PortType { kVhostUser, kEthdev };
enum class VhostMode { kClient, kServer };

// Limits shared by the file parser and the control server's parameter checks.
inline constexpr uint16_t kMaxVhostQueues = 16;
inline constexpr uint16_t kMaxEthQueues = 64;
inline constexpr uint16_t kMinDescriptors = 64;
inline constexpr uint16_t kMaxDescriptors = 16384;
inline constexpr uint64_t kMaxAgingSeconds = 1'000'000;
inline constexpr uint32_t kMaxMacTableSize = 1u << 24;
inline constexpr std::size_t kMaxBridges = 256;
// Port MTU (sw::kMinMtu..sw::kMaxMtu; kept here so the config needs no DPDK header).
inline constexpr uint32_t kMinPortMtu = 68;
inline constexpr uint32_t kMaxPortMtu = 9216;
inline constexpr uint32_t kDefaultPortMtu = 1500;

struct PortConfig {
    std::string name;
    PortType type = PortType::kVhostUser;
    bool admin_up = true;  // admin down: kept and connected, but not forwarded to or from
    // Both types: the largest IP packet carried (frames up to mtu + 22 bytes), and whether
    // checksum and TCP segmentation offloads are negotiated with the guest (vhost-user)
    // or used on the device (ethdev).
    uint32_t mtu = kDefaultPortMtu;
    bool offloads = true;
    // vhost-user
    std::string socket;
    VhostMode mode = VhostMode::kClient;
    uint16_t queues = 1;
    // ethdev
    std::string devargs;
    uint16_t rx_descriptors = 1024;
    uint16_t tx_descriptors = 1024;
    int line = 0;  // where it was declared (0: created at run time), for messages

    // Whether the port must be re-created to go from `this` to `other` (anything but
    // the admin state and the name differs).
    bool same_endpoint(const PortConfig& other) const;
};

struct StaticMac {
    uint64_t mac = 0;  // sw::Mac: the address in the low 48 bits
    std::string port;
    int line = 0;
};

struct BridgeConfig {
    std::string name;
    uint64_t mac_aging_ms = 300'000;
    uint32_t mac_table_size = 8192;
    std::vector<StaticMac> static_macs;
    std::vector<PortConfig> ports;
    int line = 0;

    const PortConfig* find_port(const std::string& port) const;
};

struct DaemonConfig {
    std::string file_prefix = "conduitd";
    unsigned main_cpu = 0;
    std::vector<unsigned> worker_cpus{1};
    bool hugepages = true;
    unsigned memory_mb = 512;
    uint32_t mbufs = 16383;
    uint32_t mbuf_cache = 256;
    bool idle_backoff = true;
    // Workers' nice value: -20 makes whatever else the scheduler puts on a worker's CPU
    // take it only in short slices, so guest rings do not overflow meanwhile.
    int worker_nice = -20;
    std::string log_level = "info";
};

// The control server and the metrics listener.
struct ControlConfig {
    std::string socket = "/run/conduit/conduitd.sock";  // JSON-RPC, mode 0660
    std::string socket_group;                           // group owning it (default: root)
    std::string metrics = "127.0.0.1:9477";             // Prometheus HTTP; "off" disables
    unsigned stall_timeout_ms = 5000;                   // a half-sent request is dropped after this
    unsigned max_clients = 64;
};

struct Config {
    std::string path;
    DaemonConfig daemon;
    ControlConfig control;
    std::vector<BridgeConfig> bridges;
    // Whether the file had these sections: `conduitctl apply` keeps the running ones
    // when a file leaves them out.
    bool has_daemon_section = false;
    bool has_control_section = false;

    std::size_t port_count() const;
    BridgeConfig* find_bridge(const std::string& name);
    const BridgeConfig* find_bridge(const std::string& name) const;
    // The port and the bridge holding it, or nullptrs.
    std::pair<const BridgeConfig*, const PortConfig*> find_port(const std::string& name) const;
};

// Parses and validates; throws ConfigError("FILE:LINE: reason").
Config load_config(const std::string& path);
Config parse_config(const std::string& text, const std::string& path_for_messages);

// Whole-config checks (unique names and sockets, one uplink, limits, static MACs on
// ports of their bridge), as run by parse_config. Throws ConfigError; the message has a
// "FILE:LINE: " prefix when the offending item has a line.
void validate_config(const Config& config);

// Single-value checks shared with the control server; each returns the reason a value
// is invalid, or nullopt.
bool valid_name(const std::string& name);
std::optional<std::string> port_problem(const PortConfig& port);

// The config as YAML that parse_config reads back to an equal config (comments in the
// original file are not kept); `header` is written first as comment lines.
std::string config_to_yaml(const Config& config, const std::string& header = "");

const char* port_type_name(PortType type);
const char* vhost_mode_name(VhostMode mode);

}  // namespace conduit::control
