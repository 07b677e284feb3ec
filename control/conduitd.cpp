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

#include "control/config.h"
#include "control/telemetry.h"
#include "dataplane/dataplane.h"
#include "dataplane/eal.h"
#include "dataplane/log.h"

namespace {

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: conduitd --config FILE [--check]\n"
                 "  --config FILE  the YAML configuration (see configs/default.yaml)\n"
                 "  --check        validate the configuration and exit (0 valid, 1 not)\n"
                 "  --version      print the version\n"
                 "Counters: dpdk-telemetry.py -f <file_prefix>, commands under /conduit/.\n");
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
            dp::Dataplane dataplane(config);
            control::telemetry_attach(dataplane);
            dataplane.start();
            CLOG_NOTICE("main",
                        "ready: %zu bridges, %zu ports, %zu workers; telemetry: "
                        "dpdk-telemetry.py -f %s",
                        config.bridges.size(), config.port_count(),
                        config.daemon.worker_cpus.size(), config.daemon.file_prefix.c_str());
            int sig = 0;
            uint64_t last_tick = dataplane.now_ms();
            for (;;) {
                const timespec wait{0, 200'000'000};
                sig = sigtimedwait(&signals, nullptr, &wait);
                if (sig > 0) {
                    break;
                }
                const uint64_t now = dataplane.now_ms();
                if (now - last_tick >= 1000) {
                    dataplane.tick();
                    last_tick = now;
                }
            }
            CLOG_NOTICE("main", "%s: shutting down", strsignal(sig));
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
