// tools/gen/options: conduit-gen's command line, parsed and checked before DPDK starts.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace conduit::gen {

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

enum class Mode { kFixed, kMax, kRfc2544, kLearning, kCeiling };

struct PauseOption {
    std::string port;
    double at_s;
    double for_s;
};

struct Options {
    std::vector<std::string> ports;  // NAME=KIND[:options]
    std::string topology = "pairs";  // pairs | star[:PORT] | mesh | loop
    bool expect_loopback = false;    // frames come back on the port that sent them
    uint32_t macs = 0;               // host MACs over all ports; 0: one per port
    uint32_t flows = 1;              // UDP flows per stream
    std::vector<std::string> sizes{"64"};
    Mode mode = Mode::kFixed;
    double rate_pps = 0;  // fixed mode, all streams together
    double duration_s = 5;
    double warmup_s = 0;
    unsigned trials = 1;
    // Learning frames before each trial (RFC 2544 section 23).
    bool learn = true;
    double learn_rate_pps = 100'000;
    unsigned learn_rounds = 2;
    double learn_settle_s = 0.2;
    // RFC 2544 search.
    unsigned search_steps = 6;
    unsigned search_tries = 1;  // a step passes when one of this many tries does
    double search_duration_s = 2;
    double pdr_loss = 0.005;
    // RFC 2889.
    std::vector<std::string> learning_ports;  // learning, test, monitor; default: first three
    uint32_t capacity_lo = 1, capacity_hi = 65536;
    unsigned learning_steps = 8;
    double aging_s = -1;               // the switch's MAC aging time: waited out between iterations
    double learning_rate_max_pps = 0;  // upper bound of the rate search; 0: maximum rate
    uint32_t learning_rate_macs = 0;   // addresses for the rate search; 0: the capacity found
    // Faults to inject.
    std::vector<PauseOption> rx_pauses;
    // Process.
    unsigned cpu = 0;
    int main_cpu = -1;  // -1: the traffic CPU
    std::string file_prefix = "conduit-gen";
    unsigned memory_mb = 0;  // 0: sized from the ports and frame sizes
    bool hugepages = true;
    double port_timeout_s = 30;
    bool start_on_stdin = false;  // print "ready" once every port is up, then wait for a line
    double drain_max_s = 2;
    // At a fixed rate a port's frames go out this many at a time (fewer when the port's
    // rate would make a burst wait longer than kTxBatchWait); 1: each as soon as due.
    unsigned tx_batch = 8;
    // Output.
    std::string json_path, markdown_path, plot_path, title;
    double progress_s = 1;  // 0: no progress line
    double max_loss = -1;   // fixed/max: exit 3 when a trial loses more than this ratio
    std::string command_line;
};

Options parse_options(int argc, char** argv);
std::string usage();
const char* mode_name(Mode mode);
// "1.5M", "200k", "1000" -> frames per second.
double parse_rate(const std::string& text);

}  // namespace conduit::gen
