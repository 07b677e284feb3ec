// vmm/devices/cmos: the MC146818 real-time clock and CMOS memory at ports 0x70/0x71.
// Linux reads the wall-clock time from it at boot and waits while "update in progress"
// is set; a missing RTC reads as all ones, which would make it wait forever. The clock
// is the host's UTC time, in BCD, 24-hour mode, never updating mid-read.
#pragma once

#include <array>
#include <ctime>
#include <functional>
#include <mutex>

#include "vmm/devices/bus.h"

namespace conduit::vmm {

class Cmos final : public BusDevice {
  public:
    using Clock = std::function<std::time_t()>;
    // `low_ram` and `high_ram` fill the memory-size bytes firmware would leave there.
    Cmos(
        uint64_t low_ram, uint64_t high_ram, Clock clock = [] { return std::time(nullptr); });

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

  private:
    uint8_t register_value(uint8_t index) const;

    Clock clock_;
    std::mutex mutex_;
    uint8_t index_ = 0;
    std::array<uint8_t, 128> nvram_{};
};

}  // namespace conduit::vmm
