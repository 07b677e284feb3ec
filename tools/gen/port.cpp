#include "tools/gen/port.h"

#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <rte_interrupts.h>
#include <rte_log.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "tools/gen/memif.h"
#include "tools/gen/vnic.h"
#include "vmm/util/unique_fd.h"

namespace conduit::gen {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Silences the memif PMD while a client tries to connect (it logs every failed attempt)
// and gives it back the level it had (the user's --log-level included).
class QuietMemifLog {
  public:
    QuietMemifLog() : type_(rte_log_register("pmd.net.memif")) {
        if (type_ >= 0) {
            level_ = rte_log_get_level(static_cast<uint32_t>(type_));
            rte_log_set_level(static_cast<uint32_t>(type_), RTE_LOG_EMERG);
        }
    }
    ~QuietMemifLog() {
        if (type_ >= 0 && level_ >= 0) {
            rte_log_set_level(static_cast<uint32_t>(type_), static_cast<uint32_t>(level_));
        }
    }
    QuietMemifLog(const QuietMemifLog&) = delete;
    QuietMemifLog& operator=(const QuietMemifLog&) = delete;

  private:
    int type_;
    int level_ = -1;
};

// key=value pairs in order; a key may appear once.
std::vector<std::pair<std::string, std::string>> split_options(const std::string& text,
                                                               const std::string& port) {
    std::vector<std::pair<std::string, std::string>> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t comma = text.find(',', pos);
        const std::string item =
            text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? text.size() : comma + 1;
        if (item.empty()) {
            continue;
        }
        const std::size_t eq = item.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw std::invalid_argument("port " + port + ": '" + item + "' is not key=value");
        }
        const std::string key = item.substr(0, eq);
        for (const auto& kv : out) {
            if (kv.first == key) {
                throw std::invalid_argument("port " + port + ": '" + key + "' given twice");
            }
        }
        out.emplace_back(key, item.substr(eq + 1));
    }
    return out;
}

unsigned to_unsigned(const std::string& text, const std::string& what, unsigned lo, unsigned hi) {
    std::size_t used = 0;
    unsigned long v = 0;
    try {
        v = std::stoul(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size() || v < lo || v > hi) {
        throw std::invalid_argument(what + " must be a number from " + std::to_string(lo) + " to " +
                                    std::to_string(hi) + ", not '" + text + "'");
    }
    return static_cast<unsigned>(v);
}

bool is_socket(const std::string& path) {
    struct stat st {};
    return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string device_name(const std::string& devargs) {
    return devargs.substr(0, devargs.find(','));
}

// Why a probe failed, in terms of what the user can check.
std::string probe_hint(const PortSpec& s) {
    switch (s.kind) {
        case PortKind::kGuest:
        case PortKind::kVirtio:
            return s.listens ? "cannot listen there (directory missing, or not writable?)"
                             : "nothing accepts the connection: is the switch listening there "
                               "(vhost-user server mode)?";
        case PortKind::kMemif:
        case PortKind::kNativeMemif:
            return "the memif socket could not be created (directory missing?)";
        case PortKind::kAfPacket:
            return "no such interface, or no permission to open it?";
        case PortKind::kAfXdp:
            return "no such interface, no XDP support, or bpffs not mounted (mount -t bpf bpf "
                   "/sys/fs/bpf)?";
        default:
            return "see DPDK's message above";
    }
}

}  // namespace

// The memif PMD handles its control channel (the server's replies, a refusal, a
// disconnect) on DPDK's interrupt thread, without a lock of its own: a memif port's
// start, stop or close from the main thread raced that handler (a SIGSEGV in the PMD,
// seen when a refused client was stopped just as the server's disconnect came in). So
// those calls are made on that same thread, one at a time with the handler, and waited
// for: an eventfd of our own is registered with the interrupt thread, and writing to it
// runs the call there. (Not through an EAL alarm: DPDK 22.11's rte_eal_cleanup() frees
// the alarm's interrupt handle while it is still registered, and once an alarm has been
// set the interrupt thread read the freed handle at exit, a SIGSEGV after the results.)
// This one is unregistered, synchronously, before the EAL goes.
class InterruptThreadCaller {
  public:
    InterruptThreadCaller() {
        fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        if (!fd_) {
            throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
        }
        handle_ = rte_intr_instance_alloc(RTE_INTR_INSTANCE_F_PRIVATE);
        if (handle_ == nullptr || rte_intr_type_set(handle_, RTE_INTR_HANDLE_EXT) != 0 ||
            rte_intr_fd_set(handle_, fd_.get()) != 0 ||
            rte_intr_callback_register(handle_, &InterruptThreadCaller::on_event, this) != 0) {
            release();
            throw std::runtime_error("cannot register with DPDK's interrupt thread");
        }
        registered_ = true;
    }
    ~InterruptThreadCaller() { release(); }
    InterruptThreadCaller(const InterruptThreadCaller&) = delete;
    InterruptThreadCaller& operator=(const InterruptThreadCaller&) = delete;

    // Runs `call` on the interrupt thread and returns its result. One at a time: only the
    // main thread calls this.
    int run(const std::function<int()>& call) {
        done_.store(false, std::memory_order_relaxed);
        call_.store(&call, std::memory_order_release);
        const uint64_t one = 1;
        if (write(fd_.get(), &one, sizeof one) != static_cast<ssize_t>(sizeof one)) {
            call_.store(nullptr, std::memory_order_relaxed);
            return call();  // cannot wake it: from here, as any other port's call
        }
        // `call` lives on the caller's stack: it must have run before this returns.
        while (!done_.load(std::memory_order_acquire)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        call_.store(nullptr, std::memory_order_relaxed);
        return rc_;
    }

  private:
    static void on_event(void* arg) {
        auto* self = static_cast<InterruptThreadCaller*>(arg);
        uint64_t count;
        if (read(self->fd_.get(), &count, sizeof count) != static_cast<ssize_t>(sizeof count)) {
            return;  // nothing written: a spurious wake-up
        }
        if (const auto* call = self->call_.load(std::memory_order_acquire); call != nullptr) {
            self->rc_ = (*call)();
            self->done_.store(true, std::memory_order_release);
        }
    }
    // The fd itself is closed by its owner, after this.
    void release() {
        if (registered_) {
            // Waits for a callback under way; from any thread but the interrupt thread.
            rte_intr_callback_unregister_sync(handle_, &InterruptThreadCaller::on_event, this);
            registered_ = false;
        }
        if (handle_ != nullptr) {
            rte_intr_instance_free(handle_);
            handle_ = nullptr;
        }
    }

    vmm::UniqueFd fd_;
    rte_intr_handle* handle_ = nullptr;
    bool registered_ = false;
    std::atomic<const std::function<int()>*> call_{nullptr};
    int rc_ = 0;
    std::atomic<bool> done_{false};
};

int PortSet::on_control_thread(PortKind kind, const std::function<int()>& call) {
    if (kind != PortKind::kMemif) {
        return call();
    }
    if (!interrupt_thread_) {
        try {
            interrupt_thread_ = std::make_unique<InterruptThreadCaller>();
        } catch (const std::runtime_error& e) {
            // Also reached from ~PortSet, which must not throw: the call from here, as
            // for other ports, with the race it risks said.
            std::fprintf(stderr, "conduit-gen: warning: %s; memif port calls made directly\n",
                         e.what());
            return call();
        }
    }
    return interrupt_thread_->run(call);
}

PortSpec parse_port_spec(const std::string& text, unsigned index, Mac mac) {
    const std::size_t eq = text.find('=');
    if (eq == std::string::npos || eq == 0) {
        throw std::invalid_argument("--port '" + text + "': expected NAME=KIND[:options]");
    }
    PortSpec s;
    s.name = text.substr(0, eq);
    s.mac = mac;
    const std::string rest = text.substr(eq + 1);
    const std::size_t colon = rest.find(':');
    const std::string kind = rest.substr(0, colon);
    const std::string options = colon == std::string::npos ? "" : rest.substr(colon + 1);
    const std::string idx = std::to_string(index);
    if (kind == "dev") {
        if (options.empty()) {
            throw std::invalid_argument("port " + s.name +
                                        ": dev needs devargs (dev:net_null0,...)");
        }
        s.kind = PortKind::kDevargs;
        s.devargs = options;
        s.description = "device " + device_name(options);
        return s;
    }
    std::string passthrough;
    std::map<std::string, std::string> own;
    bool queues_given = false;
    for (const auto& [key, value] : split_options(options, s.name)) {
        if (key == "vlan") {
            s.vlan = static_cast<int>(to_unsigned(value, "port " + s.name + ": vlan", 0, 4095));
        } else if (key == "rxd") {
            s.rx_descriptors =
                static_cast<uint16_t>(to_unsigned(value, "port " + s.name + ": rxd", 32, 16384));
        } else if (key == "txd") {
            s.tx_descriptors =
                static_cast<uint16_t>(to_unsigned(value, "port " + s.name + ": txd", 32, 16384));
        } else if (key == "queues" || key == "rxq") {
            if (queues_given) {
                throw std::invalid_argument(
                    "port " + s.name +
                    ": queues= (queue pairs) and rxq= (receive queues, one "
                    "transmit queue) say the same thing twice: give one of them");
            }
            queues_given = true;
            const auto n = static_cast<uint16_t>(
                to_unsigned(value, "port " + s.name + ": " + key, 1, kMaxPortQueues));
            s.rx_queues = n;
            s.tx_queues = key == "queues" ? n : 1;
        } else if (key == "path" || key == "socket" || key == "iface" || key == "server" ||
                   key == "role" || key == "mac" || key == "driver") {
            own[key] = value;
        } else {
            if (key == "queue_size") {
                s.virtio_ring = static_cast<uint16_t>(
                    to_unsigned(value, "port " + s.name + ": queue_size", 1, 32768));
            }
            passthrough += "," + key + "=" + value;
        }
    }
    auto need = [&](const char* key) {
        auto it = own.find(key);
        if (it == own.end() || it->second.empty()) {
            throw std::invalid_argument("port " + s.name + ": " + kind + " needs " + key + "=");
        }
        return it->second;
    };
    auto reject_others = [&](std::initializer_list<const char*> allowed) {
        for (const auto& kv : own) {
            if (std::none_of(allowed.begin(), allowed.end(),
                             [&](const char* a) { return kv.first == a; })) {
                throw std::invalid_argument("port " + s.name + ": " + kind + " takes no " +
                                            kv.first + "=");
            }
        }
    };
    const std::string mac_arg = own.count("mac") ? own["mac"] : mac_text(mac);
    // driver=native (the default: a NIC of the generator's own, which has no address of
    // its own to set) or dpdk (the PMD `pmd`).
    auto native_driver = [&](const std::string& pmd) {
        const std::string driver = own.count("driver") ? own["driver"] : "native";
        if (driver != "native" && driver != "dpdk") {
            throw std::invalid_argument("port " + s.name +
                                        ": driver must be native or dpdk, not '" + driver + "'");
        }
        if (driver == "native" && own.count("mac") != 0) {
            throw std::invalid_argument("port " + s.name + ": mac= sets " + pmd +
                                        "'s address (driver=dpdk); the native NIC has none of "
                                        "its own (its frames carry their streams' addresses)");
        }
        return driver == "native";
    };
    // The keys a native NIC is given that would otherwise go to the PMD.
    auto pmd_keys = [&] {
        return split_options(passthrough.empty() ? "" : passthrough.substr(1), s.name);
    };
    if (kind == "virtio") {
        reject_others({"path", "server", "mac", "driver"});
        s.socket = need("path");
        const std::string server = own.count("server") ? own["server"] : "1";
        if (server != "0" && server != "1") {
            throw std::invalid_argument("port " + s.name + ": server must be 0 or 1");
        }
        s.listens = server == "1";
        if (native_driver("DPDK virtio-user")) {
            // conduit-gen's own guest NIC: it takes the ring's size and queues, and
            // nothing for a PMD.
            s.kind = PortKind::kGuest;
            for (const auto& [key, value] : pmd_keys()) {
                if (key != "queue_size") {
                    throw std::invalid_argument(
                        "port " + s.name + ": " + key +
                        "= is an option of DPDK's virtio-user driver (driver=dpdk); the "
                        "native driver takes path=, server=, queue_size=, queues=, rxq=, "
                        "vlan=");
                }
            }
            if (s.virtio_ring < 2 || (s.virtio_ring & (s.virtio_ring - 1)) != 0) {
                throw std::invalid_argument("port " + s.name +
                                            ": queue_size must be a power of two, not " +
                                            std::to_string(s.virtio_ring));
            }
            s.description = "guest NIC " +
                            std::string(s.listens ? "listening on " : "connecting to ") + s.socket;
            return s;
        }
        s.kind = PortKind::kVirtio;
        // virtio-user's queues= counts pairs: enough for both directions.
        s.devargs = "net_virtio_user" + idx + ",path=" + s.socket + ",server=" + server +
                    ",queues=" + std::to_string(std::max(s.rx_queues, s.tx_queues)) +
                    ",mac=" + mac_arg + passthrough;
        s.description =
            "virtio-user " + std::string(s.listens ? "listening on " : "connecting to ") + s.socket;
    } else if (kind == "memif") {
        reject_others({"socket", "role", "mac", "driver"});
        s.socket = need("socket");
        const std::string role = own.count("role") ? own["role"] : "client";
        if (role != "client" && role != "server") {
            throw std::invalid_argument("port " + s.name + ": role must be client or server");
        }
        s.listens = role == "server";
        if (native_driver("DPDK net_memif")) {
            // conduit-gen's own memif NIC: the interface id and the ring size, as
            // DPDK's net_memif spells them; nothing else of the PMD's.
            s.kind = PortKind::kNativeMemif;
            for (const auto& [key, value] : pmd_keys()) {
                if (key == "id") {
                    s.memif_id = static_cast<uint32_t>(
                        to_unsigned(value, "port " + s.name + ": id", 0, UINT32_MAX));
                } else if (key == "rsize") {
                    s.memif_log2_ring = static_cast<uint8_t>(to_unsigned(
                        value, "port " + s.name + ": rsize (log2 of the ring size)", 1, 14));
                } else if (key == "socket-abstract") {
                    if (value != "yes" && value != "no") {
                        throw std::invalid_argument("port " + s.name +
                                                    ": socket-abstract must be yes or no");
                    }
                    s.memif_abstract = value == "yes";
                } else {
                    throw std::invalid_argument(
                        "port " + s.name + ": " + key +
                        "= is an option of DPDK's net_memif (driver=dpdk); the native driver "
                        "takes socket=, role=, id=, rsize=, socket-abstract=, queues=, rxq=, "
                        "vlan=");
                }
            }
            s.description = "memif " + role + " on " + s.socket;
        } else {
            s.kind = PortKind::kMemif;
            s.devargs = "net_memif" + idx + ",role=" + role + ",socket=" + s.socket +
                        ",mac=" + mac_arg + passthrough;
            s.description = "memif " + role + " (DPDK net_memif) on " + s.socket;
        }
        if (s.rx_queues > 1 || s.tx_queues > 1) {
            s.description += " (" + std::to_string(s.rx_queues) + " receive, " +
                             std::to_string(s.tx_queues) + " transmit queues)";
        }
    } else if (kind == "af_packet" || kind == "af_xdp") {
        reject_others({"iface"});
        s.kind = kind == "af_packet" ? PortKind::kAfPacket : PortKind::kAfXdp;
        const std::string iface = need("iface");
        s.devargs = "net_" + kind + idx + ",iface=" + iface + passthrough;
        s.description = kind + " on interface " + iface;
    } else if (kind == "ring") {
        reject_others({});
        s.kind = PortKind::kRing;
        s.devargs = "net_ring" + idx + passthrough;
        s.description = "in-process loopback ring";
    } else {
        throw std::invalid_argument("port " + s.name + ": unknown kind '" + kind +
                                    "' (virtio, memif, af_packet, af_xdp, ring, dev)");
    }
    return s;
}

PortSet::PortSet(std::vector<PortSpec> specs)
    : specs_(std::move(specs)),
      ids_(specs_.size(), UINT16_MAX),
      probed_(specs_.size(), false),
      started_(specs_.size(), false),
      nics_(specs_.size()) {
    if (specs_.size() > RTE_MAX_ETHPORTS) {
        throw std::invalid_argument("at most " + std::to_string(RTE_MAX_ETHPORTS) +
                                    " ports (DPDK's RTE_MAX_ETHPORTS)");
    }
}

PortSet::~PortSet() {
    // Native NICs first: one may be connected to a port of this process.
    for (auto& nic : nics_) {
        nic.reset();
    }
    // In reverse: a virtio-user port goes before the vhost-user port it is connected to.
    for (std::size_t i = specs_.size(); i-- > 0;) {
        if (started_[i]) {
            on_control_thread(specs_[i].kind, [&] { return rte_eth_dev_stop(ids_[i]); });
            if (specs_[i].kind == PortKind::kMemif) {
                // The peer's disconnect runs on DPDK's interrupt thread; when the peer is
                // in this process too, let it finish before its port is stopped or closed.
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        }
    }
    for (std::size_t i = specs_.size(); i-- > 0;) {
        if (probed_[i]) {
            on_control_thread(specs_[i].kind, [&] { return rte_eth_dev_close(ids_[i]); });
        }
    }
    remove_sockets();
}

void PortSet::remove_sockets() const {
    for (const PortSpec& s : specs_) {
        if (s.listens && is_socket(s.socket)) {
            unlink(s.socket.c_str());
        }
    }
}

int PortSet::find(const std::string& name) const {
    for (std::size_t i = 0; i < specs_.size(); ++i) {
        if (specs_[i].name == name) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

void PortSet::probe(const std::vector<std::size_t>& order, double timeout_s) {
    for (const std::size_t i : order) {
        // A socket left by a killed run would make bind() fail.
        if (specs_[i].listens && is_socket(specs_[i].socket)) {
            unlink(specs_[i].socket.c_str());
        }
    }

    struct Shared {
        std::mutex mutex;
        std::size_t current = 0;  // position in order
        Clock::time_point since = Clock::now();
        std::string error;
        bool done = false;
    };
    auto shared = std::make_shared<Shared>();
    std::thread prober([this, order, shared] {
        for (std::size_t k = 0; k < order.size(); ++k) {
            {
                std::lock_guard lock(shared->mutex);
                shared->current = k;
                shared->since = Clock::now();
            }
            const PortSpec& s = specs_[order[k]];
            const int rc = rte_dev_probe(s.devargs.c_str());
            std::lock_guard lock(shared->mutex);
            if (rc != 0) {
                // DPDK's drivers mostly answer -1, which says nothing: leave it out.
                shared->error =
                    "port " + s.name + " (" + s.description + ") never came up: " + probe_hint(s) +
                    (rc == -1 ? std::string() : " (" + std::string(rte_strerror(-rc)) + ")");
                shared->done = true;
                return;
            }
            probed_[order[k]] = true;
            if (rte_eth_dev_get_port_by_name(device_name(s.devargs).c_str(), &ids_[order[k]]) !=
                0) {
                shared->error = "port " + s.name + ": probed, but DPDK lists no ethdev named " +
                                device_name(s.devargs);
                shared->done = true;
                return;
            }
        }
        shared->done = true;
    });
    std::size_t announced = order.size();
    for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        std::lock_guard lock(shared->mutex);
        if (shared->done) {
            break;
        }
        if (announced != shared->current && seconds_since(shared->since) > 1.0) {
            // Said once per port, so that a user sees what the generator waits for.
            announced = shared->current;
            const PortSpec& s = specs_[order[announced]];
            std::fprintf(stderr, "conduit-gen: waiting for port %s (%s)\n", s.name.c_str(),
                         s.description.c_str());
        }
        if (seconds_since(shared->since) > timeout_s) {
            const PortSpec& s = specs_[order[shared->current]];
            prober.detach();  // blocked inside DPDK; the caller exits the process
            std::string why = s.kind == PortKind::kVirtio && s.listens
                                  ? "no switch connected to " + s.socket
                                  : "its probe did not finish";
            throw StuckProbe("port " + s.name + " (" + s.description + ") never came up: " + why +
                             " within " + std::to_string(static_cast<int>(timeout_s)) + " s");
        }
    }
    prober.join();
    if (!shared->error.empty()) {
        throw PortError(shared->error);
    }
}

void PortSet::start_port(std::size_t i, rte_mempool* pool, double timeout_s) {
    const PortSpec& s = specs_[i];
    const uint16_t id = ids_[i];
    // Said in the port's terms before DPDK answers a bare "Invalid argument".
    rte_eth_dev_info info{};
    if (rte_eth_dev_info_get(id, &info) == 0 &&
        (s.rx_queues > info.max_rx_queues || s.tx_queues > info.max_tx_queues)) {
        throw PortError(
            "port " + s.name + " (" + s.description + "): asks for " + std::to_string(s.rx_queues) +
            " receive and " + std::to_string(s.tx_queues) + " transmit queues; its driver (" +
            (info.driver_name != nullptr ? info.driver_name : "?") + ") has at most " +
            std::to_string(info.max_rx_queues) + " and " + std::to_string(info.max_tx_queues));
    }
    rte_eth_conf conf{};
    int rc = rte_eth_dev_configure(id, s.rx_queues, s.tx_queues, &conf);
    if (rc != 0) {
        throw PortError("port " + s.name + ": cannot configure: " + rte_strerror(-rc));
    }
    uint16_t rxd = s.rx_descriptors, txd = s.tx_descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(id, &rxd, &txd);
    for (uint16_t q = 0; q < s.rx_queues && rc == 0; ++q) {
        rc = rte_eth_rx_queue_setup(id, q, rxd, rte_eth_dev_socket_id(id), nullptr, pool);
    }
    // virtio frees a sent buffer only when it cleans its ring, by default once all but 32
    // of its descriptors are used: up to a ring's worth of buffers (1024 on a benchmark's
    // guest port, 16 ports in its star) wait there, out of every cache, and each is
    // touched cold when freed and again when allocated. Cleaning once 32 are used keeps
    // the buffers in circulation few and warm; the ring's capacity for a stalled peer
    // is unchanged (conduitd, 16 guests + uplink, 64 B: 3.5 -> 6 Mpps).
    rte_eth_txconf txconf = info.default_txconf;
    const rte_eth_txconf* tx_conf = nullptr;
    constexpr uint16_t kVirtioCleanAfter = 32;
    if (s.kind == PortKind::kVirtio && s.virtio_ring > 2 * kVirtioCleanAfter) {
        txconf.tx_free_thresh = static_cast<uint16_t>(s.virtio_ring - kVirtioCleanAfter);
        tx_conf = &txconf;
    }
    for (uint16_t q = 0; q < s.tx_queues && rc == 0; ++q) {
        rc = rte_eth_tx_queue_setup(id, q, txd, rte_eth_dev_socket_id(id), tx_conf);
    }
    if (rc != 0) {
        throw PortError("port " + s.name + ": cannot set up its queues: " + rte_strerror(-rc));
    }
    // A memif client connects when started and fails while its server is not there yet:
    // keep trying until the timeout.
    const auto begin = Clock::now();
    std::unique_ptr<QuietMemifLog> quiet;
    for (int attempt = 0;; ++attempt) {
        rc = on_control_thread(s.kind, [&] { return rte_eth_dev_start(id); });
        if (attempt == 0 && s.kind == PortKind::kMemif) {
            // The PMD logs every failed connect: once is enough.
            quiet = std::make_unique<QuietMemifLog>();
        }
        if (rc == 0) {
            break;
        }
        if (seconds_since(begin) > timeout_s) {
            throw PortError("port " + s.name + " (" + s.description + ") never came up: " +
                            (s.kind == PortKind::kMemif && !s.listens
                                 ? "no memif server listening on " + s.socket +
                                       " (is the switch's memif port up?)"
                                 : std::string("cannot start: ") + rte_strerror(-rc)));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    quiet.reset();
    started_[i] = true;
    // Frames for many MACs arrive here: receive them all.
    rte_eth_promiscuous_enable(id);
    if (s.kind != PortKind::kVirtio && s.kind != PortKind::kMemif) {
        rte_ether_addr addr{};
        for (int b = 5; b >= 0; --b) {
            addr.addr_bytes[b] = static_cast<uint8_t>(s.mac >> (8 * (5 - b)));
        }
        rte_eth_dev_default_mac_addr_set(id, &addr);  // best effort: some PMDs refuse
    }
}

void PortSet::connect_native(const std::vector<std::size_t>& ports, double timeout_s) {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    std::vector<std::string> errors(ports.size());
    auto connect_one = [&](std::size_t k) {
        const std::size_t i = ports[k];
        NativeNic& nic = *nics_[i];
        if (nic.alive()) {
            return;
        }
        if (nic.running() || !nic.error().empty()) {
            std::fprintf(stderr,
                         "conduit-gen: port %s: the switch went away (%s); waiting for it\n",
                         specs_[i].name.c_str(), nic.error().c_str());
        }
        try {
            nic.connect(timeout);
        } catch (const std::exception& e) {
            // The NIC's messages start with the port's name; said here with its description.
            std::string why = e.what();
            const std::string prefix = "port " + specs_[i].name + ": ";
            if (why.rfind(prefix, 0) == 0) {
                why.erase(0, prefix.size());
            }
            errors[k] =
                "port " + specs_[i].name + " (" + specs_[i].description + ") never came up: " + why;
        }
    };
    // Each on a thread of its own: a NIC's handshake waits for its peer, which may be
    // another of these NICs (a memif server and its client in this process).
    std::vector<std::thread> threads;
    for (std::size_t k = 1; k < ports.size(); ++k) {
        threads.emplace_back(connect_one, k);
    }
    if (!ports.empty()) {
        connect_one(0);
    }
    for (auto& t : threads) {
        t.join();
    }
    // Every port that failed, each on a line: one's failure may be another's cause.
    std::string failed;
    for (const std::string& e : errors) {
        if (!e.empty()) {
            failed += (failed.empty() ? "" : "\nconduit-gen: ") + e;
        }
    }
    if (!failed.empty()) {
        throw PortError(failed);
    }
}

void PortSet::wait_link(std::size_t i, double timeout_s) {
    const PortSpec& s = specs_[i];
    if (is_native(s.kind)) {
        connect_native({i}, timeout_s);
        return;
    }
    const auto begin = Clock::now();
    auto restarted = begin;
    // Doubles after each restart (2, 4, 8 s), so that a handshake slower than the first
    // interval still gets the time to finish.
    double restart_after_s = 2.0;
    for (;;) {
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(ids_[i], &link) == 0 && link.link_status == RTE_ETH_LINK_UP) {
            return;
        }
        // DPDK's memif client connects only when started, and a server may refuse or drop
        // it while the switch sets its port up: OVS-DPDK starts a port with one transmit
        // queue, refusing a client with two receive rings, then restarts it with one per
        // thread, dropping whoever connected. Start the client again now and then.
        if (s.kind == PortKind::kMemif && !s.listens &&
            seconds_since(restarted) > restart_after_s) {
            const QuietMemifLog quiet;
            on_control_thread(s.kind, [&] {
                rte_eth_dev_stop(ids_[i]);
                return rte_eth_dev_start(ids_[i]);  // fails while nothing listens: tried again
            });
            restarted = Clock::now();
            restart_after_s = std::min(restart_after_s * 2, 8.0);
        }
        if (seconds_since(begin) > timeout_s) {
            std::string why;
            switch (s.kind) {
                case PortKind::kMemif:
                    // A memif server refuses, with nothing said on this side, a client
                    // with more rings either way than it has queues.
                    why = s.listens ? "no memif client connected to " + s.socket
                                    : "the memif server on " + s.socket +
                                          " did not accept us (it refuses a client with more "
                                          "transmit queues than it has receive queues, or more "
                                          "receive queues than it has transmit queues: this "
                                          "port has " +
                                          std::to_string(s.rx_queues) + " receive and " +
                                          std::to_string(s.tx_queues) + " transmit)";
                    break;
                case PortKind::kVirtio:
                    why = "the vhost-user handshake on " + s.socket + " did not complete";
                    break;
                case PortKind::kAfPacket:
                case PortKind::kAfXdp:
                    why = "the interface is down (ip link set ... up; its peer must be up too)";
                    break;
                default:
                    why = "its link stayed down";
            }
            throw PortError("port " + s.name + " (" + s.description + ") never came up: " + why +
                            " within " + std::to_string(static_cast<int>(timeout_s)) + " s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

namespace {
std::unique_ptr<NativeNic> make_native_nic(const PortSpec& s) {
    if (s.kind == PortKind::kNativeMemif) {
        MemifOptions o;
        o.name = s.name;
        o.socket = s.socket;
        o.listen = s.listens;
        o.id = s.memif_id;
        o.rx_queues = s.rx_queues;
        o.tx_queues = s.tx_queues;
        o.log2_ring_size = s.memif_log2_ring;
        o.abstract = s.memif_abstract;
        o.frame_room = s.frame_room;
        return std::make_unique<MemifNic>(o);
    }
    VnicOptions o;
    o.name = s.name;
    o.socket = s.socket;
    o.listen = s.listens;
    o.queue_pairs = std::max(s.rx_queues, s.tx_queues);
    o.ring_size = s.virtio_ring;
    o.frame_room = s.frame_room;
    return std::make_unique<Vnic>(o);
}
}  // namespace

void PortSet::bring_up(rte_mempool* pool, double timeout_s) {
    // Three groups, each probed then started: ports that cannot block (a vhost-user
    // port of our own creates its socket only when configured); virtio-user ports that
    // connect (perhaps to such a port); listening virtio-user ports last, since each
    // waits inside its probe until its switch connects.
    auto connecting = [](const PortSpec& s) { return s.kind == PortKind::kVirtio && !s.listens; };
    auto listening = [](const PortSpec& s) { return s.kind == PortKind::kVirtio && s.listens; };
    std::vector<std::vector<std::size_t>> groups(3);
    std::vector<std::size_t> natives;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
        if (is_native(specs_[i].kind)) {
            natives.push_back(i);
            continue;
        }
        groups[listening(specs_[i]) ? 2 : connecting(specs_[i]) ? 1 : 0].push_back(i);
    }
    // NICs of our own listen from the start (a switch may connect to any port at any
    // time), and connect once the ports of the first group, which may be the vhost-user
    // or memif ports they connect to, are there.
    for (const std::size_t i : natives) {
        try {
            nics_[i] = make_native_nic(specs_[i]);
        } catch (const std::exception& e) {
            throw PortError(std::string(e.what()));
        }
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
        auto& group = groups[g];
        if (g == 1) {
            connect_native(natives, timeout_s);
        }
        if (group.empty()) {
            continue;
        }
        probe(group, timeout_s);
        // Listening memif ports first, so that memif clients among our own ports (a
        // looped pair in one process) find their server started.
        std::stable_partition(group.begin(), group.end(), [this](std::size_t i) {
            return specs_[i].kind == PortKind::kMemif && specs_[i].listens;
        });
        for (const std::size_t i : group) {
            start_port(i, pool, timeout_s);
        }
    }
    wait_links(timeout_s);
}

void PortSet::wait_links(double timeout_s) {
    std::vector<std::size_t> natives;
    for (std::size_t i = 0; i < specs_.size(); ++i) {
        if (is_native(specs_[i].kind)) {
            natives.push_back(i);
        } else {
            wait_link(i, timeout_s);
        }
    }
    connect_native(natives, timeout_s);
}

}  // namespace conduit::gen
