#include "tools/gen/runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include "tools/gen/port.h"

namespace conduit::gen {

namespace {

double median(std::vector<double> v) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    const std::size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

std::string mpps(double pps) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3f Mpps", pps / 1e6);
    return text;
}

std::string count_text(uint64_t n) {
    char text[32];
    if (n >= 10'000'000) {
        std::snprintf(text, sizeof text, "%.1fM", static_cast<double>(n) / 1e6);
    } else if (n >= 10'000) {
        std::snprintf(text, sizeof text, "%.1fk", static_cast<double>(n) / 1e3);
    } else {
        std::snprintf(text, sizeof text, "%llu", static_cast<unsigned long long>(n));
    }
    return text;
}

void sleep_s(double s) {
    std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

}  // namespace

Runner::Runner(const Options& options, PortSet& ports, Engine& engine, Report& report)
    : o_(options), ports_(ports), engine_(engine), report_(report), tty_(isatty(2) != 0) {
    if (o_.mode != Mode::kCeiling && o_.mode != Mode::kLearning) {
        std::vector<PlanPort> pp;
        for (std::size_t i = 0; i < ports_.size(); ++i) {
            pp.push_back({static_cast<uint16_t>(i), ports_.spec(i).name});
        }
        plan_ = make_plan(pp, o_.topology, o_.expect_loopback, o_.macs, o_.flows, o_.learn_rounds);
    }
    for (const PauseOption& p : o_.rx_pauses) {
        const int index = ports_.find(p.port);
        if (index < 0) {
            throw UsageError("--rx-pause: no port named '" + p.port + "'");
        }
        pauses_.push_back({static_cast<uint16_t>(index), p.at_s, p.for_s});
    }
}

void Runner::say(const std::string& line) {
    if (progress_shown_ && tty_) {
        std::fputs("\r\033[K", stderr);
    }
    progress_shown_ = false;
    std::fprintf(stderr, "conduit-gen: %s\n", line.c_str());
}

void Runner::on_progress(const Progress& p) {
    char line[256];
    const double t = static_cast<double>(p.elapsed_ms.load()) / 1000.0;
    std::snprintf(line, sizeof line, "%s: %s %.1f/%.1f s, sent %s, received %s",
                  running_label_.c_str(), p.draining.load() ? "draining," : "", t,
                  running_duration_s_, count_text(p.sent.load()).c_str(),
                  count_text(p.received.load()).c_str());
    if (tty_) {
        std::fprintf(stderr, "\r\033[Kconduit-gen: %s", line);
        progress_shown_ = true;
    } else {
        std::fprintf(stderr, "conduit-gen: %s\n", line);
    }
}

void Runner::report_trial(const PhaseResult& r, const std::string& verdict) {
    char line[512];
    std::snprintf(
        line, sizeof line,
        "%s: offered %s, received %s, lost %llu (%.4f%%)%s%s, p50 %.1f us, p99 %.1f us, "
        "max %.1f us, generator busy %.0f%% (%.0f cycles/frame)%s%s",
        r.label.c_str(), mpps(r.offered_pps).c_str(), mpps(r.rx_pps).c_str(),
        static_cast<unsigned long long>(r.lost), 100.0 * r.loss_ratio,
        r.misdelivered ? (", misdelivered " + std::to_string(r.misdelivered)).c_str() : "",
        r.duplicates ? (", duplicates " + std::to_string(r.duplicates)).c_str() : "",
        r.latency.p50_us, r.latency.p99_us, r.latency.max_us, 100 * r.generator_busy,
        r.cycles_per_frame, r.generator_limited ? ", GENERATOR BEHIND SCHEDULE" : "",
        verdict.empty() ? "" : (": " + verdict).c_str());
    say(line);
    for (const StreamResult& s : r.streams) {
        if (s.lost != 0 || s.misdelivered != 0 || s.duplicates != 0) {
            std::snprintf(line, sizeof line,
                          "  LOSS on stream %s: offered %llu, received %llu, lost %llu (refused by "
                          "the port %llu), duplicates %llu, reordered %llu, misdelivered %llu",
                          s.name.c_str(), static_cast<unsigned long long>(s.offered),
                          static_cast<unsigned long long>(s.received),
                          static_cast<unsigned long long>(s.lost),
                          static_cast<unsigned long long>(s.refused),
                          static_cast<unsigned long long>(s.duplicates),
                          static_cast<unsigned long long>(s.reordered),
                          static_cast<unsigned long long>(s.misdelivered));
            say(line);
        }
    }
}

void Runner::learn(const SizeMix& sizes) {
    if (!o_.learn || o_.mode == Mode::kCeiling || plan_.learning.empty()) {
        return;
    }
    PhaseSpec p;
    p.label = "learning";
    p.streams = plan_.learning;
    p.sizes = SizeMix::fixed(std::min<uint16_t>(sizes.largest(), 64));
    p.rate_pps = o_.learn_rate_pps;
    p.drain_max_s = o_.drain_max_s;
    p.tx_batch = static_cast<uint16_t>(o_.tx_batch);
    engine_.run(p, nullptr, 0);
    sleep_s(o_.learn_settle_s);
}

PhaseResult Runner::trial(const TrialSpec& spec) {
    learn(spec.sizes);
    PhaseSpec p;
    p.label = spec.label;
    p.streams = plan_.streams;
    p.sizes = spec.sizes;
    p.rate_pps = spec.rate_pps;
    p.duration_s = spec.duration_s;
    p.warmup_s = spec.warmup_s;
    p.drain_max_s = o_.drain_max_s;
    p.tx_batch = static_cast<uint16_t>(o_.tx_batch);
    p.pauses = pauses_;
    p.rx_ports = plan_ports_;
    running_label_ = spec.label;
    running_duration_s_ = spec.duration_s;
    PhaseResult r = engine_.run(
        p, [this](const Progress& pr) { on_progress(pr); }, o_.progress_s);
    return r;
}

void Runner::run() {
    switch (o_.mode) {
        case Mode::kFixed:
        case Mode::kMax:
            run_fixed_or_max();
            break;
        case Mode::kRfc2544:
            run_rfc2544();
            break;
        case Mode::kLearning:
            run_learning();
            break;
        case Mode::kCeiling:
            run_ceiling();
            break;
    }
}

void Runner::run_fixed_or_max() {
    const bool fixed = o_.mode == Mode::kFixed;
    for (const std::string& size_text : o_.sizes) {
        const SizeMix sizes = SizeMix::parse(size_text);
        SizeReport sr;
        sr.size = sizes.name();
        std::vector<double> rx, rx_bits, taken;
        for (unsigned t = 0; t < o_.trials; ++t) {
            const std::string label = std::string(fixed ? "fixed " + mpps(o_.rate_pps) : "max") +
                                      " " + sizes.name() + " B trial " + std::to_string(t + 1) +
                                      "/" + std::to_string(o_.trials);
            PhaseResult r =
                trial({label, sizes, fixed ? o_.rate_pps : 0, o_.duration_s, o_.warmup_s});
            std::string verdict;
            if (o_.max_loss >= 0 && r.loss_ratio > o_.max_loss) {
                loss_above_limit_ = true;
                verdict = "loss above --max-loss " + std::to_string(o_.max_loss);
            }
            report_trial(r, verdict);
            if (!fixed && r.backpressure < 0.001) {
                say("  note: the ports took every frame offered, so the generator, not the "
                    "switch, set this pace (compare with --mode ceiling)");
            }
            rx.push_back(r.rx_pps);
            rx_bits.push_back(r.rx_bits_per_s);
            taken.push_back(r.sent_pps);
            sr.max_trials.push_back(static_cast<int>(report_.trials.size()));
            report_.trials.push_back(std::move(r));
        }
        sr.throughput_pps = median(rx);
        sr.throughput_bps = median(rx_bits);
        sr.offered_max_pps = median(taken);
        report_.sizes.push_back(sr);
    }
}

SearchResult Runner::search_rate(const std::string& what, const SizeMix& sizes, double hi,
                                 bool hi_failed, double first, double max_loss) {
    SearchResult out;
    double good = 0;
    double bad = hi;
    bool bad_known = hi_failed;
    double rate = first > 0 ? first : hi;
    for (unsigned step = 1; step <= o_.search_steps && rate > 0; ++step) {
        const std::string label = sizes.name() + " B " + what + " step " + std::to_string(step) +
                                  "/" + std::to_string(o_.search_steps) + " at " + mpps(rate);
        bool pass = false;
        int index = -1;
        for (unsigned attempt = 1; attempt <= o_.search_tries && !pass; ++attempt) {
            const std::string tried = attempt == 1 ? label
                                                   : label + " try " + std::to_string(attempt) +
                                                         "/" + std::to_string(o_.search_tries);
            PhaseResult r = trial({tried, sizes, rate, o_.search_duration_s, 0});
            if (r.generator_limited) {
                // Most often the generator's CPU was taken for a moment: try once more.
                report_trial(r, "generator fell behind; repeating");
                report_.trials.push_back(std::move(r));
                r = trial({tried + " (again)", sizes, rate, o_.search_duration_s, 0});
            }
            pass = !r.generator_limited && r.loss_ratio <= max_loss && r.offered > 0;
            const bool again = !pass && attempt < o_.search_tries;
            report_trial(r, pass ? "pass"
                                 : (r.generator_limited ? "fail (generator behind)" : "fail") +
                                       std::string(again ? "; trying again" : ""));
            index = static_cast<int>(report_.trials.size());
            out.steps.push_back(index);
            report_.trials.push_back(std::move(r));
        }
        if (pass) {
            good = rate;
            out.best = index;
            if (!bad_known && rate >= bad) {
                break;  // passed at the top of the range: nothing above to look for
            }
        } else {
            bad = rate;
            bad_known = true;
        }
        rate = (good + bad) / 2;
    }
    out.target = good;
    out.upper = bad_known ? bad : 0;
    return out;
}

void Runner::run_rfc2544() {
    for (const std::string& size_text : o_.sizes) {
        const SizeMix sizes = SizeMix::parse(size_text);
        SizeReport sr;
        sr.size = sizes.name();
        std::vector<double> rx, rx_bits, taken;
        for (unsigned t = 0; t < o_.trials; ++t) {
            const std::string label = sizes.name() + " B max trial " + std::to_string(t + 1) + "/" +
                                      std::to_string(o_.trials);
            PhaseResult r = trial({label, sizes, 0, o_.duration_s, o_.warmup_s});
            report_trial(r, "");
            rx.push_back(r.rx_pps);
            rx_bits.push_back(r.rx_bits_per_s);
            taken.push_back(r.sent_pps);
            sr.max_trials.push_back(static_cast<int>(report_.trials.size()));
            report_.trials.push_back(std::move(r));
        }
        sr.throughput_pps = median(rx);
        sr.throughput_bps = median(rx_bits);
        sr.offered_max_pps = median(taken);
        // The rate the switch took at the maximum is where the searches start: nothing
        // above it can be offered without the ports refusing frames.
        const double hi = sr.offered_max_pps;
        sr.pdr = search_rate("PDR", sizes, hi, false, 0, o_.pdr_loss);
        // NDR <= PDR: start at the PDR found; above what failed the PDR nothing passes.
        const bool pdr_failed_above = sr.pdr.upper > 0;
        sr.ndr = search_rate("NDR", sizes, pdr_failed_above ? sr.pdr.upper : hi, pdr_failed_above,
                             sr.pdr.target, 0);
        if (sr.ndr.target > sr.pdr.target) {
            // The NDR search passed a rate between the PDR found and the one that failed
            // it, which the PDR search never tried (a trial is a sample: a rate can fail
            // once and pass later). Lossless is within the PDR's bound too, so that rate
            // is the PDR as well: the highest rate seen within the bound.
            sr.pdr.target = sr.ndr.target;
            sr.pdr.best = sr.ndr.best;
        }
        report_.sizes.push_back(sr);
    }
}

void Runner::wait_for_aging() {
    // Entries of the last iteration must be gone before the next one counts what fits.
    const double wait = o_.aging_s + 1.5;
    say("waiting " + std::to_string(static_cast<int>(std::ceil(wait))) +
        " s for the switch to age out the addresses");
    sleep_s(wait);
}

PhaseResult Runner::run_one_stream(const std::string& label, double rate_pps, StreamSpec stream) {
    PhaseSpec phase;
    phase.label = label;
    phase.streams = {std::move(stream)};
    phase.sizes = SizeMix::fixed(64);
    phase.rate_pps = rate_pps;
    phase.drain_max_s = o_.drain_max_s;
    phase.tx_batch = static_cast<uint16_t>(o_.tx_batch);
    running_label_ = label;
    running_duration_s_ = 0;
    return engine_.run(
        phase, [this](const Progress& pr) { on_progress(pr); }, o_.progress_s);
}

LearningIteration Runner::learning_iteration(uint32_t addresses, double rate_pps) {
    const auto& lp = report_.learning.value();
    const auto L = static_cast<uint16_t>(ports_.find(lp.learning_port));
    const auto T = static_cast<uint16_t>(ports_.find(lp.test_port));
    const unsigned iteration = ++learning_iteration_;
    const Mac test_mac = host_mac(T, 0);
    const Mac first = learning_mac(iteration, 0);

    // The test port makes itself known, so that learning frames to it are not flooded.
    run_one_stream("hello", 1000,
                   {.name = lp.test_port + "->all",
                    .tx_port = T,
                    .rx_port = L,
                    .src_base = test_mac,
                    .dst_base = kBroadcast,
                    .frames = 1});

    // Learning frames: `addresses` distinct sources on the learning port, to the test port.
    const PhaseResult taught =
        run_one_stream("learning " + std::to_string(addresses) + " addresses", rate_pps,
                       {.name = lp.learning_port + "->" + lp.test_port,
                        .tx_port = L,
                        .rx_port = T,
                        .src_base = first,
                        .src_count = addresses,
                        .dst_base = test_mac,
                        .frames = addresses});
    sleep_s(o_.learn_settle_s);

    // Test frames from the test port to every learned address: any that reaches the
    // monitor port was flooded, so its address was not learned.
    const PhaseResult checked =
        run_one_stream("checking " + std::to_string(addresses) + " addresses", o_.learn_rate_pps,
                       {.name = lp.test_port + "->" + lp.learning_port,
                        .tx_port = T,
                        .rx_port = L,
                        .src_base = test_mac,
                        .dst_base = first,
                        .dst_count = addresses,
                        .frames = addresses});

    LearningIteration it;
    it.addresses = addresses;
    it.target_pps = rate_pps;
    it.learn_pps = taught.offered_pps;
    // A test frame anywhere but the learning port (the monitor port) was flooded.
    it.flooded = checked.misdelivered;
    it.lost = checked.lost;
    it.pass = it.flooded == 0 && it.lost == 0 && checked.offered == addresses;
    char line[256];
    std::snprintf(line, sizeof line,
                  "%u addresses learned at %s: %llu test frames flooded, %llu lost: %s", addresses,
                  mpps(it.learn_pps).c_str(), static_cast<unsigned long long>(it.flooded),
                  static_cast<unsigned long long>(it.lost), it.pass ? "pass" : "fail");
    say(line);
    report_.trials.push_back(taught);
    report_.trials.push_back(checked);
    return it;
}

void Runner::run_learning() {
    LearningReport lr;
    std::vector<std::string> names = o_.learning_ports;
    if (names.empty()) {
        if (ports_.size() < 3) {
            throw UsageError("--mode learning needs three ports (learning, test, monitor)");
        }
        names = {ports_.spec(0).name, ports_.spec(1).name, ports_.spec(2).name};
    }
    if (names.size() != 3) {
        throw UsageError("--learning-ports needs three names: learning,test,monitor");
    }
    for (const std::string& n : names) {
        if (ports_.find(n) < 0) {
            throw UsageError("--learning-ports: no port named '" + n + "'");
        }
    }
    lr.learning_port = names[0];
    lr.test_port = names[1];
    lr.monitor_port = names[2];
    lr.aging_s = o_.aging_s;
    report_.learning = lr;
    LearningReport& out = *report_.learning;

    // Address caching capacity: binary search on the count, first at the top.
    uint32_t good = 0, bad = o_.capacity_hi;
    bool bad_known = false;
    uint32_t n = o_.capacity_hi;
    for (unsigned step = 1; step <= o_.learning_steps; ++step) {
        if (step > 1) {
            wait_for_aging();
        }
        say("address caching capacity, step " + std::to_string(step) + "/" +
            std::to_string(o_.learning_steps) + ": " + std::to_string(n) + " addresses");
        const LearningIteration it = learning_iteration(n, o_.learn_rate_pps);
        out.capacity_steps.push_back(it);
        if (it.pass) {
            good = n;
            if (!bad_known) {
                break;
            }
        } else {
            bad = n;
            bad_known = true;
        }
        const uint32_t lo = std::max(good, o_.capacity_lo - 1);
        if (bad - lo <= 1) {
            break;
        }
        n = lo + (bad - lo) / 2;
    }
    out.capacity = good;
    out.capacity_failed = bad_known ? bad : 0;

    // Address learning rate at a count that fits the table.
    const uint32_t macs =
        o_.learning_rate_macs != 0 ? o_.learning_rate_macs : std::max<uint32_t>(1, good);
    out.rate_addresses = macs;
    double rate = o_.learning_rate_max_pps;  // 0: as fast as the port takes frames
    double rate_good = 0, rate_bad = 0;
    for (unsigned step = 1; step <= o_.learning_steps; ++step) {
        wait_for_aging();
        say("address learning rate, step " + std::to_string(step) + "/" +
            std::to_string(o_.learning_steps) + ": " + std::to_string(macs) + " addresses at " +
            (rate == 0 ? std::string("the maximum rate") : mpps(rate)));
        const LearningIteration it = learning_iteration(macs, rate);
        out.rate_steps.push_back(it);
        const double tried = rate == 0 ? it.learn_pps : rate;
        if (it.pass) {
            rate_good = rate == 0 ? it.learn_pps : rate;
            if (rate_bad == 0) {
                break;  // passed at the top
            }
        } else {
            rate_bad = tried;
        }
        rate = (rate_good + rate_bad) / 2;
        if (rate <= 0) {
            break;
        }
    }
    out.rate_pps = rate_good;
    out.rate_failed_pps = rate_bad;
}

void Runner::run_ceiling() {
    // Ports 0, 1: loopback rings (no copy at all); 2, 3: a memif pair of its own NICs
    // inside this process (no copy either: each frame is built where it is read); 4, 5: a
    // vhost-user port and the virtio-user NIC connected to it (a guest and its switch
    // port, both paid by this core).
    struct Link {
        const char* name;
        std::vector<PlanPort> ports;
        bool loopback;
    };
    const std::vector<Link> links{
        {"ring", {{0, ports_.spec(0).name}, {1, ports_.spec(1).name}}, true},
        {"memif", {{2, ports_.spec(2).name}, {3, ports_.spec(3).name}}, false},
        {"virtio", {{4, ports_.spec(4).name}, {5, ports_.spec(5).name}}, false},
    };
    for (const Link& link : links) {
        plan_ = make_plan(link.ports, "pairs", link.loopback, 0, 1, 1);
        plan_ports_ = {link.ports[0].index, link.ports[1].index};
        for (const std::string& size_text : o_.sizes) {
            const SizeMix sizes = SizeMix::parse(size_text);
            std::vector<double> rx, bits, bp, cycles;
            for (unsigned t = 0; t < o_.trials; ++t) {
                const std::string label = std::string("ceiling ") + link.name + " " + sizes.name() +
                                          " B trial " + std::to_string(t + 1) + "/" +
                                          std::to_string(o_.trials);
                PhaseResult r = trial({label, sizes, 0, o_.duration_s, o_.warmup_s});
                report_trial(r, "");
                rx.push_back(r.rx_pps);
                bits.push_back(r.rx_bits_per_s);
                bp.push_back(r.backpressure);
                cycles.push_back(r.cycles_per_frame);
                report_.trials.push_back(std::move(r));
            }
            report_.ceiling.push_back(
                {link.name, sizes.name(), median(rx), median(bits), median(bp), median(cycles)});
        }
    }
}

}  // namespace conduit::gen
