// vmm/devices/pci/msix: an MSI-X table and pending-bit array, and their delivery.
//
// Every vector owns an eventfd and a GSI. While the vector may fire (MSI-X enabled, the
// function not masked, the entry not masked) the eventfd is bound to the GSI, whose route
// is the entry's address and data: a write to the eventfd - by a vhost-user backend or by
// the VMM - becomes an interrupt inside KVM. While masked it is unbound, so writes
// accumulate in the eventfd: that count is the pending bit, and binding again with a
// count delivers the interrupt, as the PCI spec asks of an unmasked pending vector.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "vmm/util/unique_fd.h"

namespace conduit::vmm::pci {

// What MSI-X needs from the interrupt controller (kvm::IrqRouter in a VM).
class MsiController {
  public:
    virtual ~MsiController() = default;
    virtual uint32_t allocate_msi_gsi() = 0;
    virtual void set_msi(uint32_t gsi, uint64_t address, uint32_t data) = 0;
    virtual void bind(int eventfd, uint32_t gsi) = 0;
    virtual void unbind(int eventfd, uint32_t gsi) = 0;
};

class Msix {
  public:
    static constexpr uint8_t kCapabilityId = 0x11;
    static constexpr size_t kEntrySize = 16;
    static constexpr uint16_t kControlEnable = 0x8000;
    static constexpr uint16_t kControlFunctionMask = 0x4000;
    static constexpr uint32_t kEntryMasked = 1;

    Msix(unsigned vectors, MsiController& controller);
    ~Msix();
    Msix(const Msix&) = delete;
    Msix& operator=(const Msix&) = delete;

    unsigned vectors() const { return static_cast<unsigned>(entries_.size()); }
    size_t table_size() const { return entries_.size() * kEntrySize; }
    size_t pba_size() const { return ((entries_.size() + 63) / 64) * 8; }

    // The capability body (after ID and next pointer) for a table and PBA in `bar`.
    std::vector<uint8_t> capability(uint8_t bar, uint32_t table_offset, uint32_t pba_offset) const;
    // The guest wrote the capability's message control.
    void set_control(uint16_t control);
    uint16_t control_bits() const;

    // Guest accesses to the table and PBA (offsets within each).
    void table_read(uint64_t offset, std::span<uint8_t> data);
    void table_write(uint64_t offset, std::span<const uint8_t> data);
    void pba_read(uint64_t offset, std::span<uint8_t> data);

    // The fd whose writes raise `vector` (handed to a backend as its "call" fd).
    int eventfd(unsigned vector) const { return entries_.at(vector).eventfd.get(); }
    // Raises `vector` from the VMM (e.g. a config change); pending if masked.
    void trigger(unsigned vector);
    bool deliverable(unsigned vector) const;

  private:
    struct Entry {
        uint32_t address_lo = 0;
        uint32_t address_hi = 0;
        uint32_t data = 0;
        uint32_t control = kEntryMasked;  // masked after reset
        UniqueFd eventfd;
        uint32_t gsi = 0;
        bool bound = false;
    };
    bool table_access_ok(uint64_t offset, size_t size) const;
    bool deliverable_locked(const Entry& e) const;
    void update_locked(Entry& e);
    bool pending_locked(const Entry& e) const;

    MsiController& controller_;
    mutable std::mutex mutex_;
    std::vector<Entry> entries_;
    bool enabled_ = false;
    bool function_masked_ = false;
};

}  // namespace conduit::vmm::pci
