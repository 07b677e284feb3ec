// dataplane/worker: one poll-mode thread on one CPU: polls the receive queues the
// published state gives it, runs each burst through the switch, and backs off into short
// sleeps when there is nothing to do.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "switch/forwarding.h"
#include "switch/offload.h"

namespace conduit::dp {

class Dataplane;
class Port;
struct DatapathState;

struct RxQueueRef {
    Port* port;
    uint16_t queue;
};

// Idle back-off: after idle_before_sleep_us without a frame the worker sleeps, starting at
// first_sleep_us and doubling up to max_sleep_us, so it is back to full polling well
// within a millisecond of traffic returning while an idle switch costs little CPU. The
// cap is low because the kernel's wake-up adds its own delay to every sleep.
//
// A sleep is only as short as the kernel and, on a virtual machine, the host make it: a
// vCPU that halted can be away for milliseconds, and traffic that resumes at a high rate
// overflows a guest's ring meanwhile (1024 descriptors last 1 ms at 1 Mpps). So a worker
// that has just carried a high rate (at least busy_rate_pps over a rate window) waits
// busy_hold_us after its last frame before it sleeps: a burst of high-rate traffic, or
// the next trial of a benchmark, finds it polling. Low-rate traffic (a few thousand
// frames a second cannot fill a ring during any wake-up) keeps the short wait.
struct BackoffPolicy {
    bool enabled = true;
    uint64_t idle_before_sleep_us = 200;
    uint64_t first_sleep_us = 10;
    uint64_t max_sleep_us = 200;
    uint64_t busy_rate_pps = 100'000;
    uint64_t busy_hold_us = 1'000'000;
    uint64_t rate_window_us = 10'000;
};

// PMD statistics, as plain numbers (a reading, or a difference of two readings).
struct WorkerStatsSnapshot {
    uint64_t polls = 0;         // poll loops
    uint64_t busy_polls = 0;    // loops that received at least one frame
    uint64_t rx_packets = 0;    // frames received
    uint64_t rx_bursts = 0;     // receive calls that returned frames
    uint64_t busy_cycles = 0;   // TSC cycles in loops that received frames (forwarding them)
    uint64_t idle_cycles = 0;   // TSC cycles in loops that found nothing (polling, not asleep)
    uint64_t sleep_cycles = 0;  // TSC cycles asleep in the idle back-off
    uint64_t sleeps = 0;
    uint64_t holds = 0;             // idle spells the worker kept polling through after a high rate
    uint64_t longest_sleep_us = 0;  // not a sum: the longest single sleep (never cleared)
    uint64_t stalls = 0;            // times the worker was held up over kStallUs
    uint64_t longest_stall_us = 0;  // not a sum: the longest of them (never cleared)

    WorkerStatsSnapshot operator-(const WorkerStatsSnapshot& base) const;
};

// Written only by its worker (plain load and store of relaxed atomics: no locked
// instruction), read by the control thread.
struct WorkerStats {
    std::atomic<uint64_t> polls{0};
    std::atomic<uint64_t> busy_polls{0};
    std::atomic<uint64_t> rx_packets{0};
    std::atomic<uint64_t> rx_bursts{0};
    std::atomic<uint64_t> busy_cycles{0};
    std::atomic<uint64_t> idle_cycles{0};
    std::atomic<uint64_t> sleep_cycles{0};
    std::atomic<uint64_t> sleeps{0};
    std::atomic<uint64_t> holds{0};
    // The longest single sleep as measured (requested step plus the kernel's wake-up
    // delay): the most time the worker was away from its queues.
    std::atomic<uint64_t> longest_sleep_us{0};
    // Forwarding one burst takes microseconds (tens with jumbo frames, more if each is
    // flooded to many ports); a worker that went longer than kStallUs without finishing
    // one, or without an empty poll ending, was almost surely held up: the kernel or, on
    // a virtual machine, the host took its CPU, and guests' rings filled meanwhile.
    // Shorter holds can overflow a ring too (1024 descriptors last 0.37 ms at 2.8
    // million frames a second) but are not told apart from work here. Frames a guest
    // could not post never reach the switch, so no drop counter can see them; these
    // can. Sleeps of the idle back-off are not stalls.
    static constexpr uint64_t kStallUs = 500;
    std::atomic<uint64_t> stalls{0};
    std::atomic<uint64_t> longest_stall_us{0};

    WorkerStatsSnapshot snapshot() const;
};

class Worker final : private sw::TxSink {
  public:
    Worker(Dataplane& dp, unsigned id, unsigned lcore, unsigned cpu, BackoffPolicy backoff,
           int nice);

    unsigned id() const { return id_; }
    unsigned lcore() const { return lcore_; }
    unsigned cpu() const { return cpu_; }
    const sw::WorkerCounters& counters() const { return *counters_; }
    // Control side, only for a port or bridge index no state refers to any more.
    sw::WorkerCounters& counters_for_reset() { return *counters_; }
    const WorkerStats& stats() const { return stats_; }

    int run();  // the lcore's main loop, until the dataplane stops

  private:
    void transmit(sw::PortIndex port, rte_mbuf** pkts, uint16_t count) override;

    Dataplane& dp_;
    unsigned id_;
    unsigned lcore_;
    unsigned cpu_;
    BackoffPolicy backoff_;
    int nice_;
    const DatapathState* state_ = nullptr;  // the state of the current poll loop
    std::unique_ptr<sw::WorkerCounters> counters_;
    sw::Forwarder forwarder_;
    sw::TxFitter fitter_;
    WorkerStats stats_;
};

}  // namespace conduit::dp
