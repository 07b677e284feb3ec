// vmm/virtio/pci_transport: the virtio 1.x modern PCI transport for any VirtioDevice:
// common configuration, ISR, device configuration and notification structures in BAR0,
// MSI-X with one vector per queue plus one for configuration changes, and the
// PCI-configuration-access capability. Split virtqueues only (no packed rings).
//
// Notifications: each queue's notify address is a KVM ioeventfd, so a guest's kick goes
// straight to whoever reads the queue's kick eventfd (a vhost-user backend); the VMM sees
// a kick only if it arrives before the ioeventfd exists, and then forwards it.
//
// Everything the driver writes is guest input: queue sizes, ring addresses and vectors
// are checked before they reach a device, and a driver that sets up impossible queues
// gets DEVICE_NEEDS_RESET, not a backend pointed at memory the guest does not own.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "vmm/devices/pci/msix.h"
#include "vmm/devices/pci/pci_device.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/util/unique_fd.h"
#include "vmm/virtio/virtio_device.h"

namespace conduit::vmm::virtio {

// Registers and removes KVM ioeventfds (kvm::Vm in a VM; tests record them).
struct IoEventWiring {
    std::function<void(uint64_t addr, uint32_t len, int fd)> add;
    std::function<void(uint64_t addr, uint32_t len, int fd)> remove;
};

class PciTransport final : public pci::PciDevice {
  public:
    // BAR0 layout.
    static constexpr uint64_t kCommonOffset = 0x0000;
    static constexpr uint64_t kCommonSize = 0x38;
    static constexpr uint64_t kIsrOffset = 0x1000;
    static constexpr uint64_t kDeviceOffset = 0x2000;
    static constexpr uint64_t kDeviceSize = 0x1000;
    static constexpr uint64_t kNotifyOffset = 0x3000;
    static constexpr uint32_t kNotifyMultiplier = 4;
    static constexpr uint64_t kMsixTableOffset = 0x4000;
    static constexpr uint64_t kMsixPbaOffset = 0x6000;
    static constexpr uint64_t kBarSize = 0x8000;

    // virtio_pci_cap cfg_type values (virtio 1.2, 4.1.4).
    static constexpr uint8_t kCapCommon = 1, kCapNotify = 2, kCapIsr = 3, kCapDevice = 4,
                             kCapPciCfg = 5;

    PciTransport(std::string name, std::shared_ptr<VirtioDevice> device, pci::MsiController& msi,
                 const GuestMemory& memory, IoEventWiring wiring);
    ~PciTransport() override;

    VirtioDevice& device() { return *device_; }
    uint8_t status() const;
    uint64_t acked_features() const;
    uint8_t config_generation() const;
    pci::Msix& msix() { return msix_; }

    // BAR0 accesses (the MMIO handler forwards here; also the PCI_CFG window).
    void bar_read(uint64_t offset, std::span<uint8_t> data);
    void bar_write(uint64_t offset, std::span<const uint8_t> data);

    // Raises the configuration-change interrupt (e.g. link status).
    void notify_config_change();

  protected:
    void config_written(uint16_t offset, unsigned size) override;
    void bar_relocated(unsigned bar, uint64_t old_addr, uint64_t new_addr) override;
    uint32_t config_read_hook(uint16_t offset, unsigned size, uint32_t value) override;

  private:
    struct Queue {
        uint16_t size = 0;
        uint16_t vector = kNoVector;
        bool enabled = false;
        uint64_t desc = 0, avail = 0, used = 0;
        UniqueFd kick;           // the ioeventfd's eventfd
        UniqueFd no_vector;      // call fd while the queue has no MSI-X vector
        bool ioeventfd = false;  // whether KVM took the kick ioeventfd at notify_base_
    };

    void common_read(uint64_t offset, std::span<uint8_t> data);
    void common_write(uint64_t offset, std::span<const uint8_t> data);
    std::array<uint8_t, kCommonSize> common_image() const;
    void set_status(uint8_t status);
    void reset_locked();
    bool queues_valid(std::string& why) const;
    void wire_notifications(uint64_t old_bar, uint64_t new_bar);
    void unwire_notifications_locked();

    std::shared_ptr<VirtioDevice> device_;
    pci::Msix msix_;
    const GuestMemory& memory_;
    IoEventWiring wiring_;
    uint8_t msix_cap_ = 0;
    uint8_t pci_cfg_cap_ = 0;

    mutable std::mutex mutex_;
    uint32_t device_feature_select_ = 0;
    uint32_t driver_feature_select_ = 0;
    uint64_t driver_features_ = 0;
    uint16_t config_vector_ = kNoVector;
    uint8_t status_ = 0;
    uint8_t generation_ = 0;
    uint8_t isr_ = 0;
    uint16_t queue_select_ = 0;
    std::vector<Queue> queues_;
    uint64_t notify_base_ = 0;  // where the ioeventfds are registered now (0: none)
};

}  // namespace conduit::vmm::virtio
