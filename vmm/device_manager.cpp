#include "vmm/device_manager.h"

#include "vmm/arch/x86/layout.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/cmos.h"
#include "vmm/devices/console.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/pci/pci_root.h"
#include "vmm/devices/serial.h"
#include "vmm/kvm/irq_router.h"
#include "vmm/virtio/net.h"
#include "vmm/virtio/pci_transport.h"

namespace conduit::vmm {

DeviceManager::DeviceManager(const kvm::Vm& vm, RunState& run_state, Console& console,
                             const GuestMemory& memory, const std::vector<NetCardConfig>& nets) {
    serial_ = std::make_shared<Serial8250>([&console](uint8_t byte) { console.output(byte); },
                                           [&vm] { vm.pulse_irq(x86::kCom1Irq); });
    pio_.add(x86::kCom1Port, 8, serial_, "COM1");
    pio_.add(x86::kI8042DataPort, 5, std::make_shared<I8042>([&run_state] {
                 run_state.request_stop(StopReason::kReset, "the guest reset the machine (i8042)");
             }),
             "i8042");
    const uint64_t high = memory.size() - memory.low_end();
    pio_.add(x86::kCmosPort, 2, std::make_shared<Cmos>(memory.low_end(), high), "CMOS RTC");
    pio_.add(x86::kAcpiPmPort, AcpiPm::kSize, std::make_shared<AcpiPm>([&run_state] {
                 run_state.request_stop(StopReason::kPowerOff, "the guest powered off (ACPI S5)");
             }),
             "ACPI PM1");

    irq_router_ = std::make_unique<kvm::IrqRouter>(vm);
    pci_ = std::make_unique<pci::PciRoot>(pio_, mmio_, x86::kPciMmioStart, x86::kPciMmioEnd);
    const virtio::IoEventWiring wiring{
        [&vm](uint64_t addr, uint32_t len, int fd) { vm.add_ioeventfd(addr, len, fd); },
        [&vm](uint64_t addr, uint32_t len, int fd) { vm.remove_ioeventfd(addr, len, fd); }};
    for (const NetCardConfig& card : nets) {
        auto net = std::make_shared<virtio::VhostUserNet>(card, memory);
        auto transport =
            std::make_shared<virtio::PciTransport>(card.name, net, *irq_router_, memory, wiring);
        pci_->add(transport);
        nets_.push_back(std::move(net));
        transports_.push_back(std::move(transport));
    }
}

DeviceManager::~DeviceManager() {
    // Card threads first: they hold their transports' eventfds.
    for (auto& net : nets_) {
        net->stop();
    }
}

void DeviceManager::start() {
    for (auto& net : nets_) {
        net->start();
    }
}

std::vector<uint8_t> DeviceManager::dsdt_aml() const {
    return pci_->dsdt_aml();
}

std::vector<std::vector<uint8_t>> DeviceManager::acpi_tables() const {
    return {};
}

std::vector<x86::AddressRange> DeviceManager::reserved_ranges() const {
    return {};
}

}  // namespace conduit::vmm
