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
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
}

void LatencyHistogram::reset() {
    counts_.fill(0);
    sum_ = 0;
    max_ = 0;
}

uint64_t LatencyHistogram::samples() const {
    uint64_t n = 0;
    for (const uint64_t c : counts_) {
        n += c;
    }
    return n;
}

uint64_t LatencyHistogram::min() const {
    for (unsigned b = 0; b < kBuckets; ++b) {
        if (counts_[b] != 0) {
            return bucket_low(b);
        }
    }
    return 0;
}

double LatencyHistogram::mean() const {
    const uint64_t n = samples();
    return n == 0 ? 0.0 : static_cast<double>(sum_) / static_cast<double>(n);
}

uint64_t LatencyHistogram::quantile(double q) const {
    const uint64_t n = samples();
    if (n == 0) {
        return 0;
    }
    // The rank of the sample at quantile q, 1-based, as in "nearest rank".
    const auto rank = static_cast<uint64_t>(
        std::max(1.0, std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(n))));
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

void SequenceTracker::record_out_of_order(uint32_t seq32) {
    const auto delta = static_cast<int32_t>(seq32 - static_cast<uint32_t>(next_));
    const int64_t extended = static_cast<int64_t>(next_) + delta;
    const uint64_t seq = extended < 0 ? 0 : static_cast<uint64_t>(extended);
    if (seq >= next_) {
        // A gap: every number from next_ up to seq is missing for now.
        if (seq - next_ >= kWindow) {
            window_.fill(~uint64_t{0});
            next_ = seq - seq % 64;
            word(next_) = 0;
        }
        for (uint64_t s = next_; s < seq; ++s) {
            if ((s & 63) == 0) {
                word(s) = 0;
            }
            word(s) |= uint64_t{1} << (s % 64);
        }
        if ((seq & 63) == 0) {
            word(seq) = 0;
        }
        next_ = seq + 1;
        ++unique_;
        return;
    }
    // Numbers in the words before the current one, and in the current word itself.
    if (seq / 64 + kWords <= next_ / 64) {
        ++late_;  // beyond the window: counted once as received, may hide a duplicate
        ++unique_;
        return;
    }
    uint64_t& w = word(seq);
    const uint64_t bit = uint64_t{1} << (seq % 64);
    if ((w & bit) == 0) {
        ++duplicates_;
        return;
    }
    w &= ~bit;
    ++reordered_;
    ++unique_;
}

void RunAccountant::take_in_order(uint64_t in_order) {
    streams_[stream_].seq.record_in_order(in_order);
    right_ += in_order;
    latency_count_ += in_order;
}

void RunAccountant::finish(Run run) {
    if (!running_) {
        return;
    }
    take_in_order(run.in_order);
    latency_[stream_].record_run(run.latency, latency_count_);
    latency_count_ = 0;
    running_ = false;
}

RunAccountant::Run RunAccountant::other(Run run, uint64_t head, uint64_t latency) {
    const auto key = static_cast<uint32_t>(head);
    const auto seq = static_cast<uint32_t>(head >> 32);
    if (running_ && key == static_cast<uint32_t>(run.expected)) {
        // The run's stream: a number out of order, or another latency.
        SequenceTracker& tracker = streams_[stream_].seq;
        take_in_order(run.in_order);
        tracker.record(seq);
        ++right_;
        if (latency != run.latency) {
            latency_[stream_].record_run(run.latency, latency_count_);
            latency_count_ = 0;
        }
        ++latency_count_;
        return Run{key | tracker.highest_plus_one() << 32, latency, 0};
    }
    finish(run);
    const auto magic = static_cast<uint16_t>(key);
    const auto stream = static_cast<uint16_t>(key >> 16);
    if ((magic & kMagicMask) != kMagicHigh) {
        ++foreign_;
        return Run{};
    }
    if (magic != magic_ || stream >= count_) {
        ++stale_;
        return Run{};
    }
    RxStream& s = streams_[stream];
    if (s.rx_port != port_) {
        ++s.misdelivered;  // no run: each frame of it comes here
        return Run{};
    }
    s.seq.record(seq);
    running_ = true;
    stream_ = stream;
    latency_count_ = 1;
    ++right_;
    return Run{key | s.seq.highest_plus_one() << 32, latency, 0};
}

}  // namespace conduit::gen
