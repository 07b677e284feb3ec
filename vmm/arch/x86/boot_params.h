// vmm/arch/x86/boot_params: the zero page, the e820 memory map, and where the kernel,
// command line and initrd go - the parts of the x86-64 Linux boot protocol that decide
// what the kernel finds when it starts.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/arch/x86/bzimage.h"
#include "vmm/memory/guest_memory.h"

namespace conduit::vmm::x86 {

struct E820Entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;  // E820_TYPE_RAM 1, E820_TYPE_RESERVED 2
};
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

struct AddressRange {
    uint64_t addr;
    uint64_t size;
};

// RAM from the guest's memory regions, with the EBDA/BIOS area below 1 MiB reserved, and
// any extra reserved ranges (e.g. the PCI ECAM window), sorted by address.
std::vector<E820Entry> build_e820(const std::vector<MemoryRegion>& ram,
                                  const std::vector<AddressRange>& reserved = {});

struct BootPlan {
    uint64_t kernel_addr;
    uint64_t kernel_size;
    uint64_t initrd_addr;  // 0 without an initrd
    uint64_t initrd_size;
    uint64_t cmdline_addr;
    uint64_t cmdline_size;  // including the terminating NUL
};

// Decides where everything goes in RAM below `low_end`; throws ConfigError when the
// kernel or initrd do not fit or the command line is too long for this kernel.
BootPlan plan_boot(const KernelImage& kernel, uint64_t initrd_size, const std::string& cmdline,
                   uint64_t low_end);

// The zero page for that plan.
boot_params build_zero_page(const KernelImage& kernel, const BootPlan& plan,
                            const std::vector<E820Entry>& e820, uint64_t rsdp_addr);

// Writes kernel, initrd, command line and zero page into guest memory.
void load_linux(const GuestMemory& memory, const KernelImage& kernel,
                const std::vector<uint8_t>& initrd, const std::string& cmdline,
                const BootPlan& plan, const boot_params& zero_page);

}  // namespace conduit::vmm::x86
