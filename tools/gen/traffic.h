// tools/gen/traffic: streams, phases and the engine that runs a phase on one lcore.
//
// A stream is frames from one port to the port that should receive them, cycling
// through ranges of source and destination MACs and UDP flows. A phase is a set of
// streams sent at a fixed aggregate rate or as fast as the ports take them, for a time
// or a number of frames, followed by a drain that waits for frames still in flight.
// Frames carry the phase's tag, so frames of an earlier phase that arrive late are
// counted apart. The engine's lcore both sends and receives; it never allocates while
// traffic runs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tools/gen/accounting.h"
#include "tools/gen/frame.h"
#include "tools/gen/port.h"

struct rte_mbuf;
struct rte_mempool;

namespace conduit::gen {

class NativeNic;

struct StreamSpec {
    std::string name;  // "g1->uplink"
    uint16_t tx_port = 0;
    uint16_t rx_port = 0;  // where its frames must arrive; elsewhere they are misdelivered
    Mac src_base = 0;
    uint32_t src_count = 1;
    Mac dst_base = 0;
    uint32_t dst_count = 1;
    uint32_t flows = 1;  // UDP source ports cycled through
    uint32_t ip_src = 0;
    uint32_t ip_dst = 0;
    uint64_t frames = 0;  // to send; 0: as many as the phase's duration allows
};

struct RxPause {
    uint16_t port;
    double at_s;
    double for_s;
};

struct PhaseSpec {
    std::string label;
    std::vector<StreamSpec> streams;
    SizeMix sizes = SizeMix::fixed(64);
    double rate_pps = 0;    // all streams together; 0: as fast as the ports take frames
    double duration_s = 0;  // 0: until every stream has sent its frames
    double warmup_s = 0;    // the throughput figure leaves out this first part
    // A frame the port refuses (its ring is full: the switch did not drain it) is lost
    // at a fixed rate, as on a wire; at the maximum rate it is offered again.
    double drain_idle_s = 0.05;  // after sending: stop when nothing arrived for this long
    double drain_max_s = 2.0;    // ... or after this long in any case
    // At a fixed rate a port's frames go out this many at a time, or what kTxBatchWait of
    // the port's rate makes when that is fewer: one transmit call costs a virtio or memif
    // port some hundreds of cycles whatever it carries, and the loop comes round far
    // more often than a frame falls due (at 2.5 Mpps a port, 1.8 frames a call), so
    // frame by frame the calls, not the frames, use up the generator.
    uint16_t tx_batch = 1;
    std::vector<RxPause> pauses;     // ports not polled for a while (a guest not draining)
    std::vector<uint16_t> rx_ports;  // ports polled; empty: every port
};

struct LatencySummary {
    uint64_t samples = 0;
    double min_us = 0, mean_us = 0, p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
};

struct StreamResult {
    std::string name;
    uint16_t tx_port = 0, rx_port = 0;
    uint64_t offered = 0;   // sent + refused
    uint64_t sent = 0;      // taken by the port
    uint64_t refused = 0;   // refused by the port (fixed rate): lost at the switch's input
    uint64_t received = 0;  // distinct frames at the right port
    uint64_t lost = 0;      // offered - received
    uint64_t duplicates = 0, reordered = 0, misdelivered = 0;
    LatencySummary latency;
};

struct PortPhaseCounters {
    uint64_t tx_frames = 0, tx_bytes = 0, refused = 0;
    uint64_t rx_frames = 0, rx_bytes = 0;
    uint64_t rx_calls = 0;                      // receive calls that returned frames
    uint64_t rx_stale = 0;                      // ours, from an earlier phase
    uint64_t rx_foreign = 0;                    // not ours at all
    uint64_t tx_calls = 0, tx_calls_short = 0;  // transmit calls, and those the port cut short
    uint64_t bad_entries = 0;  // native NIC: entries the peer got wrong (tools/gen/nic.h)
    // Frames per receive queue: which queues the switch sends on.
    std::array<uint64_t, kMaxPortQueues> rx_queue_frames{};
};

struct PhaseResult {
    std::string label;
    std::string size;
    double target_pps = 0;  // 0: maximum rate
    double tx_seconds = 0;  // from the first frame sent to the last
    double offered_pps = 0, sent_pps = 0;
    double rx_pps = 0;  // distinct frames received per second after the warm-up
    double rx_bits_per_s = 0;
    double mean_frame = 0;
    uint64_t offered = 0, sent = 0, refused = 0, received = 0, lost = 0;
    uint64_t duplicates = 0, reordered = 0, misdelivered = 0, stale = 0, foreign = 0;
    double loss_ratio = 0;
    // Share of transmit calls the ports cut short: near 0 means the switch always had
    // room, so the generator, not the switch, set the pace.
    double backpressure = 0;
    uint64_t generator_skipped = 0;  // frames a late generator did not send in time
    bool generator_limited = false;
    // Times the generator's lcore was held up (over 250 us between two TSC
    // readings of its loop: its CPU taken by the kernel or the host), with the longest.
    uint64_t generator_stalls = 0;
    double generator_longest_stall_us = 0;
    // The generator's own load: the share of its time spent building, sending, receiving
    // and accounting frames, and the TSC cycles that cost per frame received (what
    // testpmd's --record-core-cycles calls cycles/packet).
    double generator_busy = 0;
    double cycles_per_frame = 0;
    LatencySummary latency;
    std::vector<StreamResult> streams;
    std::vector<PortPhaseCounters> ports;
};

// Totals over the whole run, per port: what the switch's counters must match.
struct PortTotals {
    uint64_t tx_frames = 0, tx_bytes = 0, rx_frames = 0, rx_bytes = 0;
    std::array<uint64_t, kMaxPortQueues> rx_queue_frames{};
};

struct Progress {
    std::atomic<uint64_t> sent{0};
    std::atomic<uint64_t> received{0};
    std::atomic<uint64_t> elapsed_ms{0};
    std::atomic<bool> draining{false};
};

class Engine {
  public:
    Engine(PortSet& ports, rte_mempool* pool, unsigned lcore);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    using OnProgress = std::function<void(const Progress&)>;
    // Runs the phase on the engine's lcore; `on_progress` is called about every
    // progress_interval_s on the calling thread.
    PhaseResult run(const PhaseSpec& phase, const OnProgress& on_progress,
                    double progress_interval_s);

    const std::vector<PortTotals>& totals() const { return totals_; }
    uint64_t tsc_hz() const { return hz_; }

  private:
    struct StreamState;
    struct PortState;

    void loop();
    uint16_t receive(PortState& port, uint16_t queue, uint64_t now);
    bool transmit(PortState& port, uint64_t now);  // false: nothing built or sent
    uint16_t build(PortState& port, rte_mbuf** pkts, uint16_t count, uint64_t now);
    template <typename Frames>
    uint16_t build_frames(PortState& port, Frames& out, uint16_t count, uint64_t now);
    // A fixed rate's frames due on the port now (at most a burst), or 0.
    uint64_t frames_due(PortState& port, uint64_t now);
    uint16_t receive_native(PortState& port, uint16_t queue, uint64_t now);
    bool transmit_native(PortState& port, uint64_t now);
    template <typename Frames, typename EachFrame>
    void account_frames(PortState& port, uint16_t queue, const Frames& in, uint16_t n, uint64_t now,
                        EachFrame&& each);
    bool take_mbufs(rte_mbuf** pkts, uint16_t count);
    void recycle(rte_mbuf** pkts, uint16_t count);
    void finish_pending(PortState& port);
    PhaseResult collect() const;
    LatencySummary summarize(const LatencyHistogram& h) const;

    PortSet& ports_;
    rte_mempool* pool_;
    unsigned lcore_;
    uint64_t hz_;
    uint8_t tag_ = 0;
    std::vector<PortTotals> totals_;

    // The running phase; set up by run() before the lcore starts.
    const PhaseSpec* phase_ = nullptr;
    std::vector<StreamState> streams_;
    std::vector<RxStream> rx_streams_;
    std::vector<LatencyHistogram> latency_;
    std::vector<PortState> port_state_;
    Progress progress_;
    uint64_t start_tsc_ = 0;
    uint64_t tx_end_tsc_ = 0;
    uint64_t warm_tsc_ = 0;
    uint64_t rx_good_ = 0;  // distinct or not, frames of this phase at the right port
    uint64_t rx_at_warm_ = 0;
    uint64_t rx_bytes_at_warm_ = 0;
    uint64_t rx_at_end_ = 0;
    uint64_t rx_bytes_at_end_ = 0;
    uint64_t skipped_ = 0;
    uint64_t stalls_ = 0;
    uint64_t longest_stall_ = 0;  // TSC cycles
    // Cycles of the receive and transmit calls that received, built or sent frames, each
    // from the TSC reading after the previous call (see loop(): empty polls and refused
    // retries left out, as testpmd's --record-core-cycles leaves out empty polls), and
    // the whole phase's cycles.
    uint64_t work_cycles_ = 0;
    uint64_t loop_cycles_ = 0;
    // Received mbufs kept for the next frames sent: the frame just read is in the
    // cache, and the pool is not touched at all (most-recent first). A receive call has
    // the driver write its burst into the free end (see reuse.h).
    static constexpr uint32_t kStash = 1024;
    rte_mbuf* stash_[kStash] = {};
    uint32_t stash_count_ = 0;
    // Where a guest port's frames refused at a fixed rate (no buffer left by the switch)
    // are built, so that their streams count them: a burst of headers and stamps.
    static constexpr std::size_t kScratchFrame = 128;
    std::vector<uint8_t> scratch_;
};

}  // namespace conduit::gen
