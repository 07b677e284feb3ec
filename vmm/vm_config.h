// vmm/vm_config: what one VM is: kernel, initrd, command line, vCPUs, memory, console.
// Read from a YAML file (--config) and/or the command line, which overrides the file.
// Every error names where it came from (file:line, or the option) and the reason.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace conduit::vmm {

struct SerialConfig {
    enum class Kind { kStdio, kFile, kSocket, kNone };
    Kind kind = Kind::kStdio;
    std::string path;  // file or unix socket
};

// One virtio-net card backed by vhost-user.
struct NetCardConfig {
    std::string name;     // "net0", "net1", ... in log lines
    std::string socket;   // the vhost-user socket
    bool client = false;  // false: the VMM listens (conduitd's client-mode ports connect)
    std::array<uint8_t, 6> mac{};
    uint16_t mtu = 0;       // 0: no VIRTIO_NET_F_MTU (the guest's default, 1500)
    bool offloads = false;  // checksum and segmentation offloads, if the backend takes them
    uint16_t queue_size = 256;
};

inline constexpr uint16_t kMinMtu = 68;
inline constexpr uint16_t kMaxMtu = 9000;

struct VmConfig {
    std::string name = "vm";
    std::string kernel;
    std::string initrd;
    std::string cmdline = "console=ttyS0";
    unsigned cpus = 1;
    uint64_t memory = 512ull << 20;
    bool hugepages = false;
    SerialConfig serial;
    std::string log_level = "info";
    std::vector<NetCardConfig> nets;
};

inline constexpr unsigned kMaxVcpus = 254;  // APIC IDs 0..253 in xAPIC mode, 255 is broadcast
inline constexpr uint64_t kMinMemory = 64ull << 20;

VmConfig parse_vm_config(const std::string& text, const std::string& path);
VmConfig load_vm_config(const std::string& path);

// "stdio", "none", "file:PATH", "socket:PATH".
SerialConfig parse_serial(const std::string& text, const std::string& where);

// "socket=PATH,mac=52:54:00:00:00:01,mode=client,mtu=9000,offloads=on,queue_size=512"
// (--net); `index` names the card and derives its default MAC from the VM's name.
NetCardConfig parse_net_spec(const std::string& spec, const std::string& vm_name, size_t index);
// "52:54:00:12:34:56": a unicast MAC.
std::array<uint8_t, 6> parse_mac(const std::string& text, const std::string& where);
// A locally administered MAC derived from the VM's name and the card's index.
std::array<uint8_t, 6> default_mac(const std::string& vm_name, size_t index);

// Cards without a MAC get default_mac() of the VM's final name.
void fill_default_macs(VmConfig& config);

// Whole-config checks once file and command line are merged (a kernel given, limits).
void validate_vm_config(const VmConfig& config);

}  // namespace conduit::vmm
