// Legacy devices and the bus: UART registers and interrupts, i8042 reset, ACPI PM
// poweroff, CMOS clock, bus routing.
#include <gtest/gtest.h>

#include <string>

#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/cmos.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"

using namespace conduit::vmm;

namespace {

uint8_t rd(BusDevice& d, uint64_t off) {
    uint8_t v = 0;
    d.read(off, std::span(&v, 1));
    return v;
}
void wr(BusDevice& d, uint64_t off, uint8_t v) {
    d.write(off, std::span<const uint8_t>(&v, 1));
}

struct Uart {
    std::string out;
    int irqs = 0;
    Serial8250 dev{[this](uint8_t b) { out.push_back(static_cast<char>(b)); }, [this] { ++irqs; }};
};

class CountingDevice : public BusDevice {
  public:
    void read(uint64_t offset, std::span<uint8_t> data) override {
        last_offset = offset;
        store_le(data, 0x11223344);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        last_offset = offset;
        last_value = load_le(data);
    }
    uint64_t last_offset = ~0ull;
    uint64_t last_value = 0;
};

}  // namespace

TEST(Serial, TransmitsAndReportsAnEmptyTransmitter) {
    Uart u;
    for (char c : std::string("hi\n")) {
        wr(u.dev, Serial8250::kData, static_cast<uint8_t>(c));
    }
    EXPECT_EQ(u.out, "hi\n");
    EXPECT_EQ(rd(u.dev, Serial8250::kLsr) & 0x60, 0x60) << "THRE and TEMT";
    EXPECT_EQ(rd(u.dev, Serial8250::kLsr) & Serial8250::kLsrDr, 0) << "nothing received";
    EXPECT_EQ(u.irqs, 0) << "no interrupt enabled";
}

TEST(Serial, ThreInterruptWhenEnabledAndClearedByReadingIir) {
    Uart u;
    wr(u.dev, Serial8250::kIer, Serial8250::kIerThri);
    EXPECT_EQ(u.irqs, 1) << "enabling THRI with an empty transmitter interrupts";
    EXPECT_EQ(rd(u.dev, Serial8250::kIir) & 0x0f, Serial8250::kIirThri);
    EXPECT_EQ(rd(u.dev, Serial8250::kIir) & 0x0f, Serial8250::kIirNoInt) << "acknowledged";
    wr(u.dev, Serial8250::kData, 'x');
    EXPECT_EQ(u.irqs, 2);
    EXPECT_EQ(rd(u.dev, Serial8250::kIir) & 0x0f, Serial8250::kIirThri);
}

TEST(Serial, ReceivesIntoTheFifoWithPriorityOverThre) {
    Uart u;
    wr(u.dev, Serial8250::kIer, Serial8250::kIerRdi | Serial8250::kIerThri);
    const int before = u.irqs;
    const std::string in = "abc";
    EXPECT_EQ(u.dev.enqueue_input(std::span(reinterpret_cast<const uint8_t*>(in.data()), 3)), 3u);
    EXPECT_EQ(u.irqs, before + 1);
    EXPECT_EQ(rd(u.dev, Serial8250::kIir) & 0x0f, Serial8250::kIirRdi);
    EXPECT_TRUE(rd(u.dev, Serial8250::kLsr) & Serial8250::kLsrDr);
    EXPECT_EQ(rd(u.dev, Serial8250::kData), 'a');
    EXPECT_EQ(rd(u.dev, Serial8250::kData), 'b');
    EXPECT_EQ(rd(u.dev, Serial8250::kData), 'c');
    EXPECT_FALSE(rd(u.dev, Serial8250::kLsr) & Serial8250::kLsrDr);
    EXPECT_EQ(rd(u.dev, Serial8250::kIir) & 0x0f, Serial8250::kIirThri) << "then THRE";
}

TEST(Serial, FifoIsBoundedAndCanBeCleared) {
    Uart u;
    const std::vector<uint8_t> lots(100, 'z');
    EXPECT_EQ(u.dev.enqueue_input(lots), Serial8250::kRxFifoSize);
    EXPECT_EQ(u.dev.room_for_input(), 0u);
    wr(u.dev, Serial8250::kIir, 0x03);  // FCR: enable and clear the receive FIFO
    EXPECT_EQ(u.dev.room_for_input(), Serial8250::kRxFifoSize);
    EXPECT_EQ(rd(u.dev, Serial8250::kIir) & 0xc0, 0xc0) << "FIFOs enabled";
}

TEST(Serial, LoopbackModeAsLinuxProbesIt) {
    Uart u;
    wr(u.dev, Serial8250::kMcr, Serial8250::kMcrLoop | 0x0a);  // loop, RTS, OUT2
    EXPECT_EQ(rd(u.dev, Serial8250::kMsr) & 0xf0, 0x90) << "CTS and DCD follow RTS and OUT2";
    wr(u.dev, Serial8250::kData, 'Q');
    EXPECT_EQ(u.out, "") << "loopback output stays inside";
    EXPECT_EQ(rd(u.dev, Serial8250::kData), 'Q');
    wr(u.dev, Serial8250::kMcr, 0x0b);
    EXPECT_EQ(rd(u.dev, Serial8250::kMsr) & 0xf0, 0xb0) << "outside loopback: DCD, DSR, CTS";
}

TEST(Serial, DivisorLatchAndScratch) {
    Uart u;
    wr(u.dev, Serial8250::kLcr, 0x80 | 0x03);
    wr(u.dev, Serial8250::kData, 0x01);
    wr(u.dev, Serial8250::kIer, 0x00);
    EXPECT_EQ(rd(u.dev, Serial8250::kData), 0x01);
    EXPECT_EQ(rd(u.dev, Serial8250::kIer), 0x00);
    wr(u.dev, Serial8250::kLcr, 0x03);
    EXPECT_EQ(u.out, "") << "divisor writes are not output";
    wr(u.dev, Serial8250::kScr, 0x5a);
    EXPECT_EQ(rd(u.dev, Serial8250::kScr), 0x5a);
    uint8_t wide[2] = {0, 0};
    u.dev.read(0, wide);
    EXPECT_EQ(wide[0], 0xff) << "the UART has byte registers only";
}

TEST(I8042, PulseResetEndsTheMachineOtherCommandsDoNot) {
    int resets = 0;
    I8042 kbd([&] { ++resets; });
    EXPECT_EQ(rd(kbd, 4) & 0x02, 0) << "input buffer empty: the reboot path may write";
    wr(kbd, 4, I8042::kCmdSelfTest);
    EXPECT_EQ(rd(kbd, 4) & I8042::kStatusOutputFull, I8042::kStatusOutputFull);
    EXPECT_EQ(rd(kbd, 0), 0x55);
    wr(kbd, 4, I8042::kCmdWriteCommandByte);
    wr(kbd, 0, 0x61);
    wr(kbd, 4, I8042::kCmdReadCommandByte);
    EXPECT_EQ(rd(kbd, 0), 0x61);
    EXPECT_EQ(resets, 0);
    wr(kbd, 4, I8042::kCmdPulseReset);
    EXPECT_EQ(resets, 1);
}

TEST(AcpiPm, SleepTypeFiveWithSlpEnPowersOff) {
    int offs = 0;
    AcpiPm pm([&] { ++offs; });
    uint8_t cnt[2];
    pm.read(4, cnt);
    EXPECT_EQ(cnt[0] & 1, 1) << "SCI_EN: always in ACPI mode";
    // ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN.
    const uint16_t typ = AcpiPm::kSlpTypS5 << AcpiPm::kSlpTypShift;
    uint8_t v[2] = {static_cast<uint8_t>(typ), static_cast<uint8_t>(typ >> 8)};
    pm.write(4, v);
    EXPECT_EQ(offs, 0);
    const uint16_t go = typ | AcpiPm::kSlpEn;
    uint8_t w[2] = {static_cast<uint8_t>(go), static_cast<uint8_t>(go >> 8)};
    pm.write(4, w);
    EXPECT_EQ(offs, 1);
    // Another sleep type (S1) is not power-off.
    const uint16_t s1 = (1 << AcpiPm::kSlpTypShift) | AcpiPm::kSlpEn;
    uint8_t x[2] = {static_cast<uint8_t>(s1), static_cast<uint8_t>(s1 >> 8)};
    pm.write(4, x);
    EXPECT_EQ(offs, 1);
    // Status is write-one-to-clear; enable is read-write.
    uint8_t en[2] = {0x20, 0x01};
    pm.write(2, en);
    uint8_t back[2];
    pm.read(2, back);
    EXPECT_EQ(back[0], 0x20);
    EXPECT_EQ(back[1], 0x01);
}

TEST(Cmos, ReportsTheClockInBcdWithoutUpdateInProgress) {
    // 2026-11-23 17:07:09 UTC, a Monday.
    Cmos cmos(512ull << 20, 0, [] { return std::time_t{1795453629}; });
    const auto reg = [&](uint8_t index) {
        wr(cmos, 0, index);
        return rd(cmos, 1);
    };
    EXPECT_EQ(reg(0x0a) & 0x80, 0) << "UIP clear";
    EXPECT_EQ(reg(0x0b) & 0x06, 0x02) << "24-hour, BCD";
    EXPECT_EQ(reg(0x0d) & 0x80, 0x80) << "valid";
    EXPECT_EQ(reg(0x09), 0x26);
    EXPECT_EQ(reg(0x08), 0x11);
    EXPECT_EQ(reg(0x07), 0x23);
    EXPECT_EQ(reg(0x04), 0x17);
    EXPECT_EQ(reg(0x02), 0x07);
    EXPECT_EQ(reg(0x00), 0x09);
    EXPECT_EQ(reg(0x32), 0x20);
    EXPECT_EQ(reg(0x06), 0x02) << "Monday";
    // Memory above 16 MiB in 64 KiB units.
    EXPECT_EQ(reg(0x34) | (reg(0x35) << 8), ((512 - 16) << 20) >> 16);
    wr(cmos, 0, 0x40);
    wr(cmos, 1, 0x99);
    EXPECT_EQ(reg(0x40), 0x99) << "NVRAM keeps what is written";
}

TEST(Bus, RoutesByRangeAndOffsetAndRejectsOverlaps) {
    Bus bus("test");
    auto a = std::make_shared<CountingDevice>();
    auto b = std::make_shared<CountingDevice>();
    bus.add(0x100, 0x10, a, "a");
    bus.add(0x200, 0x10, b, "b");
    EXPECT_THROW(bus.add(0x10f, 2, b, "overlap"), std::logic_error);
    EXPECT_THROW(bus.add(0x1f0, 0x11, b, "overlap"), std::logic_error);
    uint8_t four[4];
    EXPECT_TRUE(bus.read(0x104, four));
    EXPECT_EQ(a->last_offset, 4u);
    EXPECT_EQ(load_le(four), 0x11223344u);
    const uint8_t v[2] = {0x34, 0x12};
    EXPECT_TRUE(bus.write(0x20e, v));
    EXPECT_EQ(b->last_offset, 0xeu);
    EXPECT_EQ(b->last_value, 0x1234u);
    EXPECT_FALSE(bus.write(0x20f, v)) << "straddles the end of the range";
    EXPECT_FALSE(bus.read(0x300, four));
    EXPECT_EQ(load_le(four), 0xffffffffu) << "nothing there reads as all ones";
    EXPECT_TRUE(bus.remove(0x100, a.get()));
    EXPECT_FALSE(bus.read(0x104, four));
    EXPECT_FALSE(bus.remove(0x100, a.get()));
}
