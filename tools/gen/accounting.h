// tools/gen/accounting: what the receiver keeps per stream: which sequence numbers it
// has seen (loss, reordering, duplicates) and a latency histogram. Both are fixed-size
// and allocated before traffic starts; recording a frame never allocates.
#pragma once

#include <array>
#include <bit>
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

    void record(uint64_t cycles) {
        ++counts_[bucket(cycles)];
        ++samples_;
        sum_ += cycles;
        if (cycles > max_) {
            max_ = cycles;
        }
        if (cycles < min_) {
            min_ = cycles;
        }
    }
    void merge(const LatencyHistogram& other);
    void reset();

    uint64_t samples() const { return samples_; }
    uint64_t max() const { return max_; }
    uint64_t min() const { return samples_ == 0 ? 0 : min_; }
    double mean() const { return samples_ == 0 ? 0.0 : static_cast<double>(sum_) / samples_; }
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
    std::array<uint64_t, kBuckets> counts_{};
    uint64_t samples_ = 0;
    uint64_t sum_ = 0;
    uint64_t max_ = 0;
    uint64_t min_ = UINT64_MAX;
};

// Sequence numbers of one stream as they arrive. A window of the last kWindow numbers
// below the highest seen tells a late frame (reordered) from a repeated one (duplicate);
// frames older than the window are counted as late without that check.
class SequenceTracker {
  public:
    static constexpr uint64_t kWindow = 4096;

    // seq32: the 32-bit number in the stamp; extended against the highest seen.
    void record(uint32_t seq32) {
        const uint64_t seq = extend(seq32);
        if (seq >= next_) {
            advance_to(seq);
            ++unique_;
            return;
        }
        if (seq + kWindow < next_) {
            ++late_;  // beyond the window: counted once as received, may hide a duplicate
            ++unique_;
            return;
        }
        uint64_t& word = window_[(seq / 64) % kWords];
        const uint64_t bit = uint64_t{1} << (seq % 64);
        if ((word & bit) != 0) {
            ++duplicates_;
            return;
        }
        word |= bit;
        ++reordered_;
        ++unique_;
    }
    void reset();

    uint64_t unique() const { return unique_; }
    uint64_t duplicates() const { return duplicates_; }
    uint64_t reordered() const { return reordered_ + late_; }
    uint64_t highest_plus_one() const { return next_; }

  private:
    static constexpr uint64_t kWords = kWindow / 64;

    uint64_t extend(uint32_t seq32) const {
        const auto delta = static_cast<int32_t>(seq32 - static_cast<uint32_t>(next_));
        const int64_t seq = static_cast<int64_t>(next_) + delta;
        return seq < 0 ? 0 : static_cast<uint64_t>(seq);
    }
    // Marks seq as seen and every number between the old highest and seq as not seen.
    void advance_to(uint64_t seq) {
        if (seq - next_ >= kWindow) {
            window_.fill(0);
        } else {
            for (uint64_t s = next_; s < seq; ++s) {
                window_[(s / 64) % kWords] &= ~(uint64_t{1} << (s % 64));
            }
        }
        window_[(seq / 64) % kWords] |= uint64_t{1} << (seq % 64);
        next_ = seq + 1;
    }

    std::array<uint64_t, kWords> window_{};
    uint64_t next_ = 0;
    uint64_t unique_ = 0;
    uint64_t duplicates_ = 0;
    uint64_t reordered_ = 0;
    uint64_t late_ = 0;
};

}  // namespace conduit::gen
