// vmm/devices/acpi_pm: the ACPI PM1a event and control blocks the FADT points at.
//
// Writing SLP_EN with SLP_TYP 5 (the DSDT's _S5 package) to PM1a_CNT is the guest
// powering off. SCI_EN reads as set: the machine is always in ACPI mode (the FADT has no
// SMI command port), so the OS never tries to switch modes.
#pragma once

#include <functional>
#include <mutex>

#include "vmm/devices/bus.h"

namespace conduit::vmm {

class AcpiPm final : public BusDevice {
  public:
    static constexpr uint64_t kSize = 6;  // 4 bytes of event block, 2 of control
    static constexpr uint16_t kSciEn = 0x0001;
    static constexpr uint16_t kSlpEn = 0x2000;
    static constexpr unsigned kSlpTypShift = 10;
    static constexpr uint16_t kSlpTypS5 = 5;

    using PowerOff = std::function<void()>;
    explicit AcpiPm(PowerOff power_off) : power_off_(std::move(power_off)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

  private:
    PowerOff power_off_;
    std::mutex mutex_;
    uint16_t status_ = 0;
    uint16_t enable_ = 0;
    uint16_t control_ = kSciEn;
};

}  // namespace conduit::vmm
