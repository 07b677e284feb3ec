#include "vmm/devices/pci/msix.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <stdexcept>

#include "vmm/devices/bus.h"
#include "vmm/util/error.h"

namespace conduit::vmm::pci {

Msix::Msix(unsigned vectors, MsiController& controller) : controller_(controller) {
    if (vectors == 0 || vectors > 2048) {
        throw std::logic_error("MSI-X: 1 to 2048 vectors");
    }
    entries_.resize(vectors);
    for (Entry& e : entries_) {
        e.eventfd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!e.eventfd) {
            throw_errno("eventfd for an MSI-X vector");
        }
        e.gsi = controller_.allocate_msi_gsi();
    }
}

Msix::~Msix() {
    std::lock_guard lock(mutex_);
    for (Entry& e : entries_) {
        if (e.bound) {
            try {
                controller_.unbind(e.eventfd.get(), e.gsi);
            } catch (const std::exception&) {
                // The VM is going away; closing the eventfd releases KVM's reference anyway.
            }
        }
    }
}

std::vector<uint8_t> Msix::capability(uint8_t bar, uint32_t table_offset,
                                      uint32_t pba_offset) const {
    const uint16_t control = static_cast<uint16_t>(entries_.size() - 1);
    const uint32_t table = table_offset | bar;
    const uint32_t pba = pba_offset | bar;
    return {static_cast<uint8_t>(control),     static_cast<uint8_t>(control >> 8),
            static_cast<uint8_t>(table),       static_cast<uint8_t>(table >> 8),
            static_cast<uint8_t>(table >> 16), static_cast<uint8_t>(table >> 24),
            static_cast<uint8_t>(pba),         static_cast<uint8_t>(pba >> 8),
            static_cast<uint8_t>(pba >> 16),   static_cast<uint8_t>(pba >> 24)};
}

uint16_t Msix::control_bits() const {
    std::lock_guard lock(mutex_);
    return static_cast<uint16_t>((enabled_ ? kControlEnable : 0) |
                                 (function_masked_ ? kControlFunctionMask : 0));
}

void Msix::set_control(uint16_t control) {
    std::lock_guard lock(mutex_);
    enabled_ = control & kControlEnable;
    function_masked_ = control & kControlFunctionMask;
    for (Entry& e : entries_) {
        update_locked(e);
    }
}

bool Msix::deliverable_locked(const Entry& e) const {
    return enabled_ && !function_masked_ && !(e.control & kEntryMasked);
}

bool Msix::deliverable(unsigned vector) const {
    std::lock_guard lock(mutex_);
    return deliverable_locked(entries_.at(vector));
}

void Msix::update_locked(Entry& e) {
    if (deliverable_locked(e)) {
        controller_.set_msi(e.gsi, (uint64_t{e.address_hi} << 32) | e.address_lo, e.data);
        if (!e.bound) {
            controller_.bind(e.eventfd.get(), e.gsi);
            e.bound = true;
        }
    } else if (e.bound) {
        controller_.unbind(e.eventfd.get(), e.gsi);
        e.bound = false;
    }
}

bool Msix::table_access_ok(uint64_t offset, size_t size) const {
    // Dword or qword accesses within one entry (PCI spec 6.8.2). Written so that no sum
    // can wrap: offset + size overflowed for offsets near 2^64 and passed the check.
    return (size == 4 || size == 8) && offset % size == 0 && offset < table_size() &&
           size <= table_size() - offset;
}

void Msix::table_read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    // Anything but a dword or qword within one entry reads as ones.
    if (!table_access_ok(offset, data.size())) {
        store_le(data, ~0ull);
        return;
    }
    const Entry& e = entries_[offset / kEntrySize];
    const uint32_t words[4] = {e.address_lo, e.address_hi, e.data, e.control};
    const unsigned w = static_cast<unsigned>((offset % kEntrySize) / 4);
    uint64_t v = words[w];
    if (data.size() == 8) {
        v |= uint64_t{words[w + 1]} << 32;
    }
    store_le(data, v);
}

void Msix::table_write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mutex_);
    if (!table_access_ok(offset, data.size())) {
        return;
    }
    Entry& e = entries_[offset / kEntrySize];
    const uint64_t v = load_le(data);
    unsigned w = static_cast<unsigned>((offset % kEntrySize) / 4);
    for (unsigned i = 0; i < data.size() / 4; ++i, ++w) {
        const uint32_t word = static_cast<uint32_t>(v >> (32 * i));
        switch (w) {
            case 0:
                e.address_lo = word & ~3u;  // dword aligned
                break;
            case 1:
                e.address_hi = word;
                break;
            case 2:
                e.data = word;
                break;
            case 3:
                e.control = word & kEntryMasked;
                break;
        }
    }
    update_locked(e);
}

bool Msix::pending_locked(const Entry& e) const {
    if (e.bound) {
        return false;  // delivered by KVM as soon as written
    }
    pollfd p{e.eventfd.get(), POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

void Msix::pba_read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    uint64_t bits = 0;
    if (offset >= pba_size()) {
        store_le(data, 0);  // offset * 8 below would wrap for huge offsets
        return;
    }
    for (size_t i = 0; i < data.size() * 8; ++i) {
        const size_t vector = offset * 8 + i;
        if (vector < entries_.size() && pending_locked(entries_[vector])) {
            bits |= uint64_t{1} << i;
        }
    }
    store_le(data, bits);
}

void Msix::trigger(unsigned vector) {
    const uint64_t one = 1;
    // A full counter (never in practice) just means the interrupt is already pending.
    (void)!::write(entries_.at(vector).eventfd.get(), &one, sizeof one);
}

}  // namespace conduit::vmm::pci
