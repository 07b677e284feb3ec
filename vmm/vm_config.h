// vmm/vm_config: what one VM is: kernel, initrd, command line, vCPUs, memory, console.
// Read from a YAML file (--config) and/or the command line, which overrides the file.
// Every error names where it came from (file:line, or the option) and the reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace conduit::vmm {

struct SerialConfig {
    enum class Kind { kStdio, kFile, kSocket, kNone };
    Kind kind = Kind::kStdio;
    std::string path;  // file or unix socket
};

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
};

inline constexpr unsigned kMaxVcpus = 254;  // APIC IDs 0..253 in xAPIC mode, 255 is broadcast
inline constexpr uint64_t kMinMemory = 64ull << 20;

VmConfig parse_vm_config(const std::string& text, const std::string& path);
VmConfig load_vm_config(const std::string& path);

// "stdio", "none", "file:PATH", "socket:PATH".
SerialConfig parse_serial(const std::string& text, const std::string& where);

// Whole-config checks once file and command line are merged (a kernel given, limits).
void validate_vm_config(const VmConfig& config);

}  // namespace conduit::vmm
