// vmm/device_manager: the VM's devices and the buses that reach them. It creates the
// legacy PC devices every guest gets (COM1, the i8042 reset line, the CMOS clock, the
// ACPI PM block) and tells the boot code what they add to the ACPI tables and e820 map.
#pragma once

#include <memory>
#include <vector>

#include "vmm/arch/x86/boot_params.h"
#include "vmm/devices/bus.h"
#include "vmm/kvm/kvm.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/run_state.h"
#include "vmm/vm_config.h"

namespace conduit::vmm {

class Console;
class Serial8250;
namespace kvm {
class IrqRouter;
}
namespace pci {
class PciRoot;
}
namespace virtio {
class PciTransport;
class VhostUserNet;
}  // namespace virtio

class DeviceManager {
  public:
    DeviceManager(const kvm::Vm& vm, RunState& run_state, Console& console,
                  const GuestMemory& memory, const std::vector<NetCardConfig>& nets);
    ~DeviceManager();

    // Starts the devices' own threads (the net cards' vhost-user sessions).
    void start();
    const std::vector<std::shared_ptr<virtio::VhostUserNet>>& nets() const { return nets_; }

    Bus& pio() { return pio_; }
    Bus& mmio() { return mmio_; }
    Serial8250& serial() { return *serial_; }

    // What the devices add to the firmware tables.
    std::vector<uint8_t> dsdt_aml() const;
    std::vector<std::vector<uint8_t>> acpi_tables() const;
    std::vector<x86::AddressRange> reserved_ranges() const;

  private:
    Bus pio_{"port I/O"};
    Bus mmio_{"MMIO"};
    std::shared_ptr<Serial8250> serial_;
    std::unique_ptr<kvm::IrqRouter> irq_router_;
    std::unique_ptr<pci::PciRoot> pci_;
    std::vector<std::shared_ptr<virtio::VhostUserNet>> nets_;
    std::vector<std::shared_ptr<virtio::PciTransport>> transports_;
};

}  // namespace conduit::vmm
