// tools/gen/accounting: what the receiver keeps per stream: which sequence numbers it
// has seen (loss, reordering, duplicates) and a latency histogram. Both are fixed-size
// and allocated before traffic starts; recording a frame never allocates.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

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
    // A burst's latencies: the sum, maximum and the current bucket's count stay in
    // registers, and a bucket is written once per run of equal buckets (the frames of
    // one burst were mostly stamped and received at the same two instants).
    void record(const uint64_t* cycles, std::size_t n) {
        if (n == 0) {
            return;
        }
        uint64_t sum = 0;
        uint64_t max = max_;
        uint64_t last = cycles[0];
        unsigned run_bucket = bucket(last);
        uint64_t run = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const uint64_t v = cycles[i];
            sum += v;
            max = v > max ? v : max;
            if (v != last) {
                last = v;
                if (const unsigned b = bucket(v); b != run_bucket) {
                    counts_[run_bucket] += run;
                    run_bucket = b;
                    run = 0;
                }
            }
            ++run;
        }
        counts_[run_bucket] += run;
        sum_ += sum;
        max_ = max;
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
    // A burst's numbers: frames in order keep the next number in a register.
    void record(const uint32_t* seqs, std::size_t n) {
        uint64_t next = next_;
        uint64_t in_order = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (seqs[i] == static_cast<uint32_t>(next)) {
                if ((next & 63) == 0) {
                    word(next) = 0;
                }
                ++next;
                ++in_order;
            } else {
                next_ = next;
                record_out_of_order(seqs[i]);
                next = next_;
            }
        }
        next_ = next;
        unique_ += in_order;
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

}  // namespace conduit::gen
