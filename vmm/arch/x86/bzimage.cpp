#include "vmm/arch/x86/bzimage.h"

#include <cstring>
#include <fstream>
#include <iterator>

#include "vmm/util/error.h"

namespace conduit::vmm::x86 {

namespace {
constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint16_t kBootFlag = 0xaa55;
constexpr uint32_t kHeaderMagic = 0x53726448;  // "HdrS"
constexpr uint8_t kLoadedHigh = 0x01;
constexpr uint16_t kXlfKernel64 = 0x01;

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}
}  // namespace

std::vector<uint8_t> read_file(const std::string& path, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(what + " '" + path + "': " + std::strerror(errno));
    }
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    if (in.bad()) {
        throw ConfigError(what + " '" + path + "': read error");
    }
    return bytes;
}

KernelImage parse_bzimage(std::vector<uint8_t> bytes, const std::string& name) {
    const auto fail = [&](const std::string& reason) -> void {
        throw ConfigError("kernel '" + name + "' " + reason);
    };
    if (bytes.size() < kSetupHeaderOffset + sizeof(setup_header)) {
        fail("is too small to be a bzImage (" + std::to_string(bytes.size()) + " bytes)");
    }
    KernelImage k{};
    std::memcpy(&k.header, bytes.data() + kSetupHeaderOffset, sizeof(setup_header));
    const setup_header& h = k.header;
    if (h.boot_flag != kBootFlag || h.header != kHeaderMagic) {
        fail(
            "is not a bzImage (no boot-protocol header; an uncompressed vmlinux or a corrupt "
            "file?)");
    }
    if (h.version < kMinBootProtocol) {
        fail("uses boot protocol " + std::to_string(h.version >> 8) + "." +
             std::to_string(h.version & 0xff) + "; at least 2.12 (Linux 3.8) is needed");
    }
    if (!(h.loadflags & kLoadedHigh)) {
        fail("is a zImage that must load below 1 MiB; only bzImages are supported");
    }
    if (!(h.xloadflags & kXlfKernel64)) {
        fail("has no 64-bit entry point (a 32-bit kernel?)");
    }
    const uint64_t setup_sects = h.setup_sects == 0 ? 4 : h.setup_sects;
    k.protected_offset = (setup_sects + 1) * 512;
    if (k.protected_offset >= bytes.size()) {
        fail("is truncated: its setup code claims " + std::to_string(k.protected_offset) +
             " bytes of a " + std::to_string(bytes.size()) + "-byte file");
    }
    k.protected_size = bytes.size() - k.protected_offset;
    // The payload's own length field is covered by syssize (16-byte units).
    if (uint64_t{h.syssize} * 16 > k.protected_size) {
        fail("is truncated: " + std::to_string(k.protected_size) + " bytes of kernel where " +
             std::to_string(uint64_t{h.syssize} * 16) + " were expected");
    }
    k.load_addr = h.pref_address;
    if (k.load_addr < 0x100000 || (h.kernel_alignment != 0 && !h.relocatable_kernel &&
                                   k.load_addr % h.kernel_alignment != 0)) {
        fail("has an unusable preferred load address " + hex(k.load_addr));
    }
    k.init_size = std::max<uint64_t>(h.init_size, k.protected_size);
    k.cmdline_max = h.cmdline_size;
    k.initrd_addr_max = h.initrd_addr_max;
    k.bytes = std::move(bytes);
    return k;
}

}  // namespace conduit::vmm::x86
