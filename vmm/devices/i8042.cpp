#include "vmm/devices/i8042.h"

namespace conduit::vmm {

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    uint8_t value = 0;
    if (offset == 0) {
        value = has_output_ ? output_ : 0;
        has_output_ = false;
    } else if (offset == 4) {
        value = static_cast<uint8_t>(kStatusSystemFlag | (has_output_ ? kStatusOutputFull : 0));
    } else {
        value = 0xff;
    }
    store_le(data, value);
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) {
        return;
    }
    const uint8_t value = data[0];
    bool reset = false;
    {
        std::lock_guard lock(mutex_);
        if (offset == 0) {
            if (awaiting_command_byte_) {
                command_byte_ = value;
                awaiting_command_byte_ = false;
            }
            // Bytes for a keyboard we do not have are dropped.
            return;
        }
        if (offset != 4) {
            return;
        }
        switch (value) {
            case kCmdReadCommandByte:
                output_ = command_byte_;
                has_output_ = true;
                break;
            case kCmdWriteCommandByte:
                awaiting_command_byte_ = true;
                break;
            case kCmdSelfTest:
                output_ = 0x55;  // passed
                has_output_ = true;
                break;
            case kCmdPulseReset:
                reset = true;
                break;
            default:
                break;
        }
    }
    if (reset) {
        reset_();
    }
}

}  // namespace conduit::vmm
