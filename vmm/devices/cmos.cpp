#include "vmm/devices/cmos.h"

namespace conduit::vmm {

namespace {
uint8_t bcd(int v) {
    return static_cast<uint8_t>(((v / 10) << 4) | (v % 10));
}
constexpr uint8_t kRegA = 0x0a, kRegB = 0x0b, kRegC = 0x0c, kRegD = 0x0d;
}  // namespace

Cmos::Cmos(uint64_t low_ram, uint64_t high_ram, Clock clock) : clock_(std::move(clock)) {
    nvram_[kRegA] = 0x26;  // 32.768 kHz base, 1024 Hz rate, no update in progress
    nvram_[kRegB] = 0x02;  // 24-hour, BCD, no interrupts
    nvram_[kRegD] = 0x80;  // valid RAM and time
    // Extended memory in KiB above 1 MiB (max 0xffff), 64 KiB units above 16 MiB, and
    // RAM above 4 GiB in 64 KiB units: the layout PC firmware uses.
    const uint64_t ext_kib = low_ram > (1u << 20) ? (low_ram - (1u << 20)) >> 10 : 0;
    const uint64_t ext = ext_kib > 0xffff ? 0xffff : ext_kib;
    nvram_[0x17] = nvram_[0x30] = static_cast<uint8_t>(ext);
    nvram_[0x18] = nvram_[0x31] = static_cast<uint8_t>(ext >> 8);
    const uint64_t above16 = low_ram > (16u << 20) ? (low_ram - (16u << 20)) >> 16 : 0;
    const uint64_t a16 = above16 > 0xffff ? 0xffff : above16;
    nvram_[0x34] = static_cast<uint8_t>(a16);
    nvram_[0x35] = static_cast<uint8_t>(a16 >> 8);
    const uint64_t above4g = high_ram >> 16;
    nvram_[0x5b] = static_cast<uint8_t>(above4g);
    nvram_[0x5c] = static_cast<uint8_t>(above4g >> 8);
    nvram_[0x5d] = static_cast<uint8_t>(above4g >> 16);
}

uint8_t Cmos::register_value(uint8_t index) const {
    if (index <= 0x09 || index == 0x32) {
        const std::time_t now = clock_();
        std::tm tm{};
        gmtime_r(&now, &tm);
        switch (index) {
            case 0x00:
                return bcd(tm.tm_sec);
            case 0x02:
                return bcd(tm.tm_min);
            case 0x04:
                return bcd(tm.tm_hour);
            case 0x06:
                return bcd(tm.tm_wday + 1);
            case 0x07:
                return bcd(tm.tm_mday);
            case 0x08:
                return bcd(tm.tm_mon + 1);
            case 0x09:
                return bcd(tm.tm_year % 100);
            case 0x32:
                return bcd(19 + tm.tm_year / 100);  // century
            default:
                return 0;  // alarm registers
        }
    }
    if (index == kRegC) {
        return 0;  // no interrupt flags
    }
    return nvram_[index];
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    store_le(data, offset == 1 ? register_value(index_) : 0xff);
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) {
        return;
    }
    std::lock_guard lock(mutex_);
    if (offset == 0) {
        index_ = data[0] & 0x7f;  // bit 7 masks NMIs; nothing to mask here
    } else if (offset == 1 && index_ >= 0x0e) {
        nvram_[index_] = data[0];  // general-purpose CMOS RAM; the clock is read-only
    } else if (offset == 1 && (index_ == kRegA || index_ == kRegB)) {
        // Keep the data mode (BCD, 24 h) we report; only remember what is harmless.
        nvram_[index_] = static_cast<uint8_t>((data[0] & 0x70) | (nvram_[index_] & 0x8f));
    }
}

}  // namespace conduit::vmm
