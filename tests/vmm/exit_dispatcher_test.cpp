// The vCPU exit dispatcher on synthetic kvm_run structures.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "vmm/kvm/exit_dispatcher.h"

using namespace conduit::vmm;
using namespace conduit::vmm::kvm;

namespace {

class Recorder : public BusDevice {
  public:
    void read(uint64_t offset, std::span<uint8_t> data) override {
        reads.push_back(offset);
        store_le(data, 0xa5a5a5a5a5a5a5a5ull);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        writes.emplace_back(offset, load_le(data));
    }
    std::vector<uint64_t> reads;
    std::vector<std::pair<uint64_t, uint64_t>> writes;
};

// A kvm_run page followed by room for port I/O data, like the real vCPU mapping.
struct FakeRun {
    static constexpr size_t kSize = 8192;
    FakeRun() : storage(kSize / 8, 0) {}
    kvm_run& run() { return *reinterpret_cast<kvm_run*>(storage.data()); }
    uint8_t* data_at(size_t off) { return reinterpret_cast<uint8_t*>(storage.data()) + off; }
    std::vector<uint64_t> storage;
};

struct Fixture : ::testing::Test {
    Bus pio{"pio"};
    Bus mmio{"mmio"};
    std::shared_ptr<Recorder> port_dev = std::make_shared<Recorder>();
    std::shared_ptr<Recorder> mmio_dev = std::make_shared<Recorder>();
    ExitDispatcher dispatcher{pio, mmio, FakeRun::kSize};
    FakeRun fake;
    void SetUp() override {
        pio.add(0x3f8, 8, port_dev, "uart");
        mmio.add(0xd0000000, 0x1000, mmio_dev, "bar");
    }
    void port(uint16_t p, uint8_t dir, uint8_t size, uint32_t count) {
        kvm_run& r = fake.run();
        r.exit_reason = KVM_EXIT_IO;
        r.io.port = p;
        r.io.direction = dir;
        r.io.size = size;
        r.io.count = count;
        r.io.data_offset = 4096;
    }
};

}  // namespace

using ExitDispatcherTest = Fixture;

TEST_F(ExitDispatcherTest, PortWriteReachesTheDeviceAtItsOffset) {
    port(0x3fb, KVM_EXIT_IO_OUT, 1, 1);
    *fake.data_at(4096) = 0x83;
    const ExitOutcome o = dispatcher.dispatch(fake.run(), 0);
    EXPECT_FALSE(o.stop);
    ASSERT_EQ(port_dev->writes.size(), 1u);
    EXPECT_EQ(port_dev->writes[0], std::make_pair(uint64_t{3}, uint64_t{0x83}));
}

TEST_F(ExitDispatcherTest, StringPortInputFillsEveryItem) {
    port(0x3f8, KVM_EXIT_IO_IN, 2, 3);
    std::memset(fake.data_at(4096), 0, 6);
    EXPECT_FALSE(dispatcher.dispatch(fake.run(), 1).stop);
    EXPECT_EQ(port_dev->reads.size(), 3u);
    for (int i = 0; i < 6; ++i) {
        EXPECT_EQ(*fake.data_at(4096 + i), 0xa5);
    }
}

TEST_F(ExitDispatcherTest, UnclaimedPortsReadAllOnesAndAreCounted) {
    port(0x80, KVM_EXIT_IO_IN, 1, 1);
    *fake.data_at(4096) = 0;
    EXPECT_FALSE(dispatcher.dispatch(fake.run(), 0).stop);
    EXPECT_EQ(*fake.data_at(4096), 0xff);
    port(0x80, KVM_EXIT_IO_OUT, 1, 1);
    EXPECT_FALSE(dispatcher.dispatch(fake.run(), 0).stop);
    EXPECT_EQ(dispatcher.unhandled_accesses(), 2u);
}

TEST_F(ExitDispatcherTest, PortDataOutsideTheMappingIsACrashNotAnOverflow) {
    port(0x3f8, KVM_EXIT_IO_OUT, 4, 1100);  // 4400 bytes from offset 4096 of 8192
    const ExitOutcome o = dispatcher.dispatch(fake.run(), 0);
    EXPECT_TRUE(o.stop);
    EXPECT_EQ(o.reason, StopReason::kCrash);
    port(0x3f8, KVM_EXIT_IO_OUT, 3, 1);
    EXPECT_EQ(dispatcher.dispatch(fake.run(), 0).reason, StopReason::kCrash) << "size 3";
}

TEST_F(ExitDispatcherTest, MmioReadsAndWrites) {
    kvm_run& r = fake.run();
    r.exit_reason = KVM_EXIT_MMIO;
    r.mmio.phys_addr = 0xd0000010;
    r.mmio.len = 4;
    r.mmio.is_write = 1;
    const uint32_t v = 0xcafef00d;
    std::memcpy(r.mmio.data, &v, 4);
    EXPECT_FALSE(dispatcher.dispatch(r, 0).stop);
    ASSERT_EQ(mmio_dev->writes.size(), 1u);
    EXPECT_EQ(mmio_dev->writes[0], std::make_pair(uint64_t{0x10}, uint64_t{0xcafef00d}));
    r.mmio.is_write = 0;
    r.mmio.len = 8;
    EXPECT_FALSE(dispatcher.dispatch(r, 0).stop);
    EXPECT_EQ(r.mmio.data[7], 0xa5);
    r.mmio.len = 9;
    EXPECT_TRUE(dispatcher.dispatch(r, 0).stop) << "impossible length";
}

TEST_F(ExitDispatcherTest, TripleFaultAndKvmErrorsCrashWithTheReason) {
    kvm_run& r = fake.run();
    r.exit_reason = KVM_EXIT_SHUTDOWN;
    ExitOutcome o = dispatcher.dispatch(r, 2);
    EXPECT_TRUE(o.stop);
    EXPECT_EQ(o.reason, StopReason::kCrash);
    EXPECT_NE(o.detail.find("vCPU 2: triple fault"), std::string::npos);
    r.exit_reason = KVM_EXIT_INTERNAL_ERROR;
    r.internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
    o = dispatcher.dispatch(r, 0);
    EXPECT_EQ(o.reason, StopReason::kCrash);
    EXPECT_NE(o.detail.find("internal error, suberror 1"), std::string::npos);
    r.exit_reason = KVM_EXIT_FAIL_ENTRY;
    r.fail_entry.hardware_entry_failure_reason = 0x21;
    o = dispatcher.dispatch(r, 0);
    EXPECT_NE(o.detail.find("0x21"), std::string::npos);
    r.exit_reason = 9999;
    EXPECT_EQ(dispatcher.dispatch(r, 0).reason, StopReason::kCrash);
}

TEST_F(ExitDispatcherTest, SystemEventsAndBenignExits) {
    kvm_run& r = fake.run();
    r.exit_reason = KVM_EXIT_SYSTEM_EVENT;
    r.system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
    EXPECT_EQ(dispatcher.dispatch(r, 0).reason, StopReason::kPowerOff);
    r.system_event.type = KVM_SYSTEM_EVENT_RESET;
    EXPECT_EQ(dispatcher.dispatch(r, 0).reason, StopReason::kReset);
    r.system_event.type = KVM_SYSTEM_EVENT_CRASH;
    EXPECT_EQ(dispatcher.dispatch(r, 0).reason, StopReason::kCrash);
    r.exit_reason = KVM_EXIT_INTR;
    EXPECT_FALSE(dispatcher.dispatch(r, 0).stop);
    r.exit_reason = KVM_EXIT_HLT;
    EXPECT_FALSE(dispatcher.dispatch(r, 0).stop);
}

TEST(RunStateTest, FirstReasonWinsAndStatusesAreDocumented) {
    RunState s;
    int kicks = 0;
    s.on_stop([&] { ++kicks; });
    EXPECT_TRUE(s.running());
    s.request_stop(StopReason::kPowerOff, "off");
    s.request_stop(StopReason::kCrash, "later");
    EXPECT_EQ(s.wait(), StopReason::kPowerOff);
    EXPECT_EQ(s.detail(), "off");
    EXPECT_EQ(kicks, 1);
    EXPECT_EQ(exit_status(StopReason::kPowerOff), 0);
    EXPECT_EQ(exit_status(StopReason::kReset), 3);
    EXPECT_EQ(exit_status(StopReason::kCrash), 4);
    EXPECT_EQ(exit_status(StopReason::kSignal), 5);
    EXPECT_EQ(exit_status(StopReason::kError), 6);
}
