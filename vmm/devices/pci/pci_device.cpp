#include "vmm/devices/pci/pci_device.h"

#include <stdexcept>

namespace conduit::vmm::pci {

PciDevice::PciDevice(std::string name, const PciIds& ids) : name_(std::move(name)) {
    set_config16(0x00, ids.vendor);
    set_config16(0x02, ids.device);
    set_config8(0x08, ids.revision);
    set_config8(0x09, static_cast<uint8_t>(ids.class_code));
    set_config8(0x0a, static_cast<uint8_t>(ids.class_code >> 8));
    set_config8(0x0b, static_cast<uint8_t>(ids.class_code >> 16));
    set_config8(0x0e, 0x00);  // header type 0, single function
    set_config16(0x2c, ids.subsystem_vendor);
    set_config16(0x2e, ids.subsystem);
    set_config8(kInterruptPin, 0);  // no INTx: MSI-X only
    // Command: I/O, memory, bus master and INTx-disable are the guest's to set.
    set_writable(kCommand, 1, kCommandIo | kCommandMemory | kCommandBusMaster);
    set_writable(kCommand + 1, 1, kCommandIntxDisable >> 8);
    set_writable(kInterruptLine, 1);
}

void PciDevice::set_config16(uint16_t off, uint16_t v) {
    config_[off] = static_cast<uint8_t>(v);
    config_[off + 1] = static_cast<uint8_t>(v >> 8);
}

void PciDevice::set_config32(uint16_t off, uint32_t v) {
    set_config16(off, static_cast<uint16_t>(v));
    set_config16(off + 2, static_cast<uint16_t>(v >> 16));
}

uint16_t PciDevice::config16(uint16_t off) const {
    return static_cast<uint16_t>(config_[off] | (config_[off + 1] << 8));
}

uint32_t PciDevice::config32(uint16_t off) const {
    return config16(off) | (uint32_t{config16(off + 2)} << 16);
}

void PciDevice::set_writable(uint16_t off, uint16_t len, uint8_t mask) {
    for (uint16_t i = 0; i < len; ++i) {
        wmask_[off + i] = mask;
    }
}

void PciDevice::add_memory_bar(unsigned index, uint64_t size, bool is64,
                               std::shared_ptr<BusDevice> handler) {
    if (index >= kBarCount || (is64 && index + 1 >= kBarCount) || size < 4096 ||
        (size & (size - 1)) != 0) {
        throw std::logic_error(name_ + ": invalid BAR " + std::to_string(index));
    }
    bars_[index] = Bar{size, is64, false, 0, std::move(handler)};
    // Type bits: memory, 64-bit (0b10 in bits 2:1) or 32-bit.
    set_config32(kBar0 + 4 * index, is64 ? 0x4 : 0x0);
    if (is64) {
        set_config32(kBar0 + 4 * (index + 1), 0);
    }
}

uint8_t PciDevice::add_capability(uint8_t id, std::span<const uint8_t> body) {
    const size_t len = 2 + body.size();
    if (next_cap_ + len > kConfigSize) {
        throw std::logic_error(name_ + ": capabilities do not fit in config space");
    }
    const uint8_t at = next_cap_;
    config_[at] = id;
    config_[at + 1] = 0;
    for (size_t i = 0; i < body.size(); ++i) {
        config_[at + 2 + i] = body[i];
    }
    if (last_cap_ == 0) {
        config_[kCapPointer] = at;
        set_config16(kStatus, config16(kStatus) | kStatusCapList);
    } else {
        config_[last_cap_ + 1] = at;
    }
    last_cap_ = at;
    next_cap_ = static_cast<uint8_t>((at + len + 3) & ~3u);
    return at;
}

uint64_t PciDevice::effective_bar(unsigned index) const {
    const Bar& b = bars_[index];
    if (b.size == 0) {
        return 0;
    }
    uint64_t addr = config32(kBar0 + 4 * index) & ~0xfull;
    if (b.is64) {
        addr |= uint64_t{config32(kBar0 + 4 * (index + 1))} << 32;
    }
    return addr;
}

uint64_t PciDevice::mapped_bar(unsigned index) const {
    std::lock_guard lock(mutex_);
    if (!(config16(kCommand) & kCommandMemory)) {
        return 0;
    }
    return effective_bar(index);
}

void PciDevice::assign_bar(unsigned index, uint64_t addr) {
    std::lock_guard lock(mutex_);
    const Bar& b = bars_.at(index);
    if (b.size == 0 || addr % b.size != 0) {
        throw std::logic_error(name_ + ": BAR " + std::to_string(index) + " cannot go there");
    }
    std::array<uint64_t, kBarCount> before{};
    for (unsigned i = 0; i < kBarCount; ++i) {
        before[i] = mapped_bar(i);
    }
    set_config32(kBar0 + 4 * index, static_cast<uint32_t>(addr) | (b.is64 ? 0x4 : 0));
    if (b.is64) {
        set_config32(kBar0 + 4 * (index + 1), static_cast<uint32_t>(addr >> 32));
    }
    bars_changed(before);
}

void PciDevice::enable_memory_decoding() {
    config_write(kCommand, 2, config16(kCommand) | kCommandMemory | kCommandBusMaster);
}

void PciDevice::write_bar_register(unsigned reg, uint32_t value) {
    // Which BAR this register belongs to, and whether it is the high half of a 64-bit one.
    for (unsigned i = 0; i < kBarCount; ++i) {
        const Bar& b = bars_[i];
        if (b.size == 0) {
            continue;
        }
        if (reg == i) {
            const uint32_t mask = static_cast<uint32_t>(~(b.size - 1));  // size is >= 4 KiB
            set_config32(kBar0 + 4 * i, (value & mask) | (b.is64 ? 0x4 : 0));
            return;
        }
        if (b.is64 && reg == i + 1) {
            const uint32_t mask = static_cast<uint32_t>(~(b.size - 1) >> 32);
            set_config32(kBar0 + 4 * reg, value & mask);
            return;
        }
    }
    // An unused BAR reads back as zero: it has no size.
}

void PciDevice::bars_changed(const std::array<uint64_t, kBarCount>& before) {
    for (unsigned i = 0; i < kBarCount; ++i) {
        const uint64_t now = mapped_bar(i);
        if (now != before[i]) {
            bar_relocated(i, before[i], now);
            if (bar_moved_) {
                bar_moved_(i, before[i], now);
            }
        }
    }
}

uint32_t PciDevice::config_read(uint16_t offset, unsigned size) {
    if ((size != 1 && size != 2 && size != 4) || offset % size != 0 ||
        offset + size > kConfigSize) {
        return 0xffffffff;
    }
    std::lock_guard lock(mutex_);
    uint32_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        v |= uint32_t{config_[offset + i]} << (8 * i);
    }
    return config_read_hook(offset, size, v);
}

void PciDevice::config_write(uint16_t offset, unsigned size, uint32_t value) {
    if ((size != 1 && size != 2 && size != 4) || offset % size != 0 ||
        offset + size > kConfigSize) {
        return;
    }
    std::lock_guard lock(mutex_);
    std::array<uint64_t, kBarCount> before{};
    for (unsigned i = 0; i < kBarCount; ++i) {
        before[i] = mapped_bar(i);
    }
    if (offset >= kBar0 && offset < kBar0 + 4 * kBarCount) {
        // BARs are written as whole dwords by every OS; a partial write is merged first.
        const uint16_t reg_off = offset & ~3;
        uint32_t reg = config32(reg_off);
        for (unsigned i = 0; i < size; ++i) {
            const unsigned shift = 8 * ((offset - reg_off) + i);
            reg = (reg & ~(0xffu << shift)) | (((value >> (8 * i)) & 0xff) << shift);
        }
        write_bar_register((reg_off - kBar0) / 4, reg);
    } else {
        for (unsigned i = 0; i < size; ++i) {
            const uint8_t m = wmask_[offset + i];
            const uint8_t b = static_cast<uint8_t>(value >> (8 * i));
            config_[offset + i] = static_cast<uint8_t>((config_[offset + i] & ~m) | (b & m));
        }
        config_written(offset, size);
    }
    bars_changed(before);
}

}  // namespace conduit::vmm::pci
