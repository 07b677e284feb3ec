// tools/gen/report: a run's results, and how they are written: JSON (everything), a
// markdown table (the summary a person reads) and a PNG plot drawn by gnuplot.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tools/gen/traffic.h"

namespace conduit::gen {

// A binary search's outcome: the best passing trial and the lowest failing rate (or
// count) above it; upper == 0 when nothing failed (the search passed at its top).
struct SearchResult {
    double target = 0;  // highest passing target (rate, or address count)
    double upper = 0;   // lowest failing target above it; 0: none failed
    int best = -1;      // index in Report::trials of the best passing trial
    std::vector<int> steps;
};

struct SizeReport {
    std::string size;
    std::vector<int> max_trials;  // indexes in Report::trials
    double throughput_pps = 0;    // median received rate at the maximum rate
    double throughput_bps = 0;
    double offered_max_pps = 0;  // median rate the ports took at the maximum rate
    SearchResult pdr, ndr;
};

struct LearningIteration {
    uint32_t addresses = 0;
    double target_pps = 0;  // learning frames per second; 0: maximum rate
    double learn_pps = 0;   // achieved
    uint64_t flooded = 0;   // test frames that reached the monitor port
    uint64_t lost = 0;      // test frames that never reached the learning port
    bool pass = false;
};

struct LearningReport {
    std::string learning_port, test_port, monitor_port;
    double aging_s = 0;
    uint32_t capacity = 0;         // most addresses learned without a flooded frame
    uint32_t capacity_failed = 0;  // fewest that flooded; 0: none did
    std::vector<LearningIteration> capacity_steps;
    uint32_t rate_addresses = 0;
    double rate_pps = 0;         // fastest learning without a flooded frame
    double rate_failed_pps = 0;  // slowest that flooded; 0: none did
    std::vector<LearningIteration> rate_steps;
};

struct CeilingRow {
    std::string link;  // ring, memif
    std::string size;
    double rx_pps = 0;
    double rx_bps = 0;
    double backpressure = 0;
    double cycles_per_frame = 0;
};

struct PortReport {
    std::string name, description;
    PortTotals totals;
    uint16_t rx_queues = 1, tx_queues = 1;
};

struct Report {
    std::string mode;
    std::string title;
    std::string command;
    std::string started_utc;
    double tsc_hz = 0;
    unsigned cpu = 0;
    std::string topology;
    bool expect_loopback = false;
    uint32_t macs = 0, flows = 1;
    unsigned tx_batch = 1;  // frames a fixed rate sends a port per call (--tx-batch)
    std::vector<PortReport> ports;
    std::vector<PhaseResult> trials;  // every measured phase, in order
    std::vector<SizeReport> sizes;    // rfc2544
    std::optional<LearningReport> learning;
    std::vector<CeilingRow> ceiling;
};

std::string to_json(const Report& report);
std::string to_markdown(const Report& report);
// Draws the run's main figure with gnuplot; throws with gnuplot's message on failure.
void write_plot(const Report& report, const std::string& png_path);

}  // namespace conduit::gen
