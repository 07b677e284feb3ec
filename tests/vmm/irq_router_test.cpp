// The legacy part of the GSI routing table: what KVM_SET_GSI_ROUTING replaces KVM's
// default table with, so it must keep every ISA and PCI line working. The MADT tells
// the guest that ISA IRQ 0 (the PIT) is GSI 2; KVM's in-kernel PIT raises GSI 0, so GSI 0
// must reach IOAPIC pin 2, and GSI 2 (the PICs' cascade) must not exist at all.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <utility>

#include "vmm/kvm/irq_router.h"

using namespace conduit::vmm;

namespace {

// gsi -> pin for one irqchip, failing on anything that is not an irqchip route.
std::map<uint32_t, uint32_t> routes_to(uint32_t chip) {
    std::map<uint32_t, uint32_t> out;
    for (const kvm_irq_routing_entry& e : kvm::legacy_irq_routes()) {
        EXPECT_EQ(e.type, static_cast<uint32_t>(KVM_IRQ_ROUTING_IRQCHIP)) << "gsi " << e.gsi;
        EXPECT_EQ(e.flags, 0u);
        if (e.u.irqchip.irqchip == chip) {
            EXPECT_EQ(out.count(e.gsi), 0u) << "GSI " << e.gsi << " twice on chip " << chip;
            out[e.gsi] = e.u.irqchip.pin;
        }
    }
    return out;
}

}  // namespace

TEST(IrqRouter, MasterPicCarriesIsaIrqs0To7ExceptTheCascade) {
    const auto pic = routes_to(KVM_IRQCHIP_PIC_MASTER);
    const std::map<uint32_t, uint32_t> expected = {{0, 0}, {1, 1}, {3, 3}, {4, 4},
                                                   {5, 5}, {6, 6}, {7, 7}};
    EXPECT_EQ(pic, expected);
}

TEST(IrqRouter, SlavePicCarriesIsaIrqs8To15OnPins0To7) {
    const auto pic = routes_to(KVM_IRQCHIP_PIC_SLAVE);
    std::map<uint32_t, uint32_t> expected;
    for (uint32_t gsi = 8; gsi < 16; ++gsi) {
        expected[gsi] = gsi - 8;
    }
    EXPECT_EQ(pic, expected);
}

TEST(IrqRouter, IoapicHasEveryPinWithIrq0OnPin2) {
    const auto ioapic = routes_to(KVM_IRQCHIP_IOAPIC);
    std::map<uint32_t, uint32_t> expected;
    expected[0] = 2;  // the PIT, as the MADT's interrupt source override says
    for (uint32_t gsi = 1; gsi < kvm::IrqRouter::kLegacyGsis; ++gsi) {
        if (gsi != 2) {
            expected[gsi] = gsi;
        }
    }
    EXPECT_EQ(ioapic, expected);
    EXPECT_EQ(kvm::IrqRouter::kLegacyGsis, 24u) << "one IOAPIC with 24 pins";
}

TEST(IrqRouter, NoGsi2AnywhereAndNothingElse) {
    const auto routes = kvm::legacy_irq_routes();
    std::set<std::pair<uint32_t, uint32_t>> seen;  // (gsi, chip)
    for (const kvm_irq_routing_entry& e : routes) {
        EXPECT_NE(e.gsi, 2u) << "GSI 2 would make the PIT fire twice or hit the cascade";
        EXPECT_LT(e.gsi, kvm::IrqRouter::kLegacyGsis) << "MSI GSIs start after the legacy ones";
        EXPECT_TRUE(seen.insert({e.gsi, e.u.irqchip.irqchip}).second);
    }
    EXPECT_EQ(routes.size(), 7u + 8u + 23u) << "master PIC, slave PIC, IOAPIC";
    // No IOAPIC pin is fed by two GSIs (pin 0 is unused: ISA IRQ 0 moved to pin 2).
    std::set<uint32_t> pins;
    for (const auto& [gsi, pin] : routes_to(KVM_IRQCHIP_IOAPIC)) {
        EXPECT_TRUE(pins.insert(pin).second) << "IOAPIC pin " << pin << " twice";
        EXPECT_NE(pin, 0u);
    }
}
