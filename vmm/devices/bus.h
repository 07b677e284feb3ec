// vmm/devices/bus: routes a guest's port-I/O or MMIO access to the device that owns the
// address. One Bus for port I/O, one for MMIO.
//
// vCPU threads access a bus concurrently; ranges may be added or moved while the VM runs
// (a guest programming a PCI BAR), so the range list sits behind a reader-writer lock
// taken once per exit - exits are already the slow path.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

namespace conduit::vmm {

class BusDevice {
  public:
    virtual ~BusDevice() = default;
    // `offset` is relative to the start of the range the device was added at.
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
  public:
    explicit Bus(std::string name) : name_(std::move(name)) {}

    // Throws std::logic_error if the range overlaps one already on the bus.
    void add(uint64_t base, uint64_t size, std::shared_ptr<BusDevice> device, std::string owner);
    // Removes the range starting at `base` owned by `device`; false if none.
    bool remove(uint64_t base, const BusDevice* device);

    // False if no device owns [addr, addr + data.size()). An unowned read reads as all
    // ones, like a floating bus.
    bool read(uint64_t addr, std::span<uint8_t> data) const;
    bool write(uint64_t addr, std::span<const uint8_t> data) const;

    struct Range {
        uint64_t base;
        uint64_t size;
        std::shared_ptr<BusDevice> device;
        std::string owner;
    };
    std::vector<Range> ranges() const;

  private:
    const Range* find(uint64_t addr, uint64_t len) const;

    std::string name_;
    mutable std::shared_mutex mutex_;
    std::vector<Range> ranges_;  // sorted by base
};

// Little-endian helpers for devices whose registers are accessed 1, 2, 4 or 8 bytes wide.
inline uint64_t load_le(std::span<const uint8_t> data) {
    uint64_t v = 0;
    for (size_t i = 0; i < data.size() && i < 8; ++i) {
        v |= uint64_t{data[i]} << (8 * i);
    }
    return v;
}
inline void store_le(std::span<uint8_t> data, uint64_t v) {
    for (size_t i = 0; i < data.size(); ++i) {
        data[i] = i < 8 ? static_cast<uint8_t>(v >> (8 * i)) : 0;
    }
}

}  // namespace conduit::vmm
