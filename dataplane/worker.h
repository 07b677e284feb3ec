// dataplane/worker: one poll-mode thread on one CPU: polls its receive queues, runs each
// burst through the switch, and backs off into short sleeps when there is nothing to do.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "switch/forwarding.h"

namespace conduit::dp {

class Dataplane;
class Port;

struct RxQueueRef {
    Port* port;
    uint16_t queue;
};

// Idle back-off: after idle_before_sleep_us without a frame the worker sleeps, starting at
// first_sleep_us and doubling up to max_sleep_us, so it is back to full polling well
// within a millisecond of traffic returning while an idle switch costs little CPU. The
// cap is low because the kernel's wake-up adds its own delay to every sleep.
struct BackoffPolicy {
    bool enabled = true;
    uint64_t idle_before_sleep_us = 200;
    uint64_t first_sleep_us = 10;
    uint64_t max_sleep_us = 200;
};

struct WorkerStats {
    std::atomic<uint64_t> polls{0};
    std::atomic<uint64_t> busy_polls{0};
    std::atomic<uint64_t> rx_packets{0};
    std::atomic<uint64_t> sleeps{0};
    std::atomic<uint64_t> sleep_us{0};
    // The longest single sleep as measured (requested step plus the kernel's wake-up
    // delay): the most time the worker was away from its queues.
    std::atomic<uint64_t> longest_sleep_us{0};
};

class Worker final : private sw::TxSink {
  public:
    Worker(Dataplane& dp, unsigned id, unsigned lcore, unsigned cpu, BackoffPolicy backoff);

    void add_queue(RxQueueRef q) { queues_.push_back(q); }
    const std::vector<RxQueueRef>& queues() const { return queues_; }
    unsigned id() const { return id_; }
    unsigned lcore() const { return lcore_; }
    unsigned cpu() const { return cpu_; }
    const sw::WorkerCounters& counters() const { return *counters_; }
    const WorkerStats& stats() const { return stats_; }

    int run();  // the lcore's main loop, until the dataplane stops

  private:
    void transmit(sw::PortIndex port, rte_mbuf** pkts, uint16_t count) override;

    Dataplane& dp_;
    unsigned id_;
    unsigned lcore_;
    unsigned cpu_;
    BackoffPolicy backoff_;
    std::vector<RxQueueRef> queues_;
    std::unique_ptr<sw::WorkerCounters> counters_;
    sw::Forwarder forwarder_;
    WorkerStats stats_;
};

}  // namespace conduit::dp
