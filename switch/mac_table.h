// switch/mac_table: one bridge's MAC learning table.
//
// Workers look up and learn concurrently without locks: each slot holds a key word and a
// value word, both atomics, and every change is a single compare-and-swap, so a worker
// never waits on another thread. A slot, once claimed by a MAC, stays that MAC's; aging
// only clears the entry's "live" bit, which keeps linear probing correct without
// tombstones. When too many slots hold dead entries, the control thread compacts the
// table into a fresh array, publishes it, and frees the old one only after every
// reader has passed a quiescent point (the caller supplies that wait, e.g. DPDK's QSBR).
//
// Expiry is exact at lookup: an entry older than the aging time is a miss even before
// the ager has visited it, so aging never depends on how often the ager runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "switch/types.h"

namespace conduit::sw {

class MacTable {
  public:
    // Waits until no reader can still hold a pointer into a table that was replaced.
    using WaitForReaders = std::function<void()>;

    enum class Learn : uint8_t {
        kUnchanged,  // known on this port and recently refreshed: nothing written
        kRefreshed,  // known on this port; timestamp renewed
        kLearned,    // new (or expired) entry created
        kMoved,      // known on another port; now on this one
        kTableFull,  // not learned: the table holds `capacity` live entries
        kStatic,     // a static entry names another port; left alone
    };

    struct Entry {
        Mac mac;
        PortIndex port;
        bool is_static;
        uint64_t age_ms;
    };

    struct AgeResult {
        uint32_t expired = 0;
        bool compacted = false;
    };

    MacTable(uint32_t capacity, uint64_t aging_ms, WaitForReaders wait_for_readers);
    ~MacTable();
    MacTable(const MacTable&) = delete;
    MacTable& operator=(const MacTable&) = delete;

    // Datapath, any thread.
    PortIndex lookup(Mac mac, uint64_t now_ms) const;
    Learn learn(Mac mac, PortIndex port, uint64_t now_ms);
    // Starts loading the home slots of a burst's addresses, so that the lookups and
    // learning that follow find them in cache (runs of one address are loaded once).
    void prefetch(const Mac* macs, uint16_t count) const {
        const Slots& s = *slots_.load(std::memory_order_acquire);
        Mac previous = 0;
        for (uint16_t i = 0; i < count; ++i) {
            if (macs[i] != previous) {
                previous = macs[i];
                __builtin_prefetch(&s.slot[home(s, macs[i])]);
            }
        }
    }

    // Control path: the ager, port flushes (from the vhost thread) and listings (from
    // telemetry) may come from different threads; they serialise on a mutex among
    // themselves. Workers never take it.
    AgeResult age(uint64_t now_ms);
    // Forgets the port's learned entries (and its static ones too, when asked).
    uint32_t flush_port(PortIndex port, bool include_static = false);
    uint32_t flush_learned();  // every learned entry; static ones stay
    bool add_static(Mac mac, PortIndex port);
    bool remove(Mac mac);  // a learned or static entry; false if there was none
    std::vector<Entry> entries(uint64_t now_ms) const;
    // A new limit on live entries. The table is rebuilt at the size that limit needs
    // (readers see the old array until the switch, as in compaction); entries beyond a
    // smaller limit are dropped, static ones last.
    void set_capacity(uint32_t capacity);

    uint32_t size() const;
    uint32_t capacity() const { return capacity_.load(std::memory_order_relaxed); }
    uint64_t aging_ms() const { return aging_ms_.load(std::memory_order_relaxed); }
    void set_aging_ms(uint64_t ms) { aging_ms_.store(ms, std::memory_order_relaxed); }
    uint32_t slot_count() const;

  private:
    struct Slot {
        std::atomic<uint64_t> key{0};    // 0: never used; else kKeyValid | mac
        std::atomic<uint64_t> value{0};  // port | flags << 16 | time_ms << 24
    };
    struct Slots {
        explicit Slots(uint32_t count);
        uint32_t mask;
        uint32_t shift;  // 64 - log2(count), for the multiplicative hash
        std::atomic<uint32_t> live{0};
        std::unique_ptr<Slot[]> slot;
    };

    static constexpr uint64_t kKeyValid = uint64_t{1} << 63;
    static constexpr uint64_t kLive = uint64_t{1} << 16;
    static constexpr uint64_t kStaticFlag = uint64_t{1} << 17;
    static constexpr unsigned kTimeShift = 24;
    static constexpr uint32_t kMaxProbe = 64;

    static uint64_t make_value(PortIndex port, uint64_t flags, uint64_t now_ms) {
        return uint64_t{port} | flags | (now_ms << kTimeShift);
    }
    static PortIndex value_port(uint64_t v) { return static_cast<PortIndex>(v & 0xffff); }
    static uint64_t value_time(uint64_t v) { return v >> kTimeShift; }
    static uint32_t home(const Slots& s, Mac mac) {
        return static_cast<uint32_t>((mac * 0x9E3779B97F4A7C15ULL) >> s.shift) & s.mask;
    }
    bool expired(uint64_t value, uint64_t now_ms) const;
    bool reserve(Slots& s);
    Learn update_existing(Slots& s, Slot& slot, PortIndex port, uint64_t now_ms);
    void compact();
    void rebuild(uint32_t slot_count);  // with control_mutex_ held
    static uint32_t slots_for(uint32_t capacity);

    std::atomic<uint32_t> capacity_;
    mutable std::mutex control_mutex_;  // control-path operations only, never the datapath
    std::atomic<uint64_t> aging_ms_;
    WaitForReaders wait_for_readers_;
    std::atomic<Slots*> slots_;
};

}  // namespace conduit::sw
