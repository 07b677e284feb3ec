// Forwarding decisions on crafted frames, with real DPDK mbufs from a real mempool
// (EAL in memory, no hugepages, no devices).
#include "switch/forwarding.h"

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/unit/mbuf_pool_env.h"

namespace conduit::sw {
namespace {

using test::g_pool;

const auto* const g_env =
    ::testing::AddGlobalTestEnvironment(new test::MbufPoolEnvironment("forwarding_test", 64, 4095));

// Records what each port was given, then frees it as a real port would.
class RecordingSink : public TxSink {
  public:
    void transmit(PortIndex port, rte_mbuf** pkts, uint16_t count) override {
        for (uint16_t i = 0; i < count; ++i) {
            const auto* eth = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
            sent[port].push_back(mac_from_bytes(eth + 6));
        }
        rte_pktmbuf_free_bulk(pkts, count);
    }
    std::size_t count(PortIndex port) const {
        auto it = sent.find(port);
        return it == sent.end() ? 0 : it->second.size();
    }
    std::size_t total() const {
        std::size_t n = 0;
        for (const auto& [port, list] : sent) {
            n += list.size();
        }
        return n;
    }
    std::map<PortIndex, std::vector<Mac>> sent;
};

rte_mbuf* frame(Mac dst, Mac src, uint16_t length = 64) {
    rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
    EXPECT_NE(m, nullptr);
    auto* data = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, length));
    std::memset(data, 0, length);
    if (length >= 12) {
        mac_to_bytes(dst, data);
        mac_to_bytes(src, data + 6);
    }
    return m;
}

constexpr Mac kH1 = 0x020000000001, kH2 = 0x020000000002, kH3 = 0x020000000003;
constexpr Mac kH9 = 0x020000000009;

// Two bridges: br0 = ports 0,1,2; br1 = ports 3,4.
class Forwarding : public ::testing::Test {
  protected:
    void SetUp() override {
        in_use_before_ = rte_mempool_in_use_count(g_pool);
        fdb0_ = std::make_unique<MacTable>(64, 300'000, [] {});
        fdb1_ = std::make_unique<MacTable>(64, 300'000, [] {});
        state_.bridges.push_back({0, fdb0_.get(), {0, 1, 2}});
        state_.bridges.push_back({1, fdb1_.get(), {3, 4}});
        for (PortIndex p : {0, 1, 2}) {
            state_.bridge_of_port[p] = 0;
        }
        for (PortIndex p : {3, 4}) {
            state_.bridge_of_port[p] = 1;
        }
        counters_ = std::make_unique<WorkerCounters>();
        fwd_ = std::make_unique<Forwarder>(sink_, *counters_);
    }
    void TearDown() override {
        // Every mbuf a test made went out or was freed: the pool is back where it was.
        EXPECT_EQ(rte_mempool_in_use_count(g_pool), in_use_before_);
    }
    void send(PortIndex in, std::vector<rte_mbuf*> pkts, uint64_t now = 0) {
        fwd_->process(state_, in, pkts.data(), static_cast<uint16_t>(pkts.size()), now);
    }
    uint64_t port_counter(PortIndex p, Counter PortCounters::*c) {
        return (counters_->ports[p].*c).get();
    }

    RecordingSink sink_;
    ForwardingState state_;
    std::unique_ptr<MacTable> fdb0_, fdb1_;
    std::unique_ptr<WorkerCounters> counters_;
    std::unique_ptr<Forwarder> fwd_;
    unsigned in_use_before_ = 0;
};

TEST_F(Forwarding, UnknownUnicastFloodsToEveryOtherPortOfTheBridge) {
    send(0, {frame(kH2, kH1)});
    EXPECT_EQ(sink_.count(0), 0u);
    EXPECT_EQ(sink_.count(1), 1u);
    EXPECT_EQ(sink_.count(2), 1u);
    EXPECT_EQ(sink_.count(3) + sink_.count(4), 0u);
    EXPECT_EQ(counters_->bridges[0].flooded.get(), 1u);
}

TEST_F(Forwarding, KnownUnicastGoesOnlyToItsPort) {
    send(1, {frame(kH1, kH2)});  // learn H2 on 1
    sink_.sent.clear();
    send(0, {frame(kH2, kH1), frame(kH2, kH1), frame(kH2, kH1)});
    EXPECT_EQ(sink_.count(1), 3u);
    EXPECT_EQ(sink_.total(), 3u);
    EXPECT_EQ(counters_->bridges[0].unicast_known.get(), 3u);
}

TEST_F(Forwarding, BroadcastReachesEveryOtherPortOfItsBridgeOnly) {
    send(0, {frame(kBroadcastMac, kH1)});
    EXPECT_EQ(sink_.count(1), 1u);
    EXPECT_EQ(sink_.count(2), 1u);
    EXPECT_EQ(sink_.total(), 2u);
}

TEST_F(Forwarding, MulticastIsFlooded) {
    send(2, {frame(0x01005e000001, kH3)});
    EXPECT_EQ(sink_.count(0), 1u);
    EXPECT_EQ(sink_.count(1), 1u);
    EXPECT_EQ(sink_.total(), 2u);
}

TEST_F(Forwarding, HairpinIsDroppedAndCounted) {
    send(0, {frame(kH9, kH2)});  // H2 on port 0
    sink_.sent.clear();
    send(0, {frame(kH2, kH1)});  // H1 on port 0 sends to H2, also behind port 0
    EXPECT_EQ(sink_.total(), 0u);
    EXPECT_EQ(port_counter(0, &PortCounters::drop_hairpin), 1u);
}

TEST_F(Forwarding, BridgesNeverLeakIntoEachOther) {
    send(3, {frame(kH9, kH1)});  // br1: H1 learned on port 3, flooded to port 4
    send(0, {frame(kH1, kH2)});  // br0 has never seen H1: floods within br0 only
    EXPECT_EQ(sink_.count(3), 0u);
    EXPECT_EQ(sink_.count(4), 1u);
    EXPECT_EQ(sink_.count(1), 1u);
    EXPECT_EQ(sink_.count(2), 1u);
    EXPECT_EQ(fdb0_->lookup(kH1, 0), kInvalidPort);
    EXPECT_EQ(fdb1_->lookup(kH1, 0), 3);
    EXPECT_EQ(fdb1_->lookup(kH2, 0), kInvalidPort);
}

TEST_F(Forwarding, MacMoveRedirectsTraffic) {
    send(1, {frame(kBroadcastMac, kH2)});
    send(2, {frame(kBroadcastMac, kH2)});  // H2 moved to port 2
    sink_.sent.clear();
    send(0, {frame(kH2, kH1)});
    EXPECT_EQ(sink_.count(2), 1u);
    EXPECT_EQ(sink_.total(), 1u);
    EXPECT_EQ(counters_->bridges[0].mac_moved.get(), 1u);
}

TEST_F(Forwarding, RuntIsDroppedAndCounted) {
    send(0, {frame(kH2, kH1, 10), frame(kH2, kH1)});
    EXPECT_EQ(port_counter(0, &PortCounters::drop_runt), 1u);
    EXPECT_EQ(port_counter(0, &PortCounters::rx_packets), 2u);
    EXPECT_EQ(sink_.count(1), 1u);
}

TEST_F(Forwarding, GroupOrZeroSourceIsDroppedAndNotLearned) {
    send(0, {frame(kH2, 0x01005e000001), frame(kH2, 0), frame(kH2, kBroadcastMac)});
    EXPECT_EQ(port_counter(0, &PortCounters::drop_bad_src_mac), 3u);
    EXPECT_EQ(sink_.total(), 0u);
    EXPECT_EQ(fdb0_->size(), 0u);
}

TEST_F(Forwarding, FloodInASinglePortBridgeHasNoDestination) {
    ForwardingState lonely;
    MacTable fdb(8, 1000, [] {});
    lonely.bridges.push_back({0, &fdb, {7}});
    lonely.bridge_of_port[7] = 0;
    std::vector<rte_mbuf*> pkts{frame(kBroadcastMac, kH1)};
    fwd_->process(lonely, 7, pkts.data(), 1, 0);
    EXPECT_EQ(port_counter(7, &PortCounters::drop_no_destination), 1u);
    EXPECT_EQ(sink_.total(), 0u);
}

TEST_F(Forwarding, FullBurstOfMixedTraffic) {
    send(1, {frame(kH1, kH2)});
    send(2, {frame(kH1, kH3)});
    sink_.sent.clear();
    std::vector<rte_mbuf*> burst;
    for (int i = 0; i < 32; ++i) {
        burst.push_back(frame(i % 2 == 0 ? kH2 : kH3, kH1));
    }
    send(0, burst);
    EXPECT_EQ(sink_.count(1), 16u);
    EXPECT_EQ(sink_.count(2), 16u);
    EXPECT_EQ(port_counter(0, &PortCounters::rx_packets), 32u);
}

TEST_F(Forwarding, FloodedFramesShareOneBufferByReference) {
    rte_mbuf* m = frame(kBroadcastMac, kH1);
    const unsigned before = rte_mempool_in_use_count(g_pool);
    send(0, {m});
    // Two outputs, one buffer, freed after both: nothing was copied or leaked.
    EXPECT_EQ(sink_.total(), 2u);
    EXPECT_EQ(rte_mempool_in_use_count(g_pool), before - 1);
}

}  // namespace
}  // namespace conduit::sw
