#include "dataplane/eal.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_pdump.h>

#include <filesystem>
#include <stdexcept>

#include "dataplane/eth_port.h"
#include "dataplane/log.h"

namespace conduit::dp {

std::vector<std::string> Eal::arguments(const control::Config& config, bool hugepages_usable) {
    const control::DaemonConfig& d = config.daemon;
    std::vector<std::string> args{"conduitd", "--file-prefix", d.file_prefix};
    // lcore 0 is the main (control) thread; lcore i+1 is worker i.
    std::string lcores = "0@" + std::to_string(d.main_cpu);
    for (std::size_t i = 0; i < d.worker_cpus.size(); ++i) {
        lcores += "," + std::to_string(i + 1) + "@" + std::to_string(d.worker_cpus[i]);
    }
    args.insert(args.end(), {"--lcores", lcores, "--main-lcore", "0"});
    if (d.hugepages && hugepages_usable) {
        args.insert(args.end(), {"-m", std::to_string(d.memory_mb)});
    } else {
        args.insert(args.end(), {"--no-huge", "-m", std::to_string(d.memory_mb)});
    }
    // Only the uplink named in the config is probed; nothing else on the machine is touched.
    bool pci_uplink = false;
    for (const auto& b : config.bridges) {
        for (const auto& p : b.ports) {
            if (p.type != control::PortType::kEthdev) {
                continue;
            }
            const std::string dev = EthPort::device_name(p.devargs);
            if (dev.rfind("net_", 0) == 0 || dev.rfind("eth_", 0) == 0) {
                args.insert(args.end(), {"--vdev", p.devargs});
            } else {
                args.insert(args.end(), {"-a", p.devargs});
                pci_uplink = true;
            }
        }
    }
    if (!pci_uplink) {
        args.push_back("--no-pci");
    }
    args.push_back("--log-level=" + std::string(d.log_level == "debug" ? "debug" : "notice"));
    return args;
}

Eal::Eal(const control::Config& config, bool hugepages_usable)
    : file_prefix_(config.daemon.file_prefix),
      hugepages_(config.daemon.hugepages && hugepages_usable) {
    std::vector<std::string> args = arguments(config, hugepages_usable);
    std::string joined;
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
        joined += " " + a;
    }
    argv.push_back(nullptr);
    CLOG_INFO("eal", "starting DPDK:%s", joined.c_str());
    if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0) {
        throw std::runtime_error(std::string("DPDK EAL initialisation failed: ") +
                                 rte_strerror(rte_errno) +
                                 (hugepages_ ? " (no free hugepages? see tools/setup.sh, or set "
                                               "'hugepages: false')"
                                             : ""));
    }
    // DPDK's packet capture framework: dpdk-dumpcap and dpdk-pdump, as secondary
    // processes, can then capture the uplink (ethdev ports only; guest ports are
    // captured with conduitctl capture).
    if (rte_pdump_init() != 0) {
        CLOG_WARN("eal", "packet capture framework (pdump) unavailable: %s",
                  rte_strerror(rte_errno));
    } else {
        pdump_ = true;
    }
}

Eal::~Eal() {
    if (pdump_) {
        rte_pdump_uninit();
    }
    rte_eal_cleanup();
    // The EAL leaves its hugepage files behind; they would hold the pages until removed.
    std::error_code ec;
    std::filesystem::remove_all("/var/run/dpdk/" + file_prefix_, ec);
    for (const char* dir : {"/dev/hugepages", "/mnt/huge"}) {
        if (!std::filesystem::is_directory(dir, ec)) {
            continue;
        }
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            if (entry.path().filename().string().rfind(file_prefix_ + "map_", 0) == 0) {
                std::filesystem::remove(entry.path(), ec);
            }
        }
    }
}

}  // namespace conduit::dp
