// control/config: conduitd's YAML configuration, parsed and validated as a whole.
//
// Every error names the file, the line and the reason; a config with any error is
// rejected, never partly applied.
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

struct PortConfig {
    std::string name;
    PortType type = PortType::kVhostUser;
    // vhost-user
    std::string socket;
    VhostMode mode = VhostMode::kClient;
    uint16_t queues = 1;
    // ethdev
    std::string devargs;
    uint16_t rx_descriptors = 1024;
    uint16_t tx_descriptors = 1024;
    int line = 0;  // where it was declared, for messages
};

struct BridgeConfig {
    std::string name;
    uint64_t mac_aging_ms = 300'000;
    uint32_t mac_table_size = 8192;
    std::vector<PortConfig> ports;
    int line = 0;
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
    std::string log_level = "info";
};

struct Config {
    std::string path;
    DaemonConfig daemon;
    std::vector<BridgeConfig> bridges;

    std::size_t port_count() const;
};

// Parses and validates; throws ConfigError("FILE:LINE: reason").
Config load_config(const std::string& path);
Config parse_config(const std::string& text, const std::string& path_for_messages);

}  // namespace conduit::control
