// vmm/devices/pci/pci_root: PCI segment 0, bus 0: the host bridge at 00:00.0, the
// devices in the other slots, configuration mechanism #1 (ports 0xCF8/0xCFC), the MMIO
// window BARs are placed in, and the DSDT entry (PNP0A03 with its _CRS) that makes the
// kernel scan the bus.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <vector>

#include "vmm/arch/x86/aml.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/pci/pci_device.h"

namespace conduit::vmm::pci {

class PciRoot {
  public:
    static constexpr unsigned kSlots = 32;

    // Registers the config ports on `pio`; BARs are mapped on `mmio` inside
    // [window_start, window_end).
    PciRoot(Bus& pio, Bus& mmio, uint64_t window_start, uint64_t window_end);

    // Plugs a device into the next free slot and assigns its BARs in the window, as
    // firmware would. Returns the slot. Throws when the bus or the window is full.
    unsigned add(std::shared_ptr<PciDevice> device);

    // Configuration mechanism #1, as seen through the ports (for the port device and tests).
    uint32_t read_config_data(unsigned byte, unsigned size);
    void write_config_data(unsigned byte, unsigned size, uint32_t value);
    void write_config_address(uint32_t value);
    uint32_t config_address() const;

    aml::Bytes dsdt_aml() const;

  private:
    PciDevice* selected(uint16_t& offset) const;
    void bar_moved(PciDevice& dev, unsigned bar, uint64_t old_addr, uint64_t new_addr);

    Bus& mmio_;
    uint64_t window_start_;
    uint64_t window_end_;
    uint64_t next_bar_addr_;
    mutable std::mutex mutex_;
    uint32_t address_ = 0;
    std::array<std::shared_ptr<PciDevice>, kSlots> slots_{};
};

}  // namespace conduit::vmm::pci
