#include "vmm/arch/x86/cpu_setup.h"

#include <cstring>

#include "vmm/arch/x86/layout.h"

namespace conduit::vmm::x86 {

namespace {
constexpr uint64_t kPresent = 1, kWritable = 2, kPageSize2M = 0x80;
constexpr uint64_t kCr0Pe = 1, kCr0Et = 0x10, kCr0Pg = 0x80000000;
constexpr uint64_t kCr4Pae = 0x20;
constexpr uint64_t kEferLme = 0x100, kEferLma = 0x400;
constexpr size_t kPage = 4096;

void put64(std::vector<uint8_t>& buf, size_t offset, uint64_t v) {
    std::memcpy(buf.data() + offset, &v, sizeof v);
}
}  // namespace

std::vector<uint8_t> identity_page_tables() {
    // kPml4Addr, kPdptAddr, then four directories: six consecutive pages.
    static_assert(kPdptAddr == kPml4Addr + kPage && kPdAddr == kPdptAddr + kPage);
    std::vector<uint8_t> pages(6 * kPage, 0);
    put64(pages, 0, kPdptAddr | kPresent | kWritable);
    for (uint64_t gib = 0; gib < 4; ++gib) {
        const uint64_t pd = kPdAddr + gib * kPage;
        put64(pages, kPage + gib * 8, pd | kPresent | kWritable);
        for (uint64_t i = 0; i < 512; ++i) {
            const uint64_t phys = (gib << 30) + (i << 21);
            put64(pages, 2 * kPage + gib * kPage + i * 8,
                  phys | kPresent | kWritable | kPageSize2M);
        }
    }
    return pages;
}

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
    return ((uint64_t{base} & 0xff000000) << 32) | ((uint64_t{flags} & 0xf0ff) << 40) |
           ((uint64_t{limit} & 0x000f0000) << 32) | ((uint64_t{base} & 0x00ffffff) << 16) |
           (uint64_t{limit} & 0x0000ffff);
}

std::array<uint64_t, 5> boot_gdt() {
    return {
        0,
        0,
        gdt_entry(0xa09b, 0, 0xfffff),  // code: present, ring 0, execute/read, L=1, 4 KiB units
        gdt_entry(0xc093, 0, 0xfffff),  // data: present, ring 0, read/write, 32-bit, 4 KiB
        gdt_entry(0x808b, 0, 0xfffff),  // TSS: present, busy 64-bit TSS (KVM needs a valid TR)
    };
}

kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector) {
    kvm_segment s{};
    s.base = static_cast<uint64_t>(((entry >> 16) & 0xffffff) | ((entry >> 32) & 0xff000000));
    const uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | ((entry >> 32) & 0xf0000));
    s.g = (entry >> 55) & 1;
    s.limit = s.g ? (limit << 12) | 0xfff : limit;
    s.selector = selector;
    s.type = (entry >> 40) & 0xf;
    s.present = (entry >> 47) & 1;
    s.dpl = (entry >> 45) & 3;
    s.db = (entry >> 54) & 1;
    s.s = (entry >> 44) & 1;
    s.l = (entry >> 53) & 1;
    s.avl = (entry >> 52) & 1;
    s.unusable = s.present ? 0 : 1;
    return s;
}

void set_boot_sregs(kvm_sregs& sregs) {
    const auto gdt = boot_gdt();
    sregs.gdt.base = kGdtAddr;
    sregs.gdt.limit = static_cast<uint16_t>(sizeof(gdt) - 1);
    sregs.idt.base = kIdtAddr;
    sregs.idt.limit = 7;
    sregs.cs = segment_from_gdt(gdt[kBootCs / 8], kBootCs);
    const kvm_segment data = segment_from_gdt(gdt[kBootDs / 8], kBootDs);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = segment_from_gdt(gdt[kBootTss / 8], kBootTss);
    sregs.ldt = {};
    sregs.ldt.unusable = 1;
    sregs.cr3 = kPml4Addr;
    sregs.cr4 |= kCr4Pae;
    sregs.cr0 |= kCr0Pe | kCr0Et | kCr0Pg;
    sregs.efer |= kEferLme | kEferLma;
}

kvm_regs boot_regs(uint64_t entry, uint64_t zero_page) {
    kvm_regs regs{};
    regs.rflags = 0x2;  // bit 1 is reserved and always set; IF clear
    regs.rip = entry;
    regs.rsi = zero_page;
    regs.rsp = kBootStackTop;
    regs.rbp = kBootStackTop;
    return regs;
}

kvm_fpu boot_fpu() {
    kvm_fpu fpu{};
    fpu.fcw = 0x37f;     // x87 default: all exceptions masked, extended precision
    fpu.mxcsr = 0x1f80;  // SSE default: all exceptions masked
    return fpu;
}

}  // namespace conduit::vmm::x86
