#include "switch/mac_table.h"

#include <bit>
#include <stdexcept>

namespace conduit::sw {

namespace {

// How often a worker rewrites the timestamp of an entry it keeps seeing: rarely enough
// that steady traffic does not bounce the slot's cache line between cores.
uint64_t refresh_interval(uint64_t aging_ms) {
    const uint64_t eighth = aging_ms / 8;
    return eighth < 1000 ? eighth : 1000;
}

}  // namespace

MacTable::Slots::Slots(uint32_t count)
    : mask(count - 1),
      shift(64 - static_cast<uint32_t>(std::countr_zero(count))),
      slot(new Slot[count]) {}

MacTable::MacTable(uint32_t capacity, uint64_t aging_ms, WaitForReaders wait_for_readers)
    : capacity_(capacity), aging_ms_(aging_ms), wait_for_readers_(std::move(wait_for_readers)) {
    if (capacity == 0 || capacity > (1u << 24)) {
        throw std::invalid_argument("MAC table size must be between 1 and 16777216");
    }
    slots_.store(new Slots(slots_for(capacity)), std::memory_order_release);
}

uint32_t MacTable::slots_for(uint32_t capacity) {
    // At most half the slots are ever live, so probe sequences stay short.
    return std::max<uint32_t>(64, std::bit_ceil(capacity * 2));
}

MacTable::~MacTable() {
    delete slots_.load(std::memory_order_acquire);
}

uint32_t MacTable::size() const {
    return slots_.load(std::memory_order_acquire)->live.load();
}

uint32_t MacTable::slot_count() const {
    return slots_.load(std::memory_order_acquire)->mask + 1;
}

bool MacTable::expired(uint64_t value, uint64_t now_ms) const {
    if ((value & kStaticFlag) != 0) {
        return false;
    }
    const uint64_t seen = value_time(value);
    // Another worker's clock may be a little ahead of ours: a future time is fresh.
    return now_ms > seen && now_ms - seen >= aging_ms_.load(std::memory_order_relaxed);
}

PortIndex MacTable::lookup(Mac mac, uint64_t now_ms) const {
    const Slots& s = *slots_.load(std::memory_order_acquire);
    const uint64_t key = kKeyValid | mac;
    uint32_t idx = home(s, mac);
    for (uint32_t probe = 0; probe < kMaxProbe; ++probe) {
        const uint64_t k = s.slot[idx].key.load(std::memory_order_acquire);
        if (k == key) {
            const uint64_t v = s.slot[idx].value.load(std::memory_order_acquire);
            if ((v & kLive) == 0 || expired(v, now_ms)) {
                return kInvalidPort;
            }
            return value_port(v);
        }
        if (k == 0) {
            return kInvalidPort;
        }
        idx = (idx + 1) & s.mask;
    }
    return kInvalidPort;
}

bool MacTable::reserve(Slots& s) {
    if (s.live.fetch_add(1, std::memory_order_relaxed) >=
        capacity_.load(std::memory_order_relaxed)) {
        s.live.fetch_sub(1, std::memory_order_relaxed);
        return false;
    }
    return true;
}

MacTable::Learn MacTable::update_existing(Slots& s, Slot& slot, PortIndex port, uint64_t now_ms) {
    uint64_t v = slot.value.load(std::memory_order_acquire);
    for (;;) {
        if ((v & kLive) != 0) {
            if ((v & kStaticFlag) != 0) {
                return value_port(v) == port ? Learn::kUnchanged : Learn::kStatic;
            }
            const bool same_port = value_port(v) == port;
            const bool stale = expired(v, now_ms);
            if (same_port && !stale && now_ms < value_time(v) + refresh_interval(aging_ms())) {
                return Learn::kUnchanged;
            }
            if (slot.value.compare_exchange_weak(v, make_value(port, kLive, now_ms),
                                                 std::memory_order_acq_rel)) {
                if (stale) {
                    return Learn::kLearned;
                }
                return same_port ? Learn::kRefreshed : Learn::kMoved;
            }
            continue;  // v now holds what another thread wrote; decide again
        }
        // Dead (aged out or flushed) or not yet published by its inserter: revive it.
        if (!reserve(s)) {
            return Learn::kTableFull;
        }
        if (slot.value.compare_exchange_weak(v, make_value(port, kLive, now_ms),
                                             std::memory_order_acq_rel)) {
            return Learn::kLearned;
        }
        s.live.fetch_sub(1, std::memory_order_relaxed);
    }
}

MacTable::Learn MacTable::learn(Mac mac, PortIndex port, uint64_t now_ms) {
    Slots& s = *slots_.load(std::memory_order_acquire);
    const uint64_t key = kKeyValid | mac;
    uint32_t idx = home(s, mac);
    for (uint32_t probe = 0; probe < kMaxProbe; ++probe) {
        Slot& slot = s.slot[idx];
        uint64_t k = slot.key.load(std::memory_order_acquire);
        if (k == 0) {
            if (!reserve(s)) {
                return Learn::kTableFull;
            }
            if (slot.key.compare_exchange_strong(k, key, std::memory_order_acq_rel)) {
                uint64_t unset = 0;
                if (slot.value.compare_exchange_strong(unset, make_value(port, kLive, now_ms),
                                                       std::memory_order_acq_rel)) {
                    return Learn::kLearned;
                }
                // Another worker saw our key before its value and revived it first,
                // reserving its own count: give ours back.
                s.live.fetch_sub(1, std::memory_order_relaxed);
                return update_existing(s, slot, port, now_ms);
            }
            s.live.fetch_sub(1, std::memory_order_relaxed);
            // Lost the race for this slot; k now holds the winner's key.
        }
        if (k == key) {
            return update_existing(s, slot, port, now_ms);
        }
        idx = (idx + 1) & s.mask;
    }
    // Every slot this MAC may use holds another MAC: as good as full until compaction.
    return Learn::kTableFull;
}

MacTable::AgeResult MacTable::age(uint64_t now_ms) {
    std::lock_guard lock(control_mutex_);
    Slots& s = *slots_.load(std::memory_order_acquire);
    AgeResult result;
    uint32_t dead = 0;
    for (uint32_t i = 0; i <= s.mask; ++i) {
        Slot& slot = s.slot[i];
        if (slot.key.load(std::memory_order_acquire) == 0) {
            continue;
        }
        uint64_t v = slot.value.load(std::memory_order_acquire);
        if ((v & kLive) != 0 && expired(v, now_ms)) {
            // A worker refreshing it at the same moment wins the CAS; then it stays.
            if (slot.value.compare_exchange_strong(v, v & ~kLive, std::memory_order_acq_rel)) {
                s.live.fetch_sub(1, std::memory_order_relaxed);
                ++result.expired;
                ++dead;
            }
        } else if ((v & kLive) == 0) {
            ++dead;
        }
    }
    // Dead slots lengthen probe sequences; rebuild once they are an eighth of the table.
    if (dead > (s.mask + 1) / 8) {
        compact();
        result.compacted = true;
    }
    return result;
}

void MacTable::compact() {
    rebuild(slots_.load(std::memory_order_acquire)->mask + 1);
}

void MacTable::rebuild(uint32_t slot_count) {
    Slots* old = slots_.load(std::memory_order_acquire);
    auto fresh = std::make_unique<Slots>(slot_count);
    const uint32_t limit = capacity_.load(std::memory_order_relaxed);
    uint32_t live = 0;
    // Static entries first, so a smaller table keeps them rather than learned ones.
    for (const bool want_static : {true, false}) {
        for (uint32_t i = 0; i <= old->mask && live < limit; ++i) {
            const uint64_t k = old->slot[i].key.load(std::memory_order_acquire);
            const uint64_t v = old->slot[i].value.load(std::memory_order_acquire);
            if (k == 0 || (v & kLive) == 0 || ((v & kStaticFlag) != 0) != want_static) {
                continue;
            }
            uint32_t idx = home(*fresh, k & ~kKeyValid);
            while (fresh->slot[idx].key.load(std::memory_order_relaxed) != 0) {
                idx = (idx + 1) & fresh->mask;
            }
            fresh->slot[idx].key.store(k, std::memory_order_relaxed);
            fresh->slot[idx].value.store(v, std::memory_order_relaxed);
            ++live;
        }
    }
    fresh->live.store(live, std::memory_order_relaxed);
    // Workers that learn into the old array between the copy and the swap lose that
    // learning; the next frame from the same host learns it again.
    slots_.store(fresh.release(), std::memory_order_release);
    if (wait_for_readers_) {
        wait_for_readers_();
    }
    delete old;
}

void MacTable::set_capacity(uint32_t capacity) {
    if (capacity == 0 || capacity > (1u << 24)) {
        throw std::invalid_argument("MAC table size must be between 1 and 16777216");
    }
    std::lock_guard lock(control_mutex_);
    capacity_.store(capacity, std::memory_order_relaxed);
    rebuild(slots_for(capacity));
}

uint32_t MacTable::flush_learned() {
    std::lock_guard lock(control_mutex_);
    Slots& s = *slots_.load(std::memory_order_acquire);
    uint32_t flushed = 0;
    for (uint32_t i = 0; i <= s.mask; ++i) {
        uint64_t v = s.slot[i].value.load(std::memory_order_acquire);
        while ((v & kLive) != 0 && (v & kStaticFlag) == 0) {
            if (s.slot[i].value.compare_exchange_weak(v, v & ~kLive, std::memory_order_acq_rel)) {
                s.live.fetch_sub(1, std::memory_order_relaxed);
                ++flushed;
                break;
            }
        }
    }
    return flushed;
}

bool MacTable::remove(Mac mac) {
    std::lock_guard lock(control_mutex_);
    Slots& s = *slots_.load(std::memory_order_acquire);
    const uint64_t key = kKeyValid | mac;
    uint32_t idx = home(s, mac);
    for (uint32_t probe = 0; probe < kMaxProbe; ++probe) {
        Slot& slot = s.slot[idx];
        const uint64_t k = slot.key.load(std::memory_order_acquire);
        if (k == 0) {
            return false;
        }
        if (k == key) {
            uint64_t v = slot.value.load(std::memory_order_acquire);
            while ((v & kLive) != 0) {
                // A static entry is never rewritten by workers, so only a learned one
                // can race; the loop retries against what a worker wrote.
                if (slot.value.compare_exchange_weak(v, v & ~(kLive | kStaticFlag),
                                                     std::memory_order_acq_rel)) {
                    s.live.fetch_sub(1, std::memory_order_relaxed);
                    return true;
                }
            }
            return false;
        }
        idx = (idx + 1) & s.mask;
    }
    return false;
}

uint32_t MacTable::flush_port(PortIndex port, bool include_static) {
    std::lock_guard lock(control_mutex_);
    Slots& s = *slots_.load(std::memory_order_acquire);
    uint32_t flushed = 0;
    for (uint32_t i = 0; i <= s.mask; ++i) {
        uint64_t v = s.slot[i].value.load(std::memory_order_acquire);
        while ((v & kLive) != 0 && (include_static || (v & kStaticFlag) == 0) &&
               value_port(v) == port) {
            if (s.slot[i].value.compare_exchange_weak(v, v & ~(kLive | kStaticFlag),
                                                      std::memory_order_acq_rel)) {
                s.live.fetch_sub(1, std::memory_order_relaxed);
                ++flushed;
                break;
            }
        }
    }
    return flushed;
}

bool MacTable::add_static(Mac mac, PortIndex port) {
    std::lock_guard lock(control_mutex_);
    Slots& s = *slots_.load(std::memory_order_acquire);
    const uint64_t key = kKeyValid | mac;
    uint32_t idx = home(s, mac);
    for (uint32_t probe = 0; probe < kMaxProbe; ++probe) {
        Slot& slot = s.slot[idx];
        uint64_t k = slot.key.load(std::memory_order_acquire);
        if (k == 0 && slot.key.compare_exchange_strong(k, key, std::memory_order_acq_rel)) {
            k = key;
        }
        if (k == key) {
            uint64_t v = slot.value.load(std::memory_order_acquire);
            const uint64_t static_value = make_value(port, kLive | kStaticFlag, 0);
            for (;;) {
                const bool was_live = (v & kLive) != 0;
                if (!was_live && !reserve(s)) {
                    return false;
                }
                if (slot.value.compare_exchange_weak(v, static_value, std::memory_order_acq_rel)) {
                    return true;
                }
                if (!was_live) {
                    s.live.fetch_sub(1, std::memory_order_relaxed);
                }
            }
        }
        idx = (idx + 1) & s.mask;
    }
    return false;
}

std::vector<MacTable::Entry> MacTable::entries(uint64_t now_ms) const {
    std::lock_guard lock(control_mutex_);
    const Slots& s = *slots_.load(std::memory_order_acquire);
    std::vector<Entry> out;
    for (uint32_t i = 0; i <= s.mask; ++i) {
        const uint64_t k = s.slot[i].key.load(std::memory_order_acquire);
        const uint64_t v = s.slot[i].value.load(std::memory_order_acquire);
        if (k == 0 || (v & kLive) == 0 || expired(v, now_ms)) {
            continue;
        }
        const bool is_static = (v & kStaticFlag) != 0;
        const uint64_t seen = value_time(v);
        out.push_back({k & ~kKeyValid, value_port(v), is_static,
                       is_static || seen >= now_ms ? 0 : now_ms - seen});
    }
    return out;
}

}  // namespace conduit::sw
