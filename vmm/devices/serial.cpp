#include "vmm/devices/serial.h"

namespace conduit::vmm {

void Serial8250::read(uint64_t offset, std::span<uint8_t> data) {
    if (data.size() != 1 || offset > kScr) {
        store_le(data, 0xff);  // the UART has byte registers only
        return;
    }
    bool raise = false;
    {
        std::lock_guard lock(mutex_);
        data[0] = read_reg(static_cast<uint8_t>(offset));
        raise = want_interrupt();
    }
    if (raise && offset == kData) {
        interrupt_();  // more bytes wait: tell the driver again
    }
}

void Serial8250::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.size() != 1 || offset > kScr) {
        return;
    }
    bool raise = false;
    {
        std::lock_guard lock(mutex_);
        const bool before = want_interrupt();
        write_reg(static_cast<uint8_t>(offset), data[0]);
        // A THR write or an IER write enabling a pending condition is a new event.
        raise = want_interrupt() && (!before || offset == kData || offset == kIer);
    }
    if (raise) {
        interrupt_();
    }
}

size_t Serial8250::room_for_input() const {
    std::lock_guard lock(mutex_);
    return kRxFifoSize - rx_.size();
}

size_t Serial8250::enqueue_input(std::span<const uint8_t> bytes) {
    size_t taken = 0;
    bool raise = false;
    {
        std::lock_guard lock(mutex_);
        if (mcr_ & kMcrLoop) {
            return 0;  // in loopback the line is disconnected from the outside
        }
        while (taken < bytes.size() && rx_.size() < kRxFifoSize) {
            rx_.push_back(bytes[taken++]);
        }
        raise = taken != 0 && (ier_ & kIerRdi);
    }
    if (raise) {
        interrupt_();
    }
    return taken;
}

void Serial8250::receive_locked(uint8_t byte) {
    if (rx_.size() < kRxFifoSize) {
        rx_.push_back(byte);
    }
}

bool Serial8250::want_interrupt() const {
    return current_iir() != kIirNoInt;
}

uint8_t Serial8250::current_iir() const {
    // Highest priority first: received data, then transmitter empty.
    if ((ier_ & kIerRdi) && !rx_.empty()) {
        return kIirRdi;
    }
    if ((ier_ & kIerThri) && thr_empty_pending_) {
        return kIirThri;
    }
    return kIirNoInt;
}

uint8_t Serial8250::read_reg(uint8_t reg) {
    const bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kData:
            if (dlab) {
                return dll_;
            }
            if (rx_.empty()) {
                return 0;
            }
            {
                const uint8_t byte = rx_.front();
                rx_.pop_front();
                return byte;
            }
        case kIer:
            return dlab ? dlm_ : ier_;
        case kIir: {
            const uint8_t iir = current_iir();
            if (iir == kIirThri) {
                thr_empty_pending_ = false;  // reading IIR acknowledges THRE
            }
            return static_cast<uint8_t>(iir | (fifo_enabled_ ? kIirFifo : 0));
        }
        case kLcr:
            return lcr_;
        case kMcr:
            return mcr_;
        case kLsr:
            // The transmitter is always empty: output leaves as soon as it is written.
            return static_cast<uint8_t>(kLsrThre | kLsrTemt | (rx_.empty() ? 0 : kLsrDr));
        case kMsr:
            if (mcr_ & kMcrLoop) {
                // Loopback wires the modem outputs back to the inputs (16550 data sheet);
                // Linux's probe checks this.
                uint8_t msr = 0;
                msr |= (mcr_ & kMcrRts) ? kMsrCts : 0;
                msr |= (mcr_ & kMcrDtr) ? kMsrDsr : 0;
                msr |= (mcr_ & kMcrOut1) ? kMsrRi : 0;
                msr |= (mcr_ & kMcrOut2) ? kMsrDcd : 0;
                return msr;
            }
            return kMsrDcd | kMsrDsr | kMsrCts;
        case kScr:
            return scr_;
    }
    return 0xff;
}

void Serial8250::write_reg(uint8_t reg, uint8_t value) {
    const bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
        case kData:
            if (dlab) {
                dll_ = value;
                return;
            }
            if (mcr_ & kMcrLoop) {
                receive_locked(value);
            } else {
                output_(value);
            }
            thr_empty_pending_ = true;
            return;
        case kIer:
            if (dlab) {
                dlm_ = value;
                return;
            }
            ier_ = value & 0x0f;
            // Enabling THRI with an empty transmitter interrupts at once, as the chip does.
            if (ier_ & kIerThri) {
                thr_empty_pending_ = true;
            }
            return;
        case kIir:  // FCR on write
            fifo_enabled_ = value & 0x01;
            if (value & 0x02) {
                rx_.clear();
            }
            return;
        case kLcr:
            lcr_ = value;
            return;
        case kMcr:
            mcr_ = value & 0x1f;
            return;
        case kLsr:
        case kMsr:
            return;  // read-only
        case kScr:
            scr_ = value;
            return;
    }
}

}  // namespace conduit::vmm
