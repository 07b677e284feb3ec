// conduitd: the switch daemon. Loads and validates the config, brings up DPDK, the
// ports, bridges and workers, then runs the control loop (aging, link state) until
// SIGTERM or SIGINT, and shuts everything down cleanly.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>

// Boost 1.74's asio uses std::exchange without including <utility> in C++20.
#include <utility>

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <sstream>
#include <thread>

#include "control/config.h"
#include "control/methods.h"
#include "control/metrics.h"
#include "control/rpc.h"
#include "control/rpc_server.h"
#include "control/running_config.h"
#include "control/telemetry.h"
#include "dataplane/dataplane.h"
#include "dataplane/eal.h"
#include "dataplane/log.h"

namespace {

namespace rpc = conduit::control::rpc;

// Runs `work` every `period` on the io_context's thread.
class Periodic {
  public:
    Periodic(boost::asio::io_context& io, std::chrono::milliseconds period,
             std::function<void()> work)
        : timer_(io), period_(period), work_(std::move(work)) {
        arm();
    }

  private:
    void arm() {
        timer_.expires_after(period_);
        timer_.async_wait([this](boost::system::error_code ec) {
            if (ec) {
                return;
            }
            try {
                work_();
            } catch (const std::exception& e) {
                CLOG_ERR("main", "periodic work failed: %s", e.what());
            }
            arm();
        });
    }
    boost::asio::steady_timer timer_;
    std::chrono::milliseconds period_;
    std::function<void()> work_;
};

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: conduitd --config FILE [--check]\n"
                 "  --config FILE  the YAML configuration (see configs/default.yaml)\n"
                 "  --check        validate the configuration and exit (0 valid, 1 not)\n"
                 "  --version      print the version\n"
                 "Control: conduitctl (JSON-RPC on control.socket, docs/control.md).\n"
                 "Counters: conduitctl show stats, http://127.0.0.1:9477/metrics, or\n"
                 "dpdk-telemetry.py -f <file_prefix> (commands under /conduit/).\n");
}

// Hugepages are usable when hugetlbfs is mounted with free pages, and the setup script
// did not decide otherwise (CONDUIT_HUGEPAGES=0).
bool hugepages_usable() {
    if (const char* env = std::getenv("CONDUIT_HUGEPAGES"); env != nullptr && env[0] == '0') {
        return false;
    }
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    long value = 0;
    while (meminfo >> key >> value) {
        if (key == "HugePages_Free:") {
            return value > 0;
        }
        meminfo.ignore(256, '\n');
    }
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace conduit;
    std::string config_path;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (arg == "--check") {
            check_only = true;
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else if (arg == "--version") {
            std::printf("conduitd %s\n", CONDUIT_VERSION);
            return 0;
        } else {
            std::fprintf(stderr, "conduitd: unknown argument '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        }
    }
    if (config_path.empty()) {
        usage(stderr);
        return 2;
    }

    control::Config config;
    try {
        config = control::load_config(config_path);
    } catch (const control::ConfigError& e) {
        std::fprintf(stderr, "conduitd: invalid config: %s\n", e.what());
        return 1;
    }
    if (check_only) {
        std::printf("%s: valid (%zu bridges, %zu ports, %zu workers)\n", config_path.c_str(),
                    config.bridges.size(), config.port_count(), config.daemon.worker_cpus.size());
        return 0;
    }
    log::set_level(config.daemon.log_level.c_str());

    // Every thread (EAL's, the vhost library's, the workers) inherits this mask, so the
    // shutdown signals reach only the control loop below.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);  // a guest closing its socket must not kill the switch

    const bool huge = hugepages_usable();
    if (config.daemon.hugepages && !huge) {
        CLOG_WARN("main", "no free hugepages; running with --no-huge (slower)");
    }
    try {
        dp::Eal eal(config, huge);
        {
            dp::Dataplane dataplane(config.daemon);
            control::telemetry_attach(dataplane);
            dataplane.start();
            // The ports of the config are the first change: workers already run, so a
            // guest that connects at once is served.
            control::RunningConfig running(dataplane, config);

            boost::asio::io_context io;
            rpc::Dispatcher dispatcher;
            control::RpcServer server(io, config.control, dispatcher);
            std::unique_ptr<control::MetricsServer> metrics;
            auto server_stats = [&server] {
                const auto s = server.stats();
                return rpc::json{{"clients", s.clients},
                                 {"connections", s.connections},
                                 {"requests", s.requests},
                                 {"errors", s.errors},
                                 {"rejected", s.rejected}};
            };
            if (config.control.metrics != "off") {
                metrics = std::make_unique<control::MetricsServer>(
                    io, config.control.metrics, [&dataplane, &server] {
                        const auto s = server.stats();
                        std::ostringstream extra;
                        extra << "# HELP conduit_control_requests_total control requests handled\n"
                                 "# TYPE conduit_control_requests_total counter\n"
                                 "conduit_control_requests_total "
                              << s.requests
                              << "\n# HELP conduit_control_errors_total control requests that "
                                 "failed\n# TYPE conduit_control_errors_total counter\n"
                                 "conduit_control_errors_total "
                              << s.errors
                              << "\n# HELP conduit_control_clients control clients connected\n"
                                 "# TYPE conduit_control_clients gauge\nconduit_control_clients "
                              << s.clients << '\n';
                        return control::render_metrics(dataplane, extra.str());
                    });
            }
            control::register_methods(
                dispatcher, dataplane, running,
                {config.control.socket, metrics ? metrics->address() : "off", server_stats});

            // Periodic work on the control thread, serialised with requests.
            Periodic aging(io, std::chrono::seconds(1), [&dataplane] { dataplane.tick(); });
            Periodic captures(io, std::chrono::milliseconds(20),
                              [&dataplane] { dataplane.capture_poll(); });
            std::thread control_thread([&io] {
                pthread_setname_np(pthread_self(), "conduit-ctl");
                io.run();
            });
            CLOG_NOTICE("main",
                        "ready: %zu bridges, %zu ports, %zu workers; control: conduitctl -s %s; "
                        "telemetry: dpdk-telemetry.py -f %s",
                        config.bridges.size(), config.port_count(),
                        config.daemon.worker_cpus.size(), config.control.socket.c_str(),
                        config.daemon.file_prefix.c_str());
            int sig = 0;
            while (sig <= 0) {
                sig = sigwaitinfo(&signals, nullptr);
            }
            CLOG_NOTICE("main", "%s: shutting down", strsignal(sig));
            io.stop();
            control_thread.join();
            control::telemetry_detach();
            dataplane.stop();
        }
        CLOG_NOTICE("main", "stopped");
    } catch (const std::exception& e) {
        control::telemetry_detach();
        CLOG_ERR("main", "%s", e.what());
        return 1;
    }
    return 0;
}
