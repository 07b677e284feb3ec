// conduit-gen's pure parts: the sequence window (loss, reordering, duplicates), the
// latency histogram, frame sizes, the frame template and stamp, traffic plans, port
// specs, and which received mbufs are sent again (real mbufs: EAL in memory).
#include <gtest/gtest.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "tests/unit/mbuf_pool_env.h"
#include "tools/gen/accounting.h"
#include "tools/gen/frame.h"
#include "tools/gen/plan.h"
#include "tools/gen/port.h"
#include "tools/gen/reuse.h"

namespace conduit::gen {
namespace {

using test::g_pool;

const auto* const g_env =
    ::testing::AddGlobalTestEnvironment(new test::MbufPoolEnvironment("gen_test", 64, 1023));

TEST(SequenceTracker, InOrderCountsEveryFrameOnce) {
    SequenceTracker t;
    for (uint32_t s = 0; s < 100'000; ++s) {
        t.record(s);
    }
    EXPECT_EQ(t.unique(), 100'000u);
    EXPECT_EQ(t.duplicates(), 0u);
    EXPECT_EQ(t.reordered(), 0u);
}

TEST(SequenceTracker, GapThenLateFramesAreReorderedNotLost) {
    SequenceTracker t;
    for (uint32_t s : {0u, 1u, 2u, 6u, 7u, 3u, 5u, 4u, 8u}) {
        t.record(s);
    }
    EXPECT_EQ(t.unique(), 9u);
    EXPECT_EQ(t.reordered(), 3u);
    EXPECT_EQ(t.duplicates(), 0u);
}

TEST(SequenceTracker, RepeatedFramesAreDuplicates) {
    SequenceTracker t;
    for (uint32_t s : {0u, 1u, 1u, 2u, 5u, 3u, 3u, 5u, 0u}) {
        t.record(s);
    }
    EXPECT_EQ(t.unique(), 5u);  // 0 1 2 3 5; 4 is missing
    EXPECT_EQ(t.duplicates(), 4u);
    EXPECT_EQ(t.reordered(), 1u);  // 3 after 5
}

TEST(SequenceTracker, LossIsWhatNeverArrives) {
    SequenceTracker t;
    std::vector<uint32_t> seqs(10'000);
    std::iota(seqs.begin(), seqs.end(), 0u);
    // Drop every 7th, and swap neighbours now and then.
    std::vector<uint32_t> sent;
    for (uint32_t s : seqs) {
        if (s % 7 != 3) {
            sent.push_back(s);
        }
    }
    for (std::size_t i = 10; i + 1 < sent.size(); i += 50) {
        std::swap(sent[i], sent[i + 1]);
    }
    for (uint32_t s : sent) {
        t.record(s);
    }
    EXPECT_EQ(t.unique(), sent.size());
    EXPECT_EQ(t.duplicates(), 0u);
    EXPECT_GT(t.reordered(), 0u);
}

TEST(SequenceTracker, WindowWrapsWithoutStaleMarks) {
    // Gaps long ago must not make a later in-order frame look missing or duplicated.
    SequenceTracker t;
    for (uint32_t s = 0; s < 3 * SequenceTracker::kWindow; s += 2) {
        t.record(s);  // every other one missing
    }
    const uint64_t before = t.unique();
    for (uint32_t s = 3 * SequenceTracker::kWindow; s < 6 * SequenceTracker::kWindow; ++s) {
        t.record(s);
    }
    EXPECT_EQ(t.unique(), before + 3 * SequenceTracker::kWindow);
    EXPECT_EQ(t.duplicates(), 0u);
    EXPECT_EQ(t.reordered(), 0u);
    // A frame from the last window that was seen is a duplicate; one far back is late.
    t.record(6 * SequenceTracker::kWindow - 10);
    EXPECT_EQ(t.duplicates(), 1u);
    t.record(1);
    EXPECT_EQ(t.reordered(), 1u);
}

TEST(SequenceTracker, HugeGapThenFill) {
    SequenceTracker t;
    t.record(0);
    t.record(100'000);  // 99,999 missing
    t.record(99'990);   // inside the window: was missing
    t.record(99'990);   // now a duplicate
    t.record(50'000);   // outside the window: late
    EXPECT_EQ(t.unique(), 4u);
    EXPECT_EQ(t.duplicates(), 1u);
    EXPECT_EQ(t.reordered(), 2u);
}

TEST(SequenceTracker, ThirtyTwoBitNumbersWrap) {
    // The stamp carries 32 bits; the tracker extends them across the wrap.
    SequenceTracker t;
    uint64_t last = 0, count = 0;
    for (uint64_t s = 0; s < (uint64_t{1} << 32) + 2'000'000; s += 999'983) {
        t.record(static_cast<uint32_t>(s));
        last = s;
        ++count;
    }
    EXPECT_GT(last, uint64_t{1} << 32);
    EXPECT_EQ(t.highest_plus_one(), last + 1);
    EXPECT_EQ(t.unique(), count);
    EXPECT_EQ(t.duplicates(), 0u);
    EXPECT_EQ(t.reordered(), 0u);
}

TEST(LatencyHistogram, QuantilesWithinTheBucketResolution) {
    LatencyHistogram h;
    std::mt19937_64 rng(7);
    std::vector<uint64_t> values;
    std::lognormal_distribution<double> dist(9.0, 1.0);
    for (int i = 0; i < 200'000; ++i) {
        values.push_back(static_cast<uint64_t>(dist(rng)) + 1);
        h.record(values.back());
    }
    std::sort(values.begin(), values.end());
    EXPECT_EQ(h.samples(), values.size());
    EXPECT_EQ(h.max(), values.back());
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        const auto exact =
            static_cast<double>(values[static_cast<std::size_t>(q * values.size()) - 1]);
        const auto got = static_cast<double>(h.quantile(q));
        EXPECT_NEAR(got, exact, exact * 0.035) << "q=" << q;
    }
    EXPECT_LE(h.quantile(1.0), h.max());
    EXPECT_LE(h.min(), values.front());
}

TEST(LatencyHistogram, SmallValuesExactAndMerge) {
    LatencyHistogram a, b;
    for (uint64_t v = 0; v < 32; ++v) {
        a.record(v);
    }
    b.record(1'000'000);
    a.merge(b);
    EXPECT_EQ(a.samples(), 33u);
    EXPECT_EQ(a.max(), 1'000'000u);
    EXPECT_EQ(a.quantile(0.5), 16u);
    for (unsigned bucket = 0; bucket < LatencyHistogram::kBuckets - 1; ++bucket) {
        ASSERT_EQ(LatencyHistogram::bucket(LatencyHistogram::bucket_low(bucket)), bucket);
        ASSERT_EQ(LatencyHistogram::bucket(LatencyHistogram::bucket_high(bucket)), bucket);
    }
}

// The receive loop's run accounting must count exactly what recording every frame on its
// own counts: the reference below does that, frame by frame.
struct ReceiverModel {
    static constexpr uint16_t kStreams = 5;
    static constexpr uint16_t kPort = 1;
    std::array<RxStream, kStreams> streams{};
    std::array<LatencyHistogram, kStreams> latency{};
    uint64_t right = 0, stale = 0, foreign = 0;

    ReceiverModel() {
        for (uint16_t i = 0; i < kStreams; ++i) {
            streams[i].rx_port = i == 3 ? 0 : kPort;  // stream 3's frames belong elsewhere
        }
    }
    void record_one(uint16_t magic, uint64_t head, uint64_t lat) {
        const auto m = static_cast<uint16_t>(head);
        const auto si = static_cast<uint16_t>(head >> 16);
        if ((m & kMagicMask) != kMagicHigh) {
            ++foreign;
        } else if (m != magic || si >= kStreams) {
            ++stale;
        } else if (streams[si].rx_port != kPort) {
            ++streams[si].misdelivered;
        } else {
            streams[si].seq.record(static_cast<uint32_t>(head >> 32));
            latency[si].record(lat);
            ++right;
        }
    }
};

TEST(RunAccountant, CountsWhatRecordingEveryFrameCounts) {
    const uint16_t magic = kMagicHigh | 7;
    std::mt19937_64 rng(11);
    ReceiverModel runs, each;
    std::array<uint64_t, ReceiverModel::kStreams> next{};
    for (int call = 0; call < 3000; ++call) {
        // One receive call: bursts of streams in order with one latency, then now and
        // then a gap, a step back (reordered or duplicate), another latency, a frame of
        // an earlier phase, a foreign one, or one of a stream that belongs elsewhere.
        RunAccountant acc(runs.streams.data(), runs.streams.size(), runs.latency.data(), magic,
                          ReceiverModel::kPort);
        RunAccountant::Run run;
        const auto frames = static_cast<int>(1 + rng() % 64);
        auto si = static_cast<uint16_t>(rng() % ReceiverModel::kStreams);
        uint64_t lat = 1000 + rng() % 50;
        for (int f = 0; f < frames; ++f) {
            uint16_t m = magic;
            switch (rng() % 40) {
                case 0:
                    si = static_cast<uint16_t>(rng() % ReceiverModel::kStreams);
                    break;
                case 1:
                    next[si] += 1 + rng() % 100;
                    break;
                case 2:
                    next[si] -= std::min<uint64_t>(next[si], 1 + rng() % 80);
                    break;
                case 3:
                    lat = rng() % 100'000;
                    break;
                case 4:
                    m = kMagicHigh | 6;
                    break;
                case 5:
                    m = 0x1234;
                    break;
                case 6:
                    next[si] += 5000 + rng() % 10'000;
                    break;  // beyond the window
                default:
                    break;
            }
            const uint64_t head = m | uint64_t{si} << 16 | (next[si]++ & 0xffffffff) << 32;
            // As the receive loop takes each frame.
            if (RunAccountant::continues(run, head, lat)) {
                RunAccountant::extend(run);
            } else {
                run = acc.other(run, head, lat);
            }
            each.record_one(magic, head, lat);
        }
        acc.finish(run);
        runs.right += acc.right();
        runs.stale += acc.stale();
        runs.foreign += acc.foreign();
    }
    EXPECT_EQ(runs.right, each.right);
    EXPECT_EQ(runs.stale, each.stale);
    EXPECT_EQ(runs.foreign, each.foreign);
    EXPECT_GT(each.right, 40'000u);
    EXPECT_GT(each.stale, 0u);
    EXPECT_GT(each.foreign, 0u);
    for (uint16_t i = 0; i < ReceiverModel::kStreams; ++i) {
        SCOPED_TRACE(i);
        const SequenceTracker& a = runs.streams[i].seq;
        const SequenceTracker& b = each.streams[i].seq;
        EXPECT_EQ(a.unique(), b.unique());
        EXPECT_EQ(a.duplicates(), b.duplicates());
        EXPECT_EQ(a.reordered(), b.reordered());
        EXPECT_EQ(a.highest_plus_one(), b.highest_plus_one());
        EXPECT_EQ(runs.streams[i].misdelivered, each.streams[i].misdelivered);
        EXPECT_EQ(runs.latency[i].samples(), each.latency[i].samples());
        EXPECT_EQ(runs.latency[i].max(), each.latency[i].max());
        EXPECT_EQ(runs.latency[i].mean(), each.latency[i].mean());
        for (double q : {0.01, 0.5, 0.9, 0.99, 0.999}) {
            EXPECT_EQ(runs.latency[i].quantile(q), each.latency[i].quantile(q)) << q;
        }
    }
    EXPECT_GT(each.streams[3].misdelivered, 0u);
    EXPECT_GT(each.streams[0].seq.duplicates() + each.streams[1].seq.duplicates(), 0u);
    EXPECT_GT(each.streams[0].seq.reordered() + each.streams[1].seq.reordered(), 0u);
}

TEST(SizeMix, SizesAndImix) {
    EXPECT_EQ(SizeMix::parse("64").at(5), 64);
    const SizeMix imix = SizeMix::parse("imix");
    EXPECT_EQ(imix.period(), 12u);
    EXPECT_NEAR(imix.mean(), (7 * 64 + 4 * 570 + 1518) / 12.0, 1e-9);
    EXPECT_EQ(imix.largest(), 1518);
    EXPECT_THROW(SizeMix::parse("63"), std::invalid_argument);
    EXPECT_THROW(SizeMix::parse("9001"), std::invalid_argument);
    EXPECT_THROW(SizeMix::parse("big"), std::invalid_argument);
}

uint16_t checksum(const uint8_t* p, int len) {
    uint32_t sum = 0;
    for (int i = 0; i < len; i += 2) {
        sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<uint16_t>(sum);
}

TEST(FrameTemplate, WritesAValidIpv4UdpFrameWithItsStamp) {
    for (int vlan : {-1, 100}) {
        for (uint16_t len : {uint16_t{64}, uint16_t{570}, uint16_t{1518}}) {
            const FrameTemplate t(0xC6120001, 0xC6130101, 5001, vlan);
            const Stamp stamp{static_cast<uint16_t>(kMagicHigh | 7), 3, 123456, 987654321};
            std::vector<uint8_t> buf(len);
            t.write(buf.data(), 0x02C0'0100'0005ULL, 0x02C0'0000'0009ULL, 1111, len, stamp);
            const uint8_t* d = buf.data();
            EXPECT_EQ(d[0], 0x02);
            EXPECT_EQ(d[5], 0x05);
            EXPECT_EQ(d[11], 0x09);
            const int ip = vlan < 0 ? 14 : 18;
            if (vlan >= 0) {
                EXPECT_EQ(d[12], 0x81);
                EXPECT_EQ(d[15], 100);
            }
            EXPECT_EQ(d[ip - 2], 0x08);
            EXPECT_EQ(checksum(d + ip, 20), 0xffff) << "IPv4 header checksum";
            EXPECT_EQ((d[ip + 2] << 8 | d[ip + 3]), len - ip);
            EXPECT_EQ((d[ip + 20] << 8 | d[ip + 21]), 1111);           // UDP source port
            EXPECT_EQ((d[ip + 24] << 8 | d[ip + 25]), len - ip - 20);  // UDP length
            Stamp back{};
            ASSERT_TRUE(read_stamp(d, len, back));
            EXPECT_EQ(back.stream, 3);
            EXPECT_EQ(back.seq, 123456u);
            EXPECT_EQ(back.tsc, 987654321u);
            EXPECT_EQ(back.magic & 0xff, 7);
        }
    }
}

TEST(CyclingHeader, WritesWhatTheTemplateWrites) {
    // Every byte of the header and stamp as FrameTemplate::write() has them, for many
    // addresses and ports, with and without a VLAN tag, at each size.
    std::mt19937_64 rng(5);
    for (int vlan : {-1, 4095}) {
        for (uint16_t len : {uint16_t{64}, uint16_t{570}, uint16_t{1518}, uint16_t{9000}}) {
            const FrameTemplate t(0xC6120001, 0xC6130101, 5001, vlan);
            const CyclingHeader cycling(t, len);
            for (int i = 0; i < 200; ++i) {
                const Mac dst = rng() & 0xffff'ffff'ffffULL;
                const Mac src = rng() & 0xffff'ffff'ffffULL;
                const auto udp = static_cast<uint16_t>(rng());
                const Stamp stamp{static_cast<uint16_t>(kMagicHigh | 7),
                                  static_cast<uint16_t>(rng()), static_cast<uint32_t>(rng()),
                                  rng()};
                std::vector<uint8_t> want(len, 0xAA), got(len, 0xAA);
                t.write(want.data(), dst, src, udp, len, stamp);
                uint64_t head;
                std::memcpy(&head, &stamp, 8);
                cycling.write(got.data(), dst, src, udp, head, stamp.tsc);
                const std::size_t written = t.header_len() + sizeof(Stamp);
                ASSERT_TRUE(std::equal(want.begin(), want.begin() + written, got.begin()))
                    << "vlan " << vlan << ", " << len << " bytes, frame " << i;
                EXPECT_TRUE(std::all_of(got.begin() + written, got.end(), [](uint8_t b) {
                    return b == 0xAA;
                })) << "nothing written past the stamp";
            }
        }
    }
}

TEST(FrameTemplate, ForeignFramesHaveNoStamp) {
    std::array<uint8_t, 64> arp{};
    arp[12] = 0x08;
    arp[13] = 0x06;
    Stamp s{};
    EXPECT_FALSE(read_stamp(arp.data(), 64, s));
    EXPECT_FALSE(read_stamp(arp.data(), 20, s));
}

std::vector<PlanPort> ports(int n) {
    std::vector<PlanPort> out;
    for (int i = 0; i < n; ++i) {
        out.push_back({static_cast<uint16_t>(i), "p" + std::to_string(i)});
    }
    return out;
}

TEST(Plan, StarSpreadsMacsAndPairsEveryLeafWithTheHub) {
    const TrafficPlan plan = make_plan(ports(17), "star:p16", false, 10'000, 1, 2);
    EXPECT_EQ(plan.streams.size(), 32u);
    EXPECT_EQ(std::accumulate(plan.hosts.begin(), plan.hosts.end(), 0u), 10'000u);
    EXPECT_EQ(*std::max_element(plan.hosts.begin(), plan.hosts.end()) -
                  *std::min_element(plan.hosts.begin(), plan.hosts.end()),
              1u);
    for (const StreamSpec& s : plan.streams) {
        EXPECT_TRUE(s.tx_port == 16 || s.rx_port == 16) << s.name;
        EXPECT_NE(s.tx_port, s.rx_port);
        EXPECT_EQ(s.src_base, host_mac(s.tx_port, 0));
        EXPECT_EQ(s.src_count, plan.hosts[s.tx_port]);
    }
    ASSERT_EQ(plan.learning.size(), 17u);
    EXPECT_EQ(plan.learning[0].frames, 2u * plan.hosts[0]);
    EXPECT_EQ(plan.learning[0].dst_base, kBroadcast);
}

TEST(Plan, LoopbackExpectsFramesOnTheSendingPort) {
    const TrafficPlan plan = make_plan(ports(2), "pairs", true, 0, 4, 1);
    ASSERT_EQ(plan.streams.size(), 2u);
    for (const StreamSpec& s : plan.streams) {
        EXPECT_EQ(s.rx_port, s.tx_port);
        EXPECT_EQ(s.flows, 4u);
    }
}

TEST(Plan, ImpossibleTopologiesAreRefused) {
    EXPECT_THROW(make_plan(ports(3), "pairs", false, 0, 1, 1), std::invalid_argument);
    EXPECT_THROW(make_plan(ports(3), "star:nope", false, 0, 1, 1), std::invalid_argument);
    EXPECT_THROW(make_plan(ports(3), "ring", false, 0, 1, 1), std::invalid_argument);
    EXPECT_THROW(make_plan(ports(4), "pairs", false, 3, 1, 1), std::invalid_argument);
}

// What parse_port_spec() says of a spec it refuses ("accepted" when it takes it).
std::string spec_error(const std::string& spec) {
    try {
        parse_port_spec(spec, 0, 0x1);
    } catch (const std::invalid_argument& e) {
        return std::string(e.what());
    }
    return "accepted";
}

TEST(PortSpec, OwnKeysAreTakenAndTheRestGoesToThePmd) {
    const PortSpec up =
        parse_port_spec("up=memif:socket=/tmp/m.sock,queues=2,rsize=11,driver=dpdk", 3, 0x1);
    EXPECT_EQ(up.kind, PortKind::kMemif);
    EXPECT_EQ(up.rx_queues, 2);
    EXPECT_EQ(up.tx_queues, 2);
    EXPECT_EQ(up.devargs.find("queues"), std::string::npos);
    EXPECT_NE(up.devargs.find("net_memif3,role=client,socket=/tmp/m.sock"), std::string::npos);
    EXPECT_NE(up.devargs.find(",rsize=11"), std::string::npos);
    const PortSpec g =
        parse_port_spec("g1=virtio:path=/tmp/g.sock,queue_size=1024,driver=dpdk", 0, 0x2);
    EXPECT_EQ(g.kind, PortKind::kVirtio);
    EXPECT_EQ(g.rx_queues, 1);
    EXPECT_EQ(g.tx_queues, 1);
    EXPECT_NE(g.devargs.find(",queues=1,"), std::string::npos);
    EXPECT_NE(g.devargs.find(",queue_size=1024"), std::string::npos);
    EXPECT_EQ(g.virtio_ring, 1024);  // its transmit ring is cleaned once 32 are used
    EXPECT_EQ(parse_port_spec("g1=virtio:path=/tmp/g.sock", 0, 0x2).virtio_ring, 256);
    EXPECT_THROW(parse_port_spec("g1=virtio:path=/tmp/g.sock,queue_size=big", 0, 0x2),
                 std::invalid_argument);
    // The native driver (the default) is no PMD: it takes no devargs, and its ring size
    // must be a power of two.
    const PortSpec n = parse_port_spec("g1=virtio:path=/tmp/g.sock,queue_size=512,server=0", 0, 2);
    EXPECT_EQ(n.kind, PortKind::kGuest);
    EXPECT_EQ(n.virtio_ring, 512);
    EXPECT_FALSE(n.listens);
    EXPECT_EQ(n.description, "guest NIC connecting to /tmp/g.sock");
    EXPECT_EQ(spec_error("g1=virtio:path=/tmp/g.sock,queue_size=300"),
              "port g1: queue_size must be a power of two, not 300");
    EXPECT_EQ(spec_error("g1=virtio:path=/tmp/g.sock,in_order=0"),
              "port g1: in_order= is an option of DPDK's virtio-user driver (driver=dpdk); the "
              "native driver takes path=, server=, queue_size=, queues=, rxq=, vlan=");
    EXPECT_EQ(spec_error("g1=virtio:path=/tmp/g.sock,driver=qemu"),
              "port g1: driver must be native or dpdk, not 'qemu'");
    EXPECT_THROW(parse_port_spec("up=memif:socket=/tmp/m.sock,queues=0", 0, 0x1),
                 std::invalid_argument);
    EXPECT_THROW(parse_port_spec("up=memif:socket=/tmp/m.sock,queues=9", 0, 0x1),
                 std::invalid_argument);
}

TEST(PortSpec, TheNativeMemifNicTakesTheKeysItHonours) {
    const PortSpec m = parse_port_spec(
        "up=memif:socket=/tmp/m.sock,role=server,id=7,rsize=12,socket-abstract=no,rxq=2", 3, 1);
    EXPECT_EQ(m.kind, PortKind::kNativeMemif);
    EXPECT_TRUE(m.listens);
    EXPECT_EQ(m.memif_id, 7u);
    EXPECT_EQ(m.memif_log2_ring, 12);
    EXPECT_FALSE(m.memif_abstract);
    EXPECT_EQ(m.rx_queues, 2);
    EXPECT_TRUE(m.devargs.empty());
    EXPECT_EQ(m.description, "memif server on /tmp/m.sock (2 receive, 1 transmit queues)");
    const PortSpec d = parse_port_spec("up=memif:socket=/tmp/m.sock", 0, 1);
    EXPECT_EQ(d.kind, PortKind::kNativeMemif);
    EXPECT_FALSE(d.listens);
    EXPECT_EQ(d.memif_log2_ring, 10);
    EXPECT_TRUE(d.memif_abstract);  // as DPDK's net_memif, so that the two meet
    EXPECT_EQ(spec_error("up=memif:socket=/tmp/m.sock,bsize=4096"),
              "port up: bsize= is an option of DPDK's net_memif (driver=dpdk); the native "
              "driver takes socket=, role=, id=, rsize=, socket-abstract=, queues=, rxq=, vlan=");
    EXPECT_EQ(spec_error("up=memif:socket=/tmp/m.sock,rsize=15"),
              "port up: rsize (log2 of the ring size) must be a number from 1 to 14, not '15'");
    EXPECT_EQ(spec_error("up=memif:socket=/tmp/m.sock,socket-abstract=maybe"),
              "port up: socket-abstract must be yes or no");
    EXPECT_NE(spec_error("up=memif:socket=/tmp/m.sock,mac=02:00:00:00:00:01")
                  .find("mac= sets DPDK net_memif's address (driver=dpdk)"),
              std::string::npos);
    EXPECT_EQ(spec_error("up=memif:socket=/tmp/m.sock,driver=vpp"),
              "port up: driver must be native or dpdk, not 'vpp'");
}

TEST(PortSpec, ReceiveQueuesAloneKeepOneTransmitQueue) {
    // OVS-DPDK's memif server sends on queue 1 and receives on queue 0 only: the client
    // opens two receive rings and one transmit ring.
    const PortSpec up = parse_port_spec("up=memif:socket=/tmp/m.sock,rxq=2,driver=dpdk", 0, 0x1);
    EXPECT_EQ(up.rx_queues, 2);
    EXPECT_EQ(up.tx_queues, 1);
    EXPECT_EQ(up.devargs.find("rxq"), std::string::npos);
    EXPECT_NE(up.description.find("2 receive, 1 transmit queues"), std::string::npos);
    // A virtio-user NIC gets enough queue pairs for its receive queues.
    const PortSpec g = parse_port_spec("g=virtio:path=/tmp/g.sock,rxq=3,driver=dpdk", 1, 0x2);
    EXPECT_NE(g.devargs.find(",queues=3,"), std::string::npos);
    const PortSpec n = parse_port_spec("g=virtio:path=/tmp/g.sock,rxq=3", 1, 0x2);
    EXPECT_EQ(n.rx_queues, 3);
    EXPECT_EQ(n.tx_queues, 1);
    EXPECT_EQ(spec_error("up=memif:socket=/tmp/m.sock,rxq=0"),
              "port up: rxq must be a number from 1 to 8, not '0'");
    EXPECT_EQ(spec_error("up=memif:socket=/tmp/m.sock,rxq=two"),
              "port up: rxq must be a number from 1 to 8, not 'two'");
    EXPECT_EQ(spec_error("up=memif:socket=/tmp/m.sock,rxq=9"),
              "port up: rxq must be a number from 1 to 8, not '9'");
    EXPECT_NE(spec_error("up=memif:socket=/tmp/m.sock,queues=2,rxq=2").find("give one of them"),
              std::string::npos);
}

TEST(BurstSorter, KeepsOurPlainBuffersInPlaceAndMovesTheRestOut) {
    const unsigned baseline = rte_mempool_avail_count(g_pool);
    std::unique_ptr<rte_mempool, void (*)(rte_mempool*)> elsewhere(
        rte_pktmbuf_pool_create("gen_test_other", 63, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0),
        rte_mempool_free);
    ASSERT_NE(elsewhere, nullptr);
    auto ours = [] {
        rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
        EXPECT_NE(m, nullptr);
        return m;
    };
    rte_mbuf* plain1 = ours();
    rte_mbuf* foreign = rte_pktmbuf_alloc(elsewhere.get());
    ASSERT_NE(foreign, nullptr);
    rte_mbuf* plain2 = ours();
    rte_mbuf* chained = ours();
    ASSERT_EQ(rte_pktmbuf_chain(chained, ours()), 0);
    rte_mbuf* shared = ours();
    rte_mbuf_refcnt_update(shared, 1);  // another holder, e.g. a flood's clone
    rte_mbuf* attached = ours();
    rte_mbuf* plain3 = ours();
    rte_pktmbuf_attach(attached, plain3);  // indirect: its data is plain3's
    rte_mbuf* plain4 = ours();

    std::array<rte_mbuf*, 8> burst = {plain1, foreign,  plain2, chained,
                                      shared, attached, plain3, plain4};
    BurstSorter sorter(burst.data(), g_pool);
    for (uint16_t i = 0; i < burst.size(); ++i) {
        sorter.take(i);
    }
    // plain3 has a second reference now (attached's): not ours alone either.
    ASSERT_EQ(sorter.kept(), 3);
    EXPECT_EQ(burst[0], plain1);
    EXPECT_EQ(burst[1], plain2);
    EXPECT_EQ(burst[2], plain4);
    ASSERT_EQ(sorter.other_count(), 5);
    const std::vector<rte_mbuf*> others(sorter.others(), sorter.others() + 5);
    EXPECT_EQ(others, (std::vector<rte_mbuf*>{foreign, chained, shared, attached, plain3}));

    rte_pktmbuf_free_bulk(sorter.others(), sorter.other_count());
    rte_pktmbuf_free(shared);  // the other holder's reference
    rte_pktmbuf_free_bulk(burst.data(), sorter.kept());
    EXPECT_EQ(rte_mempool_avail_count(g_pool), baseline);
    EXPECT_EQ(rte_mempool_avail_count(elsewhere.get()), 63u);
}

TEST(BurstSorter, ABurstOfOursIsLeftAsItIs) {
    std::array<rte_mbuf*, 4> burst{};
    ASSERT_EQ(rte_pktmbuf_alloc_bulk(g_pool, burst.data(), burst.size()), 0);
    const auto before = burst;
    BurstSorter sorter(burst.data(), g_pool);
    for (uint16_t i = 0; i < burst.size(); ++i) {
        sorter.take(i);
    }
    EXPECT_EQ(sorter.kept(), 4);
    EXPECT_EQ(sorter.other_count(), 0);
    EXPECT_EQ(burst, before);
    rte_pktmbuf_free_bulk(burst.data(), burst.size());
}

}  // namespace
}  // namespace conduit::gen
