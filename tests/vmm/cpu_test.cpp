// Boot vCPU state: identity page tables, GDT and segments, registers, and CPUID topology.
#include <gtest/gtest.h>

#include <cstring>

#include "vmm/arch/x86/cpu_setup.h"
#include "vmm/arch/x86/cpuid.h"
#include "vmm/arch/x86/layout.h"

using namespace conduit::vmm::x86;

namespace {
uint64_t entry(const std::vector<uint8_t>& pages, uint64_t gpa) {
    uint64_t v;
    std::memcpy(&v, pages.data() + (gpa - kPml4Addr), 8);
    return v;
}

// Walks the tables like the MMU does for a 2 MiB page.
uint64_t translate(const std::vector<uint8_t>& pages, uint64_t va) {
    const uint64_t pml4e = entry(pages, kPml4Addr + ((va >> 39) & 511) * 8);
    EXPECT_TRUE(pml4e & 1);
    const uint64_t pdpte = entry(pages, (pml4e & ~0xfffull) + ((va >> 30) & 511) * 8);
    EXPECT_TRUE(pdpte & 1);
    const uint64_t pde = entry(pages, (pdpte & ~0xfffull) + ((va >> 21) & 511) * 8);
    EXPECT_TRUE(pde & 1);
    EXPECT_TRUE(pde & 0x80) << "2 MiB page";
    return (pde & ~0x1fffffull) + (va & 0x1fffff);
}

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index = 0, uint32_t eax = 0, uint32_t ebx = 0,
                      uint32_t ecx = 0, uint32_t edx = 0) {
    kvm_cpuid_entry2 e{};
    e.function = function;
    e.index = index;
    e.eax = eax;
    e.ebx = ebx;
    e.ecx = ecx;
    e.edx = edx;
    return e;
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& v, uint32_t f, uint32_t i = 0) {
    for (const auto& e : v) {
        if (e.function == f && e.index == i) {
            return &e;
        }
    }
    return nullptr;
}
}  // namespace

TEST(PageTables, IdentityMapTheFirstFourGiB) {
    const auto pages = identity_page_tables();
    ASSERT_EQ(pages.size(), 6u * 4096);
    for (uint64_t va : {0ull, 0x7000ull, 0x1000000ull, 0x3fffffffull, 0x40000000ull, 0xbfffffffull,
                        0xfee00000ull, 0xffffffffull}) {
        EXPECT_EQ(translate(pages, va), va) << std::hex << va;
    }
    EXPECT_EQ(entry(pages, kPml4Addr + 8), 0u) << "nothing above 512 GiB";
    EXPECT_EQ(entry(pages, kPdptAddr + 4 * 8), 0u) << "nothing above 4 GiB";
}

TEST(Gdt, BootSegmentsAreFlatAndLongMode) {
    const auto gdt = boot_gdt();
    const kvm_segment cs = segment_from_gdt(gdt[kBootCs / 8], kBootCs);
    EXPECT_EQ(cs.base, 0u);
    EXPECT_EQ(cs.limit, 0xffffffffu);
    EXPECT_EQ(cs.l, 1);
    EXPECT_EQ(cs.db, 0) << "L=1 requires D=0";
    EXPECT_EQ(cs.type, 0xb);
    EXPECT_EQ(cs.present, 1);
    EXPECT_EQ(cs.s, 1);
    const kvm_segment ds = segment_from_gdt(gdt[kBootDs / 8], kBootDs);
    EXPECT_EQ(ds.type, 0x3);
    EXPECT_EQ(ds.db, 1);
    EXPECT_EQ(ds.limit, 0xffffffffu);
    const kvm_segment tr = segment_from_gdt(gdt[kBootTss / 8], kBootTss);
    EXPECT_EQ(tr.type, 0xb) << "busy TSS";
    EXPECT_EQ(tr.s, 0);
    EXPECT_EQ(gdt[0], 0u);
    EXPECT_EQ(gdt_entry(0xa09b, 0x12345678, 0xabcde),
              0x12aa9b345678bcdeull);  // base, limit and flags in their split fields
}

TEST(BootState, LongModeRegisters) {
    kvm_sregs s{};
    set_boot_sregs(s);
    EXPECT_EQ(s.cr3, kPml4Addr);
    EXPECT_TRUE(s.cr0 & 0x80000000) << "PG";
    EXPECT_TRUE(s.cr0 & 1) << "PE";
    EXPECT_TRUE(s.cr4 & 0x20) << "PAE";
    EXPECT_TRUE(s.efer & 0x100) << "LME";
    EXPECT_TRUE(s.efer & 0x400) << "LMA";
    EXPECT_EQ(s.cs.selector, kBootCs);
    EXPECT_EQ(s.ds.selector, kBootDs);
    EXPECT_EQ(s.gdt.base, kGdtAddr);
    const kvm_regs r = boot_regs(0x1000200, kZeroPageAddr);
    EXPECT_EQ(r.rip, 0x1000200u);
    EXPECT_EQ(r.rsi, kZeroPageAddr);
    EXPECT_EQ(r.rflags, 2u) << "interrupts off";
    const kvm_fpu f = boot_fpu();
    EXPECT_EQ(f.fcw, 0x37f);
    EXPECT_EQ(f.mxcsr, 0x1f80u);
}

class CpuidTopology : public ::testing::TestWithParam<unsigned> {};

TEST_P(CpuidTopology, EveryVcpuHasItsApicIdAndTheCoreCount) {
    const unsigned cpus = GetParam();
    const std::vector<kvm_cpuid_entry2> supported = {
        leaf(0, 0, 0xd),
        leaf(1, 0, 0x00a20f10, 0x00000800, 0x7ed8320b, 0x178bfbff),
        leaf(4, 0, 0x121),
        leaf(4, 1, 0x163),
        leaf(4, 2, 0x3c3),
        leaf(0xb, 0, 1, 2, 0x100, 9),
        leaf(0xb, 1, 4, 8, 0x201, 9),
        leaf(0x80000001, 0, 0, 0, 0x75c237ff),
        leaf(0x80000008, 0, 0x3030, 0, 0x700f),
        leaf(0x8000001e, 0, 9, 0x100, 0x300)};
    for (unsigned v = 0; v < cpus; ++v) {
        const auto out = cpuid_for_vcpu(supported, v, cpus, {.tsc_deadline = true});
        const auto* l1 = find(out, 1);
        ASSERT_NE(l1, nullptr);
        EXPECT_EQ(l1->ebx >> 24, v) << "initial APIC ID";
        EXPECT_EQ((l1->ebx >> 16) & 0xff, cpus) << "logical processors";
        EXPECT_EQ((l1->edx >> 28) & 1, cpus > 1 ? 1u : 0u) << "HTT";
        EXPECT_TRUE(l1->ecx & (1u << 31)) << "hypervisor";
        EXPECT_TRUE(l1->ecx & (1u << 24)) << "TSC deadline";
        EXPECT_EQ(l1->eax, 0x00a20f10u) << "family/model untouched";
        // Leaf 0xB: thread level then core level, x2APIC ID in EDX; old subleaves replaced.
        const auto* smt = find(out, 0xb, 0);
        const auto* core = find(out, 0xb, 1);
        const auto* end = find(out, 0xb, 2);
        ASSERT_TRUE(smt && core && end);
        EXPECT_EQ(smt->ebx, 1u);
        EXPECT_EQ((smt->ecx >> 8) & 0xff, 1u);
        EXPECT_EQ(core->ebx, cpus);
        EXPECT_EQ(core->eax, id_bits(cpus));
        EXPECT_EQ((core->ecx >> 8) & 0xff, 2u);
        EXPECT_EQ((end->ecx >> 8) & 0xff, 0u);
        EXPECT_EQ(smt->edx, v);
        EXPECT_EQ(core->edx, v);
        EXPECT_EQ(
            std::count_if(out.begin(), out.end(), [](const auto& e) { return e.function == 0xb; }),
            3);
        // Leaf 4: cores per package; the last-level cache shared by all.
        EXPECT_EQ(find(out, 4, 0)->eax >> 26, cpus - 1);
        EXPECT_EQ((find(out, 4, 2)->eax >> 14) & 0xfff, cpus - 1);
        EXPECT_EQ((find(out, 4, 0)->eax >> 14) & 0xfff, 0u);
        // AMD leaves.
        EXPECT_EQ(find(out, 0x80000008)->ecx & 0xff, cpus - 1);
        EXPECT_EQ((find(out, 0x80000008)->ecx >> 12) & 0xf, id_bits(cpus));
        EXPECT_EQ(find(out, 0x80000001)->ecx & 2, cpus > 1 ? 2u : 0u) << "CmpLegacy";
        EXPECT_EQ(find(out, 0x8000001e)->eax, v);
        EXPECT_EQ(find(out, 0x8000001e)->ebx, v);
    }
}

INSTANTIATE_TEST_SUITE_P(Cpus, CpuidTopology, ::testing::Values(1u, 2u, 4u, 6u));

TEST(Cpuid, TscDeadlineOnlyWhenKvmEmulatesIt) {
    const auto out = cpuid_for_vcpu({leaf(1)}, 0, 1, {.tsc_deadline = false});
    EXPECT_FALSE(out[0].ecx & (1u << 24));
}

TEST(Cpuid, IdBits) {
    EXPECT_EQ(id_bits(1), 0u);
    EXPECT_EQ(id_bits(2), 1u);
    EXPECT_EQ(id_bits(3), 2u);
    EXPECT_EQ(id_bits(4), 2u);
    EXPECT_EQ(id_bits(5), 3u);
}
