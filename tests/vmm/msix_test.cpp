// MSI-X: the table and PBA as the guest accesses them, masking per entry and per function,
// the enable bit, and delivery through KVM's GSI routes and irqfds (FakeKvmIrq models
// those: KVM cannot run in unit tests).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <set>

#include "tests/vmm/fake_kvm_irq.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/pci/msix.h"

using namespace conduit::vmm;
using conduit::vmm::pci::Msix;
using conduit::vmm::testing::FakeKvmIrq;
using conduit::vmm::testing::signal_eventfd;

namespace {

constexpr uint64_t kAddress = 0xfee0'0000;  // x86 MSI: local APIC 0
constexpr uint16_t kEnable = Msix::kControlEnable;
constexpr uint16_t kFunctionMask = Msix::kControlFunctionMask;

// Guest accesses, as Linux makes them: readl/writel (and 64-bit ones where a driver
// chooses to).
uint64_t table_rd(Msix& m, uint64_t offset, size_t size) {
    std::array<uint8_t, 8> b{};
    m.table_read(offset, std::span(b.data(), size));
    return load_le(std::span<const uint8_t>(b.data(), size));
}
void table_wr(Msix& m, uint64_t offset, size_t size, uint64_t value) {
    std::array<uint8_t, 8> b{};
    store_le(std::span(b.data(), size), value);
    m.table_write(offset, std::span<const uint8_t>(b.data(), size));
}
uint64_t pba_rd(Msix& m, uint64_t offset, size_t size) {
    std::array<uint8_t, 8> b{};
    m.pba_read(offset, std::span(b.data(), size));
    return load_le(std::span<const uint8_t>(b.data(), size));
}

uint64_t entry(unsigned vector, unsigned word) {
    return vector * Msix::kEntrySize + 4 * word;
}
// Linux's __pci_write_msi_msg: address low, address high, data, each a dword.
void program(Msix& m, unsigned vector, uint64_t address, uint32_t data) {
    table_wr(m, entry(vector, 0), 4, static_cast<uint32_t>(address));
    table_wr(m, entry(vector, 1), 4, address >> 32);
    table_wr(m, entry(vector, 2), 4, data);
}
void set_masked(Msix& m, unsigned vector, bool masked) {
    table_wr(m, entry(vector, 3), 4, masked ? 1 : 0);
}

std::vector<uint8_t> dump_table(Msix& m) {
    std::vector<uint8_t> out(m.table_size());
    for (size_t off = 0; off < out.size(); off += 4) {
        m.table_read(off, std::span(out.data() + off, 4));
    }
    return out;
}

}  // namespace

TEST(Msix, CapabilityDescribesTableSizeTableAndPba) {
    FakeKvmIrq irq;
    Msix m(5, irq);
    const std::vector<uint8_t> cap = m.capability(2, 0x4000, 0x6000);
    ASSERT_EQ(cap.size(), 10u) << "message control, table offset/BIR, PBA offset/BIR";
    EXPECT_EQ(load_le(std::span(cap.data(), 2)), 4u) << "table size is encoded as N-1";
    EXPECT_EQ(load_le(std::span(cap.data() + 2, 4)), 0x4002u) << "table at 0x4000 in BAR 2";
    EXPECT_EQ(load_le(std::span(cap.data() + 6, 4)), 0x6002u) << "PBA at 0x6000 in BAR 2";
    EXPECT_EQ(m.vectors(), 5u);
    EXPECT_EQ(m.table_size(), 80u);
    EXPECT_EQ(m.pba_size(), 8u) << "the PBA is whole qwords";
    EXPECT_EQ(Msix(64, irq).pba_size(), 8u);
    EXPECT_EQ(Msix(65, irq).pba_size(), 16u);
    EXPECT_EQ(m.control_bits(), 0) << "disabled and not function-masked after reset";
}

TEST(Msix, EveryVectorHasItsOwnEventfdAndGsi) {
    FakeKvmIrq irq;
    Msix m(4, irq);
    EXPECT_EQ(irq.allocated(), 4u);
    std::set<int> fds;
    for (unsigned v = 0; v < 4; ++v) {
        EXPECT_GE(m.eventfd(v), 0);
        fds.insert(m.eventfd(v));
    }
    EXPECT_EQ(fds.size(), 4u);
    EXPECT_THROW(m.eventfd(4), std::out_of_range);
    EXPECT_TRUE(irq.routes().empty()) << "nothing is routed before the guest programs it";
    EXPECT_EQ(irq.bound_count(), 0u);
}

TEST(Msix, RefusesImpossibleVectorCounts) {
    FakeKvmIrq irq;
    EXPECT_THROW(Msix(0, irq), std::logic_error);
    EXPECT_THROW(Msix(2049, irq), std::logic_error) << "the table size field has 11 bits";
}

TEST(Msix, EntriesComeOutOfResetMaskedAndZero) {
    FakeKvmIrq irq;
    Msix m(3, irq);
    for (unsigned v = 0; v < 3; ++v) {
        EXPECT_EQ(table_rd(m, entry(v, 0), 4), 0u);
        EXPECT_EQ(table_rd(m, entry(v, 1), 4), 0u);
        EXPECT_EQ(table_rd(m, entry(v, 2), 4), 0u);
        EXPECT_EQ(table_rd(m, entry(v, 3), 4), Msix::kEntryMasked) << "vector " << v;
    }
}

TEST(Msix, DwordAndQwordTableAccesses) {
    FakeKvmIrq irq;
    Msix m(3, irq);
    program(m, 0, 0x1'fee0'1000, 0x4041);
    EXPECT_EQ(table_rd(m, entry(0, 0), 4), 0xfee0'1000u);
    EXPECT_EQ(table_rd(m, entry(0, 1), 4), 0x1u);
    EXPECT_EQ(table_rd(m, entry(0, 2), 4), 0x4041u);
    EXPECT_EQ(table_rd(m, entry(0, 0), 8), 0x1'fee0'1000u) << "qword: the whole address";
    EXPECT_EQ(table_rd(m, entry(0, 2), 8), 0x1'0000'4041u) << "qword: data, then control";

    table_wr(m, entry(1, 0), 8, 0x2'fee0'2000);
    table_wr(m, entry(1, 2), 8, 0x0000'0000'0000'0055);  // data 0x55, control 0: unmasked
    EXPECT_EQ(table_rd(m, entry(1, 0), 4), 0xfee0'2000u);
    EXPECT_EQ(table_rd(m, entry(1, 1), 4), 0x2u);
    EXPECT_EQ(table_rd(m, entry(1, 2), 4), 0x55u);
    EXPECT_EQ(table_rd(m, entry(1, 3), 4), 0u);
    EXPECT_EQ(table_rd(m, entry(2, 3), 4), Msix::kEntryMasked) << "the next entry untouched";

    // Only the mask bit of vector control is implemented; the address is dword aligned.
    table_wr(m, entry(2, 3), 4, 0xffff'ffff);
    EXPECT_EQ(table_rd(m, entry(2, 3), 4), Msix::kEntryMasked);
    table_wr(m, entry(2, 0), 4, 0xfee0'0003);
    EXPECT_EQ(table_rd(m, entry(2, 0), 4), 0xfee0'0000u);
}

TEST(Msix, MisalignedOddSizedAndOutOfRangeAccessesAreRejected) {
    FakeKvmIrq irq;
    Msix m(2, irq);
    program(m, 0, kAddress, 0x30);
    program(m, 1, kAddress, 0x31);
    const std::vector<uint8_t> before = dump_table(m);

    struct Access {
        uint64_t offset;
        size_t size;
    };
    const Access bad[] = {
        {2, 4},                   // dword not dword aligned
        {4, 8},                   // qword not qword aligned
        {12, 8},                  // qword straddling two entries
        {0, 1},                   // byte
        {8, 2},                   // word
        {m.table_size(), 4},      // just past the table
        {m.table_size() - 4, 8},  // running off its end
        {~uint64_t{0} - 3, 4},    // an offset that would overflow
        {1u << 20, 4},            // far away
    };
    for (const Access& a : bad) {
        EXPECT_EQ(table_rd(m, a.offset, a.size), ~uint64_t{0} >> (64 - 8 * a.size))
            << "read of " << a.size << " at " << a.offset << " reads all ones";
        table_wr(m, a.offset, a.size, 0);
        EXPECT_EQ(dump_table(m), before) << "write of " << a.size << " at " << a.offset;
    }
    EXPECT_EQ(irq.route_updates(), 0u);
    EXPECT_EQ(irq.binds(), 0u);
}

TEST(Msix, BindsOnlyWhenEnabledUnmaskedAndNotFunctionMasked) {
    for (int enabled = 0; enabled < 2; ++enabled) {
        for (int function_masked = 0; function_masked < 2; ++function_masked) {
            for (int entry_masked = 0; entry_masked < 2; ++entry_masked) {
                for (int control_first = 0; control_first < 2; ++control_first) {
                    SCOPED_TRACE(::testing::Message()
                                 << "enabled " << enabled << " function masked " << function_masked
                                 << " entry masked " << entry_masked
                                 << (control_first ? ", control first" : ", entry first"));
                    FakeKvmIrq irq;
                    Msix m(2, irq);
                    const uint16_t control = static_cast<uint16_t>(
                        (enabled ? kEnable : 0) | (function_masked ? kFunctionMask : 0));
                    if (control_first) {
                        m.set_control(control);
                    }
                    program(m, 0, kAddress, 0x40);
                    set_masked(m, 0, entry_masked);
                    if (!control_first) {
                        m.set_control(control);
                    }
                    const bool expect = enabled && !function_masked && !entry_masked;
                    EXPECT_EQ(m.deliverable(0), expect);
                    EXPECT_EQ(irq.bound(m.eventfd(0)), expect);
                    EXPECT_FALSE(irq.bound(m.eventfd(1))) << "vector 1 is still masked";
                    EXPECT_FALSE(m.deliverable(1));
                    if (expect) {
                        EXPECT_EQ(irq.routes().at(FakeKvmIrq::kFirstMsiGsi),
                                  (FakeKvmIrq::Route{kAddress, 0x40}))
                            << "routed before it was bound";
                    }
                    EXPECT_EQ(m.control_bits(), control);
                }
            }
        }
    }
}

TEST(Msix, EveryKindOfMaskUnbindsAndClearingItBindsAgain) {
    FakeKvmIrq irq;
    Msix m(2, irq);
    const int fd = m.eventfd(0);
    m.set_control(kEnable);
    program(m, 0, kAddress, 0x41);
    set_masked(m, 0, false);
    ASSERT_TRUE(irq.bound(fd));

    set_masked(m, 0, true);
    EXPECT_FALSE(irq.bound(fd)) << "entry mask";
    set_masked(m, 0, false);
    EXPECT_TRUE(irq.bound(fd));

    m.set_control(kEnable | kFunctionMask);
    EXPECT_FALSE(irq.bound(fd)) << "function mask";
    m.set_control(kEnable);
    EXPECT_TRUE(irq.bound(fd));

    m.set_control(0);
    EXPECT_FALSE(irq.bound(fd)) << "MSI-X disabled";
    m.set_control(kEnable);
    EXPECT_TRUE(irq.bound(fd));

    // Rewriting an unmasked entry or the control word keeps one binding (KVM would say
    // EBUSY to a second one; FakeKvmIrq fails the test).
    program(m, 0, kAddress, 0x41);
    m.set_control(kEnable);
    EXPECT_EQ(irq.binds(), 4u);
    EXPECT_EQ(irq.unbinds(), 3u);
}

TEST(Msix, RouteFollowsAddressAndDataAndIsSetOnlyWhenDeliverable) {
    FakeKvmIrq irq;
    Msix m(2, irq);
    const uint32_t gsi = FakeKvmIrq::kFirstMsiGsi;
    m.set_control(kEnable);
    program(m, 0, kAddress, 0x41);
    EXPECT_EQ(irq.routes().count(gsi), 0u) << "a masked entry is not routed";

    set_masked(m, 0, false);
    EXPECT_EQ(irq.routes().at(gsi), (FakeKvmIrq::Route{kAddress, 0x41}));

    // Changed while unmasked (undefined for a guest by the PCI spec, but never stale).
    table_wr(m, entry(0, 2), 4, 0x42);
    EXPECT_EQ(irq.routes().at(gsi), (FakeKvmIrq::Route{kAddress, 0x42}));
    table_wr(m, entry(0, 0), 4, 0xfee0'3000);
    EXPECT_EQ(irq.routes().at(gsi), (FakeKvmIrq::Route{0xfee0'3000, 0x42}));

    // Linux's way (mask, write, unmask): the new route is in place before the binding.
    set_masked(m, 0, true);
    program(m, 0, 0xfee0'1000, 0x43);
    EXPECT_EQ(irq.routes().at(gsi), (FakeKvmIrq::Route{0xfee0'3000, 0x42}))
        << "untouched while masked";
    set_masked(m, 0, false);
    EXPECT_EQ(irq.routes().at(gsi), (FakeKvmIrq::Route{0xfee0'1000, 0x43}));

    m.trigger(0);
    EXPECT_EQ(irq.deliver(), (std::vector<FakeKvmIrq::Interrupt>{{gsi, {0xfee0'1000, 0x43}}}));
    EXPECT_EQ(irq.routes().count(gsi + 1), 0u) << "vector 1 never routed";
}

TEST(Msix, BackendWritesToAnUnmaskedVectorAreDeliveredByKvm) {
    FakeKvmIrq irq;
    Msix m(3, irq);
    m.set_control(kEnable);
    for (unsigned v = 0; v < 3; ++v) {
        program(m, v, kAddress, 0x50 + v);
        set_masked(m, v, false);
    }
    signal_eventfd(m.eventfd(2));  // what a vhost-user backend does with its call fd
    m.trigger(0);                  // what the VMM does for a config change
    auto got = irq.deliver();
    std::sort(got.begin(), got.end(), [](auto& a, auto& b) { return a.gsi < b.gsi; });
    const uint32_t gsi = FakeKvmIrq::kFirstMsiGsi;
    EXPECT_EQ(got, (std::vector<FakeKvmIrq::Interrupt>{{gsi, {kAddress, 0x50}},
                                                       {gsi + 2, {kAddress, 0x52}}}));
    EXPECT_EQ(pba_rd(m, 0, 8), 0u) << "nothing pending: KVM took it";
}

TEST(Msix, MaskedVectorIsPendingAndUnmaskingDeliversIt) {
    FakeKvmIrq irq;
    Msix m(4, irq);
    const uint32_t gsi = FakeKvmIrq::kFirstMsiGsi;
    m.set_control(kEnable);
    for (unsigned v = 0; v < 4; ++v) {
        program(m, v, kAddress, 0x60 + v);
    }
    set_masked(m, 0, false);
    EXPECT_EQ(pba_rd(m, 0, 8), 0u);

    m.trigger(1);                  // the VMM
    signal_eventfd(m.eventfd(2));  // a backend
    signal_eventfd(m.eventfd(2));  // twice: still one pending bit, one interrupt
    EXPECT_TRUE(irq.deliver().empty()) << "masked vectors do not interrupt";
    EXPECT_EQ(pba_rd(m, 0, 8), 0b0110u);
    EXPECT_EQ(pba_rd(m, 0, 8), 0b0110u) << "reading the PBA does not clear it";
    EXPECT_EQ(pba_rd(m, 0, 1), 0b0110u) << "byte access";

    set_masked(m, 1, false);  // binds with a count: KVM injects at once
    EXPECT_EQ(irq.deliver(), (std::vector<FakeKvmIrq::Interrupt>{{gsi + 1, {kAddress, 0x61}}}));
    EXPECT_EQ(pba_rd(m, 0, 8), 0b0100u);

    set_masked(m, 2, false);
    EXPECT_EQ(irq.deliver(), (std::vector<FakeKvmIrq::Interrupt>{{gsi + 2, {kAddress, 0x62}}}))
        << "two writes while masked are one interrupt";
    EXPECT_EQ(pba_rd(m, 0, 8), 0u);
    EXPECT_TRUE(irq.deliver().empty());
}

TEST(Msix, FunctionMaskAndDisableHoldInterruptsPending) {
    FakeKvmIrq irq;
    Msix m(2, irq);
    const uint32_t gsi = FakeKvmIrq::kFirstMsiGsi;
    program(m, 0, kAddress, 0x70);
    set_masked(m, 0, false);
    m.set_control(kEnable | kFunctionMask);
    m.trigger(0);
    EXPECT_TRUE(irq.deliver().empty());
    EXPECT_EQ(pba_rd(m, 0, 8), 1u);
    m.set_control(kEnable);
    EXPECT_EQ(irq.deliver(), (std::vector<FakeKvmIrq::Interrupt>{{gsi, {kAddress, 0x70}}}));

    m.set_control(0);
    m.trigger(0);
    EXPECT_TRUE(irq.deliver().empty()) << "MSI-X disabled";
    EXPECT_EQ(pba_rd(m, 0, 8), 1u);
    m.set_control(kEnable);
    EXPECT_EQ(irq.deliver().size(), 1u);
}

TEST(Msix, PbaBitsMapToVectorsAtByteAndQwordGranularity) {
    FakeKvmIrq irq;
    Msix m(70, irq);
    ASSERT_EQ(m.pba_size(), 16u);
    m.set_control(kEnable);  // every entry still masked
    for (unsigned v : {0u, 9u, 64u, 69u}) {
        m.trigger(v);
    }
    EXPECT_EQ(pba_rd(m, 0, 8), (1ull << 0) | (1ull << 9));
    EXPECT_EQ(pba_rd(m, 8, 8), (1ull << 0) | (1ull << 5));
    EXPECT_EQ(pba_rd(m, 1, 1), 1u << 1) << "vector 9 is bit 1 of byte 1";
    EXPECT_EQ(pba_rd(m, 8, 1), 0x21u);
    EXPECT_EQ(pba_rd(m, 8, 4), 0x21u);
    EXPECT_EQ(pba_rd(m, 12, 4), 0u) << "bits past the last vector read zero";
    EXPECT_EQ(pba_rd(m, 16, 8), 0u) << "past the PBA";
    EXPECT_EQ(pba_rd(m, uint64_t{1} << 61, 8), 0u) << "an offset whose bit number wraps to 0";
    EXPECT_EQ(pba_rd(m, ~uint64_t{0}, 1), 0u);
}

TEST(Msix, DestructionUnbindsWhatIsBound) {
    FakeKvmIrq irq;
    {
        Msix m(3, irq);
        m.set_control(kEnable);
        program(m, 0, kAddress, 1);
        program(m, 2, kAddress, 2);
        set_masked(m, 0, false);
        set_masked(m, 2, false);
        EXPECT_EQ(irq.bound_count(), 2u);
    }
    EXPECT_EQ(irq.bound_count(), 0u);
    EXPECT_EQ(irq.unbinds(), 2u);
}
