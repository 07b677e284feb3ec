// vhost_frontend_probe: drives conduit-vmm's vhost-user frontend against a real backend
// (DPDK testpmd's vhost PMD in tests/integration/test_vhost_frontend.py), playing the
// guest itself: "guest RAM" is a memfd holding one RX and one TX split virtqueue
// (virtio 1.x layout) and their buffers, exactly what a VM's virtio-net driver would set
// up. For each session it handshakes, sends frames on the TX ring, kicks, and checks
// that the backend returned every frame, byte for byte and in order, on the RX ring.
// Between sessions it waits for the backend to go away; the next session restores the
// ring positions from the used indices in guest memory (SET_VRING_BASE), as the VMM does
// on reconnect.
//
// Usage: vhost_frontend_probe --socket PATH [--client] [--sessions N] [--frames K]
//                             [--wait-ms MS]
// Prints one line per step (LISTENING, CONNECTED, NEGOTIATED, STARTED, ECHO, DISCONNECTED,
// STOPPED, DONE) for the test to follow; "FAIL <reason>" and exit status 1 on any error.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmm/util/unique_fd.h"
#include "vmm/vhost_user/endpoint.h"
#include "vmm/vhost_user/frontend.h"

namespace vu = conduit::vmm::vhost_user;
using conduit::vmm::UniqueFd;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint16_t kRingSize = 256;
constexpr uint32_t kBufferSize = 2048;
constexpr size_t kNetHdrSize = 12;  // virtio_net_hdr_v1 (VIRTIO_F_VERSION_1)
constexpr uint16_t kDescFlagWrite = 2;
constexpr uint16_t kRxPosted = 128;  // RX buffers kept available to the backend

// Guest RAM: two windows of one memfd at guest-physical addresses that differ from the
// file offsets and the host addresses, so that mixing them up cannot go unnoticed.
constexpr uint64_t kRegionSize = 2 << 20;
constexpr uint64_t kRingsGpa = 0x40000000;    // region 0: file offset 0
constexpr uint64_t kBuffersGpa = 0x80000000;  // region 1: file offset 2 MiB

void say(const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
}

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

class GuestMemory {
  public:
    GuestMemory() : fd_(::memfd_create("probe-guest-ram", MFD_CLOEXEC)) {
        if (!fd_ || ::ftruncate(fd_.get(), 2 * kRegionSize) != 0) {
            throw std::runtime_error("guest memory: memfd");
        }
        void* p =
            ::mmap(nullptr, 2 * kRegionSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
        if (p == MAP_FAILED) {
            throw std::runtime_error("guest memory: mmap");
        }
        base_ = static_cast<uint8_t*>(p);
    }
    ~GuestMemory() { ::munmap(base_, 2 * kRegionSize); }
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;

    uint8_t* rings() const { return base_; }
    uint8_t* buffers() const { return base_ + kRegionSize; }
    std::vector<vu::MemoryRegion> regions() const {
        return {{kRingsGpa, kRegionSize, reinterpret_cast<uint64_t>(rings()), 0, fd_.get()},
                {kBuffersGpa, kRegionSize, reinterpret_cast<uint64_t>(buffers()), kRegionSize,
                 fd_.get()}};
    }

  private:
    UniqueFd fd_;
    uint8_t* base_ = nullptr;
};

// One split virtqueue seen from the driver side.
class SplitRing {
  public:
    SplitRing(uint16_t index, uint8_t* area, uint8_t* buffers, uint64_t buffers_gpa)
        : index_(index),
          desc_(area),
          avail_(area + 0x1000),
          used_(area + 0x2000),
          buffers_(buffers),
          buffers_gpa_(buffers_gpa),
          kick_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
          call_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

    vu::VringSetup setup(uint16_t base) const {
        return {index_,
                kRingSize,
                reinterpret_cast<uint64_t>(desc_),
                reinterpret_cast<uint64_t>(avail_),
                reinterpret_cast<uint64_t>(used_),
                base,
                kick_.get(),
                call_.get()};
    }

    uint8_t* buffer(uint16_t id) const { return buffers_ + size_t{id} * kBufferSize; }

    // Makes descriptor `id` (its own buffer, `len` bytes) available and kicks.
    void post(uint16_t id, uint32_t len, uint16_t flags) {
        const uint64_t gpa = buffers_gpa_ + uint64_t{id} * kBufferSize;
        std::memcpy(desc_ + 16 * id, &gpa, 8);
        std::memcpy(desc_ + 16 * id + 8, &len, 4);
        std::memcpy(desc_ + 16 * id + 12, &flags, 2);
        const uint16_t zero = 0;
        std::memcpy(desc_ + 16 * id + 14, &zero, 2);
        std::memcpy(avail_ + 4 + 2 * (avail_idx_ % kRingSize), &id, 2);
        ++avail_idx_;
        // The backend may read the entry as soon as it sees the index.
        std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(avail_ + 2))
            .store(avail_idx_, std::memory_order_release);
        const uint64_t one = 1;
        (void)!::write(kick_.get(), &one, sizeof one);
    }

    uint16_t used_idx() const {
        return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(used_ + 2))
            .load(std::memory_order_acquire);
    }

    // The next used element, if the backend produced one.
    bool next_used(uint32_t& id, uint32_t& len) {
        if (used_idx() == used_seen_) {
            return false;
        }
        const uint8_t* e = used_ + 4 + 8 * (used_seen_ % kRingSize);
        std::memcpy(&id, e, 4);
        std::memcpy(&len, e + 4, 4);
        ++used_seen_;
        return true;
    }

    // Waits on the call eventfd (the "interrupt") at most `ms`.
    void wait_call(int ms) const {
        pollfd p{call_.get(), POLLIN, 0};
        if (::poll(&p, 1, ms) == 1) {
            uint64_t n;
            (void)!::read(call_.get(), &n, sizeof n);
        }
    }

    uint16_t avail_idx() const { return avail_idx_; }
    uint16_t used_seen() const { return used_seen_; }

  private:
    uint16_t index_;
    uint8_t* desc_;
    uint8_t* avail_;
    uint8_t* used_;
    uint8_t* buffers_;
    uint64_t buffers_gpa_;
    UniqueFd kick_, call_;
    uint16_t avail_idx_ = 0;
    uint16_t used_seen_ = 0;
};

std::vector<uint8_t> test_frame(int session, int k) {
    const size_t len = 60 + (size_t(k) * 97 + size_t(session) * 31) % 1455;  // 60..1514
    std::vector<uint8_t> f(len);
    const uint8_t head[14] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5};
    std::memcpy(f.data(), head, sizeof head);
    f[14] = static_cast<uint8_t>(session);
    f[15] = static_cast<uint8_t>(k >> 8);
    f[16] = static_cast<uint8_t>(k);
    for (size_t i = 17; i < len; ++i) {
        f[i] = static_cast<uint8_t>(k * 7 + session * 13 + i);
    }
    return f;
}

struct Args {
    std::string socket;
    bool client = false;
    int sessions = 1;
    int frames = 32;
    int wait_ms = 60000;
};

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                throw std::runtime_error(arg + " needs a value");
            }
            return argv[++i];
        };
        if (arg == "--socket") {
            a.socket = value();
        } else if (arg == "--client") {
            a.client = true;
        } else if (arg == "--sessions") {
            a.sessions = std::stoi(value());
        } else if (arg == "--frames") {
            a.frames = std::stoi(value());
        } else if (arg == "--wait-ms") {
            a.wait_ms = std::stoi(value());
        } else {
            throw std::runtime_error("unknown argument " + arg);
        }
    }
    if (a.socket.empty() || a.sessions < 1 || a.frames < 1 || a.frames > kRxPosted) {
        throw std::runtime_error("usage: --socket PATH [--client] [--sessions N] [--frames 1-128]");
    }
    return a;
}

// Sends `frames` frames on TX and checks each comes back on RX, in order, intact.
void echo(int session, int frames, SplitRing& rx, SplitRing& tx, int wait_ms) {
    std::vector<std::vector<uint8_t>> sent;
    for (int k = 0; k < frames; ++k) {
        sent.push_back(test_frame(session, k));
        const uint16_t id = tx.avail_idx() % kRingSize;
        uint8_t* buf = tx.buffer(id);
        std::memset(buf, 0, kNetHdrSize);  // no offloads asked
        std::memcpy(buf + kNetHdrSize, sent.back().data(), sent.back().size());
        tx.post(id, static_cast<uint32_t>(kNetHdrSize + sent.back().size()), 0);
    }
    const auto deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
    int received = 0;
    while (received < frames) {
        uint32_t id, len;
        if (!rx.next_used(id, len)) {
            if (Clock::now() > deadline) {
                throw std::runtime_error(
                    "session " + std::to_string(session) + ": " + std::to_string(received) +
                    " of " + std::to_string(frames) + " frames came back (TX used " +
                    std::to_string(tx.used_idx()) + " of " + std::to_string(tx.avail_idx()) + ")");
            }
            rx.wait_call(100);
            continue;
        }
        const auto& want = sent[received];
        if (id >= kRingSize || len != kNetHdrSize + want.size()) {
            throw std::runtime_error(
                "session " + std::to_string(session) + ": frame " + std::to_string(received) +
                " came back in descriptor " + std::to_string(id) + " with " + std::to_string(len) +
                " bytes, expected " + std::to_string(kNetHdrSize + want.size()));
        }
        if (std::memcmp(rx.buffer(static_cast<uint16_t>(id)) + kNetHdrSize, want.data(),
                        want.size()) != 0) {
            throw std::runtime_error("session " + std::to_string(session) + ": frame " +
                                     std::to_string(received) + " came back altered");
        }
        // The buffer goes back to the backend, as a driver refills its RX ring.
        rx.post(static_cast<uint16_t>(id), kBufferSize, kDescFlagWrite);
        ++received;
    }
    // Every transmitted buffer is returned too.
    while (tx.used_idx() != tx.avail_idx()) {
        if (Clock::now() > deadline) {
            throw std::runtime_error("session " + std::to_string(session) + ": TX used " +
                                     std::to_string(tx.used_idx()) + " of " +
                                     std::to_string(tx.avail_idx()));
        }
        tx.wait_call(100);
    }
    uint32_t id, len;
    while (tx.next_used(id, len)) {
    }
    // Nothing beyond what was sent may come back (no replay of old TX buffers).
    rx.wait_call(200);
    if (rx.next_used(id, len)) {
        throw std::runtime_error("session " + std::to_string(session) +
                                 ": an extra frame came back (" + std::to_string(len) + " bytes)");
    }
}

int run(const Args& args) {
    GuestMemory mem;
    SplitRing rx(0, mem.rings(), mem.buffers(), kBuffersGpa);
    SplitRing tx(1, mem.rings() + 0x4000, mem.buffers() + kRingSize * kBufferSize,
                 kBuffersGpa + kRingSize * kBufferSize);
    for (uint16_t id = 0; id < kRxPosted; ++id) {
        rx.post(id, kBufferSize, kDescFlagWrite);
    }

    vu::Endpoint ep =
        args.client ? vu::Endpoint::connect_to(args.socket) : vu::Endpoint::listen(args.socket);
    say(std::string(args.client ? "CONNECTING " : "LISTENING ") + args.socket);

    // What the guest acked in the first session stays fixed across reconnects.
    uint64_t acked = 0;
    const uint64_t wanted = vu::bit(vu::virtio_bit::kVersion1) |
                            vu::bit(vu::virtio_bit::kNetMrgRxbuf) |
                            vu::bit(vu::virtio_bit::kNetMtu) | vu::bit(vu::virtio_bit::kNetStatus);
    for (int s = 1; s <= args.sessions; ++s) {
        vu::FrontendOptions opts;
        opts.name = "probe";
        opts.mtu = 1500;
        opts.reply_timeout = std::chrono::milliseconds(10000);
        vu::Frontend fe(ep.wait_for_connection(std::chrono::milliseconds(args.wait_ms)), opts);
        say("CONNECTED " + std::to_string(s));
        const vu::BackendFeatures b = fe.negotiate(wanted);
        say("NEGOTIATED " + std::to_string(s) + " offered=" + hex(b.offered) +
            " usable=" + hex(b.usable) + " protocol=" + hex(b.protocol) +
            " max_queue_pairs=" + std::to_string(b.max_queue_pairs));
        if (s == 1) {
            acked = b.usable;
        }
        // On reconnect the backend resumes where the guest's used rings say it stopped.
        const uint16_t rx_base = rx.used_idx();
        const uint16_t tx_base = tx.used_idx();
        const vu::VringSetup vrings[2] = {rx.setup(rx_base), tx.setup(tx_base)};
        fe.start(acked, mem.regions(), vrings);
        say("STARTED " + std::to_string(s) + " acked=" + hex(acked) +
            " rx_base=" + std::to_string(rx_base) + " tx_base=" + std::to_string(tx_base));

        echo(s, args.frames, rx, tx, args.wait_ms);
        say("ECHO " + std::to_string(s) + " ok=" + std::to_string(args.frames));
        if (fe.disconnected()) {
            throw std::runtime_error("the backend went away during session " + std::to_string(s) +
                                     ": " + fe.error());
        }

        if (s < args.sessions) {
            say("WAITING-DISCONNECT " + std::to_string(s));
            pollfd p{fe.poll_fd(), POLLIN, 0};
            if (::poll(&p, 1, args.wait_ms) != 1 || !fe.disconnected()) {
                throw std::runtime_error("the backend did not go away");
            }
            say("DISCONNECTED " + std::to_string(s) + " " + fe.error());
            ep.session_ended();
            continue;
        }
        const auto bases = fe.stop();
        // GET_VRING_BASE: the backend consumed exactly what it used.
        const uint16_t rx_next = bases.at(0).next_avail;
        const uint16_t tx_next = bases.at(1).next_avail;
        say("STOPPED " + std::to_string(s) + " rx_next_avail=" + std::to_string(rx_next) +
            " tx_next_avail=" + std::to_string(tx_next) + " rx_used=" +
            std::to_string(rx.used_idx()) + " tx_used=" + std::to_string(tx.used_idx()));
        if (rx_next != rx.used_idx() || tx_next != tx.used_idx()) {
            throw std::runtime_error("GET_VRING_BASE disagrees with the used rings");
        }
    }
    say("DONE");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(parse(argc, argv));
    } catch (const std::exception& e) {
        say(std::string("FAIL ") + e.what());
        return 1;
    }
}
