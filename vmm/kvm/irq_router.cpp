#include "vmm/kvm/irq_router.h"

#include <sys/ioctl.h>

#include <cstring>
#include <memory>

#include "vmm/kvm/kvm_abi.h"
#include "vmm/util/error.h"

namespace conduit::vmm::kvm {

namespace {
kvm_irq_routing_entry irqchip_route(uint32_t gsi, uint32_t chip, uint32_t pin) {
    kvm_irq_routing_entry e{};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_IRQCHIP;
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    return e;
}
}  // namespace

std::vector<kvm_irq_routing_entry> legacy_irq_routes() {
    std::vector<kvm_irq_routing_entry> routes;
    for (uint32_t gsi = 0; gsi < 16; ++gsi) {
        if (gsi == 2) {
            continue;  // the PICs' cascade line
        }
        routes.push_back(
            irqchip_route(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8));
    }
    for (uint32_t gsi = 0; gsi < IrqRouter::kLegacyGsis; ++gsi) {
        if (gsi == 2) {
            continue;
        }
        // ISA IRQ 0 (the PIT) is wired to IOAPIC pin 2, as the MADT override tells the guest.
        routes.push_back(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi));
    }
    return routes;
}

IrqRouter::IrqRouter(const Vm& vm) : vm_(vm), legacy_(legacy_irq_routes()) {
    std::lock_guard lock(mutex_);
    commit_locked();
}

uint32_t IrqRouter::allocate_msi_gsi() {
    std::lock_guard lock(mutex_);
    const uint32_t gsi = kLegacyGsis + static_cast<uint32_t>(msi_.size());
    kvm_irq_routing_entry e{};
    e.gsi = gsi;
    e.type = KVM_IRQ_ROUTING_MSI;
    msi_.push_back(e);
    msi_routed_.push_back(false);
    return gsi;
}

void IrqRouter::set_msi(uint32_t gsi, uint64_t address, uint32_t data) {
    std::lock_guard lock(mutex_);
    auto& e = msi_.at(gsi - kLegacyGsis);
    if (msi_routed_[gsi - kLegacyGsis] && e.u.msi.address_lo == static_cast<uint32_t>(address) &&
        e.u.msi.address_hi == static_cast<uint32_t>(address >> 32) && e.u.msi.data == data) {
        return;  // unchanged: no need to rebuild KVM's table
    }
    e.u.msi.address_lo = static_cast<uint32_t>(address);
    e.u.msi.address_hi = static_cast<uint32_t>(address >> 32);
    e.u.msi.data = data;
    msi_routed_[gsi - kLegacyGsis] = true;
    commit_locked();
}

void IrqRouter::commit_locked() {
    std::vector<kvm_irq_routing_entry> all = legacy_;
    for (size_t i = 0; i < msi_.size(); ++i) {
        if (msi_routed_[i]) {
            all.push_back(msi_[i]);
        }
    }
    const size_t bytes = abi::kIrqRoutingEntriesOffset + all.size() * sizeof(kvm_irq_routing_entry);
    auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
    auto* header = reinterpret_cast<abi::IrqRoutingHeader*>(buf.get());
    header->nr = static_cast<uint32_t>(all.size());
    std::memcpy(reinterpret_cast<uint8_t*>(buf.get()) + abi::kIrqRoutingEntriesOffset, all.data(),
                all.size() * sizeof(kvm_irq_routing_entry));
    if (ioctl(vm_.fd(), abi::kSetGsiRouting, header) != 0) {
        throw_errno("KVM_SET_GSI_ROUTING");
    }
}

void IrqRouter::bind(int eventfd, uint32_t gsi) {
    kvm_irqfd irqfd{};
    irqfd.fd = static_cast<uint32_t>(eventfd);
    irqfd.gsi = gsi;
    if (ioctl(vm_.fd(), KVM_IRQFD, &irqfd) != 0 && errno != EBUSY) {
        throw_errno("KVM_IRQFD assign gsi " + std::to_string(gsi));
    }
}

void IrqRouter::unbind(int eventfd, uint32_t gsi) {
    kvm_irqfd irqfd{};
    irqfd.fd = static_cast<uint32_t>(eventfd);
    irqfd.gsi = gsi;
    irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
    // ENOENT: it was not bound, which is what we want.
    if (ioctl(vm_.fd(), KVM_IRQFD, &irqfd) != 0 && errno != ENOENT) {
        throw_errno("KVM_IRQFD deassign gsi " + std::to_string(gsi));
    }
}

std::vector<kvm_irq_routing_entry> IrqRouter::table() const {
    std::lock_guard lock(mutex_);
    std::vector<kvm_irq_routing_entry> all = legacy_;
    for (size_t i = 0; i < msi_.size(); ++i) {
        if (msi_routed_[i]) {
            all.push_back(msi_[i]);
        }
    }
    return all;
}

}  // namespace conduit::vmm::kvm
