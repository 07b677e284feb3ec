#include "switch/mac_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

namespace conduit::sw {
namespace {

constexpr Mac kA = 0x020000000001;
constexpr Mac kB = 0x020000000002;
constexpr uint64_t kAging = 300'000;

MacTable make(uint32_t capacity, uint64_t aging = kAging) {
    return MacTable(capacity, aging, [] {});
}

TEST(MacTable, UnknownMacIsAMiss) {
    auto t = make(16);
    EXPECT_EQ(t.lookup(kA, 0), kInvalidPort);
    EXPECT_EQ(t.size(), 0u);
}

TEST(MacTable, LearnThenLookup) {
    auto t = make(16);
    EXPECT_EQ(t.learn(kA, 3, 1000), MacTable::Learn::kLearned);
    EXPECT_EQ(t.lookup(kA, 1000), 3);
    EXPECT_EQ(t.lookup(kB, 1000), kInvalidPort);
    EXPECT_EQ(t.size(), 1u);
}

TEST(MacTable, SeeingTheSameHostAgainWritesNothingUntilRefreshIsDue) {
    auto t = make(16);
    t.learn(kA, 3, 1000);
    EXPECT_EQ(t.learn(kA, 3, 1500), MacTable::Learn::kUnchanged);
    EXPECT_EQ(t.learn(kA, 3, 2000), MacTable::Learn::kRefreshed);  // 1 s later
    EXPECT_EQ(t.size(), 1u);
}

TEST(MacTable, MoveToAnotherPort) {
    auto t = make(16);
    t.learn(kA, 3, 1000);
    EXPECT_EQ(t.learn(kA, 5, 1001), MacTable::Learn::kMoved);
    EXPECT_EQ(t.lookup(kA, 1001), 5);
    EXPECT_EQ(t.size(), 1u);
}

TEST(MacTable, EntryExpiresExactlyAtTheAgingTime) {
    auto t = make(16, 2000);
    t.learn(kA, 1, 10'000);
    EXPECT_EQ(t.lookup(kA, 11'999), 1);
    // Expired for lookups even before the ager has run.
    EXPECT_EQ(t.lookup(kA, 12'000), kInvalidPort);
    EXPECT_EQ(t.size(), 1u);
    const auto result = t.age(12'000);
    EXPECT_EQ(result.expired, 1u);
    EXPECT_EQ(t.size(), 0u);
}

TEST(MacTable, RefreshKeepsAnEntryAlive) {
    auto t = make(16, 2000);
    t.learn(kA, 1, 0);
    t.learn(kA, 1, 1500);  // refresh interval is aging/8 = 250 ms
    EXPECT_EQ(t.age(3000).expired, 0u);
    EXPECT_EQ(t.lookup(kA, 3000), 1);
    EXPECT_EQ(t.age(3500).expired, 1u);
}

TEST(MacTable, ExpiredEntryIsLearnedAgain) {
    auto t = make(16, 1000);
    t.learn(kA, 1, 0);
    t.age(5000);
    EXPECT_EQ(t.learn(kA, 2, 5000), MacTable::Learn::kLearned);
    EXPECT_EQ(t.lookup(kA, 5000), 2);
    EXPECT_EQ(t.size(), 1u);
}

TEST(MacTable, FullTableLearnsNothingNewAndKeepsWhatItHas) {
    auto t = make(4);
    for (Mac m = 1; m <= 4; ++m) {
        EXPECT_EQ(t.learn(0x020000000000 | m, static_cast<PortIndex>(m), 0),
                  MacTable::Learn::kLearned);
    }
    EXPECT_EQ(t.learn(0x0200000000ff, 9, 0), MacTable::Learn::kTableFull);
    EXPECT_EQ(t.lookup(0x0200000000ff, 0), kInvalidPort);
    EXPECT_EQ(t.size(), 4u);
    for (Mac m = 1; m <= 4; ++m) {
        EXPECT_EQ(t.lookup(0x020000000000 | m, 0), static_cast<PortIndex>(m));
    }
    // Existing entries still move and refresh while the table is full.
    EXPECT_EQ(t.learn(0x020000000001, 7, 10), MacTable::Learn::kMoved);
    // Once entries age out there is room again.
    EXPECT_EQ(t.age(kAging + 100).expired, 4u);
    EXPECT_EQ(t.learn(0x0200000000ff, 9, kAging + 100), MacTable::Learn::kLearned);
    EXPECT_EQ(t.lookup(0x0200000000ff, kAging + 100), 9);
}

TEST(MacTable, CapacityIsLiveEntriesNotSlotsEverUsed) {
    auto t = make(8, 1000);
    Mac next = 0x020000100000;
    for (int round = 0; round < 50; ++round) {
        const uint64_t now = static_cast<uint64_t>(round) * 2000;
        for (int i = 0; i < 8; ++i) {
            ASSERT_EQ(t.learn(next++, 1, now), MacTable::Learn::kLearned) << "round " << round;
        }
        t.age(now + 1500);  // all eight expire; churn forces compaction
        ASSERT_EQ(t.size(), 0u);
    }
}

TEST(MacTable, FlushPortForgetsOnlyThatPort) {
    auto t = make(16);
    t.learn(kA, 1, 0);
    t.learn(kB, 2, 0);
    EXPECT_EQ(t.flush_port(1), 1u);
    EXPECT_EQ(t.lookup(kA, 0), kInvalidPort);
    EXPECT_EQ(t.lookup(kB, 0), 2);
    EXPECT_EQ(t.size(), 1u);
}

TEST(MacTable, StaticEntryNeitherAgesNorMoves) {
    auto t = make(16, 1000);
    ASSERT_TRUE(t.add_static(kA, 4));
    EXPECT_EQ(t.learn(kA, 5, 10), MacTable::Learn::kStatic);
    EXPECT_EQ(t.age(1'000'000).expired, 0u);
    EXPECT_EQ(t.lookup(kA, 1'000'000), 4);
}

TEST(MacTable, EntriesListsLiveOnes) {
    auto t = make(16, 1000);
    t.learn(kA, 1, 0);
    t.learn(kB, 2, 500);
    const auto list = t.entries(1200);
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].mac, kB);
    EXPECT_EQ(list[0].age_ms, 700u);
}

TEST(MacTable, FlushPortCanTakeStaticEntriesToo) {
    auto t = make(16);
    t.learn(kA, 1, 1000);
    ASSERT_TRUE(t.add_static(kB, 1));
    EXPECT_EQ(t.flush_port(1), 1u);  // the learned one only
    EXPECT_EQ(t.lookup(kB, 1000), 1);
    EXPECT_EQ(t.flush_port(1, true), 1u);
    EXPECT_EQ(t.lookup(kB, 1000), kInvalidPort);
    EXPECT_EQ(t.size(), 0u);
    // A flushed static entry is an ordinary slot again: learning reuses it.
    EXPECT_EQ(t.learn(kB, 2, 2000), MacTable::Learn::kLearned);
    EXPECT_EQ(t.learn(kB, 3, 2000), MacTable::Learn::kMoved);
}

TEST(MacTable, RemoveForgetsOneEntry) {
    auto t = make(16);
    t.learn(kA, 1, 1000);
    ASSERT_TRUE(t.add_static(kB, 2));
    EXPECT_TRUE(t.remove(kA));
    EXPECT_FALSE(t.remove(kA));
    EXPECT_TRUE(t.remove(kB));
    EXPECT_EQ(t.size(), 0u);
    EXPECT_EQ(t.lookup(kB, 1000), kInvalidPort);
}

TEST(MacTable, FlushLearnedKeepsStaticEntries) {
    auto t = make(16);
    t.learn(kA, 1, 1000);
    ASSERT_TRUE(t.add_static(kB, 2));
    EXPECT_EQ(t.flush_learned(), 1u);
    EXPECT_EQ(t.lookup(kA, 1000), kInvalidPort);
    EXPECT_EQ(t.lookup(kB, 1000), 2);
}

TEST(MacTable, ResizingKeepsEntriesAndTheNewLimit) {
    int waits = 0;
    MacTable t(4, kAging, [&waits] { ++waits; });
    for (Mac m = 1; m <= 4; ++m) {
        ASSERT_EQ(t.learn(0x020000000100 + m, static_cast<PortIndex>(m), 1000),
                  MacTable::Learn::kLearned);
    }
    ASSERT_TRUE(t.add_static(kA, 9) == false);  // full
    t.set_capacity(1000);
    EXPECT_GE(waits, 1);  // the old array was freed only after readers let go
    EXPECT_EQ(t.capacity(), 1000u);
    EXPECT_GE(t.slot_count(), 2000u);
    for (Mac m = 1; m <= 4; ++m) {
        EXPECT_EQ(t.lookup(0x020000000100 + m, 1000), m);
    }
    EXPECT_TRUE(t.add_static(kA, 9));
    // Shrinking below the live entries keeps static ones first.
    t.set_capacity(2);
    EXPECT_EQ(t.size(), 2u);
    EXPECT_EQ(t.lookup(kA, 1000), 9);
    EXPECT_EQ(t.learn(kB, 1, 1000), MacTable::Learn::kTableFull);
    EXPECT_THROW(t.set_capacity(0), std::invalid_argument);
}

TEST(MacTable, RejectsZeroCapacity) {
    EXPECT_THROW(make(0), std::invalid_argument);
}

// Many workers learning disjoint and overlapping MACs at once: every MAC ends up in the
// table exactly once and the live count matches.
TEST(MacTable, ConcurrentLearnersAgree) {
    auto t = make(4096);
    constexpr int kThreads = 4;
    constexpr int kMacs = 2000;
    std::vector<std::thread> threads;
    std::atomic<int> learned{0};
    for (int th = 0; th < kThreads; ++th) {
        threads.emplace_back([&, th] {
            for (int i = 0; i < kMacs; ++i) {
                // Every thread learns every MAC, on its own port.
                if (t.learn(0x020000000000 | static_cast<Mac>(i), static_cast<PortIndex>(th), 0) ==
                    MacTable::Learn::kLearned) {
                    learned.fetch_add(1);
                }
                EXPECT_NE(t.lookup(0x020000000000 | static_cast<Mac>(i), 0), kInvalidPort);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(learned.load(), kMacs);
    EXPECT_EQ(t.size(), static_cast<uint32_t>(kMacs));
    std::set<Mac> seen;
    for (const auto& e : t.entries(0)) {
        EXPECT_TRUE(seen.insert(e.mac).second) << "duplicate entry";
        EXPECT_LT(e.port, kThreads);
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(kMacs));
}

TEST(MacTable, ConcurrentLearnersRespectCapacity) {
    auto t = make(100);
    std::vector<std::thread> threads;
    for (int th = 0; th < 4; ++th) {
        threads.emplace_back([&, th] {
            for (int i = 0; i < 1000; ++i) {
                t.learn(0x020000000000 | static_cast<Mac>(th * 1000 + i), 1, 0);
            }
        });
    }
    for (auto& th : threads) {
        th.join();
    }
    EXPECT_EQ(t.size(), 100u);
    EXPECT_EQ(t.entries(0).size(), 100u);
}

TEST(MacAddress, TextRoundTrip) {
    Mac m = 0;
    ASSERT_TRUE(mac_from_string("02:00:0a:FF:00:01", m));
    EXPECT_EQ(m, 0x02000aff0001u);
    EXPECT_EQ(mac_to_string(m), "02:00:0a:ff:00:01");
    EXPECT_FALSE(mac_from_string("02:00:0a:ff:00", m));
    EXPECT_FALSE(mac_from_string("02:00:0a:ff:00:0g", m));
    EXPECT_TRUE(mac_is_group(kBroadcastMac));
    EXPECT_TRUE(mac_is_group(0x01005e000001));
    EXPECT_FALSE(mac_is_group(kA));
}

}  // namespace
}  // namespace conduit::sw
