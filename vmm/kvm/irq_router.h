// vmm/kvm/irq_router: message-signalled interrupts delivered by KVM itself.
//
// Each MSI-X vector gets a GSI routed to its (address, data) and an eventfd bound to that
// GSI with KVM_IRQFD: whoever writes the eventfd - a vhost-user backend's "call", or the
// VMM - makes KVM inject the interrupt without the VMM in the path.
//
// KVM_SET_GSI_ROUTING replaces the whole table, so the router keeps it: the legacy ISA
// and PCI lines (PIC and IOAPIC pins, with IRQ 0 on IOAPIC pin 2 as the MADT says), then
// one MSI route per allocated GSI. Control path only; serialised internally.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "vmm/devices/pci/msix.h"
#include "vmm/kvm/kvm.h"

namespace conduit::vmm::kvm {

class IrqRouter final : public pci::MsiController {
  public:
    static constexpr uint32_t kLegacyGsis = 24;

    explicit IrqRouter(const Vm& vm);

    // A GSI for one MSI vector; not routed until set_msi().
    uint32_t allocate_msi_gsi() override;
    void set_msi(uint32_t gsi, uint64_t address, uint32_t data) override;

    // Binds (or unbinds) an eventfd to a GSI. While unbound, writes to the eventfd
    // accumulate; binding again with a non-zero count injects at once (the pending bit).
    void bind(int eventfd, uint32_t gsi) override;
    void unbind(int eventfd, uint32_t gsi) override;

    // The table as last committed, for tests and diagnostics.
    std::vector<kvm_irq_routing_entry> table() const;

  private:
    void commit_locked();

    const Vm& vm_;
    mutable std::mutex mutex_;
    std::vector<kvm_irq_routing_entry> legacy_;
    std::vector<kvm_irq_routing_entry> msi_;  // index = gsi - kLegacyGsis
    std::vector<bool> msi_routed_;
};

// The legacy part of the table (exposed for tests).
std::vector<kvm_irq_routing_entry> legacy_irq_routes();

}  // namespace conduit::vmm::kvm
