#include "tools/gen/options.h"

#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include "tools/gen/frame.h"

namespace conduit::gen {

namespace {

double to_double(const std::string& text, const std::string& option) {
    std::size_t used = 0;
    double v = 0;
    try {
        v = std::stod(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size() || !std::isfinite(v)) {
        throw UsageError(option + ": '" + text + "' is not a number");
    }
    return v;
}

uint64_t to_count(const std::string& text, const std::string& option, uint64_t lo, uint64_t hi) {
    std::size_t used = 0;
    unsigned long long v = 0;
    try {
        v = std::stoull(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size() || text[0] == '-' || v < lo || v > hi) {
        throw UsageError(option + " must be a whole number from " + std::to_string(lo) + " to " +
                         std::to_string(hi) + ", not '" + text + "'");
    }
    return v;
}

std::vector<std::string> split(const std::string& text, char sep) {
    std::vector<std::string> out;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, sep)) {
        if (!item.empty()) {
            out.push_back(item);
        }
    }
    return out;
}

}  // namespace

const char* mode_name(Mode mode) {
    switch (mode) {
        case Mode::kFixed:
            return "fixed";
        case Mode::kMax:
            return "max";
        case Mode::kRfc2544:
            return "rfc2544";
        case Mode::kLearning:
            return "learning";
        case Mode::kCeiling:
            return "ceiling";
    }
    return "?";
}

double parse_rate(const std::string& text) {
    if (text.empty()) {
        throw UsageError("empty rate");
    }
    double scale = 1;
    std::string number = text;
    switch (text.back()) {
        case 'k':
        case 'K':
            scale = 1e3;
            number.pop_back();
            break;
        case 'm':
        case 'M':
            scale = 1e6;
            number.pop_back();
            break;
        default:
            break;
    }
    const double v = to_double(number, "rate") * scale;
    if (v <= 0) {
        throw UsageError("rate must be above 0, not '" + text + "'");
    }
    return v;
}

std::string usage() {
    return R"(conduit-gen: traffic generator and benchmark for L2 switches (DPDK)

usage: conduit-gen --port NAME=KIND[:key=value,...] [--port ...] [--mode MODE] [options]

Ports (each a DPDK ethdev or a NIC of the generator's own; at most 32):
  NAME=virtio:path=SOCK[,server=1|0][,driver=native|dpdk]   a guest NIC; server=1
                                       (default) listens; driver=native (default) is the
                                       generator's own NIC, dpdk DPDK's virtio-user
  NAME=memif:socket=SOCK[,role=client|server][,id=N][,driver=native|dpdk]   the wire,
                                       shared memory (fast); driver=native (default) is the
                                       generator's own memif NIC, dpdk DPDK's net_memif
  NAME=af_packet:iface=IF | NAME=af_xdp:iface=IF        the wire, a kernel interface (veth)
  NAME=ring                            in-process loopback (what it sends comes back)
  NAME=dev:DEVARGS                     any DPDK device
  common keys: vlan=ID (tag every frame sent), rxd=N, txd=N, queues=N (N queue pairs,
              1-8) or rxq=N (N receive queues, one transmit queue): every receive queue
              is polled, frames are sent on the first; other keys go to the PMD

Traffic:
  --topology pairs|star[:PORT]|mesh|loop   who sends to whom (default pairs: 1<->2, 3<->4...;
                              star: every port <-> PORT, default the last)
  --expect-loopback           frames return on the port that sent them (a forwarder
                              that loops each port back, e.g. testpmd --port-topology=loop)
  --macs N                    host MACs over all ports (default one per port)
  --flows N                   UDP flows per stream (default 1)
  --size S | --sizes S,S,...  frame sizes 64..9000 or imix (default 64)
  --no-learn                  no learning frames before each trial
  --learn-rate R              learning frames per second (default 100k)

Modes (--mode):
  fixed    --rate R (all streams together, e.g. 2M) for --duration S
  max      as fast as the ports take frames, --trials N (median reported)
  rfc2544  per size: maximum rate trials, then binary searches for PDR (loss <= --pdr-loss,
           default 0.005) and NDR (no loss): --search-steps N (default 6),
           --search-duration S (default 2), --search-tries N (a step passes when one of
           N tries does, default 1)
  learning RFC 2889 address caching capacity (--capacity LO:HI, --learning-steps N) and
           address learning rate (--learning-rate-max R, --learning-rate-macs N) with
           --learning-ports L,T,M (default the first three) and --aging S (the switch's
           MAC aging time, waited out between iterations; required)
  ceiling  the generator's own limit, no switch (--port not used): a loopback ring, a
           memif pair and a guest NIC on a vhost-user port, all in this process

Common: --duration S (default 5), --warmup S, --trials N, --rx-pause PORT:AT:FOR (stop
  receiving on PORT for FOR seconds, AT seconds into each trial: a guest not draining),
  --max-loss RATIO (exit 3 if a fixed/max trial loses more), --drain S (default 2),
  --tx-batch N (at a fixed rate a port sends N frames a call, or what 200 us of its
  rate makes when that is fewer; 1: every frame as soon as it is due; default 8)
Process: --cpu N (traffic lcore, default 0), --main-cpu N, --file-prefix P (default
  conduit-gen), --memory MB, --no-huge, --port-timeout S (default 30), --start-on-stdin
  (once every port is up print "conduit-gen: ready" and wait for a line on stdin)
Output: --json FILE, --markdown FILE, --plot FILE.png, --title TEXT, --progress S (seconds
  between progress lines, 0: none; default 1)
Exit: 0 done, 1 usage or setup error, 2 a port never came up, 3 loss above --max-loss.
)";
}

Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 0; i < argc; ++i) {
        o.command_line += (i ? " " : "") + std::string(argv[i]);
    }
    using Handler = std::function<void(const std::string&)>;
    const std::map<std::string, Handler> with_value{
        {"--port", [&](const std::string& v) { o.ports.push_back(v); }},
        {"--topology", [&](const std::string& v) { o.topology = v; }},
        {"--macs",
         [&](const std::string& v) {
             o.macs = static_cast<uint32_t>(to_count(v, "--macs", 1, 1u << 24));
         }},
        {"--flows",
         [&](const std::string& v) {
             o.flows = static_cast<uint32_t>(to_count(v, "--flows", 1, 64000));
         }},
        {"--size", [&](const std::string& v) { o.sizes = {v}; }},
        {"--sizes", [&](const std::string& v) { o.sizes = split(v, ','); }},
        {"--mode",
         [&](const std::string& v) {
             static const std::map<std::string, Mode> modes{{"fixed", Mode::kFixed},
                                                            {"max", Mode::kMax},
                                                            {"rfc2544", Mode::kRfc2544},
                                                            {"learning", Mode::kLearning},
                                                            {"ceiling", Mode::kCeiling}};
             auto it = modes.find(v);
             if (it == modes.end()) {
                 throw UsageError("--mode: '" + v + "' (fixed, max, rfc2544, learning, ceiling)");
             }
             o.mode = it->second;
         }},
        {"--rate", [&](const std::string& v) { o.rate_pps = parse_rate(v); }},
        {"--duration", [&](const std::string& v) { o.duration_s = to_double(v, "--duration"); }},
        {"--warmup", [&](const std::string& v) { o.warmup_s = to_double(v, "--warmup"); }},
        {"--trials",
         [&](const std::string& v) {
             o.trials = static_cast<unsigned>(to_count(v, "--trials", 1, 1000));
         }},
        {"--learn-rate", [&](const std::string& v) { o.learn_rate_pps = parse_rate(v); }},
        {"--search-steps",
         [&](const std::string& v) {
             o.search_steps = static_cast<unsigned>(to_count(v, "--search-steps", 1, 64));
         }},
        {"--search-tries",
         [&](const std::string& v) {
             o.search_tries = static_cast<unsigned>(to_count(v, "--search-tries", 1, 10));
         }},
        {"--search-duration",
         [&](const std::string& v) { o.search_duration_s = to_double(v, "--search-duration"); }},
        {"--pdr-loss", [&](const std::string& v) { o.pdr_loss = to_double(v, "--pdr-loss"); }},
        {"--learning-ports", [&](const std::string& v) { o.learning_ports = split(v, ','); }},
        {"--capacity",
         [&](const std::string& v) {
             const auto parts = split(v, ':');
             if (parts.size() != 2) {
                 throw UsageError("--capacity LO:HI");
             }
             o.capacity_lo =
                 static_cast<uint32_t>(to_count(parts[0], "--capacity LO", 1, 1u << 24));
             o.capacity_hi =
                 static_cast<uint32_t>(to_count(parts[1], "--capacity HI", 1, 1u << 24));
         }},
        {"--learning-steps",
         [&](const std::string& v) {
             o.learning_steps = static_cast<unsigned>(to_count(v, "--learning-steps", 1, 64));
         }},
        {"--aging", [&](const std::string& v) { o.aging_s = to_double(v, "--aging"); }},
        {"--learning-rate-max",
         [&](const std::string& v) { o.learning_rate_max_pps = parse_rate(v); }},
        {"--learning-rate-macs",
         [&](const std::string& v) {
             o.learning_rate_macs =
                 static_cast<uint32_t>(to_count(v, "--learning-rate-macs", 1, 1u << 24));
         }},
        {"--rx-pause",
         [&](const std::string& v) {
             const auto parts = split(v, ':');
             if (parts.size() != 3) {
                 throw UsageError("--rx-pause PORT:AT:FOR");
             }
             o.rx_pauses.push_back({parts[0], to_double(parts[1], "--rx-pause AT"),
                                    to_double(parts[2], "--rx-pause FOR")});
         }},
        {"--max-loss", [&](const std::string& v) { o.max_loss = to_double(v, "--max-loss"); }},
        {"--drain", [&](const std::string& v) { o.drain_max_s = to_double(v, "--drain"); }},
        {"--tx-batch",
         [&](const std::string& v) {
             o.tx_batch = static_cast<unsigned>(to_count(v, "--tx-batch", 1, 64));
         }},
        {"--cpu",
         [&](const std::string& v) {
             o.cpu = static_cast<unsigned>(to_count(v, "--cpu", 0, 1023));
         }},
        {"--main-cpu",
         [&](const std::string& v) {
             o.main_cpu = static_cast<int>(to_count(v, "--main-cpu", 0, 1023));
         }},
        {"--file-prefix", [&](const std::string& v) { o.file_prefix = v; }},
        {"--memory",
         [&](const std::string& v) {
             o.memory_mb = static_cast<unsigned>(to_count(v, "--memory", 32, 1u << 20));
         }},
        {"--port-timeout",
         [&](const std::string& v) { o.port_timeout_s = to_double(v, "--port-timeout"); }},
        {"--json", [&](const std::string& v) { o.json_path = v; }},
        {"--markdown", [&](const std::string& v) { o.markdown_path = v; }},
        {"--plot", [&](const std::string& v) { o.plot_path = v; }},
        {"--title", [&](const std::string& v) { o.title = v; }},
        {"--progress", [&](const std::string& v) { o.progress_s = to_double(v, "--progress"); }},
    };
    const std::map<std::string, std::function<void()>> flags{
        {"--expect-loopback", [&] { o.expect_loopback = true; }},
        {"--no-learn", [&] { o.learn = false; }},
        {"--no-huge", [&] { o.hugepages = false; }},
        {"--start-on-stdin", [&] { o.start_on_stdin = true; }},
    };
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            throw UsageError("");
        }
        std::string value;
        bool has_value = false;
        if (const auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            has_value = true;
        }
        if (auto f = flags.find(arg); f != flags.end()) {
            if (has_value) {
                throw UsageError(arg + " takes no value");
            }
            f->second();
            continue;
        }
        auto h = with_value.find(arg);
        if (h == with_value.end()) {
            throw UsageError("unknown option '" + arg + "' (see --help)");
        }
        if (!has_value) {
            if (i + 1 >= argc) {
                throw UsageError(arg + " needs a value");
            }
            value = argv[++i];
        }
        h->second(value);
    }
    // Checks that need every option.
    for (const std::string& s : o.sizes) {
        try {
            SizeMix::parse(s);
        } catch (const std::invalid_argument& e) {
            throw UsageError(e.what());
        }
    }
    if (o.sizes.empty()) {
        throw UsageError("--sizes is empty");
    }
    if (o.mode != Mode::kCeiling && o.ports.empty()) {
        throw UsageError("no --port given (see --help)");
    }
    if (o.mode == Mode::kFixed && o.rate_pps <= 0) {
        throw UsageError("--mode fixed needs --rate");
    }
    if (o.mode == Mode::kLearning && o.aging_s < 0) {
        throw UsageError("--mode learning needs --aging (the switch's MAC aging time in seconds)");
    }
    if (o.capacity_lo > o.capacity_hi) {
        throw UsageError("--capacity: LO is above HI");
    }
    if (o.duration_s <= 0 || o.search_duration_s <= 0) {
        throw UsageError("durations must be above 0");
    }
    if (o.warmup_s < 0 || o.warmup_s >= o.duration_s) {
        throw UsageError("--warmup must be at least 0 and below --duration");
    }
    if (o.pdr_loss < 0 || o.pdr_loss >= 1) {
        throw UsageError("--pdr-loss must be a ratio from 0 to below 1");
    }
    if (o.main_cpu < 0) {
        o.main_cpu = static_cast<int>(o.cpu);
    }
    return o;
}

}  // namespace conduit::gen
