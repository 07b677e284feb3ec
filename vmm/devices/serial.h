// vmm/devices/serial: a 16550A-compatible UART (8250 family), the guest's console.
//
// Enough of the chip for Linux's 8250 driver: divisor latch, FIFO control, interrupt
// enable and identification with the chip's priorities, line and modem status, the
// loopback mode the driver's probe uses, and a 64-byte receive FIFO fed by the host.
// Interrupts are edges on an ISA line, raised when a new condition becomes pending.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "vmm/devices/bus.h"

namespace conduit::vmm {

class Serial8250 final : public BusDevice {
  public:
    static constexpr size_t kRxFifoSize = 64;

    using Output = std::function<void(uint8_t)>;
    using Interrupt = std::function<void()>;

    Serial8250(Output output, Interrupt interrupt)
        : output_(std::move(output)), interrupt_(std::move(interrupt)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Host input for the guest. Returns how many bytes were taken: the FIFO holds at most
    // kRxFifoSize, and the caller keeps the rest until room_for_input() says so.
    size_t enqueue_input(std::span<const uint8_t> bytes);
    size_t room_for_input() const;

    // Register offsets and bits (the 16550 data sheet), public for tests.
    enum Reg : uint8_t {
        kData = 0,
        kIer = 1,
        kIir = 2,
        kLcr = 3,
        kMcr = 4,
        kLsr = 5,
        kMsr = 6,
        kScr = 7
    };
    static constexpr uint8_t kIerRdi = 0x01, kIerThri = 0x02, kIerRlsi = 0x04, kIerMsi = 0x08;
    static constexpr uint8_t kIirNoInt = 0x01, kIirThri = 0x02, kIirRdi = 0x04, kIirFifo = 0xc0;
    static constexpr uint8_t kLcrDlab = 0x80;
    static constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08,
                             kMcrLoop = 0x10;
    static constexpr uint8_t kLsrDr = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;
    static constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;

  private:
    uint8_t read_reg(uint8_t reg);
    void write_reg(uint8_t reg, uint8_t value);
    uint8_t current_iir() const;
    void receive_locked(uint8_t byte);
    // Raises an edge when a condition the guest enabled has become pending.
    bool want_interrupt() const;

    Output output_;
    Interrupt interrupt_;
    mutable std::mutex mutex_;
    std::deque<uint8_t> rx_;
    bool thr_empty_pending_ = false;  // THRE interrupt not yet acknowledged by reading IIR
    uint8_t ier_ = 0;
    uint8_t lcr_ = 0x03;  // 8N1
    uint8_t mcr_ = kMcrOut2;
    uint8_t scr_ = 0;
    uint8_t dll_ = 0x0c;  // 9600 baud
    uint8_t dlm_ = 0;
    bool fifo_enabled_ = false;
};

}  // namespace conduit::vmm
