// vmm/devices/i8042: the PS/2 controller, only as far as a guest uses it to reset the
// machine: command 0xFE pulses the CPU reset line, which ends the VM (exit status 3).
// Linux's reboot path writes it after waiting for an empty input buffer; the controller
// reports a passing self-test and no keyboard data, and keeps its command byte.
#pragma once

#include <functional>
#include <mutex>

#include "vmm/devices/bus.h"

namespace conduit::vmm {

class I8042 final : public BusDevice {
  public:
    using Reset = std::function<void()>;
    explicit I8042(Reset reset) : reset_(std::move(reset)) {}

    // Offsets relative to port 0x60: 0 is the data port, 4 the status/command port.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    static constexpr uint8_t kCmdReadCommandByte = 0x20;
    static constexpr uint8_t kCmdWriteCommandByte = 0x60;
    static constexpr uint8_t kCmdSelfTest = 0xaa;
    static constexpr uint8_t kCmdPulseReset = 0xfe;
    static constexpr uint8_t kStatusOutputFull = 0x01;
    static constexpr uint8_t kStatusSystemFlag = 0x04;

  private:
    Reset reset_;
    std::mutex mutex_;
    uint8_t command_byte_ = 0x45;  // keyboard interrupt, system flag, translation
    bool awaiting_command_byte_ = false;
    bool has_output_ = false;
    uint8_t output_ = 0;
};

}  // namespace conduit::vmm
