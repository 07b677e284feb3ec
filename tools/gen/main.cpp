// conduit-gen: a traffic generator for L2 switches, built on DPDK. See docs/conduit-gen.md.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sched.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "tools/gen/options.h"
#include "tools/gen/plan.h"
#include "tools/gen/port.h"
#include "tools/gen/report.h"
#include "tools/gen/runner.h"
#include "tools/gen/traffic.h"

namespace conduit::gen {
namespace {

// Removes a file prefix's runtime directory and hugepage files (the EAL leaves them).
void remove_dpdk_files(const std::string& prefix) {
    std::error_code ec;
    std::filesystem::remove_all("/var/run/dpdk/" + prefix, ec);
    for (const char* dir : {"/dev/hugepages", "/mnt/huge"}) {
        if (!std::filesystem::is_directory(dir, ec)) {
            continue;
        }
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            if (entry.path().filename().string().rfind(prefix + "map_", 0) == 0) {
                std::filesystem::remove(entry.path(), ec);
            }
        }
    }
}

// Keeps every thread of this process on the generator's own CPUs. DPDK places its
// control threads (interrupts, telemetry, multi-process, vhost-user messages) on the CPUs
// the process may run on that no lcore uses: on a machine whose other CPU polls for the
// switch under test, that was the switch's CPU, where each of those threads' wake-ups
// held the switch up for up to 2 ms (a guest's ring overflows in a third of that).
// With the process allowed only the lcores' CPUs, DPDK puts them on the main lcore's.
void keep_to_own_cpus(const Options& o) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (const int cpu : {static_cast<int>(o.cpu), o.main_cpu}) {
        if (cpu >= CPU_SETSIZE) {
            throw std::runtime_error("CPU " + std::to_string(cpu) + " is beyond " +
                                     std::to_string(CPU_SETSIZE));
        }
        CPU_SET(cpu, &set);
    }
    // The kernel takes a set with at least one CPU it allows and drops the others, so
    // each CPU asked for is checked in what it kept.
    const int err = sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
    cpu_set_t kept;
    CPU_ZERO(&kept);
    if (err == 0 && sched_getaffinity(0, sizeof kept, &kept) != 0) {
        CPU_ZERO(&kept);
    }
    for (const int cpu : {static_cast<int>(o.cpu), o.main_cpu}) {
        if (err != 0 || !CPU_ISSET(cpu, &kept)) {
            throw std::runtime_error(
                "cannot run on CPU " + std::to_string(cpu) + ": " +
                (err != 0 ? std::strerror(err) : "not a CPU this process may use") +
                " (--cpu and --main-cpu must name CPUs this process may use)");
        }
    }
}

// DPDK's environment for the generator: lcore 0 (control, progress) and lcore 1 (traffic).
class Eal {
  public:
    Eal(const Options& o, unsigned memory_mb) : prefix_(o.file_prefix) {
        remove_dpdk_files(prefix_);
        keep_to_own_cpus(o);
        std::vector<std::string> args{
            "conduit-gen",
            "--file-prefix=" + o.file_prefix,
            "--lcores=0@" + std::to_string(o.main_cpu) + ",1@" + std::to_string(o.cpu),
            "--main-lcore=0",
            "--no-pci",
            "--log-level=*:warning",
            "-m",
            std::to_string(memory_mb),
        };
        if (o.hugepages) {
            // One file per memory segment list: vhost-user shares at most 8 regions.
            args.emplace_back("--single-file-segments");
        } else {
            args.emplace_back("--no-huge");
        }
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0) {
            throw std::runtime_error(std::string("DPDK EAL initialisation failed: ") +
                                     rte_strerror(rte_errno) +
                                     (o.hugepages ? " (no free hugepages? try --no-huge)" : ""));
        }
    }
    ~Eal() {
        rte_eal_cleanup();
        remove_dpdk_files(prefix_);
    }
    Eal(const Eal&) = delete;
    Eal& operator=(const Eal&) = delete;
    const std::string& prefix() const { return prefix_; }

  private:
    std::string prefix_;
};

struct PoolDeleter {
    void operator()(rte_mempool* p) const { rte_mempool_free(p); }
};

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return text;
}

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
    if (!out) {
        throw std::runtime_error("cannot write " + path);
    }
}

int run(Options o) {
    if (o.mode == Mode::kCeiling) {
        const std::string base = "/tmp/" + o.file_prefix + "-ceiling-" + std::to_string(getpid());
        // Three links inside this process, no switch: a loopback ring, a memif pair, and
        // a virtio-user NIC on a vhost-user port (both sides' copies on this core).
        o.ports = {"ring0=ring",
                   "ring1=ring",
                   "memif_s=memif:socket=" + base + "-memif.sock,role=server",
                   "memif_c=memif:socket=" + base + "-memif.sock",
                   "vhost=dev:net_vhost4,iface=" + base + "-vhost.sock",
                   "virtio=virtio:path=" + base + "-vhost.sock,server=0"};
        o.learn = false;
    }
    std::vector<PortSpec> specs;
    for (std::size_t i = 0; i < o.ports.size(); ++i) {
        try {
            specs.push_back(parse_port_spec(o.ports[i], static_cast<unsigned>(i),
                                            host_mac(static_cast<unsigned>(i), 0)));
        } catch (const std::invalid_argument& e) {
            throw UsageError(e.what());
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (specs[j].name == specs[i].name) {
                throw UsageError("two ports named '" + specs[i].name + "'");
            }
        }
    }
    uint16_t largest = 0;
    for (const std::string& s : o.sizes) {
        largest = std::max(largest, SizeMix::parse(s).largest());
    }
    // A guest NIC's buffers hold the largest frame sent (the switch may add a VLAN tag),
    // and never less than a standard frame: the switch delivers others' frames too.
    for (PortSpec& s : specs) {
        s.frame_room = std::max<uint32_t>(2048 - 12, largest + 4u);
    }
    // One pool for every port: each receive ring keeps its descriptors filled and each
    // transmit ring holds frames until the peer has taken them.
    unsigned mbufs = 4096;
    for (const PortSpec& s : specs) {
        mbufs += s.rx_descriptors * s.rx_queues + s.tx_descriptors * s.tx_queues + 64;
    }
    const uint16_t data_room = static_cast<uint16_t>(
        std::max<unsigned>(RTE_MBUF_DEFAULT_BUF_SIZE, RTE_PKTMBUF_HEADROOM + largest + 64));
    const unsigned pool_mb = static_cast<unsigned>((uint64_t{mbufs} * (data_room + 256)) >> 20) + 1;
    const unsigned memory_mb =
        o.memory_mb != 0 ? o.memory_mb : std::max(128u, pool_mb * 5 / 4 + 96);

    Eal eal(o, memory_mb);
    // A stack, not DPDK's default ring: a buffer that goes back to the pool past the
    // lcore's cache (512) is the next one handed out, still in this core's caches. With
    // a ring, the oldest comes out first: with 17 ports' rings of buffers (the benchmark's
    // star) every buffer a driver allocated was cold, and that, not the switch, set the
    // rate (conduitd, 16 guests + uplink, 64 B: 6 -> 8.5 Mpps, on top of the virtio
    // transmit cleaning in port.cpp).
    std::unique_ptr<rte_mempool, PoolDeleter> pool(rte_pktmbuf_pool_create_by_ops(
        "gen_mbufs", mbufs, 512, 0, data_room, static_cast<int>(rte_socket_id()), "stack"));
    if (!pool && rte_errno != ENOMEM) {
        std::fprintf(stderr,
                     "conduit-gen: DPDK's stack mempool driver (librte_mempool_stack) is not "
                     "loaded (%s): using its ring, which hands out colder buffers\n",
                     rte_strerror(rte_errno));
        pool.reset(rte_pktmbuf_pool_create("gen_mbufs", mbufs, 512, 0, data_room,
                                           static_cast<int>(rte_socket_id())));
    }
    if (!pool) {
        throw std::runtime_error("cannot create a pool of " + std::to_string(mbufs) + " mbufs (" +
                                 std::to_string(pool_mb) + " MB): " + rte_strerror(rte_errno) +
                                 "; raise --memory");
    }
    PortSet ports(specs);
    try {
        ports.bring_up(pool.get(), o.port_timeout_s);
    } catch (const StuckProbe& e) {
        // A DPDK thread is blocked in a probe and cannot be joined: report, remove what
        // this process created, and leave without running DPDK's teardown.
        std::fprintf(stderr, "conduit-gen: %s\n", e.what());
        ports.remove_sockets();
        remove_dpdk_files(eal.prefix());
        std::fflush(stderr);
        std::_Exit(2);
    }
    if (o.start_on_stdin) {
        // A script can read the switch's counters at rest before any frame is sent.
        std::fprintf(stderr, "conduit-gen: ready\n");
        std::fflush(stderr);
        std::string line;
        std::getline(std::cin, line);
        // The switch may have restarted a port since (OVS-DPDK reconfigures its memif
        // server once its threads are known, dropping the client): up again first.
        ports.wait_links(o.port_timeout_s);
    }
    Engine engine(ports, pool.get(), 1);
    Report report;
    report.mode = mode_name(o.mode);
    report.title = o.title;
    report.command = o.command_line;
    report.started_utc = utc_now();
    report.tsc_hz = static_cast<double>(rte_get_tsc_hz());
    report.cpu = o.cpu;
    report.topology = o.mode == Mode::kCeiling ? "pairs" : o.topology;
    report.expect_loopback = o.expect_loopback;
    report.macs = o.macs;
    report.flows = o.flows;
    report.tx_batch = o.tx_batch;
    for (std::size_t i = 0; i < ports.size(); ++i) {
        report.ports.push_back({ports.spec(i).name,
                                ports.spec(i).description,
                                {},
                                ports.spec(i).rx_queues,
                                ports.spec(i).tx_queues});
    }
    Runner runner(o, ports, engine, report);
    runner.run();
    for (std::size_t i = 0; i < ports.size(); ++i) {
        report.ports[i].totals = engine.totals()[i];
    }
    const std::string md = to_markdown(report);
    std::fputs(md.c_str(), stdout);
    std::fflush(stdout);
    if (!o.json_path.empty()) {
        write_file(o.json_path, to_json(report));
    }
    if (!o.markdown_path.empty()) {
        write_file(o.markdown_path, md);
    }
    if (!o.plot_path.empty()) {
        write_plot(report, o.plot_path);
    }
    return runner.loss_above_limit() ? 3 : 0;
}

}  // namespace
}  // namespace conduit::gen

int main(int argc, char** argv) {
    using namespace conduit::gen;
    // A peer that closes its socket (a memif server restarting its port, a switch going
    // away) must make a write fail with EPIPE, which is reported, not end the run.
    std::signal(SIGPIPE, SIG_IGN);
    Options options;
    try {
        options = parse_options(argc, argv);
    } catch (const UsageError& e) {
        if (std::string(e.what()).empty()) {
            std::fputs(usage().c_str(), stdout);
            return 0;
        }
        std::fprintf(stderr, "conduit-gen: %s\n", e.what());
        return 1;
    }
    try {
        return run(std::move(options));
    } catch (const PortError& e) {
        std::fprintf(stderr, "conduit-gen: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "conduit-gen: %s\n", e.what());
        return 1;
    }
}
