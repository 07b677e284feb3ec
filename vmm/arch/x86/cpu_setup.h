// vmm/arch/x86/cpu_setup: the state the boot vCPU starts in for the 64-bit boot protocol:
// long mode, paging on with an identity map of the first 4 GiB, flat segments from a
// GDT with __BOOT_CS (0x10) and __BOOT_DS (0x18), interrupts off, RSI at the zero page.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <vector>

namespace conduit::vmm::x86 {

inline constexpr uint16_t kBootCs = 0x10;
inline constexpr uint16_t kBootDs = 0x18;
inline constexpr uint16_t kBootTss = 0x20;
inline constexpr uint64_t kIdentityMapSize = 4ull << 30;

// PML4, PDPT and four page directories of 2 MiB pages, laid out to be copied to kPml4Addr.
std::vector<uint8_t> identity_page_tables();

// Null, unused, code (64-bit), data, TSS.
std::array<uint64_t, 5> boot_gdt();

// Encodes a GDT entry from its base, limit and flags (the access byte in bits 0-7 and
// the granularity nibble in bits 12-15 of `flags`).
uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit);
// Expands a GDT entry into KVM's segment form.
kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector);

void set_boot_sregs(kvm_sregs& sregs);
kvm_regs boot_regs(uint64_t entry, uint64_t zero_page);
kvm_fpu boot_fpu();

}  // namespace conduit::vmm::x86
