#include "tools/gen/accounting.h"

#include <algorithm>
#include <cmath>

namespace conduit::gen {

uint64_t LatencyHistogram::bucket_low(unsigned b) {
    if (b < kSub) {
        return b;
    }
    const unsigned exp = (b - kSub) / kSub + kSubBits;
    const unsigned sub = (b - kSub) % kSub;
    return (uint64_t{1} << exp) | (uint64_t{sub} << (exp - kSubBits));
}

uint64_t LatencyHistogram::bucket_high(unsigned b) {
    if (b < kSub) {
        return b;
    }
    const unsigned exp = (b - kSub) / kSub + kSubBits;
    return bucket_low(b) + (uint64_t{1} << (exp - kSubBits)) - 1;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
    for (unsigned i = 0; i < kBuckets; ++i) {
        counts_[i] += other.counts_[i];
    }
    samples_ += other.samples_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
    min_ = std::min(min_, other.min_);
}

void LatencyHistogram::reset() {
    counts_.fill(0);
    samples_ = 0;
    sum_ = 0;
    max_ = 0;
    min_ = UINT64_MAX;
}

uint64_t LatencyHistogram::quantile(double q) const {
    if (samples_ == 0) {
        return 0;
    }
    // The rank of the sample at quantile q, 1-based, as in "nearest rank".
    const auto rank = static_cast<uint64_t>(
        std::max(1.0, std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(samples_))));
    uint64_t seen = 0;
    for (unsigned b = 0; b < kBuckets; ++b) {
        seen += counts_[b];
        if (seen >= rank) {
            const uint64_t mid = (bucket_low(b) + bucket_high(b)) / 2;
            return std::clamp(mid, min(), max_);
        }
    }
    return max_;
}

void SequenceTracker::reset() {
    window_.fill(0);
    next_ = 0;
    unique_ = 0;
    duplicates_ = 0;
    reordered_ = 0;
    late_ = 0;
}

}  // namespace conduit::gen
