// tools/gen/runner: the modes. Each turns the options into phases for the engine and
// their results into the report: fixed and maximum rate trials, the RFC 2544 searches,
// the RFC 2889 learning tests and the generator's own ceiling.
#pragma once

#include <string>
#include <vector>

#include "tools/gen/options.h"
#include "tools/gen/plan.h"
#include "tools/gen/report.h"
#include "tools/gen/traffic.h"

namespace conduit::gen {

class PortSet;

class Runner {
  public:
    Runner(const Options& options, PortSet& ports, Engine& engine, Report& report);

    void run();
    // Fixed and maximum rate modes: a trial lost more than --max-loss allows.
    bool loss_above_limit() const { return loss_above_limit_; }

  private:
    struct TrialSpec {
        std::string label;
        SizeMix sizes;
        double rate_pps;  // 0: maximum
        double duration_s;
        double warmup_s;
    };

    PhaseResult trial(const TrialSpec& spec);
    void learn(const SizeMix& sizes);
    void run_fixed_or_max();
    void run_rfc2544();
    void run_learning();
    void run_ceiling();
    // Binary search on the rate between 0 and hi: a trial passes when its loss ratio is
    // at most `max_loss`. `first` (if > 0) is tried first; hi_failed says hi is known
    // to fail already.
    SearchResult search_rate(const std::string& what, const SizeMix& sizes, double hi,
                             bool hi_failed, double first, double max_loss);
    LearningIteration learning_iteration(uint32_t addresses, double rate_pps);
    // One stream of 64-byte frames at RATE_PPS until it has sent its frames, with progress.
    PhaseResult run_one_stream(const std::string& label, double rate_pps, StreamSpec stream);
    void wait_for_aging();

    void on_progress(const Progress& p);
    void say(const std::string& line);
    void report_trial(const PhaseResult& r, const std::string& verdict);

    const Options& o_;
    PortSet& ports_;
    Engine& engine_;
    Report& report_;
    TrafficPlan plan_;
    std::vector<uint16_t> plan_ports_;
    std::vector<RxPause> pauses_;
    bool tty_;
    bool progress_shown_ = false;
    std::string running_label_;
    double running_duration_s_ = 0;
    unsigned learning_iteration_ = 0;
    bool loss_above_limit_ = false;
};

}  // namespace conduit::gen
