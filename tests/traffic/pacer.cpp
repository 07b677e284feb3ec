// pacer: guests for the integration tests that send at a fixed rate and count exactly
// what comes back. One DPDK process holds several virtio-user NICs (each listening on its
// vhost-user socket, server=1, as a VM's NIC does with conduitd in client mode); each
// flow sends 64-byte frames from one NIC to a MAC at a fixed rate, numbered, and every
// NIC counts the numbered frames it receives per flow. Between bursts the process
// sleeps, so it needs only a little of a CPU and can share one with the switch's control
// thread without falling behind.
//
//   pacer --prefix P --cpu C --port SOCK,MAC [--port ...] --flow PORT:DSTMAC:PPS [...]
//         --status FILE [--flow-base N] [--start-file F] [--best-effort] [--rt]
//         [--ring N] [--drain-ms N] [--no-huge]
//
// --ring sets each NIC's ring size (default 1024): frames a guest cannot take while it is
// not running wait there, so it is the longest pause (of the guest, or of the switch) the
// flows survive without loss: 8192 frames are 74 ms at 110,000 frames per second.
// With --start-file the flows begin only once that file exists (the test creates it when
// the switch has both ends of every flow up), and the rate counts from then.
// SIGTERM or SIGINT stops sending; the pacer keeps receiving for --drain-ms, then writes
// the final status and exits 0. The status file (JSON, replaced atomically every 200 ms):
// {"state": "running"|"done", "ports": [{"tx","rx","link"}],
//  "flows": [{"sent","received","out_of_order","tx_dropped"}], "foreign": N,
//  "max_gap_us": the longest time between two rounds while sending}.
// Flow ids (carried in each frame) start at --flow-base, so that several pacers on one
// switch tell their frames apart; frames of other pacers count as "foreign".
// A flow's frames that do not fit its NIC's transmit ring are sent later (the rate is
// kept on average), or with --best-effort dropped and counted as tx_dropped.
#include <pthread.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <sched.h>
#include <sys/prctl.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr uint16_t kEtherType = 0x88B5;  // IEEE local experimental
constexpr uint32_t kMagic = 0x50414352;  // "PACR"
constexpr uint16_t kFrameLen = 64;
constexpr uint16_t kBurst = 32;

volatile std::sig_atomic_t g_stop = 0;

struct PortSpec {
    std::string socket;
    uint8_t mac[6];
};

struct Flow {
    uint16_t port;
    uint8_t dst[6];
    uint64_t pps;
    uint64_t sent = 0;
    uint64_t received = 0;
    uint64_t out_of_order = 0;
    uint64_t tx_dropped = 0;
    uint64_t next_seq_seen = 0;
    uint64_t attempted = 0;  // frames due so far that were sent or dropped
};

struct PortStats {
    uint64_t tx = 0;
    uint64_t rx = 0;
};

[[noreturn]] void die(const std::string& message) {
    std::fprintf(stderr, "pacer: %s\n", message.c_str());
    std::exit(2);
}

bool parse_mac(const std::string& text, uint8_t* out) {
    unsigned b[6];
    if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) !=
        6) {
        return false;
    }
    for (int i = 0; i < 6; ++i) {
        out[i] = static_cast<uint8_t>(b[i]);
    }
    return true;
}

// What the status file reports: copied out of the sending thread now and then.
struct Snapshot {
    std::vector<Flow> flows;
    std::vector<PortStats> ports;
    uint64_t foreign = 0;
    uint64_t max_gap_us = 0;
};

void write_status(const std::string& path, const char* state, const Snapshot& snap,
                  bool with_links) {
    const auto& flows = snap.flows;
    const auto& ports = snap.ports;
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp);
        out << "{\"state\": \"" << state << "\", \"ports\": [";
        for (std::size_t i = 0; i < ports.size(); ++i) {
            out << (i ? ", " : "") << "{\"tx\": " << ports[i].tx << ", \"rx\": " << ports[i].rx;
            if (with_links) {
                rte_eth_link link{};
                rte_eth_link_get_nowait(static_cast<uint16_t>(i), &link);
                out << ", \"link\": " << (link.link_status ? "true" : "false");
            }
            out << "}";
        }
        out << "], \"flows\": [";
        for (std::size_t i = 0; i < flows.size(); ++i) {
            const Flow& f = flows[i];
            out << (i ? ", " : "") << "{\"sent\": " << f.sent << ", \"received\": " << f.received
                << ", \"out_of_order\": " << f.out_of_order << ", \"tx_dropped\": " << f.tx_dropped
                << "}";
        }
        out << "], \"foreign\": " << snap.foreign << ", \"max_gap_us\": " << snap.max_gap_us
            << "}\n";
    }
    std::rename(tmp.c_str(), path.c_str());
}

void fill(rte_mbuf* m, const PortSpec& port, const Flow& flow, uint32_t flow_id, uint64_t seq) {
    auto* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, kFrameLen));
    if (p == nullptr) {
        die("an mbuf too small for a 64-byte frame");
    }
    std::memset(p, 0, kFrameLen);
    std::memcpy(p, flow.dst, 6);
    std::memcpy(p + 6, port.mac, 6);
    p[12] = kEtherType >> 8;
    p[13] = kEtherType & 0xff;
    std::memcpy(p + 14, &kMagic, 4);
    std::memcpy(p + 18, &flow_id, 4);
    std::memcpy(p + 22, &seq, 8);
}

}  // namespace

int main(int argc, char** argv) {
    std::string prefix = "pacer", status_path, cpu = "0";
    std::vector<PortSpec> ports;
    std::vector<Flow> flows;
    bool best_effort = false, realtime = false, huge = true;
    unsigned drain_ms = 500;
    uint32_t flow_base = 0;
    std::string start_file;
    unsigned memory_mb = 0;
    unsigned ring = 1024;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                die(a + " needs a value");
            }
            return argv[++i];
        };
        if (a == "--prefix") {
            prefix = value();
        } else if (a == "--cpu") {
            cpu = value();
        } else if (a == "--status") {
            status_path = value();
        } else if (a == "--best-effort") {
            best_effort = true;
        } else if (a == "--rt") {
            realtime = true;
        } else if (a == "--no-huge") {
            huge = false;
        } else if (a == "--memory") {
            memory_mb = static_cast<unsigned>(std::stoul(value()));
        } else if (a == "--start-file") {
            start_file = value();
        } else if (a == "--flow-base") {
            flow_base = static_cast<uint32_t>(std::stoul(value()));
        } else if (a == "--ring") {
            ring = static_cast<unsigned>(std::stoul(value()));
            if (ring < 64 || ring > 32768 || (ring & (ring - 1)) != 0) {
                die("--ring must be a power of two between 64 and 32768");
            }
        } else if (a == "--drain-ms") {
            drain_ms = static_cast<unsigned>(std::stoul(value()));
        } else if (a == "--port") {
            const std::string v = value();
            const auto comma = v.rfind(',');
            PortSpec p;
            p.socket = v.substr(0, comma);
            if (comma == std::string::npos || !parse_mac(v.substr(comma + 1), p.mac)) {
                die("--port wants SOCKET,MAC, not " + v);
            }
            ports.push_back(p);
        } else if (a == "--flow") {
            const std::string v = value();
            Flow f{};
            const auto c1 = v.find(':');
            const auto c2 = v.rfind(':');
            if (c1 == std::string::npos || c2 <= c1 ||
                !parse_mac(v.substr(c1 + 1, c2 - c1 - 1), f.dst)) {
                die("--flow wants PORT:DSTMAC:PPS, not " + v);
            }
            f.port = static_cast<uint16_t>(std::stoul(v.substr(0, c1)));
            f.pps = std::stoull(v.substr(c2 + 1));
            flows.push_back(f);
        } else {
            die("unknown argument " + a);
        }
    }
    if (ports.empty() || status_path.empty()) {
        die("need --port and --status");
    }
    for (const Flow& f : flows) {
        if (f.port >= ports.size()) {
            die("a flow names port " + std::to_string(f.port) + ", which does not exist");
        }
    }
    // Each NIC's receive ring is kept full of mbufs and its transmit ring may hold as
    // many: about 2.3 KiB each.
    const unsigned mbufs = 2048 + (2 * ring + 512) * static_cast<unsigned>(ports.size());
    if (memory_mb == 0) {
        memory_mb = 64 + mbufs * 2304 / (1 << 20);
    }

    std::vector<std::string> eal{
        "pacer",    "--file-prefix=" + prefix, "--no-pci", "--lcores",
        "0@" + cpu, "--log-level=*:warning",   "-m",       std::to_string(memory_mb)};
    eal.push_back(huge ? "--single-file-segments" : "--no-huge");
    for (std::size_t i = 0; i < ports.size(); ++i) {
        char mac[18];
        const uint8_t* m = ports[i].mac;
        std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
                      m[4], m[5]);
        eal.push_back("--vdev=net_virtio_user" + std::to_string(i) + ",path=" + ports[i].socket +
                      ",server=1,queues=1,queue_size=" + std::to_string(ring) + ",mac=" + mac);
    }
    std::vector<char*> eal_argv;
    for (auto& s : eal) {
        eal_argv.push_back(s.data());
    }
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    std::signal(SIGINT, [](int) { g_stop = 1; });
    // Each virtio-user port waits here until the switch connects to its socket.
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        die("EAL initialisation failed");
    }
    rte_mempool* pool = rte_pktmbuf_pool_create("pacer", mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                                static_cast<int>(rte_socket_id()));
    if (pool == nullptr) {
        die("cannot create the mbuf pool");
    }
    for (uint16_t p = 0; p < ports.size(); ++p) {
        rte_eth_conf conf{};
        if (rte_eth_dev_configure(p, 1, 1, &conf) != 0 ||
            rte_eth_rx_queue_setup(p, 0, static_cast<uint16_t>(ring), rte_eth_dev_socket_id(p),
                                   nullptr, pool) != 0 ||
            rte_eth_tx_queue_setup(p, 0, static_cast<uint16_t>(ring), rte_eth_dev_socket_id(p),
                                   nullptr) != 0 ||
            rte_eth_dev_start(p) != 0) {
            die("cannot start port " + std::to_string(p));
        }
    }
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    if (realtime) {
        // Woken promptly when it is due, even on a CPU shared with busy threads; it
        // sleeps most of the time, so it never starves them.
        sched_param sp{};
        sp.sched_priority = 10;
        if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
            std::fprintf(stderr, "pacer: SCHED_FIFO unavailable: %s\n", std::strerror(errno));
        }
    }

    std::vector<PortStats> stats(ports.size());
    uint64_t foreign = 0;
    // The longest time between two rounds while sending: how long the pacer was away
    // (preempted or asleep) when frames were due.
    uint64_t max_gap_us = 0;
    uint64_t last_round = 0;
    const uint64_t hz = rte_get_tsc_hz();
    uint64_t start = rte_rdtsc();
    bool sending = start_file.empty();
    uint64_t next_check = start;
    uint64_t next_status = start;
    uint64_t stop_at = 0;
    // The status file is written by its own thread: file system calls can block for tens
    // of milliseconds on a busy machine, and the sending thread must never wait on them.
    std::mutex snapshot_mutex;
    Snapshot shared{flows, stats, 0, 0};
    std::atomic<bool> done{false};
    write_status(status_path, "running", shared, false);
    std::thread reporter([&] {
        // Not real time: it may wait on the file system as long as it likes.
        sched_param normal{};
        pthread_setschedparam(pthread_self(), SCHED_OTHER, &normal);
        while (!done.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
            Snapshot copy;
            {
                std::lock_guard lock(snapshot_mutex);
                copy = shared;
            }
            if (!done.load()) {
                write_status(status_path, "running", copy, false);
            }
        }
    });
    for (;;) {
        const uint64_t now = rte_rdtsc();
        if (g_stop && stop_at == 0) {
            stop_at = now + drain_ms * hz / 1000;
        }
        if (stop_at != 0 && now >= stop_at) {
            break;
        }
        if (sending && stop_at == 0) {
            if (last_round != 0) {
                max_gap_us = std::max(max_gap_us, (now - last_round) * 1'000'000 / hz);
            }
            last_round = now;
        }
        if (!sending && now >= next_check) {
            std::ifstream probe(start_file);
            if (probe.good()) {
                sending = true;
                start = now;
            }
            next_check = now + hz / 100;
        }
        if (stop_at == 0 && sending) {
            for (uint32_t id = 0; id < flows.size(); ++id) {
                Flow& f = flows[id];
                const uint64_t due =
                    static_cast<uint64_t>(static_cast<double>(now - start) *
                                          static_cast<double>(f.pps) / static_cast<double>(hz));
                uint64_t want = due > f.attempted ? due - f.attempted : 0;
                while (want > 0) {
                    const uint16_t n = static_cast<uint16_t>(std::min<uint64_t>(want, kBurst));
                    rte_mbuf* burst[kBurst];
                    if (rte_pktmbuf_alloc_bulk(pool, burst, n) != 0) {
                        break;  // transmit rings hold them; try again next round
                    }
                    for (uint16_t k = 0; k < n; ++k) {
                        fill(burst[k], ports[f.port], f, flow_base + id, f.sent + k);
                    }
                    const uint16_t sent = rte_eth_tx_burst(f.port, 0, burst, n);
                    f.sent += sent;
                    f.attempted += sent;
                    stats[f.port].tx += sent;
                    if (sent < n) {
                        rte_pktmbuf_free_bulk(burst + sent, n - sent);
                        if (best_effort) {
                            f.tx_dropped += n - sent;
                            f.attempted += n - sent;
                        }
                        break;
                    }
                    want -= n;
                }
            }
        }
        for (uint16_t p = 0; p < ports.size(); ++p) {
            rte_mbuf* burst[kBurst];
            const uint16_t n = rte_eth_rx_burst(p, 0, burst, kBurst);
            for (uint16_t k = 0; k < n; ++k) {
                const auto* d = rte_pktmbuf_mtod(burst[k], const uint8_t*);
                uint32_t magic = 0, id = 0;
                uint64_t seq = 0;
                if (rte_pktmbuf_data_len(burst[k]) >= 30) {
                    std::memcpy(&magic, d + 14, 4);
                    std::memcpy(&id, d + 18, 4);
                    std::memcpy(&seq, d + 22, 8);
                }
                if (d[12] == (kEtherType >> 8) && d[13] == (kEtherType & 0xff) && magic == kMagic &&
                    id >= flow_base && id - flow_base < flows.size()) {
                    Flow& f = flows[id - flow_base];
                    ++f.received;
                    if (seq < f.next_seq_seen) {
                        ++f.out_of_order;
                    } else {
                        f.next_seq_seen = seq + 1;
                    }
                } else {
                    ++foreign;
                }
            }
            stats[p].rx += n;
            rte_pktmbuf_free_bulk(burst, n);
        }
        if (now >= next_status && snapshot_mutex.try_lock()) {
            shared = Snapshot{flows, stats, foreign, max_gap_us};
            snapshot_mutex.unlock();
            next_status = now + hz / 20;
        }
        // Every round ends asleep, busy or not: a pacer that never slept would hold its
        // CPU (and, under SCHED_FIFO, be throttled by the kernel for tens of ms each
        // second). 50 us of frames at 100,000 per second is 5, far from filling a ring.
        const timespec ts{0, 50'000};
        nanosleep(&ts, nullptr);
    }
    done.store(true);
    reporter.join();
    write_status(status_path, "done", Snapshot{flows, stats, foreign, max_gap_us}, true);
    for (uint16_t p = 0; p < ports.size(); ++p) {
        rte_eth_dev_stop(p);
        rte_eth_dev_close(p);
    }
    rte_eal_cleanup();
    return 0;
}
