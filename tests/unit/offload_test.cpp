// Checksum and segmentation offload (switch/offload): the per-output decision, what a
// guest's offload request becomes, software checksums and TCP segmentation, and the
// fitter that applies them to a burst, on real DPDK mbufs from a real mempool. Frames
// are built and checked with a plain reference checksum written here, independent of
// the code under test.
#include "switch/offload.h"

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "switch/forwarding.h"
#include "tests/unit/mbuf_pool_env.h"

namespace conduit::sw {
namespace {

using test::g_pool;

const auto* const g_env =
    ::testing::AddGlobalTestEnvironment(new test::MbufPoolEnvironment("offload_test", 128, 8191));

// ---------------------------------------------------------------------------------------
// Reference frames

constexpr uint8_t kTcp = 6, kUdp = 17, kSctp = 132;
constexpr uint8_t kFin = 0x01, kPsh = 0x08, kAck = 0x10, kCwr = 0x80;

// Ones' complement sum of big-endian 16-bit words, folded.
uint32_t ref_sum(const uint8_t* p, std::size_t n, uint32_t sum = 0) {
    for (std::size_t i = 0; i + 1 < n; i += 2) {
        sum += uint32_t{p[i]} << 8 | p[i + 1];
    }
    if (n & 1) {
        sum += uint32_t{p[n - 1]} << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return sum;
}

void put16(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}
uint32_t get16(const uint8_t* p) {
    return uint32_t{p[0]} << 8 | p[1];
}
uint32_t get32(const uint8_t* p) {
    return get16(p) << 16 | get16(p + 2);
}

struct Spec {
    bool ipv6 = false;
    bool vlan = false;
    uint8_t proto = kTcp;
    uint32_t payload = 100;
    uint16_t ipv6_ext = 0;      // bytes of a destination-options header (multiple of 8)
    bool ipv6_routing = false;  // a routing header with segments left instead
    bool fragment = false;      // IPv4 more-fragments
    uint8_t tcp_flags = kAck | kPsh;
    uint32_t seq = 0xfffff000;  // wraps during a 64 KiB frame
    uint16_t ip_id = 0xfff0;    // so does the IPv4 ID
};

struct Frame {
    std::vector<uint8_t> bytes;
    uint16_t l2, l3, l4;
    bool ipv6;
    uint8_t proto;
};

// The pseudo-header sum of a frame's L4 part, as `len` bytes long.
uint32_t ref_pseudo(const Frame& f, uint32_t len) {
    const uint8_t* ip = f.bytes.data() + f.l2;
    uint8_t words[40] = {};
    std::size_t n;
    if (!f.ipv6) {
        std::memcpy(words, ip + 12, 8);
        words[9] = f.proto;
        put16(words + 10, len);
        n = 12;
    } else {
        std::memcpy(words, ip + 8, 32);
        put32(words + 32, len);
        words[39] = f.proto;
        n = 40;
    }
    return ref_sum(words, n);
}

uint32_t checksum_offset(const Frame& f) {
    return f.l2 + f.l3 + (f.proto == kTcp ? 16u : 6u);
}

// Whether the frame's L4 checksum (and IPv4 header checksum) verify.
bool l4_checksum_ok(const Frame& f) {
    const uint32_t off = f.l2 + f.l3;
    const uint32_t len = static_cast<uint32_t>(f.bytes.size()) - off;
    return ref_sum(f.bytes.data() + off, len, ref_pseudo(f, len)) == 0xffff;
}
bool ipv4_header_ok(const Frame& f) {
    return f.ipv6 || ref_sum(f.bytes.data() + f.l2, f.l3) == 0xffff;
}

Frame build(const Spec& s) {
    Frame f;
    f.ipv6 = s.ipv6;
    f.proto = s.proto;
    f.l2 = s.vlan ? 18 : 14;
    const uint16_t ext = s.ipv6_routing ? 24 : s.ipv6_ext;
    f.l3 = s.ipv6 ? static_cast<uint16_t>(40 + ext) : 20;
    f.l4 = s.proto == kTcp ? 20 : 8;
    f.bytes.assign(f.l2 + f.l3 + f.l4 + s.payload, 0);
    uint8_t* b = f.bytes.data();
    const uint8_t dst[6] = {0x52, 0x54, 0, 0, 0, 2}, src[6] = {0x52, 0x54, 0, 0, 0, 1};
    std::memcpy(b, dst, 6);
    std::memcpy(b + 6, src, 6);
    if (s.vlan) {
        put16(b + 12, 0x8100);
        put16(b + 14, 7);
    }
    put16(b + f.l2 - 2, s.ipv6 ? 0x86dd : 0x0800);
    uint8_t* ip = b + f.l2;
    const uint32_t l4_len = f.l4 + s.payload;
    if (!s.ipv6) {
        ip[0] = 0x45;
        put16(ip + 2, f.l3 + l4_len);
        put16(ip + 4, s.ip_id);
        put16(ip + 6, s.fragment ? 0x2000 : 0x4000);
        ip[8] = 64;
        ip[9] = s.proto;
        const uint8_t a[8] = {10, 9, 0, 1, 10, 9, 0, 2};
        std::memcpy(ip + 12, a, 8);
        put16(ip + 10, ~ref_sum(ip, 20) & 0xffff);
    } else {
        ip[0] = 0x60;
        put16(ip + 4, ext + l4_len);
        ip[7] = 64;
        for (int i = 0; i < 16; ++i) {
            ip[8 + i] = static_cast<uint8_t>(0x20 + i);
            ip[24 + i] = static_cast<uint8_t>(0x40 + i);
        }
        if (ext == 0) {
            ip[6] = s.proto;
        } else {
            ip[6] = s.ipv6_routing ? 43 : 60;
            uint8_t* e = ip + 40;
            e[0] = s.proto;
            e[1] = static_cast<uint8_t>(ext / 8 - 1);
            if (s.ipv6_routing) {
                e[2] = 0;  // type 0 routing header layout: one address, one segment left
                e[3] = 1;
            } else {
                e[2] = 1;  // PadN filling the header
                e[3] = static_cast<uint8_t>(ext - 4);
            }
        }
    }
    uint8_t* l4 = ip + f.l3;
    put16(l4, 40000);
    put16(l4 + 2, 5001);
    if (s.proto == kTcp) {
        put32(l4 + 4, s.seq);
        put32(l4 + 8, 0x1234);
        l4[12] = 0x50;
        l4[13] = s.tcp_flags;
        put16(l4 + 14, 502);
    } else {
        put16(l4 + 4, l4_len);
    }
    for (uint32_t i = 0; i < s.payload; ++i) {
        l4[f.l4 + i] = static_cast<uint8_t>(i * 7 + i / 251);
    }
    const uint32_t sum = ref_sum(l4, l4_len, ref_pseudo(f, l4_len));
    put16(b + checksum_offset(f), ~sum & 0xffff);
    return f;
}

// What a sender that offloads its checksum leaves in the field: the pseudo-header sum.
void make_partial(Frame& f) {
    const uint32_t len = static_cast<uint32_t>(f.bytes.size()) - f.l2 - f.l3;
    put16(f.bytes.data() + checksum_offset(f), ref_pseudo(f, len));
}

// A chain: segments of the given lengths, the last one taking the rest.
rte_mbuf* to_mbuf(const std::vector<uint8_t>& bytes, const std::vector<uint16_t>& pieces = {}) {
    rte_mbuf* head = nullptr;
    rte_mbuf* tail = nullptr;
    std::size_t off = 0;
    std::size_t piece = 0;
    while (off < bytes.size() || head == nullptr) {
        rte_mbuf* m = rte_pktmbuf_alloc(g_pool);
        EXPECT_NE(m, nullptr);
        std::size_t n = std::min<std::size_t>(bytes.size() - off, rte_pktmbuf_tailroom(m));
        if (piece < pieces.size()) {
            n = std::min<std::size_t>(n, pieces[piece++]);
        }
        std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(n)), bytes.data() + off, n);
        off += n;
        if (head == nullptr) {
            head = tail = m;
        } else {
            tail->next = m;
            tail = m;
            ++head->nb_segs;
            head->pkt_len += static_cast<uint32_t>(n);
        }
    }
    return head;
}

std::vector<uint8_t> bytes_of(const rte_mbuf* m) {
    std::vector<uint8_t> out;
    for (const rte_mbuf* s = m; s != nullptr; s = s->next) {
        const auto* p = rte_pktmbuf_mtod(s, const uint8_t*);
        out.insert(out.end(), p, p + s->data_len);
    }
    EXPECT_EQ(out.size(), rte_pktmbuf_pkt_len(m));
    return out;
}

Frame frame_of(const rte_mbuf* m, const Frame& like) {
    Frame f = like;
    f.bytes = bytes_of(m);
    return f;
}

// What DPDK's vhost library (compliant offload flags) hands over for a frame whose
// virtio-net header asked for a checksum (and segmentation with `mss`).
rte_mbuf* from_guest(const Frame& f, uint16_t mss = 0, const std::vector<uint16_t>& pieces = {}) {
    rte_mbuf* m = to_mbuf(f.bytes, pieces);
    m->ol_flags = RTE_MBUF_F_RX_L4_CKSUM_NONE;
    if (mss != 0) {
        m->ol_flags |= RTE_MBUF_F_RX_LRO;
        m->tso_segsz = mss;
    }
    return m;
}

class Offload : public ::testing::Test {
  protected:
    void SetUp() override { in_use_ = rte_mempool_in_use_count(g_pool); }
    void TearDown() override { EXPECT_EQ(rte_mempool_in_use_count(g_pool), in_use_); }
    unsigned in_use_ = 0;
};

// ---------------------------------------------------------------------------------------
// take_guest_offload

TEST_F(Offload, CompleteFramesFromAGuestCarryNothing) {
    rte_mbuf* m = to_mbuf(build({}).bytes);
    EXPECT_EQ(take_guest_offload(m), GuestOffload::kNone);
    EXPECT_FALSE(has_tx_offload(*m));
    rte_pktmbuf_free(m);
}

TEST_F(Offload, PartialChecksumsBecomeTransmitMetadata) {
    struct Case {
        Spec spec;
        uint64_t flags;
        uint16_t l2, l3, l4;
    } cases[] = {
        {{}, RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM, 14, 20, 20},
        {{.ipv6 = true, .proto = kUdp}, RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_UDP_CKSUM, 14, 40, 8},
        {{.vlan = true}, RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM, 18, 20, 20},
        {{.ipv6 = true, .ipv6_ext = 16}, RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_TCP_CKSUM, 14, 56, 20},
    };
    for (const auto& c : cases) {
        Frame f = build(c.spec);
        make_partial(f);
        rte_mbuf* m = from_guest(f);
        EXPECT_EQ(take_guest_offload(m), GuestOffload::kChecksum);
        EXPECT_EQ(m->ol_flags, c.flags);
        EXPECT_EQ(m->l2_len, c.l2);
        EXPECT_EQ(m->l3_len, c.l3);
        EXPECT_EQ(m->l4_len, c.l4);
        rte_pktmbuf_free(m);
    }
}

TEST_F(Offload, GsoFramesKeepTheirMss) {
    Frame f = build({.payload = 20000});
    make_partial(f);
    rte_mbuf* m = from_guest(f, 1448);
    EXPECT_EQ(take_guest_offload(m), GuestOffload::kGso);
    EXPECT_EQ(m->ol_flags, RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_TCP_CKSUM | RTE_MBUF_F_TX_TCP_SEG);
    EXPECT_EQ(m->tso_segsz, 1448);
    EXPECT_EQ(m->nb_segs, 10);  // a chain, as the vhost library builds one
    rte_pktmbuf_free(m);
}

TEST_F(Offload, AGsoFrameOfOneSegmentIsAnOrdinaryFrame) {
    Frame f = build({.payload = 1000});
    make_partial(f);
    rte_mbuf* m = from_guest(f, 1448);
    EXPECT_EQ(take_guest_offload(m), GuestOffload::kChecksum);
    EXPECT_EQ(m->ol_flags & RTE_MBUF_F_TX_TCP_SEG, 0u);
    EXPECT_EQ(m->tso_segsz, 0);
    rte_pktmbuf_free(m);
}

TEST_F(Offload, RequestsThatCannotBeCarriedOutAreInvalid) {
    struct Case {
        const char* what;
        Spec spec;
        uint16_t mss;
    } cases[] = {
        {"SCTP (a CRC, not a checksum)", {.proto = kSctp}, 0},
        {"UDP GSO (UFO is never offered)", {.proto = kUdp, .payload = 4000}, 1400},
        {"an MSS below the floor", {.payload = 4000}, kMinGsoSize - 1},
        {"an IPv4 fragment", {.proto = kUdp, .fragment = true}, 0},
        {"an IPv6 routing header", {.ipv6 = true, .ipv6_routing = true}, 0},
    };
    for (const auto& c : cases) {
        Frame f = build(c.spec);
        rte_mbuf* m = from_guest(f, c.mss);
        EXPECT_EQ(take_guest_offload(m), GuestOffload::kInvalid) << c.what;
        rte_pktmbuf_free(m);
    }
    // Headers not in the first segment.
    rte_mbuf* m = from_guest(build({}), 0, {30});
    EXPECT_EQ(take_guest_offload(m), GuestOffload::kInvalid);
    rte_pktmbuf_free(m);
}

// ---------------------------------------------------------------------------------------
// fit_frame

rte_mbuf* with_offload(const Spec& spec, uint16_t mss = 0) {
    Frame f = build(spec);
    make_partial(f);
    rte_mbuf* m = from_guest(f, mss);
    EXPECT_NE(take_guest_offload(m), GuestOffload::kInvalid);
    return m;
}

TEST_F(Offload, EachOutputGetsOnlyWhatItTakes) {
    const TxCaps none{max_frame_for_mtu(1500), 0};
    const TxCaps csum{max_frame_for_mtu(1500), TxCaps::kTcpCsum | TxCaps::kUdpCsum};
    const TxCaps tso4{max_frame_for_mtu(1500), TxCaps::kTcpCsum | TxCaps::kUdpCsum | TxCaps::kTso4};
    const TxCaps all{max_frame_for_mtu(1500), 0x0f};
    const TxCaps jumbo_none{max_frame_for_mtu(9000), 0};

    rte_mbuf* plain = to_mbuf(build({}).bytes);
    rte_mbuf* big = to_mbuf(build({.payload = 1500}).bytes);  // 1554 bytes
    rte_mbuf* partial = with_offload({});
    rte_mbuf* partial_udp6 = with_offload({.ipv6 = true, .proto = kUdp});
    rte_mbuf* gso4 = with_offload({.payload = 30000}, 1448);
    rte_mbuf* gso6 = with_offload({.ipv6 = true, .payload = 30000}, 1428);
    rte_mbuf* gso6_ext = with_offload({.ipv6 = true, .payload = 30000, .ipv6_ext = 8}, 1420);
    rte_mbuf* partial6_ext = with_offload({.ipv6 = true, .ipv6_ext = 8});
    rte_mbuf* gso_jumbo = with_offload({.payload = 30000}, 8948);

    EXPECT_EQ(fit_frame(*plain, none), TxFit::kAsIs);
    EXPECT_EQ(fit_frame(*big, none), TxFit::kTooBig);
    EXPECT_EQ(fit_frame(*big, jumbo_none), TxFit::kAsIs);

    EXPECT_EQ(fit_frame(*partial, none), TxFit::kChecksum);
    EXPECT_EQ(fit_frame(*partial, csum), TxFit::kPassChecksum);
    EXPECT_EQ(fit_frame(*partial_udp6, TxCaps{1522, TxCaps::kTcpCsum}), TxFit::kChecksum);
    EXPECT_EQ(fit_frame(*partial_udp6, csum), TxFit::kPassChecksum);

    EXPECT_EQ(fit_frame(*gso4, none), TxFit::kSegment);
    EXPECT_EQ(fit_frame(*gso4, csum), TxFit::kSegment);
    EXPECT_EQ(fit_frame(*gso4, tso4), TxFit::kPassGso);
    EXPECT_EQ(fit_frame(*gso6, tso4), TxFit::kSegment);
    EXPECT_EQ(fit_frame(*gso6, all), TxFit::kPassGso);

    // Extension headers: never passed on (the pseudo-header helpers would miscount them).
    EXPECT_EQ(fit_frame(*gso6_ext, all), TxFit::kSegment);
    EXPECT_EQ(fit_frame(*partial6_ext, all), TxFit::kChecksum);

    // A GSO frame whose segments would not fit the port.
    EXPECT_EQ(fit_frame(*gso_jumbo, all), TxFit::kTooBig);
    EXPECT_EQ(fit_frame(*gso_jumbo, jumbo_none), TxFit::kSegment);
    EXPECT_EQ(fit_frame(*gso_jumbo, TxCaps{max_frame_for_mtu(9000), 0x0f}), TxFit::kPassGso);

    for (rte_mbuf* m :
         {plain, big, partial, partial_udp6, gso4, gso6, gso6_ext, partial6_ext, gso_jumbo}) {
        rte_pktmbuf_free(m);
    }
}

TEST_F(Offload, MaxFrameAllowsTwoVlanTags) {
    EXPECT_EQ(max_frame_for_mtu(1500), 1522u);
    EXPECT_EQ(max_frame_for_mtu(9000), 9022u);
    const TxCaps caps{42, 5};
    EXPECT_EQ(TxCaps::unpack(caps.pack()).max_frame, 42u);
    EXPECT_EQ(TxCaps::unpack(caps.pack()).offloads, 5);
    EXPECT_EQ(describe_offloads(0), "none");
    EXPECT_EQ(describe_offloads(0x0f), "csum, tso4, tso6");
}

// ---------------------------------------------------------------------------------------
// complete_checksum

TEST_F(Offload, SoftwareChecksumsMatchTheReference) {
    const Spec specs[] = {{},
                          {.proto = kUdp, .payload = 333},
                          {.ipv6 = true, .payload = 1001},
                          {.ipv6 = true, .proto = kUdp, .payload = 2},
                          {.vlan = true},
                          {.ipv6 = true, .payload = 77, .ipv6_ext = 16}};
    for (const Spec& spec : specs) {
        const Frame good = build(spec);
        Frame f = good;
        make_partial(f);
        rte_mbuf* m = from_guest(f);
        ASSERT_EQ(take_guest_offload(m), GuestOffload::kChecksum);
        complete_checksum(m);
        EXPECT_FALSE(has_tx_offload(*m));
        EXPECT_EQ(bytes_of(m), good.bytes);
        rte_pktmbuf_free(m);
    }
}

TEST_F(Offload, PaddingAfterThePacketIsNotSummed) {
    for (const bool ipv6 : {false, true}) {
        Frame good = build({.ipv6 = ipv6, .proto = kUdp, .payload = 4});
        good.bytes.resize(good.bytes.size() + 10, 0xee);  // Ethernet padding
        Frame f = good;
        make_partial(f);
        rte_mbuf* m = from_guest(f);
        ASSERT_EQ(take_guest_offload(m), GuestOffload::kChecksum);
        complete_checksum(m);
        EXPECT_EQ(bytes_of(m), good.bytes);
        rte_pktmbuf_free(m);
    }
}

TEST_F(Offload, SoftwareChecksumsAcrossOddSegmentBoundaries) {
    // A jumbo frame in a chain whose segments end at odd offsets.
    const Frame good = build({.payload = 8000});
    Frame f = good;
    make_partial(f);
    rte_mbuf* m = from_guest(f, 0, {101, 333, 1, 1999, 7});
    ASSERT_EQ(m->nb_segs, 8);
    ASSERT_EQ(take_guest_offload(m), GuestOffload::kChecksum);
    complete_checksum(m);
    EXPECT_EQ(bytes_of(m), good.bytes);
    rte_pktmbuf_free(m);
}

TEST_F(Offload, AUdpChecksumOfZeroIsSentAsOnes) {
    // Search a payload byte that makes the UDP checksum come out as zero.
    for (unsigned v = 0; v < 0x10000; ++v) {
        Spec spec{.proto = kUdp, .payload = 2};
        Frame f = build(spec);
        const uint32_t off = f.l2 + f.l3 + f.l4;
        put16(f.bytes.data() + off, v);
        const uint32_t len = static_cast<uint32_t>(f.bytes.size()) - f.l2 - f.l3;
        put16(f.bytes.data() + checksum_offset(f), 0);
        if ((~ref_sum(f.bytes.data() + f.l2 + f.l3, len, ref_pseudo(f, len)) & 0xffff) != 0) {
            continue;
        }
        make_partial(f);
        rte_mbuf* m = from_guest(f);
        ASSERT_EQ(take_guest_offload(m), GuestOffload::kChecksum);
        complete_checksum(m);
        EXPECT_EQ(get16(bytes_of(m).data() + checksum_offset(f)), 0xffffu);
        rte_pktmbuf_free(m);
        return;
    }
    FAIL() << "no payload gives a zero checksum";
}

// ---------------------------------------------------------------------------------------
// TcpSegmenter

struct Segmented {
    std::vector<Frame> frames;
    std::vector<rte_mbuf*> mbufs;
};

Segmented segment_all(const rte_mbuf& gso, const Frame& like, bool partial) {
    Segmented out;
    TcpSegmenter s(gso, g_pool, partial);
    while (!s.done()) {
        rte_mbuf* seg = s.next();
        EXPECT_NE(seg, nullptr);
        if (seg == nullptr) {
            break;
        }
        out.mbufs.push_back(seg);
        out.frames.push_back(frame_of(seg, like));
    }
    return out;
}

void free_all(const Segmented& s) {
    for (rte_mbuf* m : s.mbufs) {
        rte_pktmbuf_free(m);
    }
}

// Checks segments against the frame they were cut from, as the kernel's GSO makes them.
void expect_segments(const Frame& whole, const Segmented& s, uint16_t mss, bool partial) {
    const uint32_t headers = whole.l2 + whole.l3 + whole.l4;
    const uint32_t payload = static_cast<uint32_t>(whole.bytes.size()) - headers;
    ASSERT_EQ(s.frames.size(), (payload + mss - 1) / mss);
    const uint8_t* wip = whole.bytes.data() + whole.l2;
    const uint8_t* wtcp = wip + whole.l3;
    std::vector<uint8_t> joined;
    for (std::size_t i = 0; i < s.frames.size(); ++i) {
        const Frame& f = s.frames[i];
        const bool last = i + 1 == s.frames.size();
        const uint32_t len = last ? payload - mss * static_cast<uint32_t>(i) : mss;
        SCOPED_TRACE("segment " + std::to_string(i));
        ASSERT_EQ(f.bytes.size(), headers + len);
        // Ethernet and the rest of the headers are copied as they were.
        EXPECT_EQ(std::memcmp(f.bytes.data(), whole.bytes.data(), whole.l2), 0);
        const uint8_t* ip = f.bytes.data() + f.l2;
        const uint8_t* tcp = ip + f.l3;
        if (!f.ipv6) {
            EXPECT_EQ(get16(ip + 2), f.l3 + f.l4 + len);
            EXPECT_EQ(get16(ip + 4), (get16(wip + 4) + i) & 0xffff);
            EXPECT_TRUE(ipv4_header_ok(f));
        } else {
            EXPECT_EQ(get16(ip + 4), f.l3 - 40 + f.l4 + len);
            EXPECT_EQ(std::memcmp(ip + 40, wip + 40, f.l3 - 40), 0);  // extension headers
        }
        EXPECT_EQ(get32(tcp + 4), get32(wtcp + 4) + mss * static_cast<uint32_t>(i));
        EXPECT_EQ(get32(tcp + 8), get32(wtcp + 8));
        uint8_t flags = wtcp[13];
        if (!last) {
            flags &= static_cast<uint8_t>(~(kFin | kPsh));
        }
        if (i != 0) {
            flags &= static_cast<uint8_t>(~kCwr);
        }
        EXPECT_EQ(tcp[13], flags);
        if (partial) {
            EXPECT_EQ(get16(tcp + 16), ref_pseudo(f, f.l4 + len));
            EXPECT_EQ(s.mbufs[i]->ol_flags & RTE_MBUF_F_TX_L4_MASK, RTE_MBUF_F_TX_TCP_CKSUM);
            EXPECT_EQ(s.mbufs[i]->l2_len, f.l2);
            EXPECT_EQ(s.mbufs[i]->l3_len, f.l3);
            EXPECT_EQ(s.mbufs[i]->l4_len, f.l4);
        } else {
            EXPECT_TRUE(l4_checksum_ok(f));
            EXPECT_FALSE(has_tx_offload(*s.mbufs[i]));
        }
        joined.insert(joined.end(), f.bytes.begin() + headers, f.bytes.end());
    }
    EXPECT_TRUE(std::equal(joined.begin(), joined.end(), whole.bytes.begin() + headers));
}

TEST_F(Offload, SegmentsAreWhatTheKernelsGsoMakes) {
    struct Case {
        const char* what;
        Spec spec;
        uint16_t mss;
        std::vector<uint16_t> pieces;
    } cases[] = {
        {"IPv4, 64 KiB, FIN and CWR",
         {.payload = 65000, .tcp_flags = kAck | kPsh | kFin | kCwr},
         1448,
         {}},
        {"IPv6", {.ipv6 = true, .payload = 40000}, 1428, {}},
        {"IPv6 extension headers", {.ipv6 = true, .payload = 9000, .ipv6_ext = 24}, 1404, {}},
        {"VLAN, source chained at odd offsets",
         {.vlan = true, .payload = 12345},
         1000,
         {77, 1001, 3, 2047, 5}},
        {"jumbo segments span several mbufs", {.payload = 30000}, 8948, {}},
        {"payload a multiple of the MSS", {.payload = 1448 * 5}, 1448, {}},
        {"the smallest MSS", {.payload = 2000}, kMinGsoSize, {}},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.what);
        for (const bool partial : {false, true}) {
            Frame f = build(c.spec);
            make_partial(f);
            rte_mbuf* m = from_guest(f, c.mss, c.pieces);
            ASSERT_EQ(take_guest_offload(m), GuestOffload::kGso);
            const std::vector<uint8_t> before = bytes_of(m);
            const Segmented s = segment_all(*m, f, partial);
            expect_segments(f, s, c.mss, partial);
            EXPECT_EQ(bytes_of(m), before);  // the source is only read
            free_all(s);
            rte_pktmbuf_free(m);
        }
    }
}

TEST_F(Offload, SegmentationStopsCleanlyWhenThePoolIsEmpty) {
    Frame f = build({.payload = 20000});
    make_partial(f);
    rte_mbuf* m = from_guest(f, 1000);
    ASSERT_EQ(take_guest_offload(m), GuestOffload::kGso);
    rte_mempool* tiny = rte_pktmbuf_pool_create("tiny", 5, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
    ASSERT_NE(tiny, nullptr);
    TcpSegmenter s(*m, tiny, false);
    std::vector<rte_mbuf*> made;
    while (!s.done()) {
        rte_mbuf* seg = s.next();
        if (seg == nullptr) {
            break;
        }
        made.push_back(seg);
    }
    EXPECT_EQ(made.size(), 5u);
    EXPECT_FALSE(s.done());
    for (rte_mbuf* seg : made) {
        rte_pktmbuf_free(seg);
    }
    EXPECT_EQ(rte_mempool_in_use_count(tiny), 0u);
    rte_mempool_free(tiny);
    rte_pktmbuf_free(m);
}

// ---------------------------------------------------------------------------------------
// TxFitter

class Recorder : public BurstSender {
  public:
    void send(rte_mbuf** pkts, uint16_t count) override {
        ++bursts;
        for (uint16_t i = 0; i < count; ++i) {
            got.push_back(pkts[i]);
        }
    }
    void free() {
        for (rte_mbuf* m : got) {
            rte_pktmbuf_free(m);
        }
        got.clear();
    }
    std::vector<rte_mbuf*> got;
    int bursts = 0;
};

TEST_F(Offload, CompleteFramesPassAsOneBurst) {
    TxFitter fitter(g_pool);
    PortCounters c;
    Recorder r;
    rte_mbuf* pkts[4];
    for (auto& m : pkts) {
        m = to_mbuf(build({}).bytes);
    }
    fitter.send(TxCaps{}, pkts, 4, c, r);
    EXPECT_EQ(r.bursts, 1);
    ASSERT_EQ(r.got.size(), 4u);
    for (int i = 0; i < 4; ++i) {
        EXPECT_EQ(r.got[i], pkts[i]);
    }
    r.free();
}

TEST_F(Offload, ABurstIsFittedFrameByFrame) {
    TxFitter fitter(g_pool);
    PortCounters c;
    Recorder r;
    const Frame small = build({});
    Frame gso = build({.payload = 100 * 1448 + 1});  // 101 segments: more than one burst
    make_partial(gso);
    Frame partial = build({.payload = 500});
    make_partial(partial);
    rte_mbuf* pkts[5] = {to_mbuf(small.bytes), from_guest(gso, 1448), from_guest(partial),
                         to_mbuf(build({.payload = 1600}).bytes), to_mbuf(small.bytes)};
    ASSERT_EQ(take_guest_offload(pkts[1]), GuestOffload::kGso);
    ASSERT_EQ(take_guest_offload(pkts[2]), GuestOffload::kChecksum);
    // The partial-checksum frame is also queued on another port (flooded): it must be
    // copied before its checksum is written, and stay as it was for that port.
    rte_pktmbuf_refcnt_update(pkts[2], 1);
    rte_mbuf* shared = pkts[2];
    const std::vector<uint8_t> shared_before = bytes_of(shared);

    fitter.send(TxCaps{}, pkts, 5, c, r);

    ASSERT_EQ(r.got.size(), 1u + 101 + 1 + 1);
    EXPECT_GE(r.bursts, 2);
    EXPECT_EQ(r.got.front(), pkts[0]);
    EXPECT_EQ(r.got.back(), pkts[4]);
    for (std::size_t i = 1; i <= 101; ++i) {
        EXPECT_TRUE(l4_checksum_ok(frame_of(r.got[i], gso)));
    }
    rte_mbuf* completed = r.got[102];
    EXPECT_NE(completed, shared);
    EXPECT_TRUE(l4_checksum_ok(frame_of(completed, partial)));
    EXPECT_EQ(bytes_of(shared), shared_before);
    EXPECT_EQ(c.tx_gso_software.get(), 1u);
    EXPECT_EQ(c.tx_gso_segments.get(), 101u);
    EXPECT_EQ(c.tx_csum_software.get(), 1u);
    EXPECT_EQ(c.drop_tx_too_big.get(), 1u);
    EXPECT_EQ(c.tx_gso_passed.get(), 0u);
    r.free();
    rte_pktmbuf_free(shared);
}

TEST_F(Offload, OffloadsPassToAPortThatTakesThem) {
    TxFitter fitter(g_pool);
    PortCounters c;
    Recorder r;
    Frame gso = build({.payload = 30000});
    make_partial(gso);
    Frame partial = build({});
    make_partial(partial);
    rte_mbuf* pkts[2] = {from_guest(gso, 1448), from_guest(partial)};
    ASSERT_EQ(take_guest_offload(pkts[0]), GuestOffload::kGso);
    ASSERT_EQ(take_guest_offload(pkts[1]), GuestOffload::kChecksum);
    fitter.send(TxCaps{max_frame_for_mtu(1500), 0x0f}, pkts, 2, c, r);
    ASSERT_EQ(r.got.size(), 2u);
    EXPECT_EQ(r.got[0], pkts[0]);
    EXPECT_EQ(r.got[1], pkts[1]);
    EXPECT_EQ(c.tx_gso_passed.get(), 1u);
    EXPECT_EQ(c.tx_csum_passed.get(), 1u);
    r.free();
}

TEST_F(Offload, SegmentsKeepThePartialChecksumForAPortThatCompletesIt) {
    TxFitter fitter(g_pool);
    PortCounters c;
    Recorder r;
    Frame gso = build({.payload = 5000});
    make_partial(gso);
    rte_mbuf* m = from_guest(gso, 1448);
    ASSERT_EQ(take_guest_offload(m), GuestOffload::kGso);
    fitter.send(TxCaps{max_frame_for_mtu(1500), TxCaps::kTcpCsum | TxCaps::kUdpCsum}, &m, 1, c, r);
    ASSERT_EQ(r.got.size(), 4u);
    for (rte_mbuf* seg : r.got) {
        EXPECT_EQ(seg->ol_flags & RTE_MBUF_F_TX_L4_MASK, RTE_MBUF_F_TX_TCP_CKSUM);
    }
    r.free();
}

// ---------------------------------------------------------------------------------------
// Flooding a chained frame: every output holds a reference to every segment.

class CountingSink : public TxSink {
  public:
    void transmit(PortIndex port, rte_mbuf** pkts, uint16_t count) override {
        for (uint16_t i = 0; i < count; ++i) {
            received[port].push_back(bytes_of(pkts[i]));
        }
        rte_pktmbuf_free_bulk(pkts, count);
    }
    std::map<PortIndex, std::vector<std::vector<uint8_t>>> received;
};

TEST_F(Offload, AFloodedChainReachesEveryPortWhole) {
    MacTable fdb(64, 300'000, [] {});
    ForwardingState state;
    state.bridges.push_back({0, &fdb, {0, 1, 2, 3}});
    for (PortIndex p : {0, 1, 2, 3}) {
        state.bridge_of_port[p] = 0;
    }
    auto counters = std::make_unique<WorkerCounters>();
    CountingSink sink;
    Forwarder fwd(sink, *counters);
    const Frame jumbo = build({.payload = 8000});  // unknown destination: flooded
    rte_mbuf* m = to_mbuf(jumbo.bytes);
    ASSERT_EQ(m->nb_segs, 4);
    fwd.process(state, 0, &m, 1, 0);
    for (PortIndex p : {1, 2, 3}) {
        ASSERT_EQ(sink.received[p].size(), 1u);
        EXPECT_EQ(sink.received[p][0], jumbo.bytes);
    }
    // TearDown checks that every segment went back to the pool exactly once.
}

}  // namespace
}  // namespace conduit::sw
