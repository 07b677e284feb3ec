#include "vmm/devices/acpi_pm.h"

#include <array>

namespace conduit::vmm {

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    const std::array<uint8_t, kSize> regs = {
        static_cast<uint8_t>(status_),  static_cast<uint8_t>(status_ >> 8),
        static_cast<uint8_t>(enable_),  static_cast<uint8_t>(enable_ >> 8),
        static_cast<uint8_t>(control_), static_cast<uint8_t>(control_ >> 8)};
    for (size_t i = 0; i < data.size(); ++i) {
        data[i] = offset + i < kSize ? regs[offset + i] : 0xff;
    }
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
    bool power_off = false;
    {
        std::lock_guard lock(mutex_);
        for (size_t i = 0; i < data.size() && offset + i < kSize; ++i) {
            const uint64_t at = offset + i;
            const uint16_t byte = data[i];
            if (at < 2) {
                // Status bits are write-one-to-clear.
                status_ = static_cast<uint16_t>(status_ & ~(byte << (8 * at)));
            } else if (at < 4) {
                const unsigned shift = 8 * static_cast<unsigned>(at - 2);
                enable_ = static_cast<uint16_t>((enable_ & ~(0xff << shift)) | (byte << shift));
            } else {
                const unsigned shift = 8 * static_cast<unsigned>(at - 4);
                control_ = static_cast<uint16_t>((control_ & ~(0xff << shift)) | (byte << shift));
            }
        }
        if (control_ & kSlpEn) {
            const uint16_t type = (control_ >> kSlpTypShift) & 0x7;
            control_ = static_cast<uint16_t>((control_ & ~kSlpEn) | kSciEn);
            power_off = type == kSlpTypS5;
        }
        control_ |= kSciEn;
    }
    if (power_off) {
        power_off_();
    }
}

}  // namespace conduit::vmm
