// conduit-vmm: runs one VM. See docs/vmm.md and `conduit-vmm --help`.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "vmm/machine.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/util/error.h"
#include "vmm/util/log.h"
#include "vmm/vm_config.h"

namespace {

using namespace conduit::vmm;

void usage(FILE* out) {
    std::fprintf(out,
                 "usage: conduit-vmm [--config FILE] [options]\n"
                 "  --config FILE     VM settings in YAML; options below override it\n"
                 "  --kernel FILE     Linux bzImage (required here or in the config)\n"
                 "  --initrd FILE     initramfs\n"
                 "  --cmdline TEXT    kernel command line (default: console=ttyS0)\n"
                 "  --cpus N          vCPUs, 1-%u (default 1)\n"
                 "  --memory SIZE     guest RAM, e.g. 512M, 2G (default 512M)\n"
                 "  --hugepages       back guest RAM with 2 MiB hugepages\n"
                 "  --serial WHERE    stdio (default), none, file:PATH or socket:PATH\n"
                 "  --name NAME       the VM's name in log lines\n"
                 "  --net SPEC        a virtio-net card on vhost-user (repeatable):\n"
                 "                    socket=PATH[,mode=server|client][,mac=MAC][,mtu=N]\n"
                 "                    [,offloads=on|off][,queue_size=N]\n"
                 "  --log-level L     error, warning, info (default), debug\n"
                 "  --check           validate the settings, kernel and initrd, then exit\n"
                 "  --version, --help\n"
                 "Exit status: 0 guest powered off, 1 could not start, 2 usage error,\n"
                 "3 guest rebooted, 4 guest crashed (triple fault, KVM error),\n"
                 "5 stopped by SIGTERM/SIGINT or Ctrl-A x, 6 VMM error while running.\n",
                 kMaxVcpus);
}

struct Options {
    std::string config_path;
    bool check = false;
    // Settings given on the command line, applied over the config file.
    std::vector<std::pair<std::string, std::string>> overrides;
};

void apply(VmConfig& c, const std::string& opt, const std::string& value) {
    const std::string where = "--" + opt;
    if (opt == "kernel") {
        c.kernel = value;
    } else if (opt == "initrd") {
        c.initrd = value;
    } else if (opt == "cmdline") {
        c.cmdline = value;
    } else if (opt == "cpus") {
        std::size_t used = 0;
        unsigned long n = 0;
        try {
            n = std::stoul(value, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != value.size() || value[0] == '-' || n < 1 || n > kMaxVcpus) {
            throw ConfigError(where + ": '" + value + "' is not a vCPU count from 1 to " +
                              std::to_string(kMaxVcpus));
        }
        c.cpus = static_cast<unsigned>(n);
    } else if (opt == "memory") {
        c.memory = parse_size(value, where);
    } else if (opt == "hugepages") {
        c.hugepages = true;
    } else if (opt == "serial") {
        c.serial = parse_serial(value, where);
    } else if (opt == "name") {
        c.name = value;
    } else if (opt == "log-level") {
        c.log_level = value;
    } else if (opt == "net") {
        c.nets.push_back(parse_net_spec(value, c.name, c.nets.size()));
    }
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    static const char* const kWithValue[] = {"kernel", "initrd", "cmdline",   "cpus", "memory",
                                             "serial", "name",   "log-level", "net"};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return kExitPowerOff;
        }
        if (arg == "--version") {
            std::printf("conduit-vmm %s\n", CONDUIT_VERSION);
            return 0;
        }
        if (arg == "--check") {
            options.check = true;
            continue;
        }
        if (arg == "--hugepages") {
            options.overrides.emplace_back("hugepages", "");
            continue;
        }
        bool known = false;
        for (const char* opt : kWithValue) {
            if (arg == std::string("--") + opt) {
                if (i + 1 >= argc) {
                    std::fprintf(stderr, "conduit-vmm: %s needs a value\n", arg.c_str());
                    return kExitUsage;
                }
                options.overrides.emplace_back(opt, argv[++i]);
                known = true;
            }
        }
        if (arg == "--config") {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "conduit-vmm: --config needs a file\n");
                return kExitUsage;
            }
            options.config_path = argv[++i];
            known = true;
        }
        if (!known) {
            std::fprintf(stderr, "conduit-vmm: unknown argument '%s'\n", arg.c_str());
            usage(stderr);
            return kExitUsage;
        }
    }

    // SIGTERM/SIGINT/SIGHUP end the VM; blocked before any thread exists so that only
    // the main thread's sigtimedwait sees them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    try {
        VmConfig config;
        if (!options.config_path.empty()) {
            config = load_vm_config(options.config_path);
        }
        for (const auto& [opt, value] : options.overrides) {
            apply(config, opt, value);
        }
        fill_default_macs(config);
        if (!log::set_level(config.log_level.c_str())) {
            throw ConfigError("unknown log level '" + config.log_level + "'");
        }
        log::set_vm_name(config.name.c_str());
        if (options.check) {
            const BootInputs in = prepare_boot(config);
            std::printf("%s: valid (kernel protocol %u.%02u, %u vCPU(s), %llu MiB)\n",
                        config.name.c_str(), in.kernel.header.version >> 8,
                        in.kernel.header.version & 0xff, config.cpus,
                        static_cast<unsigned long long>(config.memory >> 20));
            return 0;
        }
        Machine machine(config);
        return machine.run(stop_signals);
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "conduit-vmm: %s\n", e.what());
        return kExitStartFailed;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "conduit-vmm: cannot start the VM: %s\n", e.what());
        return kExitStartFailed;
    }
}
