// tools/gen/accounting: what the receiver keeps per stream: which sequence numbers it
// has seen (loss, reordering, duplicates) and a latency histogram. Both are fixed-size
// and allocated before traffic starts; recording a frame never allocates.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "tools/gen/frame.h"

namespace conduit::gen {

// Latencies in TSC cycles in log-linear buckets: exact below 32 cycles, then 32 buckets
// per power of two (a relative error under 3.2%), up to 2^47 cycles (hours).
class LatencyHistogram {
  public:
    static constexpr unsigned kSubBits = 5;
    static constexpr unsigned kSub = 1u << kSubBits;
    static constexpr unsigned kMaxExp = 47;
    static constexpr unsigned kBuckets = kSub + (kMaxExp - kSubBits + 1) * kSub;

    // Per frame: one bucket, the sum and the maximum; everything else is derived later.
    void record(uint64_t cycles) {
        ++counts_[bucket(cycles)];
        sum_ += cycles;
        max_ = cycles > max_ ? cycles : max_;
    }
    // `count` frames that all took `cycles`: the frames of a burst were mostly stamped
    // at one instant and received at another, so the receiver counts them as one run.
    void record_run(uint64_t cycles, uint64_t count) {
        counts_[bucket(cycles)] += count;
        sum_ += cycles * count;
        max_ = cycles > max_ ? cycles : max_;
    }
    void merge(const LatencyHistogram& other);
    void reset();

    uint64_t samples() const;
    uint64_t max() const { return max_; }
    uint64_t min() const;  // the lowest bucket's lower bound
    double mean() const;
    // The value at quantile q (0..1): the middle of the bucket holding it, never above max.
    uint64_t quantile(double q) const;

    static unsigned bucket(uint64_t v) {
        if (v < kSub) {
            return static_cast<unsigned>(v);
        }
        const unsigned exp = 63u - static_cast<unsigned>(std::countl_zero(v));
        if (exp > kMaxExp) {
            return kBuckets - 1;
        }
        const unsigned shift = exp - kSubBits;
        const unsigned sub = static_cast<unsigned>(v >> shift) & (kSub - 1);
        return kSub + (exp - kSubBits) * kSub + sub;
    }
    static uint64_t bucket_low(unsigned b);
    static uint64_t bucket_high(unsigned b);

  private:
    // The sum and the maximum first: with the bucket, the only lines a frame touches.
    uint64_t sum_ = 0;
    uint64_t max_ = 0;
    std::array<uint64_t, kBuckets> counts_{};
};

// Sequence numbers of one stream as they arrive. A window over the last 4096 numbers
// below the highest seen marks the ones still missing, so a late frame (reordered) is
// told from a repeated one (duplicate); frames older than the window are counted as
// late without that check. Frames in order, the common case, touch no bit: a window
// word is cleared when the sequence enters it, and only a gap sets bits.
class SequenceTracker {
  public:
    static constexpr uint64_t kWindow = 4096;

    // seq32: the 32-bit number in the stamp; extended against the highest seen.
    void record(uint32_t seq32) {
        if (seq32 == static_cast<uint32_t>(next_)) {
            if ((next_ & 63) == 0) {
                word(next_) = 0;
            }
            ++next_;
            ++unique_;
            return;
        }
        record_out_of_order(seq32);
    }
    // `count` frames in order after the last one recorded, numbered highest_plus_one()
    // onwards: the receiver counts such runs in registers. Each window word the run
    // enters (at a number that is a multiple of 64) is cleared, as record() clears it.
    void record_in_order(uint64_t count) {
        const uint64_t end = next_ + count;
        const uint64_t first_word = (next_ + 63) / 64;
        const uint64_t words = std::min<uint64_t>((end + 63) / 64 - first_word, kWords);
        for (uint64_t w = 0; w < words; ++w) {
            window_[(first_word + w) % kWords] = 0;
        }
        next_ = end;
        unique_ += count;
    }
    void reset();

    uint64_t unique() const { return unique_; }
    uint64_t duplicates() const { return duplicates_; }
    uint64_t reordered() const { return reordered_ + late_; }
    uint64_t highest_plus_one() const { return next_; }

  private:
    static constexpr uint64_t kWords = kWindow / 64;

    uint64_t& word(uint64_t seq) { return window_[(seq / 64) % kWords]; }
    void record_out_of_order(uint32_t seq32);

    // What a frame in order touches comes first, in one cache line with its owner's
    // other per-frame fields.
    uint64_t next_ = 0;
    uint64_t unique_ = 0;
    uint64_t duplicates_ = 0;
    uint64_t reordered_ = 0;
    uint64_t late_ = 0;
    // Bit set: that number has not arrived. Words of numbers at or above next_ hold
    // zeros for them.
    std::array<uint64_t, kWords> window_{};
};

// What the receiver keeps per stream: where its frames must arrive, how many arrived
// elsewhere, and their sequence numbers.
struct RxStream {
    uint16_t rx_port = 0;
    uint64_t misdelivered = 0;
    SequenceTracker seq;
};

// Counts the stamped frames of one receive call. Frames of one stream that arrive in
// order with one latency (a burst stamped at one instant and received at another) form
// a run; any other frame breaks it. The run's state a frame is checked against (Run:
// the stamp head and latency that continue it, and how many did since the last break)
// is kept by the receive loop in registers: continues() and extend() are a comparison
// and two additions, inline. Every other frame goes to other(), out of line, which hands
// the run's frames to the stream's tracker and histogram and starts the next run; a
// loop that calls nothing else per frame keeps its own values in registers too.
class RunAccountant {
  public:
    struct Run {
        uint64_t expected = 0;  // the head that continues the run (no stamp's head is 0)
        uint64_t latency = 0;   // ... and its latency
        uint64_t in_order = 0;  // frames that continued it, not yet given to the tracker
    };

    // `magic`: kMagicHigh with the running phase's tag; `port`: the receiving port's index.
    RunAccountant(RxStream* streams, std::size_t count, LatencyHistogram* latency, uint16_t magic,
                  uint16_t port)
        : streams_(streams), count_(count), latency_(latency), magic_(magic), port_(port) {}

    // One frame's stamp: `head` is its first eight bytes (magic, stream, 32-bit sequence
    // number, in host order), `latency` now minus its TSC. A frame continues the run when
    // its head is the one expected and its latency the run's.
    [[gnu::always_inline]] static bool continues(const Run& run, uint64_t head, uint64_t latency) {
        return (head == run.expected) & (latency == run.latency);
    }
    [[gnu::always_inline]] static void extend(Run& run) {
        run.expected += kOne;
        ++run.in_order;
    }
    // A frame that does not continue the run: another stream, a number out of order,
    // another latency, or not a frame of this phase at all. Returns the run that follows
    // it.
    [[nodiscard]] Run other(Run run, uint64_t head, uint64_t latency);
    // After the last frame of the call, or before a frame that starts another run.
    void finish(Run run);

    uint64_t right() const { return right_; }  // frames of this phase at their stream's port
    uint64_t stale() const { return stale_; }  // ours, from an earlier phase
    uint64_t foreign() const { return foreign_; }

  private:
    static constexpr uint64_t kOne = uint64_t{1} << 32;  // one sequence number

    // Gives the run's frames in order to its stream's tracker; they share the latency.
    void take_in_order(uint64_t in_order);

    RxStream* streams_;
    std::size_t count_;
    LatencyHistogram* latency_;
    uint16_t magic_;
    uint16_t port_;
    bool running_ = false;
    uint16_t stream_ = 0;
    uint64_t latency_count_ = 0;  // frames of the run's latency not yet in the histogram,
                                  // besides the run's in_order ones
    uint64_t right_ = 0, stale_ = 0, foreign_ = 0;
};

}  // namespace conduit::gen
