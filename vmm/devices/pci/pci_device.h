// vmm/devices/pci/pci_device: a PCI function's type-0 configuration space, BARs and
// capability list, as the guest sees them through the host bridge.
//
// Registers are bytes with write masks, so a guest writing anything anywhere can only
// change what real hardware would let it change. BARs report their size the standard way
// (all ones written, size mask read back) and tell the root where they moved.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "vmm/devices/bus.h"

namespace conduit::vmm::pci {

inline constexpr uint16_t kConfigSize = 256;
inline constexpr uint8_t kCommand = 0x04;
inline constexpr uint16_t kCommandIo = 0x1, kCommandMemory = 0x2, kCommandBusMaster = 0x4,
                          kCommandIntxDisable = 0x400;
inline constexpr uint8_t kStatus = 0x06;
inline constexpr uint16_t kStatusCapList = 0x10;
inline constexpr uint8_t kBar0 = 0x10;
inline constexpr uint8_t kCapPointer = 0x34;
inline constexpr uint8_t kInterruptLine = 0x3c;
inline constexpr uint8_t kInterruptPin = 0x3d;
inline constexpr unsigned kBarCount = 6;

struct PciIds {
    uint16_t vendor;
    uint16_t device;
    uint8_t revision;
    uint32_t class_code;  // base class, subclass, programming interface
    uint16_t subsystem_vendor;
    uint16_t subsystem;
};

class PciDevice {
  public:
    // Where a memory BAR is mapped now; called by the device when the guest moves it.
    using BarMoved = std::function<void(unsigned bar, uint64_t old_addr, uint64_t new_addr)>;

    PciDevice(std::string name, const PciIds& ids);
    virtual ~PciDevice() = default;

    const std::string& name() const { return name_; }

    // Config space accesses of 1, 2 or 4 bytes; other sizes or misaligned accesses read
    // as all ones and write nothing.
    uint32_t config_read(uint16_t offset, unsigned size);
    void config_write(uint16_t offset, unsigned size, uint32_t value);

    struct Bar {
        uint64_t size = 0;  // 0: unused
        bool is64 = false;
        bool prefetchable = false;
        uint64_t addr = 0;
        std::shared_ptr<BusDevice> handler;
    };
    const Bar& bar(unsigned index) const { return bars_[index]; }
    // Address of a mapped BAR, or 0 while memory decoding is off or it is unassigned.
    uint64_t mapped_bar(unsigned index) const;
    // Firmware's job: place a BAR before the guest boots.
    void assign_bar(unsigned index, uint64_t addr);
    void enable_memory_decoding();

    // The root's hook: remap when the guest changes a BAR or the memory-enable bit.
    void set_bar_listener(BarMoved listener) { bar_moved_ = std::move(listener); }

  protected:
    // Memory BAR of `size` bytes (a power of two, at least 4 KiB here).
    void add_memory_bar(unsigned index, uint64_t size, bool is64,
                        std::shared_ptr<BusDevice> handler);
    // Appends a capability (ID, then `body` after the next pointer); returns its offset.
    uint8_t add_capability(uint8_t id, std::span<const uint8_t> body);

    // Raw config helpers for subclasses (under the caller's control, not the guest's).
    void set_config8(uint16_t off, uint8_t v) { config_[off] = v; }
    void set_config16(uint16_t off, uint16_t v);
    void set_config32(uint16_t off, uint32_t v);
    uint8_t config8(uint16_t off) const { return config_[off]; }
    uint16_t config16(uint16_t off) const;
    uint32_t config32(uint16_t off) const;
    void set_writable(uint16_t off, uint16_t len, uint8_t mask = 0xff);

    // A write landed in [offset, offset+size); the device may react (capabilities).
    virtual void config_written(uint16_t /*offset*/, unsigned /*size*/) {}
    // A memory BAR became mapped, moved, or unmapped (0); called before the root remaps.
    virtual void bar_relocated(unsigned /*bar*/, uint64_t /*old_addr*/, uint64_t /*new_addr*/) {}
    virtual uint32_t config_read_hook(uint16_t /*offset*/, unsigned /*size*/, uint32_t value) {
        return value;
    }

    std::recursive_mutex& config_mutex() { return mutex_; }

  private:
    void write_bar_register(unsigned reg, uint32_t value);
    void bars_changed(const std::array<uint64_t, kBarCount>& before);
    uint64_t effective_bar(unsigned index) const;

    std::string name_;
    mutable std::recursive_mutex mutex_;
    std::array<uint8_t, kConfigSize> config_{};
    std::array<uint8_t, kConfigSize> wmask_{};
    std::array<Bar, kBarCount> bars_{};
    uint8_t next_cap_ = 0x40;
    uint8_t last_cap_ = 0;
    BarMoved bar_moved_;
};

}  // namespace conduit::vmm::pci
