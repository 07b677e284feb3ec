#include "tools/gen/memif.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace conduit::gen {

namespace {

using Clock = std::chrono::steady_clock;

// --- the control channel: fixed 128-byte messages, a 16-bit type then the body ---

enum MsgType : uint16_t {
    kAck = 1,
    kHello = 2,
    kInit = 3,
    kAddRegion = 4,
    kAddRing = 5,
    kConnect = 6,
    kConnected = 7,
    kDisconnect = 8,
};

const char* type_name(uint16_t type) {
    static constexpr std::array<const char*, 9> kNames{"NONE",    "ACK",        "HELLO",
                                                       "INIT",    "ADD_REGION", "ADD_RING",
                                                       "CONNECT", "CONNECTED",  "DISCONNECT"};
    return type < kNames.size() ? kNames[type] : "an unknown message";
}

// Where each field lies in its message (the protocol's packed layout, type included).
namespace at {
constexpr std::size_t kType = 0;
// HELLO
constexpr std::size_t kHelloName = 2, kHelloMinVersion = 34, kHelloMaxVersion = 36,
                      kHelloMaxRegion = 38, kHelloMaxS2c = 40, kHelloMaxC2s = 42,
                      kHelloMaxLog2 = 44;
// INIT
constexpr std::size_t kInitVersion = 2, kInitId = 4, kInitMode = 8, kInitSecret = 9, kInitName = 33;
// ADD_REGION
constexpr std::size_t kRegionIndex = 2, kRegionSize = 4;
// ADD_RING
constexpr std::size_t kRingFlags = 2, kRingIndex = 4, kRingRegion = 6, kRingOffset = 8,
                      kRingLog2 = 12, kRingPrivateHdr = 13;
// CONNECT, CONNECTED
constexpr std::size_t kIfName = 2;
// DISCONNECT
constexpr std::size_t kDisconnectCode = 2, kDisconnectText = 6;
}  // namespace at
constexpr std::size_t kNameSize = 32, kSecretSize = 24, kReasonSize = 96;
constexpr uint16_t kRingFlagC2s = 1;  // ADD_RING: the ring runs client -> server

struct Msg {
    std::array<uint8_t, 128> bytes{};

    template <typename T>
    T get(std::size_t offset) const {
        T v;
        std::memcpy(&v, bytes.data() + offset, sizeof v);
        return v;
    }
    template <typename T>
    void put(std::size_t offset, T v) {
        std::memcpy(bytes.data() + offset, &v, sizeof v);
    }
    uint16_t type() const { return get<uint16_t>(at::kType); }
    // A text field: up to its size, ending at the first NUL.
    std::string text(std::size_t offset, std::size_t size) const {
        const auto* begin = reinterpret_cast<const char*>(bytes.data() + offset);
        return std::string(begin, strnlen(begin, size));
    }
    void put_text(std::size_t offset, std::size_t size, const std::string& s) {
        std::memcpy(bytes.data() + offset, s.data(), std::min(s.size(), size - 1));
    }
};

// The peer said no (a DISCONNECT), or this side refused the peer: more telling than a
// later attempt's timeout, so it is what a failed connect() reports.
class Refusal : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

Msg message(uint16_t type) {
    Msg m;
    m.put(at::kType, type);
    return m;
}

// --- shared memory: rings of descriptors, and buffers ---

struct Desc {
    uint16_t flags;
    uint16_t region;
    uint32_t length;
    uint32_t offset;
    uint32_t metadata;
};
static_assert(sizeof(Desc) == 16);
constexpr uint16_t kDescNext = 1;  // the frame goes on in the next descriptor

// head and tail each on a cache line of its own; the descriptors follow.
struct RingHeader {
    uint32_t cookie;
    uint16_t flags;
    uint16_t head;
    uint8_t pad0[56];
    uint16_t tail;
    uint8_t pad1[62];
};
static_assert(sizeof(RingHeader) == 128 && offsetof(RingHeader, tail) == 64);
constexpr uint32_t kCookie = 0x3E31F20;
constexpr uint16_t kRingMaskInterrupt = 1;  // the ring's consumer polls: no interrupts

uint64_t ring_bytes(uint8_t log2_size) {
    return sizeof(RingHeader) + sizeof(Desc) * (uint64_t{1} << log2_size);
}

constexpr uint16_t kMaxRegions = 16;

uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}

std::string errno_text(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
}

// The control channel's address: in the abstract namespace (DPDK's and VPP's default:
// no file, gone with its listener) or a path in the file system.
struct SocketAddress {
    sockaddr_un addr{};
    socklen_t length = 0;
};
SocketAddress socket_address(const MemifOptions& o) {
    SocketAddress a;
    a.addr.sun_family = AF_UNIX;
    const std::size_t room = sizeof a.addr.sun_path - 1 - (o.abstract ? 1 : 0);
    if (o.socket.empty() || o.socket.size() > room) {
        throw std::runtime_error("port " + o.name + ": the memif socket name must be 1 to " +
                                 std::to_string(room) + " bytes long");
    }
    char* name = a.addr.sun_path + (o.abstract ? 1 : 0);
    std::memcpy(name, o.socket.c_str(), o.socket.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + (o.abstract ? 1 : 0) +
                                      o.socket.size() + (o.abstract ? 0 : 1));
    return a;
}

int remaining_ms(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(left, 0, 1'000'000));
}

}  // namespace

// One ring, with this side's state. The ring may be in memory the peer writes: only
// head/tail (through atomics) and descriptors (each field read once) are read from it.
struct MemifNic::Ring {
    RingHeader* header = nullptr;
    Desc* desc = nullptr;
    uint16_t size = 0, mask = 0;
    uint16_t cursor = 0;    // receive: the next slot to read; transmit: the next to fill
    uint16_t refill = 0;    // client receive: the next slot to hand out (its head)
    uint16_t taken = 0;     // transmit: slots reserved
    bool in_chain = false;  // receive: the slots after a chained frame's first are skipped
    // Client: this ring's buffers in its own region, one per slot, and where they start.
    uint8_t* buffers = nullptr;
    uint32_t buffers_offset = 0;
    uint32_t stride = 0;
    vmm::UniqueFd interrupt;  // the ring's eventfd: the consumer's, when it asks for it

    uint32_t buffer_offset(uint16_t slot) const { return buffers_offset + uint32_t{slot} * stride; }
    Desc own_desc(uint16_t slot, uint32_t length) const {
        return {0, 0, length, buffer_offset(slot), 0};
    }
    uint16_t load_head() const { return __atomic_load_n(&header->head, __ATOMIC_ACQUIRE); }
    uint16_t load_tail() const { return __atomic_load_n(&header->tail, __ATOMIC_ACQUIRE); }
    void reset() {
        __atomic_store_n(&header->head, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&header->tail, 0, __ATOMIC_RELAXED);
        cursor = refill = taken = 0;
        in_chain = false;
    }
};

MemifNic::MemifNic(MemifOptions options) : options_(std::move(options)) {
    const MemifOptions& o = options_;
    if (o.rx_queues == 0 || o.tx_queues == 0 || o.rx_queues > 255 || o.tx_queues > 255) {
        throw std::invalid_argument("port " + o.name +
                                    ": a memif port has 1 to 255 queues each way");
    }
    if (o.log2_ring_size < 1 || o.log2_ring_size > kMaxLog2RingSize) {
        throw std::invalid_argument("port " + o.name + ": a memif ring has 2 to " +
                                    std::to_string(1 << kMaxLog2RingSize) + " descriptors");
    }
    if (o.listen) {
        const SocketAddress a = socket_address(o);
        struct stat st {};
        if (!o.abstract && lstat(o.socket.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(o.socket.c_str());  // left by a run that was killed
        }
        listener_.reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!listener_ ||
            bind(listener_.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.length) != 0 ||
            listen(listener_.get(), 4) != 0) {
            throw std::runtime_error("port " + o.name + ": cannot listen on " + o.socket + ": " +
                                     std::strerror(errno));
        }
        return;
    }
    make_client_region();
}

void MemifNic::make_client_region() {
    const MemifOptions& o = options_;
    // The client's one region: its rings (client-to-server first, as its transmit
    // queues), then every ring's buffers.
    const uint16_t size = static_cast<uint16_t>(1u << o.log2_ring_size);
    const uint32_t stride = static_cast<uint32_t>(align_up(o.frame_room, 64));
    const uint32_t rings = o.tx_queues + o.rx_queues;
    const uint64_t buffers_at = align_up(rings * ring_bytes(o.log2_ring_size), 64);
    const uint64_t bytes = align_up(buffers_at + uint64_t{rings} * size * stride, 4096);
    if (bytes > UINT32_MAX) {
        throw std::invalid_argument("port " + o.name +
                                    ": the memif region would pass 4 GiB (fewer or smaller "
                                    "rings, or smaller frames)");
    }
    // Ordinary shared memory, sealed against shrinking: a server that maps it must be
    // able to trust its size. Not hugepages: there a hole punched in the file takes its
    // pages away for good, and a server touching them then dies (SIGBUS) when none are
    // left to fault in; this generator's own server refuses such a region.
    vmm::UniqueFd fd(memfd_create("conduit-gen memif", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd || ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0 ||
        fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
        throw std::runtime_error("port " + o.name + ": " + errno_text("memif region"));
    }
    void* addr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (addr == MAP_FAILED) {
        throw std::runtime_error("port " + o.name + ": " + errno_text("mmap memif region"));
    }
    Region region{vmm::Mapping(addr, bytes), std::move(fd)};
    uint8_t* base = region.map.data();
    // The old region (if any) goes once the new one is mapped, so that the two never
    // share an address.
    regions_.clear();
    rx_.clear();
    tx_.clear();
    regions_.push_back(std::move(region));
    for (uint32_t r = 0; r < rings; ++r) {
        auto ring = std::make_unique<Ring>();
        ring->header = reinterpret_cast<RingHeader*>(base + r * ring_bytes(o.log2_ring_size));
        ring->desc = reinterpret_cast<Desc*>(ring->header + 1);
        ring->size = size;
        ring->mask = static_cast<uint16_t>(size - 1);
        ring->stride = stride;
        ring->buffers_offset = static_cast<uint32_t>(buffers_at + uint64_t{r} * size * stride);
        ring->buffers = base + ring->buffers_offset;
        ring->interrupt = make_eventfd(o.name);
        ring->header->cookie = kCookie;
        (r < o.tx_queues ? tx_ : rx_).push_back(std::move(ring));
    }
}

MemifNic::~MemifNic() {
    if (connected_) {
        end_session("the generator is done");
    }
    if (listener_ && !options_.abstract) {
        unlink(options_.socket.c_str());
    }
}

// --- the control channel ---

namespace {

void send_message(int fd, const Msg& m, int pass_fd = -1) {
    iovec iov{const_cast<uint8_t*>(m.bytes.data()), m.bytes.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (pass_fd >= 0) {
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    // A peer that stops reading does not hold this side up for more than a second.
    for (int waited_ms = 0;; waited_ms += 10) {
        if (sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(m.bytes.size())) {
            return;
        }
        if ((errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) || waited_ms >= 1000) {
            throw std::runtime_error(errno_text("sending on the memif socket"));
        }
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, 10);
    }
}

// One message and the descriptor passed with it (if any); waits until the deadline.
Msg receive_message(int fd, Clock::time_point deadline, vmm::UniqueFd* passed,
                    const char* waiting_for) {
    pollfd p{fd, POLLIN, 0};
    int ready;
    do {
        ready = poll(&p, 1, remaining_ms(deadline));
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) {
        throw std::runtime_error(std::string("no ") + waiting_for + " from the peer in time");
    }
    Msg m;
    iovec iov{m.bytes.data(), m.bytes.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    const ssize_t got = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    // Every descriptor passed is ours to close, wanted or not.
    std::vector<vmm::UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t k = 0; k < count; ++k) {
                int one;
                std::memcpy(&one, CMSG_DATA(c) + k * sizeof(int), sizeof one);
                fds.emplace_back(one);
            }
        }
    }
    if (got == 0) {
        throw std::runtime_error("the peer closed the memif connection");
    }
    if (got < 0) {
        throw std::runtime_error(errno_text("receiving on the memif socket"));
    }
    if (got != static_cast<ssize_t>(m.bytes.size()) || (mh.msg_flags & MSG_TRUNC) != 0) {
        throw std::runtime_error("a memif message of " + std::to_string(got) +
                                 " bytes (they are 128)");
    }
    if (passed != nullptr) {
        passed->reset();
        if (fds.size() == 1) {
            *passed = std::move(fds.front());
        }
    }
    if (m.type() == kDisconnect) {
        throw Refusal("the peer disconnected: " + m.text(at::kDisconnectText, kReasonSize));
    }
    return m;
}

void expect(const Msg& m, uint16_t type) {
    if (m.type() != type) {
        throw std::runtime_error(std::string("expected ") + type_name(type) + ", got " +
                                 type_name(m.type()) + " (type " + std::to_string(m.type()) + ")");
    }
}

}  // namespace

void MemifNic::connect(std::chrono::milliseconds timeout) {
    if (connected_) {
        return;
    }
    error_.clear();
    broken_ = nullptr;
    const auto deadline = Clock::now() + timeout;
    // Until the deadline, a peer that refuses us or breaks off the handshake is tried
    // again (a switch may refuse a client while it sets its port up: OVS-DPDK starts a
    // memif port with one transmit queue, then restarts it with one per thread). What
    // is reported is the last refusal (what the peer said, or why this side refused
    // it), else the last failure.
    std::string failed;
    bool refused = false;
    for (;;) {
        try {
            if (options_.listen) {
                if (!accept_client(deadline)) {
                    throw std::runtime_error(!failed.empty() ? failed
                                                             : "no memif client connected to " +
                                                                   options_.socket + " within " +
                                                                   seconds_text(timeout) + " s");
                }
                handshake_as_server(deadline);
            } else {
                const SocketAddress a = socket_address(options_);
                if (region_sent_) {
                    // Fresh memory for every server: one that had the last region may
                    // still write into it.
                    make_client_region();
                    region_sent_ = false;
                }
                // Non-blocking: a server whose backlog is full answers EAGAIN at once.
                channel_.reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
                if (!channel_) {
                    throw std::runtime_error(errno_text("socket"));
                }
                if (::connect(channel_.get(), reinterpret_cast<const sockaddr*>(&a.addr),
                              a.length) != 0) {
                    throw std::runtime_error(
                        "no memif server listening on " + options_.socket +
                        " (is the switch's memif port up?): " + std::strerror(errno));
                }
                handshake_as_client(deadline);
            }
            break;
        } catch (const std::runtime_error& e) {
            channel_.reset();
            if (options_.listen) {
                rx_.clear();
                tx_.clear();
                regions_.clear();
            }
            const bool refusal = dynamic_cast<const Refusal*>(&e) != nullptr;
            if (refusal || !refused) {
                failed = e.what();
                refused = refusal;
            }
        }
        if (Clock::now() >= deadline) {
            throw std::runtime_error("port " + options_.name + ": " + failed);
        }
        poll(nullptr, 0, 50);  // the peer is not there yet, or refused: again soon
    }
    start_rings();
    connected_ = true;
}

bool MemifNic::accept_client(Clock::time_point deadline) {
    for (;;) {
        channel_.reset(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (channel_) {
            return true;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            throw std::runtime_error(errno_text("accept"));
        }
        pollfd p{listener_.get(), POLLIN, 0};
        if (poll(&p, 1, remaining_ms(deadline)) == 0) {
            return false;
        }
    }
}

void MemifNic::handshake_as_client(Clock::time_point deadline) {
    const MemifOptions& o = options_;
    const int fd = channel_.get();
    for (auto* rings : {&tx_, &rx_}) {
        for (auto& r : *rings) {
            r->reset();
            r->header->flags = 0;
        }
    }
    Msg hello = receive_message(fd, deadline, nullptr, "HELLO");
    expect(hello, kHello);
    if (hello.get<uint16_t>(at::kHelloMinVersion) > kVersion ||
        hello.get<uint16_t>(at::kHelloMaxVersion) < kVersion) {
        throw std::runtime_error(
            "the memif server speaks versions " +
            std::to_string(hello.get<uint16_t>(at::kHelloMinVersion)) + " to " +
            std::to_string(hello.get<uint16_t>(at::kHelloMaxVersion)) + ", not 2.0 (512)");
    }
    const unsigned max_c2s = hello.get<uint16_t>(at::kHelloMaxC2s) + 1u;
    const unsigned max_s2c = hello.get<uint16_t>(at::kHelloMaxS2c) + 1u;
    if (o.tx_queues > max_c2s || o.rx_queues > max_s2c) {
        throw std::runtime_error("the memif server takes at most " + std::to_string(max_c2s) +
                                 " client-to-server and " + std::to_string(max_s2c) +
                                 " server-to-client rings; this port has " +
                                 std::to_string(o.tx_queues) + " transmit and " +
                                 std::to_string(o.rx_queues) + " receive queues");
    }
    if (o.log2_ring_size > hello.get<uint8_t>(at::kHelloMaxLog2)) {
        throw std::runtime_error("the memif server takes rings of at most 2^" +
                                 std::to_string(hello.get<uint8_t>(at::kHelloMaxLog2)) +
                                 " descriptors");
    }
    Msg init = message(kInit);
    init.put(at::kInitVersion, kVersion);
    init.put(at::kInitId, o.id);
    init.put(at::kInitMode, uint8_t{0});  // ethernet
    init.put_text(at::kInitName, kNameSize, "conduit-gen");
    send_message(fd, init);
    expect(receive_message(fd, deadline, nullptr, "ACK for INIT"), kAck);

    Msg region = message(kAddRegion);
    region.put(at::kRegionIndex, uint16_t{0});
    region.put(at::kRegionSize, uint64_t{regions_[0].map.size()});
    send_message(fd, region, regions_[0].fd.get());
    region_sent_ = true;
    expect(receive_message(fd, deadline, nullptr, "ACK for ADD_REGION"), kAck);

    for (const bool c2s : {true, false}) {
        const auto& rings = c2s ? tx_ : rx_;
        for (std::size_t i = 0; i < rings.size(); ++i) {
            Msg ring = message(kAddRing);
            ring.put(at::kRingFlags, uint16_t{c2s ? kRingFlagC2s : uint16_t{0}});
            ring.put(at::kRingIndex, static_cast<uint16_t>(i));
            ring.put(at::kRingRegion, uint16_t{0});
            ring.put(at::kRingOffset,
                     static_cast<uint32_t>(reinterpret_cast<uint8_t*>(rings[i]->header) -
                                           regions_[0].map.data()));
            ring.put(at::kRingLog2, o.log2_ring_size);
            ring.put(at::kRingPrivateHdr, uint16_t{0});
            send_message(fd, ring, rings[i]->interrupt.get());
            try {
                expect(receive_message(fd, deadline, nullptr, "ACK for ADD_RING"), kAck);
            } catch (const Refusal& e) {
                // What DPDK's server says ("Invalid ring index") does not say which.
                throw Refusal(
                    std::string(e.what()) +
                    " (a memif server refuses a client with more transmit queues than it has "
                    "receive queues, or more receive queues than it has transmit queues: this "
                    "port has " +
                    std::to_string(o.rx_queues) + " receive and " + std::to_string(o.tx_queues) +
                    " transmit)");
            }
        }
    }
    Msg connect = message(kConnect);
    connect.put_text(at::kIfName, kNameSize, o.name);
    send_message(fd, connect);
    expect(receive_message(fd, deadline, nullptr, "CONNECTED"), kConnected);
}

void MemifNic::handshake_as_server(Clock::time_point deadline) {
    const MemifOptions& o = options_;
    const int fd = channel_.get();
    regions_.clear();
    rx_.clear();
    tx_.clear();
    // Refuses the client: says why on the channel, then throws the same.
    auto refuse = [&](const std::string& why) {
        Msg bye = message(kDisconnect);
        bye.put_text(at::kDisconnectText, kReasonSize, why);
        try {
            send_message(fd, bye);
        } catch (const std::runtime_error&) {
        }
        throw Refusal("refused the memif client: " + why);
    };
    Msg hello = message(kHello);
    hello.put_text(at::kHelloName, kNameSize, "conduit-gen");
    hello.put(at::kHelloMinVersion, kVersion);
    hello.put(at::kHelloMaxVersion, kVersion);
    hello.put(at::kHelloMaxRegion, static_cast<uint16_t>(kMaxRegions - 1));
    hello.put(at::kHelloMaxS2c, static_cast<uint16_t>(o.tx_queues - 1));
    hello.put(at::kHelloMaxC2s, static_cast<uint16_t>(o.rx_queues - 1));
    hello.put(at::kHelloMaxLog2, kMaxLog2RingSize);
    send_message(fd, hello);

    Msg init = receive_message(fd, deadline, nullptr, "INIT");
    expect(init, kInit);
    if (init.get<uint16_t>(at::kInitVersion) != kVersion) {
        refuse("incompatible memif version (this side speaks 2.0)");
    }
    if (init.get<uint32_t>(at::kInitId) != o.id) {
        refuse("ID not found (this port is id " + std::to_string(o.id) + ")");
    }
    if (init.get<uint8_t>(at::kInitMode) != 0) {
        refuse("only ethernet mode is supported");
    }
    if (init.get<uint8_t>(at::kInitSecret) != 0) {
        refuse("this port has no secret");
    }
    send_message(fd, message(kAck));

    std::vector<std::unique_ptr<Ring>> c2s(o.rx_queues), s2c(o.tx_queues);
    for (;;) {
        vmm::UniqueFd passed;
        Msg m = receive_message(fd, deadline, &passed, "CONNECT");
        if (m.type() == kConnect) {
            break;
        }
        if (m.type() == kAddRegion) {
            const auto index = m.get<uint16_t>(at::kRegionIndex);
            const auto size = m.get<uint64_t>(at::kRegionSize);
            if (!passed) {
                refuse("ADD_REGION without the region's file descriptor");
            }
            if (index != regions_.size() || index >= kMaxRegions) {
                refuse("region " + std::to_string(index) + " out of order (next is " +
                       std::to_string(regions_.size()) + ", at most " +
                       std::to_string(kMaxRegions) + ")");
            }
            // The client can change the file under the mapping: a region it could shrink
            // would fault here (SIGBUS) on a buffer past its new end. Only a region sealed
            // against shrinking, and as large as it says, is mapped.
            struct stat st {};
            const int seals = fcntl(passed.get(), F_GET_SEALS);
            if (fstat(passed.get(), &st) != 0 || size == 0 ||
                size > static_cast<uint64_t>(st.st_size)) {
                refuse("region " + std::to_string(index) + " is not " + std::to_string(size) +
                       " bytes of shared memory");
            }
            // On hugetlbfs a punched hole takes the pages away for good: touching them
            // again kills this process (SIGBUS) when the pool has none left.
            struct statfs fs {};
            if (fstatfs(passed.get(), &fs) != 0 || fs.f_type == HUGETLBFS_MAGIC) {
                refuse("region " + std::to_string(index) +
                       " is on hugetlbfs, whose pages the client can take away under the "
                       "mapping");
            }
            if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
                refuse("region " + std::to_string(index) +
                       " is not sealed against shrinking (F_SEAL_SHRINK)");
            }
            void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, passed.get(), 0);
            if (addr == MAP_FAILED) {
                refuse("region " + std::to_string(index) +
                       " cannot be mapped: " + std::strerror(errno));
            }
            regions_.push_back({vmm::Mapping(addr, size), std::move(passed)});
            send_message(fd, message(kAck));
        } else if (m.type() == kAddRing) {
            const bool to_server = (m.get<uint16_t>(at::kRingFlags) & kRingFlagC2s) != 0;
            const auto index = m.get<uint16_t>(at::kRingIndex);
            const auto region = m.get<uint16_t>(at::kRingRegion);
            const auto offset = m.get<uint32_t>(at::kRingOffset);
            const auto log2 = m.get<uint8_t>(at::kRingLog2);
            auto& rings = to_server ? c2s : s2c;
            const std::string what =
                std::string(to_server ? "client-to-server" : "server-to-client") + " ring " +
                std::to_string(index);
            if (!passed) {
                refuse(what + " without its interrupt file descriptor");
            }
            // Written to on the traffic lcore when the client asks for interrupts: only
            // an eventfd, never blocking (a pipe would stall every port once full).
            char target[64] = {};
            const std::string link = "/proc/self/fd/" + std::to_string(passed.get());
            if (readlink(link.c_str(), target, sizeof target - 1) < 0 ||
                std::strcmp(target, "anon_inode:[eventfd]") != 0 ||
                fcntl(passed.get(), F_SETFL, O_NONBLOCK) != 0) {
                refuse(what + ": its interrupt file descriptor is not an eventfd");
            }
            if (index >= rings.size() || rings[index]) {
                refuse(what + ": out of range or given twice (this port has " +
                       std::to_string(rings.size()) + ")");
            }
            if (log2 < 1 || log2 > kMaxLog2RingSize) {
                refuse(what + ": 2^" + std::to_string(log2) + " descriptors");
            }
            if (offset % 8 != 0 || region_bytes(region, offset, ring_bytes(log2)) == nullptr) {
                refuse(what + " does not lie inside a region given");
            }
            if (m.get<uint16_t>(at::kRingPrivateHdr) != 0) {
                refuse(what + ": private headers are not supported");
            }
            auto ring = std::make_unique<Ring>();
            ring->header = reinterpret_cast<RingHeader*>(region_bytes(region, offset, 1));
            ring->desc = reinterpret_cast<Desc*>(ring->header + 1);
            ring->size = static_cast<uint16_t>(1u << log2);
            ring->mask = static_cast<uint16_t>(ring->size - 1);
            ring->interrupt = std::move(passed);
            rings[index] = std::move(ring);
            send_message(fd, message(kAck));
        } else {
            refuse(std::string("unexpected ") + type_name(m.type()));
        }
    }
    // Rings 0 up, with no gap; at least one each way.
    for (auto* rings : {&c2s, &s2c}) {
        const auto given = std::find(rings->begin(), rings->end(), nullptr) - rings->begin();
        if (given == 0 || std::any_of(rings->begin() + given, rings->end(),
                                      [](const auto& r) { return r != nullptr; })) {
            refuse("the rings must be numbered from 0 with no gap, at least one each way");
        }
        rings->resize(static_cast<std::size_t>(given));
        for (const auto& r : *rings) {
            if (r->header->cookie != kCookie) {
                refuse("a ring without memif's cookie");
            }
        }
    }
    rx_ = std::move(c2s);
    tx_ = std::move(s2c);
    for (auto* rings : {&rx_, &tx_}) {
        for (auto& r : *rings) {
            r->reset();
        }
    }
    start_rings();  // no interrupts wanted, before the client may send
    Msg connected = message(kConnected);
    connected.put_text(at::kIfName, kNameSize, o.name);
    send_message(fd, connected);
}

void MemifNic::start_rings() {
    // The generator polls the rings it receives on: no interrupts there, please.
    for (auto& r : rx_) {
        __atomic_store_n(&r->header->flags, kRingMaskInterrupt, __ATOMIC_RELAXED);
    }
    if (!options_.listen) {
        // Every receive buffer to the server at once.
        for (auto& r : rx_) {
            for (uint16_t s = 0; s < r->size; ++s) {
                r->desc[s] = r->own_desc(s, r->stride);
            }
            r->refill = r->size;
            __atomic_store_n(&r->header->head, r->refill, __ATOMIC_RELEASE);
        }
    }
}

uint8_t* MemifNic::region_bytes(uint16_t region, uint64_t offset, uint64_t length) const {
    if (region >= regions_.size()) {
        return nullptr;
    }
    const vmm::Mapping& m = regions_[region].map;
    if (offset > m.size() || length > m.size() - offset) {
        return nullptr;
    }
    return m.data() + offset;
}

void MemifNic::end_session(const std::string& why) {
    if (error_.empty()) {
        error_ = why;
    }
    if (channel_) {
        Msg bye = message(kDisconnect);
        bye.put_text(at::kDisconnectText, kReasonSize, why);
        try {
            send_message(channel_.get(), bye);
        } catch (const std::runtime_error&) {
            // The peer is gone already.
        }
    }
    channel_.reset();
    connected_ = false;
    if (options_.listen) {
        rx_.clear();
        tx_.clear();
        regions_.clear();
    }
}

bool MemifNic::alive() {
    if (!connected_) {
        return false;
    }
    if (broken_ != nullptr) {
        end_session(broken_);
        return false;
    }
    pollfd p{channel_.get(), POLLIN, 0};
    if (poll(&p, 1, 0) > 0) {
        try {
            const Msg m = receive_message(channel_.get(), Clock::now(), nullptr, "a message");
            end_session(std::string("unexpected ") + type_name(m.type()) + " from the peer");
        } catch (const std::runtime_error& e) {
            error_ = e.what();
            channel_.reset();
            end_session(error_);
        }
        return false;
    }
    return true;
}

void MemifNic::broken(const char* why) {
    if (broken_ == nullptr) {
        broken_ = why;
    }
}

// --- datapath ---

uint16_t MemifNic::rx_poll(uint16_t q, const uint8_t** frames, uint32_t* lens, uint16_t max) {
    if (q >= rx_.size() || broken_ != nullptr) [[unlikely]] {
        return 0;
    }
    Ring& r = *rx_[q];
    // Client: the server fills at tail. Server: the client fills at head.
    const uint16_t end = options_.listen ? r.load_head() : r.load_tail();
    const auto ready = static_cast<uint16_t>(end - r.cursor);
    if (ready > r.size) [[unlikely]] {
        broken("the peer moved a ring index past its ring");
        return 0;
    }
    const uint16_t n = std::min(ready, max);
    uint16_t got = 0;
    for (uint16_t k = 0; k < n; ++k) {
        const uint16_t slot = (r.cursor + k) & r.mask;
        Desc& d = r.desc[slot];
        const uint16_t flags = __atomic_load_n(&d.flags, __ATOMIC_RELAXED);
        const uint32_t length = __atomic_load_n(&d.length, __ATOMIC_RELAXED);
        // A frame longer than a buffer comes chained: its slots are all skipped, counted once.
        const bool continues = r.in_chain;
        r.in_chain = (flags & kDescNext) != 0;
        if (continues) [[unlikely]] {
            continue;
        }
        const uint8_t* frame;
        if (options_.listen) {
            frame = region_bytes(__atomic_load_n(&d.region, __ATOMIC_RELAXED),
                                 __atomic_load_n(&d.offset, __ATOMIC_RELAXED), length);
        } else {
            // Our own buffer, wherever the descriptor says it is now.
            frame = length <= r.stride ? r.buffers + uint64_t{slot} * r.stride : nullptr;
        }
        if (frame == nullptr || r.in_chain) [[unlikely]] {
            ++bad_entries_;
            continue;
        }
        frames[got] = frame;
        lens[got] = length;
        ++got;
    }
    r.cursor = static_cast<uint16_t>(r.cursor + n);
    return got;
}

void MemifNic::rx_release(uint16_t q) {
    if (q >= rx_.size()) [[unlikely]] {
        return;
    }
    Ring& r = *rx_[q];
    if (options_.listen) {
        __atomic_store_n(&r.header->tail, r.cursor, __ATOMIC_RELEASE);
        return;
    }
    // Each buffer goes back whole, to the slot it belongs to.
    const auto last = static_cast<uint16_t>(r.cursor + r.size);
    if (r.refill == last) {
        return;
    }
    for (; r.refill != last; ++r.refill) {
        const uint16_t slot = r.refill & r.mask;
        r.desc[slot] = r.own_desc(slot, r.stride);
    }
    __atomic_store_n(&r.header->head, r.refill, __ATOMIC_RELEASE);
}

uint16_t MemifNic::tx_reserve(uint16_t want, uint8_t** frames, uint16_t least) {
    if (tx_.empty() || broken_ != nullptr) [[unlikely]] {
        return 0;
    }
    Ring& r = *tx_[0];
    r.taken = 0;
    uint16_t room;
    if (options_.listen) {
        // The client hands out empty buffers at head.
        room = static_cast<uint16_t>(r.load_head() - r.cursor);
    } else {
        room = static_cast<uint16_t>(r.size - static_cast<uint16_t>(r.cursor - r.load_tail()));
    }
    if (room > r.size) [[unlikely]] {
        broken("the peer moved a ring index past its ring");
        return 0;
    }
    if (room < std::min<uint16_t>(least, r.size / 2)) {
        return 0;
    }
    const uint16_t n = std::min(want, room);
    for (uint16_t k = 0; k < n; ++k) {
        const uint16_t slot = (r.cursor + k) & r.mask;
        if (!options_.listen) {
            frames[k] = r.buffers + uint64_t{slot} * r.stride;
            continue;
        }
        // The client's buffer: where its descriptor says, if a whole frame fits there.
        Desc& d = r.desc[slot];
        const uint32_t capacity = __atomic_load_n(&d.length, __ATOMIC_RELAXED);
        uint8_t* frame =
            region_bytes(__atomic_load_n(&d.region, __ATOMIC_RELAXED),
                         __atomic_load_n(&d.offset, __ATOMIC_RELAXED), options_.frame_room);
        if (frame == nullptr || capacity < options_.frame_room) [[unlikely]] {
            ++bad_entries_;
            broken(frame == nullptr ? "the memif client gave a buffer outside its regions"
                                    : "the memif client's buffers are smaller than the largest "
                                      "frame (give it bigger ones: DPDK net_memif's bsize=)");
            r.taken = k;
            return k;
        }
        frames[k] = frame;
    }
    r.taken = n;
    return n;
}

void MemifNic::tx_commit(uint16_t n, const uint16_t* lens, uint16_t len) {
    if (tx_.empty()) [[unlikely]] {
        return;
    }
    Ring& r = *tx_[0];
    n = std::min(n, r.taken);
    r.taken = 0;
    if (n == 0) {
        return;
    }
    for (uint16_t k = 0; k < n; ++k) {
        const uint16_t slot = (r.cursor + k) & r.mask;
        // Never past the buffer (the caller keeps to it; this is the last word).
        const uint32_t length =
            std::min<uint32_t>(lens != nullptr ? lens[k] : len, options_.frame_room);
        if (options_.listen) {
            __atomic_store_n(&r.desc[slot].flags, uint16_t{0}, __ATOMIC_RELAXED);
            __atomic_store_n(&r.desc[slot].length, length, __ATOMIC_RELAXED);
        } else {
            r.desc[slot] = r.own_desc(slot, length);
        }
    }
    r.cursor = static_cast<uint16_t>(r.cursor + n);
    // Client: frames are produced at head; server: at tail.
    __atomic_store_n(options_.listen ? &r.header->tail : &r.header->head, r.cursor,
                     __ATOMIC_RELEASE);
    // A peer that sleeps until told (it did not mask interrupts on this ring) is told.
    if ((__atomic_load_n(&r.header->flags, __ATOMIC_RELAXED) & kRingMaskInterrupt) == 0) {
        const uint64_t one = 1;
        (void)!::write(r.interrupt.get(), &one, sizeof one);
        ++kicks_;
    }
}

}  // namespace conduit::gen
