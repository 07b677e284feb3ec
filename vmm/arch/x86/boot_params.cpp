#include "vmm/arch/x86/boot_params.h"

#include <algorithm>
#include <cstring>

#include "vmm/arch/x86/layout.h"
#include "vmm/util/error.h"

namespace conduit::vmm::x86 {

namespace {
constexpr uint64_t kPageSize = 4096;
constexpr uint8_t kLoaderTypeUndefined = 0xff;  // boot.rst: a loader without an assigned id

std::string mib(uint64_t bytes) {
    return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB";
}
}  // namespace

std::vector<E820Entry> build_e820(const std::vector<MemoryRegion>& ram,
                                  const std::vector<AddressRange>& reserved) {
    std::vector<E820Entry> map;
    for (const MemoryRegion& r : ram) {
        if (r.guest_phys_addr == 0) {
            // Below 1 MiB: usable up to the EBDA, then the legacy BIOS area, reserved.
            map.push_back({0, std::min(r.size, kEbdaStart), kE820Ram});
            if (r.size > kHighMemory) {
                map.push_back({kHighMemory, r.size - kHighMemory, kE820Ram});
            }
        } else {
            map.push_back({r.guest_phys_addr, r.size, kE820Ram});
        }
    }
    map.push_back({kEbdaStart, kBiosEnd - kEbdaStart, kE820Reserved});
    for (const AddressRange& r : reserved) {
        map.push_back({r.addr, r.size, kE820Reserved});
    }
    std::sort(map.begin(), map.end(),
              [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
    return map;
}

BootPlan plan_boot(const KernelImage& kernel, uint64_t initrd_size, const std::string& cmdline,
                   uint64_t low_end) {
    BootPlan plan{};
    plan.kernel_addr = kernel.load_addr;
    plan.kernel_size = kernel.protected_size;
    const uint64_t kernel_end = kernel.load_addr + kernel.init_size;
    if (kernel_end > low_end) {
        throw ConfigError("memory is too small for this kernel: it needs " + mib(kernel_end) +
                          " below the MMIO hole, the guest has " + mib(low_end));
    }
    if (cmdline.size() > kernel.cmdline_max) {
        throw ConfigError("the kernel command line is too long: " + std::to_string(cmdline.size()) +
                          " bytes, this kernel accepts at most " +
                          std::to_string(kernel.cmdline_max));
    }
    if (cmdline.size() + 1 > kCmdlineMax) {
        throw ConfigError("the kernel command line is too long: " + std::to_string(cmdline.size()) +
                          " bytes, at most " + std::to_string(kCmdlineMax - 1));
    }
    if (cmdline.find('\0') != std::string::npos) {
        throw ConfigError("the kernel command line contains a NUL byte");
    }
    plan.cmdline_addr = kCmdlineAddr;
    plan.cmdline_size = cmdline.size() + 1;
    if (initrd_size != 0) {
        // As high as the kernel allows and RAM reaches, page-aligned, above the kernel.
        const uint64_t limit = std::min(low_end, kernel.initrd_addr_max + 1);
        if (initrd_size > limit || ((limit - initrd_size) & ~(kPageSize - 1)) < kernel_end) {
            throw ConfigError("the initrd (" + mib(initrd_size) +
                              ") does not fit in guest memory: " + mib(limit) +
                              " usable, the kernel takes " + mib(kernel_end) +
                              "; give the guest more memory");
        }
        plan.initrd_addr = (limit - initrd_size) & ~(kPageSize - 1);
        plan.initrd_size = initrd_size;
    }
    return plan;
}

boot_params build_zero_page(const KernelImage& kernel, const BootPlan& plan,
                            const std::vector<E820Entry>& e820, uint64_t rsdp_addr) {
    boot_params zp;
    std::memset(&zp, 0, sizeof zp);
    zp.hdr = kernel.header;
    zp.hdr.type_of_loader = kLoaderTypeUndefined;
    zp.hdr.cmd_line_ptr = static_cast<uint32_t>(plan.cmdline_addr);
    zp.ext_cmd_line_ptr = static_cast<uint32_t>(plan.cmdline_addr >> 32);
    zp.hdr.ramdisk_image = static_cast<uint32_t>(plan.initrd_addr);
    zp.ext_ramdisk_image = static_cast<uint32_t>(plan.initrd_addr >> 32);
    zp.hdr.ramdisk_size = static_cast<uint32_t>(plan.initrd_size);
    zp.ext_ramdisk_size = static_cast<uint32_t>(plan.initrd_size >> 32);
    zp.hdr.code32_start = static_cast<uint32_t>(plan.kernel_addr);
    zp.acpi_rsdp_addr = rsdp_addr;
    if (e820.size() > E820_MAX_ENTRIES_ZEROPAGE) {
        throw std::logic_error("too many e820 entries for the zero page");
    }
    zp.e820_entries = static_cast<uint8_t>(e820.size());
    for (size_t i = 0; i < e820.size(); ++i) {
        zp.e820_table[i].addr = e820[i].addr;
        zp.e820_table[i].size = e820[i].size;
        zp.e820_table[i].type = e820[i].type;
    }
    return zp;
}

void load_linux(const GuestMemory& memory, const KernelImage& kernel,
                const std::vector<uint8_t>& initrd, const std::string& cmdline,
                const BootPlan& plan, const boot_params& zero_page) {
    const auto put = [&](uint64_t gpa, const uint8_t* data, size_t size, const char* what) {
        if (!memory.write(gpa, std::span(data, size))) {
            throw std::logic_error(std::string("boot plan puts the ") + what + " outside RAM");
        }
    };
    put(plan.kernel_addr, kernel.bytes.data() + kernel.protected_offset, kernel.protected_size,
        "kernel");
    if (!initrd.empty()) {
        put(plan.initrd_addr, initrd.data(), initrd.size(), "initrd");
    }
    put(plan.cmdline_addr, reinterpret_cast<const uint8_t*>(cmdline.c_str()), cmdline.size() + 1,
        "command line");
    put(kZeroPageAddr, reinterpret_cast<const uint8_t*>(&zero_page), sizeof zero_page, "zero page");
}

}  // namespace conduit::vmm::x86
