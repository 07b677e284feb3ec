// switch/offload: checksum and segmentation offload between ports.
//
// A guest that negotiated VIRTIO_NET_F_CSUM and HOST_TSO4/6 hands the switch frames whose
// TCP or UDP checksum holds only the pseudo-header sum ("partial"), and TCP frames of up
// to 64 KiB that are to be cut into MSS-sized segments ("GSO frames"). DPDK's vhost
// library, registered with RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS, reports those as
// RX_L4_CKSUM_NONE, and RX_LRO with tso_segsz. take_guest_offload() turns that report into
// DPDK's transmit metadata (TX_TCP_SEG, TX_TCP_CKSUM / TX_UDP_CKSUM, TX_IPV4 / TX_IPV6,
// l2/l3/l4_len), the one form every output reads: the vhost library writes it into the
// receiving guest's virtio-net header, an ethdev hands it to its device.
//
// Each output then gets only what it can take. fit_frame() decides per frame and port:
// pass the offload on (the receiving guest or device completes it), complete the checksum
// here, segment here, or drop a frame larger than the port's MTU allows. TxFitter applies
// that to a burst. Frames flooded to several ports share one mbuf by reference count, so
// nothing here writes into a frame another output may still read: a shared frame that
// needs its checksum completed is copied first, and segmentation only reads its source.
#pragma once

#include <cstdint>
#include <string>

#include "switch/counters.h"

struct rte_mbuf;
struct rte_mempool;

namespace conduit::sw {

inline constexpr uint32_t kMinMtu = 68;
inline constexpr uint32_t kMaxMtu = 9216;
inline constexpr uint32_t kDefaultMtu = 1500;

// The longest Ethernet frame a port with this MTU carries: the Ethernet header and up to
// two VLAN tags on top of the MTU (mbufs hold no FCS).
constexpr uint32_t max_frame_for_mtu(uint32_t mtu) {
    return mtu + 14 + 8;
}

// The smallest MSS a GSO frame may ask for. Linux never goes below 48 bytes of payload
// (TCP_MIN_MSS 88 less options); the floor bounds how many segments one frame can cost.
inline constexpr uint16_t kMinGsoSize = 48;

// What an output port takes besides complete frames of up to max_frame bytes.
struct TxCaps {
    enum : uint8_t {
        kTcpCsum = 1,  // partial TCP checksums (virtio GUEST_CSUM, ethdev TCP_CKSUM)
        kUdpCsum = 2,  // partial UDP checksums
        kTso4 = 4,     // TCP GSO frames over IPv4 (virtio GUEST_TSO4, ethdev TCP_TSO)
        kTso6 = 8,     // over IPv6
    };
    uint32_t max_frame = max_frame_for_mtu(kDefaultMtu);
    uint8_t offloads = 0;

    bool has(uint8_t bits) const { return (offloads & bits) == bits; }
    // One word, so a port can publish its caps with a single atomic store.
    uint64_t pack() const { return uint64_t{max_frame} << 8 | offloads; }
    static TxCaps unpack(uint64_t word) {
        return {static_cast<uint32_t>(word >> 8), static_cast<uint8_t>(word & 0xff)};
    }
};

// "csum, tso4, tso6" (TxCaps bits; kTcpCsum and kUdpCsum together read "csum"), or "none".
std::string describe_offloads(uint8_t offloads);

// The offload a frame from a guest asked for.
enum class GuestOffload : uint8_t {
    kNone,      // a complete frame
    kChecksum,  // partial TCP or UDP checksum
    kGso,       // TCP GSO frame (checksum partial too)
    kInvalid,   // an offload conduitd cannot carry out; the frame must be dropped
};

// Reads the vhost library's report on a frame just dequeued from a guest and leaves the
// frame's transmit metadata in its place (see the top of this file). kInvalid: not TCP or
// UDP (an SCTP CRC, a fragment), a GSO frame that is not TCP or whose MSS is below
// kMinGsoSize, headers beyond the first segment, or an IPv6 routing header (whose final
// destination would change the pseudo-header). A GSO frame whose payload fits one segment
// becomes an ordinary frame with a partial checksum.
GuestOffload take_guest_offload(rte_mbuf* m);

// Whether the frame carries offload metadata (a partial checksum or GSO).
bool has_tx_offload(const rte_mbuf& m);

enum class TxFit : uint8_t {
    kAsIs,          // a complete frame that fits the port
    kPassChecksum,  // partial checksum handed on: the port's guest or device completes it
    kPassGso,       // GSO frame handed on whole: the port's guest or device segments it
    kChecksum,      // partial checksum the port cannot complete: complete it here
    kSegment,       // GSO frame the port cannot take whole: segment it here
    kTooBig,        // longer than the port's max_frame (a GSO frame: its segments would be)
};

// How frame `m` goes out of a port with `caps`. An IPv6 frame with extension headers never
// has its offload passed on: the vhost library's and the ethdevs' pseudo-header helpers
// (rte_net_intel_cksum_prepare) take the IPv6 next-header field for the L4 protocol.
TxFit fit_frame(const rte_mbuf& m, const TxCaps& caps);

// Completes the frame's partial TCP or UDP checksum and clears its offload metadata.
// Writes into the frame: the caller must hold its only reference.
void complete_checksum(rte_mbuf* m);

// Whether `m` is the only reference to its data (every segment direct, refcount 1).
bool exclusive(const rte_mbuf& m);

// Cuts a TCP GSO frame into segments of at most tso_segsz payload bytes, as a kernel's GSO
// would: each segment gets a copy of the headers with the IPv4 total length and ID (one
// more per segment) or the IPv6 payload length, and the TCP sequence number adjusted; FIN
// and PSH stay on the last segment only, CWR on the first only. The payload is copied into
// new mbufs from `pool` (chained when a segment outgrows one), so the source is only read
// and may be shared with other outputs. Each segment's TCP checksum is complete, or with
// `partial_checksum` left as the pseudo-header sum with TX_TCP_CKSUM set, for a port that
// completes checksums itself. The IPv4 header checksum is always computed.
class TcpSegmenter {
  public:
    TcpSegmenter(const rte_mbuf& gso, rte_mempool* pool, bool partial_checksum);

    bool done() const { return offset_ >= payload_; }
    // The next segment; nullptr when the pool ran out of mbufs (the rest is not sent).
    rte_mbuf* next();

  private:
    const rte_mbuf& src_;
    rte_mempool* pool_;
    bool partial_;
    bool ipv4_;
    uint16_t l2_, l3_, l4_, headers_, mss_;
    uint32_t payload_;     // bytes after the headers
    uint32_t offset_ = 0;  // payload bytes already emitted
    uint32_t index_ = 0;   // segments emitted
    uint32_t seq_;         // the frame's first sequence number
    uint16_t ip_id_ = 0;
    // Where offset_ is in the source chain.
    const rte_mbuf* cursor_;
    uint32_t cursor_off_;
};

// Receives the bursts a TxFitter produces.
class BurstSender {
  public:
    virtual void send(rte_mbuf** pkts, uint16_t count) = 0;

  protected:
    ~BurstSender() = default;
};

// Fits a burst to one output port and hands the result on in bursts (segmentation makes
// more frames than it was given). One per worker: it owns the worker's scratch array.
// Counts on the output port's counters: what was passed on, completed or segmented here,
// and what was dropped (drop_tx_too_big, drop_tx_offload_failed). New mbufs come from
// `pool`; nothing else is allocated.
class TxFitter {
  public:
    static constexpr uint16_t kOutBurst = 64;

    explicit TxFitter(rte_mempool* pool) : pool_(pool) {}

    // Takes one reference to every frame of `pkts`.
    void send(const TxCaps& caps, rte_mbuf** pkts, uint16_t count, PortCounters& counters,
              BurstSender& out);

  private:
    void fit_one(rte_mbuf* m, const TxCaps& caps, PortCounters& counters, BurstSender& out);
    void push(rte_mbuf* m, BurstSender& out);
    void flush(BurstSender& out);

    rte_mempool* pool_;
    uint16_t count_ = 0;
    rte_mbuf* out_[kOutBurst];
};

}  // namespace conduit::sw
