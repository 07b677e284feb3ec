// vmm/arch/x86/bzimage: a Linux bzImage, checked against the x86 boot protocol
// (Documentation/x86/boot.rst) before anything is written into the guest.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <string>
#include <vector>

namespace conduit::vmm::x86 {

struct KernelImage {
    std::vector<uint8_t> bytes;  // the whole file
    setup_header header;         // as found in the image
    uint64_t protected_offset;   // where the 64-bit kernel starts in the file
    uint64_t protected_size;
    uint64_t load_addr;        // where it goes in guest memory
    uint64_t init_size;        // memory the kernel needs from load_addr while it decompresses
    uint64_t cmdline_max;      // longest command line it accepts, without the NUL
    uint64_t initrd_addr_max;  // highest address the initrd may end at (inclusive)
};

// The oldest protocol with a 64-bit entry point (2.12, xloadflags XLF_KERNEL_64).
inline constexpr uint16_t kMinBootProtocol = 0x020c;

// Throws ConfigError naming `name` and the reason: not a bzImage, too old, truncated,
// not loadable high, no 64-bit entry point.
KernelImage parse_bzimage(std::vector<uint8_t> bytes, const std::string& name);

// Reads a whole file (kernel, initrd); throws ConfigError naming it on failure.
std::vector<uint8_t> read_file(const std::string& path, const std::string& what);

}  // namespace conduit::vmm::x86
