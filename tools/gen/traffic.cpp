#include "tools/gen/traffic.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "tools/gen/nic.h"
#include "tools/gen/port.h"
#include "tools/gen/reuse.h"

namespace conduit::gen {

namespace {
// Frames per transmit call: 64 rather than DPDK's customary 32 halves the calls, the
// clock readings and the loop's rounds per frame (alternating ceiling runs, best of
// four: 24 -> 21 cycles a frame on the ring, 128 -> 123 on memif, 152 -> 148 on
// virtio-user).
constexpr uint16_t kBurst = 64;
// A native NIC at the maximum rate sends once this many of its buffers are free (half
// of a small ring's).
constexpr uint16_t kNativeTxLeast = 32;
// The most of a fixed rate's schedule a port sends late, at once, after the generator
// was held up (see Engine::run).
constexpr double kCatchUp = 200e-6;
// The longest a port's frames wait for a fixed rate's burst to fill (PhaseSpec::tx_batch).
constexpr double kTxBatchWait = 200e-6;
// Frames asked of a port per receive call: more than a transmit call sends, so that a
// port fed one burst per round (a loopback, a switch keeping pace) is emptied in one
// call, not in one and an empty one.
constexpr uint16_t kRxBurst = BurstSorter::kMaxBurst;

// The fewest frames a receive call returns that do not prove the queue empty: the
// memif, ring, af_packet and af_xdp drivers hand out as many as asked while they have
// them; virtio-user at most 64 a call (VIRTIO_MBUF_BURST_SZ); any other driver may have
// a cap of its own, so its queue is polled until a call returns nothing.
uint16_t rx_full_count(PortKind kind) {
    switch (kind) {
        case PortKind::kVirtio:
            return 64;
        case PortKind::kDevargs:
            return 1;
        default:
            return kRxBurst;
    }
}
// A gap this long between two of the loop's TSC readings is a stall (see loop()): a
// call moves at most 128 frames, some microseconds (tens with jumbo frames).
constexpr double kStallUs = 250;
// Receive pacing at the maximum rate (see loop()): a port whose queues had fewer than
// kRxSparse frames in a round is next polled after a gap that doubles from kRxGapMinUs
// to kRxGapMaxUs; one with more, in the next round.
constexpr uint32_t kRxSparse = 32;
constexpr double kRxGapMinUs = 2;
constexpr double kRxGapMaxUs = 64;
}  // namespace

struct Engine::StreamState {
    StreamSpec spec;
    FrameTemplate tmpl;
    uint64_t next_seq = 0;
    uint32_t src_i = 0, dst_i = 0, flow_i = 0;
    uint64_t refused = 0, unsent = 0;
};

struct Engine::PortState {
    uint16_t id = 0;
    uint16_t index = 0;
    NativeNic* nic = nullptr;  // a NIC of conduit-gen's own (else an ethdev)
    uint16_t rx_queues = 1;
    unsigned rx_drain_bursts = 4;  // bursts taken from a queue in a row, at most
    uint16_t rx_full = kRxBurst;   // a call that got this many may have left more
    std::vector<uint16_t> active;  // streams of this port still sending
    std::size_t rr = 0;
    double frames_per_tsc = 0;  // 0: as fast as the port takes them
    uint64_t attempted = 0;     // frames built for this port (fixed rate)
    uint64_t skipped = 0;       // frames the schedule wanted while the generator was late
    uint64_t backlog_cap = kBurst;
    uint64_t min_batch = 1;  // frames due before a call is made (fixed rate)
    std::vector<uint16_t> sizes;
    std::size_t size_i = 0;
    rte_mbuf* pending[kBurst] = {};
    // Which stream each frame of the burst built last is, and its length; when every
    // frame is of one stream and one length (the single-stream fast path) only
    // burst_stream and burst_len say so, not written per frame.
    uint16_t pending_stream[kBurst] = {};
    uint16_t pending_len[kBurst] = {};
    int32_t burst_stream = -1;
    uint16_t burst_len = 0;
    uint16_t pending_off = 0, pending_count = 0;

    uint16_t stream_at(uint16_t k) const {
        return burst_stream >= 0 ? static_cast<uint16_t>(burst_stream) : pending_stream[k];
    }
    uint64_t bytes_of(uint16_t from, uint16_t count) const {
        if (burst_stream >= 0) {
            return uint64_t{count} * burst_len;
        }
        uint64_t bytes = 0;
        for (uint16_t k = from; k < from + count; ++k) {
            bytes += pending_len[k];
        }
        return bytes;
    }
    uint64_t pause_from = 0, pause_to = 0;
    uint64_t rx_next = 0, rx_gap = 0;  // receive pacing (maximum rate): TSC, ticks
    bool polled = true;
    PortPhaseCounters c;
};

Engine::Engine(PortSet& ports, rte_mempool* pool, unsigned lcore)
    : ports_(ports),
      pool_(pool),
      lcore_(lcore),
      hz_(rte_get_tsc_hz()),
      totals_(ports.size()),
      scratch_(std::size_t{kBurst} * kScratchFrame) {
    static_assert(kScratchFrame >= FrameTemplate::kBytes + sizeof(Stamp),
                  "a frame built in scratch space is its headers and its stamp");
}

Engine::~Engine() = default;

PhaseResult Engine::run(const PhaseSpec& phase, const OnProgress& on_progress,
                        double progress_interval_s) {
    if (phase.streams.empty()) {
        throw std::invalid_argument("phase " + phase.label + " has no streams");
    }
    if (phase.streams.size() > UINT16_MAX) {
        throw std::invalid_argument("too many streams");
    }
    if (phase.duration_s <= 0) {
        for (const StreamSpec& s : phase.streams) {
            if (s.frames == 0) {
                throw std::invalid_argument("phase " + phase.label +
                                            ": a stream without a frame count needs a duration");
            }
        }
    }
    phase_ = &phase;
    ++tag_;
    streams_.clear();
    streams_.resize(phase.streams.size());
    rx_streams_.clear();
    rx_streams_.resize(phase.streams.size());
    // Kept apart from the streams: 11 KB each, touched once per frame received.
    latency_.resize(std::max(latency_.size(), phase.streams.size()));
    for (std::size_t i = 0; i < phase.streams.size(); ++i) {
        latency_[i].reset();
    }
    port_state_.clear();
    port_state_.resize(ports_.size());
    for (std::size_t p = 0; p < ports_.size(); ++p) {
        PortState& ps = port_state_[p];
        ps.id = ports_.id(p);
        ps.nic = ports_.nic(p);
        ps.index = static_cast<uint16_t>(p);
        ps.rx_queues = ports_.spec(p).rx_queues;
        // Up to a whole ring's worth in a row: a port that receives from many (the
        // uplink of a star, fed each round by every guest port's burst: 512 frames from
        // 16 guests) must take in a round what they all sent in one, or at the maximum
        // rate its ring fills and the switch drops frames the generator, not the
        // switch, failed to keep up with (eight bursts capped such an uplink at half of
        // what the guests sent).
        ps.rx_full = rx_full_count(ports_.spec(p).kind);
        ps.rx_drain_bursts = std::max<unsigned>(4, ports_.spec(p).rx_descriptors / ps.rx_full);
        for (std::size_t k = 0; k < phase.sizes.period(); ++k) {
            ps.sizes.push_back(phase.sizes.at(k));
        }
    }
    for (std::size_t i = 0; i < phase.streams.size(); ++i) {
        StreamState& s = streams_[i];
        s.spec = phase.streams[i];
        if (s.spec.tx_port >= ports_.size() || s.spec.rx_port >= ports_.size()) {
            throw std::invalid_argument("stream " + s.spec.name +
                                        " names a port that does not exist");
        }
        s.tmpl =
            FrameTemplate(s.spec.ip_src, s.spec.ip_dst, 5001, ports_.spec(s.spec.tx_port).vlan);
        if (s.spec.src_count == 1 && s.spec.dst_count == 1 && s.spec.flows == 1 &&
            phase.sizes.period() == 1) {
            s.tmpl.complete(s.spec.dst_base, s.spec.src_base, 1024, phase.sizes.at(0));
        }
        rx_streams_[i].rx_port = s.spec.rx_port;
        port_state_[s.spec.tx_port].active.push_back(static_cast<uint16_t>(i));
    }
    const double per_stream = phase.rate_pps / static_cast<double>(phase.streams.size());
    for (PortState& ps : port_state_) {
        if (phase.rate_pps > 0 && !ps.active.empty()) {
            const double port_pps = per_stream * static_cast<double>(ps.active.size());
            ps.frames_per_tsc = port_pps / static_cast<double>(hz_);
            // A generator held up (its CPU taken for a moment: on a shared virtual
            // machine a vCPU is away for a millisecond now and then) catches up by at
            // most kCatchUp of frames; the rest is skipped and reported. The catch-up
            // goes out at the generator's full speed, which a wire never does: 1 ms of
            // frames at once (1,600 at 1.6 Mpps) overflowed a switch's 1,024-descriptor
            // ring that the same frames at their rate would not have, and with the guest
            // NICs' cheap sends NDR searches failed on the generator's stalls.
            ps.backlog_cap = std::max<uint64_t>(kBurst, static_cast<uint64_t>(port_pps * kCatchUp));
            // A burst waits for at most kTxBatchWait of the port's frames: a slow port
            // sends smaller bursts rather than long silences.
            ps.min_batch = std::clamp<uint64_t>(static_cast<uint64_t>(port_pps * kTxBatchWait), 1,
                                                std::clamp<uint16_t>(phase.tx_batch, 1, kBurst));
        }
    }
    if (!phase.rx_ports.empty()) {
        for (PortState& ps : port_state_) {
            ps.polled = std::find(phase.rx_ports.begin(), phase.rx_ports.end(), ps.index) !=
                        phase.rx_ports.end();
        }
    }
    for (const RxPause& pause : phase.pauses) {
        if (pause.port >= ports_.size()) {
            throw std::invalid_argument("rx pause names a port that does not exist");
        }
    }
    progress_.sent.store(0);
    progress_.received.store(0);
    progress_.elapsed_ms.store(0);
    progress_.draining.store(false);

    std::vector<uint64_t> bad_at_start(ports_.size(), 0);
    for (std::size_t p = 0; p < ports_.size(); ++p) {
        if (port_state_[p].nic != nullptr) {
            bad_at_start[p] = port_state_[p].nic->bad_entries();
        }
    }
    std::atomic<bool> finished{false};
    struct Launch {
        Engine* engine;
        std::atomic<bool>* finished;
    } launch{this, &finished};
    const int rc = rte_eal_remote_launch(
        [](void* arg) -> int {
            auto* l = static_cast<Launch*>(arg);
            l->engine->loop();
            l->finished->store(true, std::memory_order_release);
            return 0;
        },
        &launch, lcore_);
    if (rc != 0) {
        throw std::runtime_error("cannot launch the traffic lcore");
    }
    auto next_report = std::chrono::steady_clock::now();
    const auto interval = std::chrono::duration<double>(progress_interval_s);
    while (!finished.load(std::memory_order_acquire)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (on_progress && progress_interval_s > 0 &&
            std::chrono::steady_clock::now() >= next_report) {
            next_report +=
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
            on_progress(progress_);
        }
    }
    rte_eal_wait_lcore(lcore_);
    for (std::size_t p = 0; p < ports_.size(); ++p) {
        PortState& ps = port_state_[p];
        if (ps.nic != nullptr) {
            ps.c.bad_entries = ps.nic->bad_entries() - bad_at_start[p];
        }
    }
    PhaseResult result = collect();
    for (std::size_t p = 0; p < ports_.size(); ++p) {
        const PortPhaseCounters& c = port_state_[p].c;
        totals_[p].tx_frames += c.tx_frames;
        totals_[p].tx_bytes += c.tx_bytes;
        totals_[p].rx_frames += c.rx_frames;
        totals_[p].rx_bytes += c.rx_bytes;
        for (std::size_t q = 0; q < kMaxPortQueues; ++q) {
            totals_[p].rx_queue_frames[q] += c.rx_queue_frames[q];
        }
    }
    phase_ = nullptr;
    return result;
}

bool Engine::take_mbufs(rte_mbuf** pkts, uint16_t count) {
    // The most recently stashed, in one copy (their order does not matter).
    const uint16_t from_stash = static_cast<uint16_t>(std::min<uint32_t>(count, stash_count_));
    stash_count_ -= from_stash;
    std::memcpy(pkts, stash_ + stash_count_, from_stash * sizeof(rte_mbuf*));
    if (from_stash < count &&
        rte_mempool_get_bulk(pool_, reinterpret_cast<void**>(pkts + from_stash),
                             count - from_stash) != 0) {
        recycle(pkts, from_stash);
        return false;
    }
    return true;
}

void Engine::recycle(rte_mbuf** pkts, uint16_t count) {
    for (uint16_t i = 0; i < count; ++i) {
        if (stash_count_ == kStash) {
            rte_mempool_put_bulk(pool_, reinterpret_cast<void* const*>(pkts + i), count - i);
            return;
        }
        stash_[stash_count_++] = pkts[i];
    }
}

// Where build_frames() writes: mbufs (DPDK ports) or a native NIC's buffers. Each
// gives frame k's first byte, and takes its length: for_burst(len) once before a burst
// of frames of one length, then done(k) per frame; or done(k, len) per frame.
namespace {
struct MbufFrames {
    rte_mbuf** pkts;
    uint16_t port_id;
    uint64_t line[4] = {};

    uint8_t* data(uint16_t k) const {
        return static_cast<uint8_t*>(pkts[k]->buf_addr) + RTE_PKTMBUF_HEADROOM;
    }
    // Each mbuf gets its first line's fields from the data offset to the hash in two
    // 16-byte stores (a store a cycle is what some cores manage, so the stores set the
    // pace): data offset, one reference, one segment, the port; no offload flags; no
    // packet type, the length; the length, no VLAN tag; no hash.
    void for_burst(uint16_t len) {
        static_assert(offsetof(rte_mbuf, refcnt) == offsetof(rte_mbuf, data_off) + 2 &&
                      offsetof(rte_mbuf, nb_segs) == offsetof(rte_mbuf, data_off) + 4 &&
                      offsetof(rte_mbuf, port) == offsetof(rte_mbuf, data_off) + 6 &&
                      offsetof(rte_mbuf, ol_flags) == offsetof(rte_mbuf, data_off) + 8 &&
                      offsetof(rte_mbuf, packet_type) == offsetof(rte_mbuf, data_off) + 16 &&
                      offsetof(rte_mbuf, pkt_len) == offsetof(rte_mbuf, data_off) + 20 &&
                      offsetof(rte_mbuf, data_len) == offsetof(rte_mbuf, data_off) + 24 &&
                      offsetof(rte_mbuf, vlan_tci) == offsetof(rte_mbuf, data_off) + 26 &&
                      offsetof(rte_mbuf, hash) == offsetof(rte_mbuf, data_off) + 28);
        line[0] =
            RTE_PKTMBUF_HEADROOM | uint64_t{1} << 16 | uint64_t{1} << 32 | uint64_t{port_id} << 48;
        line[1] = 0;
        line[2] = uint64_t{len} << 32;
        line[3] = len;
    }
    void done(uint16_t k) const { std::memcpy(&pkts[k]->data_off, line, sizeof line); }
    // Only the first cache line is written: every mbuf here is direct and single-segment
    // with one reference and no next segment (the pool's invariant, and what receive()
    // checks before it keeps a buffer).
    void done(uint16_t k, uint16_t len) const {
        rte_mbuf* m = pkts[k];
        m->data_off = RTE_PKTMBUF_HEADROOM;
        m->port = port_id;
        m->ol_flags = 0;
        m->packet_type = 0;
        m->vlan_tci = 0;
        m->data_len = len;
        m->pkt_len = len;
    }
};

// A native NIC's transmit buffers: the lengths go to its descriptors at commit.
struct BufferFrames {
    uint8_t* const* frames;

    uint8_t* data(uint16_t k) const { return frames[k]; }
    void for_burst(uint16_t) {}
    void done(uint16_t) const {}
    void done(uint16_t, uint16_t) const {}
};
}  // namespace

uint16_t Engine::build(PortState& port, rte_mbuf** pkts, uint16_t count, uint64_t now) {
    if (count == 0 || port.active.empty() || !take_mbufs(pkts, count)) {
        return 0;
    }
    MbufFrames out{pkts, port.id};
    const uint16_t built = build_frames(port, out, count, now);
    if (built < count) {
        recycle(pkts + built, static_cast<uint16_t>(count - built));
    }
    return built;
}

template <typename Frames>
uint16_t Engine::build_frames(PortState& port, Frames& out, uint16_t count, uint64_t now) {
    if (count == 0 || port.active.empty()) {
        return 0;
    }
    const uint16_t magic = static_cast<uint16_t>(kMagicHigh | tag_);
    if (port.active.size() == 1) {
        // One stream on this port whose frames differ only in their stamp, with no end:
        // the common benchmark case, built with the least work per frame.
        const uint16_t si = port.active[0];
        StreamState& s = streams_[si];
        const uint16_t len = s.tmpl.complete_len();
        if (len != 0 && s.spec.frames == 0) {
            // In locals: stores into the frames might alias the fields, so the compiler
            // would reload them for every frame.
            uint64_t seq = s.next_seq;
            uint8_t header[FrameTemplate::kBytes];
            std::memcpy(header, s.tmpl.bytes(), sizeof header);
            const uint16_t header_len = s.tmpl.header_len();
            out.for_burst(len);
            const uint64_t key = magic | uint64_t{si} << 16;
            for (uint16_t k = 0; k < count; ++k) {
                out.done(k);
                uint8_t* data = out.data(k);
                std::memcpy(data, header, sizeof header);
                const uint64_t head = key | (seq++ << 32);
                std::memcpy(data + header_len, &head, 8);
                std::memcpy(data + header_len + 8, &now, 8);
            }
            s.next_seq = seq;
            port.burst_stream = si;
            port.burst_len = len;
            return count;
        }
        if (s.spec.frames == 0 && port.sizes.size() == 1) {
            // One stream of one size cycling through addresses or flows (--macs, --flows):
            // its counters in locals, its header composed in registers (CyclingHeader).
            const uint16_t size = port.sizes[0];
            const CyclingHeader header(s.tmpl, size);
            // In locals, as above: a store into a frame might alias any field.
            const Mac dst_base = s.spec.dst_base, src_base = s.spec.src_base;
            const uint32_t dst_count = s.spec.dst_count, src_count = s.spec.src_count;
            const uint32_t flows = s.spec.flows;
            uint64_t seq = s.next_seq;
            uint32_t src_i = s.src_i, dst_i = s.dst_i, flow_i = s.flow_i;
            out.for_burst(size);
            const uint64_t key = magic | uint64_t{si} << 16;
            for (uint16_t k = 0; k < count; ++k) {
                out.done(k);
                header.write(out.data(k), dst_base + dst_i, src_base + src_i,
                             static_cast<uint16_t>(1024 + flow_i), key | (seq++ << 32), now);
                src_i = src_i + 1 == src_count ? 0 : src_i + 1;
                dst_i = dst_i + 1 == dst_count ? 0 : dst_i + 1;
                flow_i = flow_i + 1 == flows ? 0 : flow_i + 1;
            }
            s.next_seq = seq;
            s.src_i = src_i;
            s.dst_i = dst_i;
            s.flow_i = flow_i;
            port.burst_stream = si;
            port.burst_len = size;
            return count;
        }
    }
    port.burst_stream = -1;
    uint16_t built = 0;
    while (built < count && !port.active.empty()) {
        if (port.rr >= port.active.size()) {
            port.rr = 0;
        }
        const uint16_t si = port.active[port.rr++];
        StreamState& s = streams_[si];
        const StreamSpec& spec = s.spec;
        const uint16_t len = port.sizes[port.size_i];
        if (++port.size_i == port.sizes.size()) {
            port.size_i = 0;
        }
        const Stamp stamp{magic, si, static_cast<uint32_t>(s.next_seq), now};
        if (s.tmpl.complete_len() != 0) {
            s.tmpl.write_complete(out.data(built), stamp);
        } else {
            s.tmpl.write(out.data(built), spec.dst_base + s.dst_i, spec.src_base + s.src_i,
                         static_cast<uint16_t>(1024 + s.flow_i), len, stamp);
        }
        out.done(built, len);
        port.pending_stream[built] = si;  // which stream each frame of the burst is
        port.pending_len[built] = len;
        ++built;
        if (++s.src_i == spec.src_count) {
            s.src_i = 0;
        }
        if (++s.dst_i == spec.dst_count) {
            s.dst_i = 0;
        }
        if (++s.flow_i == spec.flows) {
            s.flow_i = 0;
        }
        if (++s.next_seq == spec.frames) {
            // This stream is done: take it out of the rotation.
            --port.rr;
            port.active.erase(port.active.begin() + static_cast<std::ptrdiff_t>(port.rr));
        }
    }
    return built;
}

bool Engine::transmit(PortState& port, uint64_t now) {
    if (port.nic != nullptr) {
        return transmit_native(port, now);
    }
    if (port.frames_per_tsc == 0) {
        // As fast as the port takes frames: a refused frame waits for the next call.
        bool built = false;
        if (port.pending_off == port.pending_count) {
            port.pending_off = 0;
            port.pending_count = build(port, port.pending, kBurst, now);
            if (port.pending_count == 0) {
                return false;
            }
            built = true;
        }
        const uint16_t want = static_cast<uint16_t>(port.pending_count - port.pending_off);
        const uint16_t sent = rte_eth_tx_burst(port.id, 0, port.pending + port.pending_off, want);
        ++port.c.tx_calls;
        port.c.tx_calls_short += sent < want;
        port.c.tx_frames += sent;
        port.c.tx_bytes += port.bytes_of(port.pending_off, sent);
        port.pending_off = static_cast<uint16_t>(port.pending_off + sent);
        // A retry the port refused again is waiting for the switch, not work.
        return built || sent != 0;
    }
    if (port.active.empty()) {
        return false;
    }
    const auto due = static_cast<uint16_t>(frames_due(port, now));
    if (due == 0) {
        return false;
    }
    rte_mbuf* pkts[kBurst];
    const uint16_t built = build(port, pkts, due, now);
    if (built == 0) {
        return false;
    }
    port.attempted += built;
    const uint16_t sent = rte_eth_tx_burst(port.id, 0, pkts, built);
    ++port.c.tx_calls;
    port.c.tx_calls_short += sent < built;
    port.c.tx_frames += sent;
    port.c.tx_bytes += port.bytes_of(0, sent);
    if (sent < built) {
        // The switch did not drain its side of the ring in time: on a wire these frames
        // would be gone too.
        for (uint16_t k = sent; k < built; ++k) {
            ++streams_[port.stream_at(k)].refused;
        }
        port.c.refused += built - sent;
        recycle(pkts + sent, static_cast<uint16_t>(built - sent));
    }
    return true;
}

uint64_t Engine::frames_due(PortState& port, uint64_t now) {
    const auto due_total =
        static_cast<uint64_t>(static_cast<double>(now - start_tsc_) * port.frames_per_tsc);
    const uint64_t done = port.attempted + port.skipped;
    if (due_total < done + port.min_batch) {
        return 0;
    }
    uint64_t due = due_total - done;
    if (due > port.backlog_cap) {
        port.skipped += due - port.backlog_cap;
        due = port.backlog_cap;
    }
    return std::min<uint64_t>(due, kBurst);
}

bool Engine::transmit_native(PortState& port, uint64_t now) {
    if (port.active.empty()) {
        return false;
    }
    NativeNic& nic = *port.nic;
    uint8_t* frames[kBurst];
    if (port.frames_per_tsc == 0) {
        // As fast as the switch takes them, in bursts of at least kNativeTxLeast: a
        // switch slower than the generator frees a few buffers at a time, and a call for
        // each few would cost what a burst costs (reading what the switch's core just
        // wrote), while the frames still queued keep the switch busy meanwhile.
        const uint16_t room = nic.tx_reserve(kBurst, frames, kNativeTxLeast);
        ++port.c.tx_calls;
        port.c.tx_calls_short += room < kBurst;
        if (room == 0) {
            return false;  // waiting for the switch, not work
        }
        BufferFrames out{frames};
        const uint16_t built = build_frames(port, out, room, now);
        nic.tx_commit(built, port.burst_stream >= 0 ? nullptr : port.pending_len, port.burst_len);
        port.c.tx_frames += built;
        port.c.tx_bytes += port.bytes_of(0, built);
        return built != 0;
    }
    const auto due = static_cast<uint16_t>(frames_due(port, now));
    if (due == 0) {
        return false;
    }
    // Frames beyond the buffers the switch left are refused, as a full ring refuses
    // them on a DPDK port: built (in scratch space, so that their streams count them) and
    // lost.
    const uint16_t room = nic.tx_reserve(due, frames);
    for (uint16_t k = room; k < due; ++k) {
        frames[k] = scratch_.data() + std::size_t{k} * kScratchFrame;
    }
    BufferFrames out{frames};
    const uint16_t built = build_frames(port, out, due, now);
    const uint16_t sent = std::min(built, room);
    nic.tx_commit(sent, port.burst_stream >= 0 ? nullptr : port.pending_len, port.burst_len);
    port.attempted += built;
    ++port.c.tx_calls;
    port.c.tx_calls_short += sent < built;
    port.c.tx_frames += sent;
    port.c.tx_bytes += port.bytes_of(0, sent);
    for (uint16_t k = sent; k < built; ++k) {
        ++streams_[port.stream_at(k)].refused;
    }
    port.c.refused += built - sent;
    return built != 0;
}

void Engine::finish_pending(PortState& port) {
    for (uint16_t k = port.pending_off; k < port.pending_count; ++k) {
        ++streams_[port.stream_at(k)].unsent;
    }
    if (port.pending_count > port.pending_off) {
        recycle(port.pending + port.pending_off,
                static_cast<uint16_t>(port.pending_count - port.pending_off));
    }
    port.pending_off = port.pending_count = 0;
}

uint16_t Engine::receive(PortState& port, uint16_t queue, uint64_t now) {
    if (now >= port.pause_from && now < port.pause_to) {
        return 0;
    }
    if (port.nic != nullptr) {
        return receive_native(port, queue, now);
    }
    // Buffers are kept for the next frames sent while the stash has room for a burst:
    // then the driver writes them straight into it (no copy per frame), and a buffer not
    // ours to reuse is moved out, to be freed, as the burst is read.
    const uint32_t stashed = stash_count_;
    const bool keep = stashed + kRxBurst <= kStash;
    rte_mbuf* elsewhere[kRxBurst];
    rte_mbuf** const pkts = keep ? stash_ + stashed : elsewhere;
    const uint16_t n = rte_eth_rx_burst(port.id, queue, pkts, kRxBurst);
    if (n == 0) {
        return 0;
    }
    struct Mbufs {
        rte_mbuf** pkts;
        const uint8_t* data(uint16_t i) const { return rte_pktmbuf_mtod(pkts[i], const uint8_t*); }
        uint32_t len(uint16_t i) const { return rte_pktmbuf_data_len(pkts[i]); }
    } in{pkts};
    if (!keep) {
        account_frames(port, queue, in, n, now, [](uint16_t) {});
        rte_pktmbuf_free_bulk(pkts, n);
        return n;
    }
    BurstSorter sorter(pkts, pool_);
    account_frames(port, queue, in, n, now, [&sorter](uint16_t i) { sorter.take(i); });
    stash_count_ = stashed + sorter.kept();
    if (sorter.other_count() != 0) {
        rte_pktmbuf_free_bulk(sorter.others(), sorter.other_count());
    }
    return n;
}

uint16_t Engine::receive_native(PortState& port, uint16_t queue, uint64_t now) {
    struct Buffers {
        const uint8_t* frames[kRxBurst];
        uint32_t lens[kRxBurst];
        const uint8_t* data(uint16_t i) const { return frames[i]; }
        uint32_t len(uint16_t i) const { return lens[i]; }
    } in;
    const uint16_t n = port.nic->rx_poll(queue, in.frames, in.lens, kRxBurst);
    if (n != 0) {
        account_frames(port, queue, in, n, now, [](uint16_t) {});
    }
    // The buffers go back to the switch once read (also those of entries it got wrong).
    port.nic->rx_release(queue);
    return n;
}

template <typename Frames, typename EachFrame>
void Engine::account_frames(PortState& port, uint16_t queue, const Frames& in, uint16_t n,
                            uint64_t now, EachFrame&& each) {
    ++port.c.rx_calls;
    // A frame's first line is fetched a few frames before it is read: a frame a switch
    // on another core wrote is not in this core's cache.
    constexpr uint16_t kAhead = 4;
    for (uint16_t i = 0; i < std::min(n, kAhead); ++i) {
        rte_prefetch0(in.data(i));
    }
    // The frames conduit-gen sends without a VLAN tag are told by two bytes (ethertype
    // IPv4, protocol UDP) and their stamp read at a fixed place; the rest go through
    // read_stamp().
    constexpr uint16_t kPlainStamp = kEthLen + kIpLen + kUdpLen;
    const uint16_t ipv4_be = rte_cpu_to_be_16(0x0800);
    // rx_streams_ is a flat array of its own: a frame in order touches one cache line of
    // it (and one or two of its stream's latency histogram).
    RunAccountant acc(rx_streams_.data(), rx_streams_.size(), latency_.data(),
                      static_cast<uint16_t>(kMagicHigh | tag_), port.index);
    RunAccountant::Run run;
    uint64_t bytes = 0;
    uint64_t foreign = 0;
    // A frame of the running run costs the loads, the comparisons and the counts below,
    // in one branch: nothing per frame is called, so the loop's values stay in registers.
    for (uint16_t i = 0; i < n; ++i) {
        if (i + kAhead < n) {
            rte_prefetch0(in.data(i + kAhead));
        }
        const uint8_t* data = in.data(i);
        const uint32_t len = in.len(i);
        bytes += len;
        each(i);
        // The stamp's first eight bytes (magic, stream, sequence number) as one word.
        uint64_t head = 0;
        uint64_t tsc = 0;
        bool plain = false;
        if (len >= kPlainStamp + sizeof(Stamp)) [[likely]] {
            uint16_t ethertype;
            std::memcpy(&ethertype, data + 12, 2);
            std::memcpy(&head, data + kPlainStamp, 8);
            std::memcpy(&tsc, data + kPlainStamp + 8, 8);
            plain = (ethertype == ipv4_be) & (data[kEthLen + 9] == 17);
            if (plain & RunAccountant::continues(run, head, now - tsc)) [[likely]] {
                RunAccountant::extend(run);
                continue;
            }
        }
        if (plain) {
            run = acc.other(run, head, now - tsc);
        } else if (Stamp st; read_stamp(data, len, st)) {
            std::memcpy(&head, &st, 8);
            run = acc.other(run, head, now - st.tsc);
        } else {
            ++foreign;
        }
    }
    acc.finish(run);
    port.c.rx_frames += n;
    port.c.rx_bytes += bytes;
    port.c.rx_queue_frames[queue] += n;
    port.c.rx_stale += acc.stale();
    port.c.rx_foreign += foreign + acc.foreign();
    rx_good_ += acc.right();
}

void Engine::loop() {
    const PhaseSpec& phase = *phase_;
    const uint64_t start = rte_rdtsc();
    start_tsc_ = start;
    const auto ticks = [this](double s) {
        return static_cast<uint64_t>(s * static_cast<double>(hz_));
    };
    const uint64_t end = phase.duration_s > 0 ? start + ticks(phase.duration_s) : UINT64_MAX;
    uint64_t warm = start + ticks(phase.warmup_s);
    bool warm_taken = phase.warmup_s <= 0;
    rx_at_warm_ = 0;
    rx_bytes_at_warm_ = 0;
    warm_tsc_ = start;
    for (const RxPause& pause : phase.pauses) {
        port_state_[pause.port].pause_from = start + ticks(pause.at_s);
        port_state_[pause.port].pause_to = start + ticks(pause.at_s + pause.for_s);
    }
    const uint64_t idle = ticks(phase.drain_idle_s);
    const uint64_t drain_max = ticks(phase.drain_max_s);
    // Only the ports with something to do are visited in each round (the ceiling's
    // ports of the other links, a plan's ports that only receive).
    std::vector<PortState*> rx_ports, tx_ports;
    for (PortState& p : port_state_) {
        if (p.polled) {
            rx_ports.push_back(&p);
        }
        if (!p.active.empty()) {
            tx_ports.push_back(&p);
        }
    }
    // Progress is published once a millisecond, not once a round: the division and the
    // shared cache line cost more than a small round's frames.
    const uint64_t progress_every = std::max<uint64_t>(1, hz_ / 1000);
    uint64_t next_progress = start;
    bool sending = true;
    uint64_t drain_start = 0;
    uint64_t last_rx_seen = 0;
    uint64_t last_rx_count = 0;
    work_cycles_ = 0;
    rx_good_ = 0;
    auto rx_bytes_now = [this] {
        uint64_t b = 0;
        for (const PortState& p : port_state_) {
            b += p.c.rx_bytes;
        }
        return b;
    };
    auto publish = [&](uint64_t now) {
        uint64_t sent = 0;
        for (const PortState& p : port_state_) {
            sent += p.c.tx_frames;
        }
        progress_.sent.store(sent, std::memory_order_relaxed);
        progress_.received.store(rx_good_, std::memory_order_relaxed);
        progress_.elapsed_ms.store((now - start) * 1000 / hz_, std::memory_order_relaxed);
    };
    // The TSC is read once after each receive or transmit call (a read costs some 40
    // cycles on a virtual machine, so no more often): that reading is when the frames
    // the next call receives arrived, the stamp of the frames it sends and the time the
    // schedule goes by. A call that received, built or sent frames counts as work from
    // the previous reading to its own (the loop's bookkeeping before it included); an
    // empty poll or a refused retry does not, as testpmd's --record-core-cycles counts a
    // forwarding call that received packets and leaves out empty polls.
    uint64_t now = start;
    stalls_ = 0;
    longest_stall_ = 0;
    const uint64_t stall = ticks(kStallUs * 1e-6);
    auto account = [&](bool worked) {
        const uint64_t t = rte_rdtsc();
        // No call takes this long with the CPU (a burst is some microseconds): the
        // lcore was held up, and frames due meanwhile are sent late or skipped.
        if (t - now > stall) [[unlikely]] {
            ++stalls_;
            longest_stall_ = std::max(longest_stall_, t - now);
        }
        if (worked) {
            work_cycles_ += t - now;
        }
        now = t;
    };
    // At the maximum rate a port whose receive queues had little for it is left to fill
    // for a while (doubling up to kRxGapMaxUs): with 16 guests behind one uplink each
    // guest gets a few frames a round, and a receive call costs a virtio port some
    // hundreds of cycles however few it returns. Its ring cannot fill meanwhile (1024
    // frames in 64 us is 16 Mpps). Not at a fixed rate: there latency is measured, and a
    // frame left waiting would count the wait.
    const bool pace_rx = phase.rate_pps <= 0;
    const uint64_t rx_gap_min = ticks(kRxGapMinUs * 1e-6);
    const uint64_t rx_gap_max = ticks(kRxGapMaxUs * 1e-6);
    for (;;) {
        bool polled = false;
        for (PortState* p : rx_ports) {
            if (now < p->rx_next) {
                continue;
            }
            polled = true;
            uint32_t got = 0;
            // Receiving comes first and empties a full ring (within reason) before
            // anything is sent: the generator must not be why its own frames are lost.
            // Every receive queue on every round: a peer may send on any of them. One
            // stream's frames arrive in order as long as the peer sends them on one
            // queue; a peer that spreads a stream over queues has its frames counted as
            // reordered where this polling order sees them so (as a multi-queue NIC's
            // receiver would), never as lost.
            for (uint16_t q = 0; q < p->rx_queues; ++q) {
                for (unsigned k = 0; k < p->rx_drain_bursts; ++k) {
                    const uint16_t n = receive(*p, q, now);
                    account(n != 0);
                    got += n;
                    if (n < p->rx_full) {
                        break;
                    }
                }
            }
            if (pace_rx) {
                p->rx_gap =
                    got >= kRxSparse ? 0 : std::clamp(2 * p->rx_gap, rx_gap_min, rx_gap_max);
                p->rx_next = now + p->rx_gap;
            }
        }
        if (sending) {
            const uint64_t tx_start = now;
            bool any = false;
            for (PortState* p : tx_ports) {
                account(transmit(*p, now));
                any = any || !p->active.empty() || p->pending_off != p->pending_count;
            }
            if (!warm_taken && tx_start >= warm) {
                warm_taken = true;
                warm_tsc_ = tx_start;
                rx_at_warm_ = rx_good_;
                rx_bytes_at_warm_ = rx_bytes_now();
            }
            if (tx_start >= end || !any) {
                sending = false;
                tx_end_tsc_ = tx_start;
                if (!warm_taken) {
                    warm_tsc_ = start;
                }
                rx_at_end_ = rx_good_;
                rx_bytes_at_end_ = rx_bytes_now();
                for (PortState& p : port_state_) {
                    finish_pending(p);
                    p.pause_to = 0;  // paused ports are drained too
                }
                drain_start = now;
                last_rx_seen = now;
                last_rx_count = rx_at_end_;
                progress_.draining.store(true, std::memory_order_relaxed);
            }
        } else {
            if (!polled) {
                // The clock moves only after calls; with none this round (no port to
                // poll, or every one left to fill), read it here.
                account(false);
            }
            if (rx_good_ != last_rx_count) {
                last_rx_count = rx_good_;
                last_rx_seen = now;
            }
            if (now - last_rx_seen >= idle || now - drain_start >= drain_max) {
                loop_cycles_ = now - start;
                publish(now);
                break;
            }
        }
        if (now >= next_progress) {
            next_progress = now + progress_every;
            publish(now);
        }
    }
    skipped_ = 0;
    for (const PortState& p : port_state_) {
        skipped_ += p.skipped;
    }
    // Back to the pool, so that nothing is held between phases.
    if (stash_count_ != 0) {
        rte_mempool_put_bulk(pool_, reinterpret_cast<void* const*>(stash_), stash_count_);
        stash_count_ = 0;
    }
}

LatencySummary Engine::summarize(const LatencyHistogram& h) const {
    LatencySummary s;
    const double us = 1e6 / static_cast<double>(hz_);
    s.samples = h.samples();
    s.min_us = static_cast<double>(h.min()) * us;
    s.mean_us = h.mean() * us;
    s.p50_us = static_cast<double>(h.quantile(0.50)) * us;
    s.p99_us = static_cast<double>(h.quantile(0.99)) * us;
    s.p999_us = static_cast<double>(h.quantile(0.999)) * us;
    s.max_us = static_cast<double>(h.max()) * us;
    return s;
}

PhaseResult Engine::collect() const {
    const PhaseSpec& phase = *phase_;
    PhaseResult r;
    r.label = phase.label;
    r.size = phase.sizes.name();
    r.mean_frame = phase.sizes.mean();
    r.target_pps = phase.rate_pps;
    r.tx_seconds = static_cast<double>(tx_end_tsc_ - start_tsc_) / static_cast<double>(hz_);
    auto all = std::make_unique<LatencyHistogram>();
    for (std::size_t i = 0; i < streams_.size(); ++i) {
        const StreamState& s = streams_[i];
        StreamResult sr;
        sr.name = s.spec.name;
        sr.tx_port = s.spec.tx_port;
        sr.rx_port = s.spec.rx_port;
        sr.refused = s.refused;
        // Every number handed out was sent, refused (fixed rate) or never sent (left
        // waiting when a maximum-rate phase ended).
        sr.sent = s.next_seq - s.refused - s.unsent;
        sr.offered = sr.sent + sr.refused;
        const RxStream& rs = rx_streams_[i];
        sr.received = rs.seq.unique();
        sr.lost = sr.offered > sr.received ? sr.offered - sr.received : 0;
        sr.duplicates = rs.seq.duplicates();
        sr.reordered = rs.seq.reordered();
        sr.misdelivered = rs.misdelivered;
        sr.latency = summarize(latency_[i]);
        all->merge(latency_[i]);
        r.offered += sr.offered;
        r.sent += sr.sent;
        r.refused += sr.refused;
        r.received += sr.received;
        r.lost += sr.lost;
        r.duplicates += sr.duplicates;
        r.reordered += sr.reordered;
        r.misdelivered += sr.misdelivered;
        r.streams.push_back(std::move(sr));
    }
    uint64_t calls = 0, short_calls = 0;
    for (const PortState& p : port_state_) {
        r.ports.push_back(p.c);
        r.stale += p.c.rx_stale;
        r.foreign += p.c.rx_foreign;
        calls += p.c.tx_calls;
        short_calls += p.c.tx_calls_short;
    }
    r.latency = summarize(*all);
    r.loss_ratio =
        r.offered == 0 ? 0 : static_cast<double>(r.lost) / static_cast<double>(r.offered);
    r.backpressure = calls == 0 ? 0 : static_cast<double>(short_calls) / static_cast<double>(calls);
    if (r.tx_seconds > 0) {
        r.offered_pps = static_cast<double>(r.offered) / r.tx_seconds;
        r.sent_pps = static_cast<double>(r.sent) / r.tx_seconds;
    }
    const double window = static_cast<double>(tx_end_tsc_ - warm_tsc_) / static_cast<double>(hz_);
    if (window > 0) {
        r.rx_pps = static_cast<double>(rx_at_end_ - rx_at_warm_) / window;
        r.rx_bits_per_s = static_cast<double>(rx_bytes_at_end_ - rx_bytes_at_warm_) * 8 / window;
    }
    r.generator_skipped = skipped_;
    r.generator_stalls = stalls_;
    r.generator_longest_stall_us =
        static_cast<double>(longest_stall_) * 1e6 / static_cast<double>(hz_);
    r.generator_busy = loop_cycles_ > 0
                           ? static_cast<double>(work_cycles_) / static_cast<double>(loop_cycles_)
                           : 0;
    uint64_t frames_in = 0;
    for (const PortState& p : port_state_) {
        frames_in += p.c.rx_frames;
    }
    r.cycles_per_frame =
        frames_in > 0 ? static_cast<double>(work_cycles_) / static_cast<double>(frames_in) : 0;
    // Behind by more than 1% of the schedule: the result says more about the generator.
    // (Below that, the rates reported are what was really offered, skips excluded.)
    r.generator_limited =
        phase.rate_pps > 0 && static_cast<double>(skipped_) > 0.01 * static_cast<double>(r.offered);
    return r;
}

}  // namespace conduit::gen
