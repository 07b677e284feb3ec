// Which received mbufs the generator sends again as they are. A receive call hands the
// driver the free end of the stash (Engine::stash_) to write the burst into, so a
// buffer that can be reused is kept where it already lies: no copy per frame. The rest
// are moved out, to be freed, and the kept ones close up behind them.
#pragma once

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace conduit::gen {

class BurstSorter {
  public:
    static constexpr uint16_t kMaxBurst = 128;

    // `burst`: the n <= kMaxBurst mbufs just received; `pool`: the generator's own.
    BurstSorter(rte_mbuf** burst, const rte_mempool* pool) : burst_(burst), pool_(pool) {}

    // Frame i, called for i = 0, 1, ... in order: entries before i may be overwritten,
    // those from i on are not touched.
    [[gnu::always_inline]] void take(uint16_t i) {
        rte_mbuf* m = burst_[i];
        if (reusable(m)) [[likely]] {
            if (kept_ != i) [[unlikely]] {
                burst_[kept_] = m;
            }
            ++kept_;
        } else {
            others_[other_count_++] = m;
        }
    }

    // Kept: the first kept() entries of the burst, in the order received.
    uint16_t kept() const { return kept_; }
    // The rest are the caller's to free (rte_pktmbuf_free_bulk handles any of them).
    rte_mbuf** others() { return others_; }
    uint16_t other_count() const { return other_count_; }

    // Ours to send again as it is: from our pool, one segment, one reference (read
    // together with the segment count), direct (its data is its own buffer).
    [[gnu::always_inline]] bool reusable(const rte_mbuf* m) const {
        uint32_t refcnt_and_segs;
        static_assert(offsetof(rte_mbuf, nb_segs) == offsetof(rte_mbuf, refcnt) + 2);
        std::memcpy(&refcnt_and_segs, &m->refcnt, 4);
        return (m->pool == pool_) & (refcnt_and_segs == (1u | 1u << 16)) & RTE_MBUF_DIRECT(m);
    }

  private:
    rte_mbuf** burst_;
    const rte_mempool* pool_;
    uint16_t kept_ = 0;
    uint16_t other_count_ = 0;
    rte_mbuf* others_[kMaxBurst];
};

}  // namespace conduit::gen
