// conduit-gen's own memif NIC (tools/gen/memif): a server and a client of its own in
// one process, and the test itself playing a peer that breaks the protocol or writes
// what it should not into the shared rings (it speaks the control channel from the
// protocol's layout, and maps the same memory).
#include "tools/gen/memif.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace {

using conduit::gen::MemifNic;
using conduit::gen::MemifOptions;
using conduit::vmm::UniqueFd;
using namespace std::chrono_literals;

std::string socket_name() {
    static int n = 0;
    return "conduit-memif-test-" + std::to_string(getpid()) + "-" + std::to_string(++n);
}

MemifOptions options(const std::string& name, const std::string& socket, bool listen) {
    MemifOptions o;
    o.name = name;
    o.socket = socket;
    o.listen = listen;
    o.log2_ring_size = 3;  // 8 descriptors
    o.frame_room = 2048;
    return o;
}

// Connects both ends (each waits for the other, so one on a thread of its own).
void connect_pair(MemifNic& server, MemifNic& client) {
    auto served = std::async(std::launch::async, [&] { server.connect(5s); });
    client.connect(5s);
    served.get();
}

std::vector<uint8_t> frame_of(uint32_t len, uint8_t seed) {
    std::vector<uint8_t> f(len);
    for (uint32_t i = 0; i < len; ++i) {
        f[i] = static_cast<uint8_t>(seed + i);
    }
    return f;
}

// Sends `frames` from one end; the other receives them all, byte for byte.
void pass(MemifNic& from, MemifNic& to, const std::vector<std::vector<uint8_t>>& frames) {
    std::array<uint8_t*, 64> bufs{};
    const auto n = static_cast<uint16_t>(frames.size());
    ASSERT_EQ(from.tx_reserve(n, bufs.data()), n);
    std::vector<uint16_t> lens;
    for (uint16_t k = 0; k < n; ++k) {
        std::memcpy(bufs[k], frames[k].data(), frames[k].size());
        lens.push_back(static_cast<uint16_t>(frames[k].size()));
    }
    from.tx_commit(n, lens.data(), 0);
    std::array<const uint8_t*, 64> got{};
    std::array<uint32_t, 64> got_lens{};
    ASSERT_EQ(to.rx_poll(0, got.data(), got_lens.data(), 64), n);
    for (uint16_t k = 0; k < n; ++k) {
        ASSERT_EQ(got_lens[k], frames[k].size());
        EXPECT_EQ(std::memcmp(got[k], frames[k].data(), got_lens[k]), 0) << "frame " << k;
    }
    to.rx_release(0);
}

TEST(Memif, FramesGoBothWaysAndRingsWrapWithoutInterrupts) {
    const std::string sock = socket_name();
    MemifNic server(options("s", sock, true));
    MemifNic client(options("c", sock, false));
    connect_pair(server, client);
    ASSERT_TRUE(server.alive());
    ASSERT_TRUE(client.alive());
    // Many times round the 8-slot rings, each way, lengths 60 to 1518.
    for (int round = 0; round < 20; ++round) {
        std::vector<std::vector<uint8_t>> frames;
        for (int k = 0; k < 5; ++k) {
            frames.push_back(frame_of(static_cast<uint32_t>(60 + (round * 97 + k * 331) % 1459),
                                      static_cast<uint8_t>(round + k)));
        }
        pass(client, server, frames);
        pass(server, client, frames);
    }
    EXPECT_EQ(server.bad_entries(), 0u);
    EXPECT_EQ(client.bad_entries(), 0u);
    // Each end masks interrupts on the rings it polls: neither sends any.
    EXPECT_EQ(server.kicks(), 0u);
    EXPECT_EQ(client.kicks(), 0u);
}

TEST(Memif, AFullRingTakesNoMoreUntilThePeerReleases) {
    const std::string sock = socket_name();
    MemifNic server(options("s", sock, true));
    MemifNic client(options("c", sock, false));
    connect_pair(server, client);
    std::array<uint8_t*, 16> bufs{};
    ASSERT_EQ(client.tx_reserve(16, bufs.data()), 8);
    client.tx_commit(8, nullptr, 64);
    EXPECT_EQ(client.tx_reserve(16, bufs.data()), 0);
    std::array<const uint8_t*, 16> got{};
    std::array<uint32_t, 16> lens{};
    ASSERT_EQ(server.rx_poll(0, got.data(), lens.data(), 3), 3);
    EXPECT_EQ(client.tx_reserve(16, bufs.data()), 0) << "read but not released";
    server.rx_release(0);
    EXPECT_EQ(client.tx_reserve(16, bufs.data()), 3);
    // Reserved and not committed stay free; `least` holds back a short reserve.
    client.tx_commit(0, nullptr, 64);
    EXPECT_EQ(client.tx_reserve(16, bufs.data(), 4), 0);
    // The server's transmit ring: the client handed out all 8 receive buffers.
    ASSERT_EQ(server.tx_reserve(16, bufs.data()), 8);
    server.tx_commit(8, nullptr, 100);
    EXPECT_EQ(server.tx_reserve(16, bufs.data()), 0);
}

// Each tries again until its time is up (a switch may refuse a client while it sets its
// port up), then says what the last try met.
TEST(Memif, TheServerRefusesAClientByIdAndBothSayWhy) {
    const std::string sock = socket_name();
    MemifOptions so = options("s", sock, true);
    so.id = 5;
    MemifNic server(so);
    MemifNic client(options("c", sock, false));
    auto served = std::async(std::launch::async, [&] { server.connect(1s); });
    try {
        client.connect(1s);
        FAIL() << "connected to a server of another id";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("port c: the peer disconnected: ID not found"),
                  std::string::npos)
            << e.what();
    }
    try {
        served.get();
        FAIL() << "the server took a client of another id";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("port s: refused the memif client: ID not found"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(server.running());
}

TEST(Memif, NobodyThereIsSaidClearly) {
    const std::string sock = socket_name();
    MemifNic client(options("c", sock, false));
    try {
        client.connect(100ms);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no memif server listening on " + sock),
                  std::string::npos)
            << e.what();
    }
    MemifNic server(options("s", sock, true));
    try {
        server.connect(100ms);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("no memif client connected to " + sock),
                  std::string::npos)
            << e.what();
    }
}

TEST(Memif, APeerThatLeavesEndsTheSessionAndAnotherCanConnect) {
    const std::string sock = socket_name();
    MemifNic server(options("s", sock, true));
    {
        MemifNic client(options("c", sock, false));
        connect_pair(server, client);
    }  // the client says goodbye
    EXPECT_FALSE(server.alive());
    EXPECT_NE(server.error().find("the peer disconnected"), std::string::npos) << server.error();
    MemifNic again(options("c2", sock, false));
    connect_pair(server, again);
    pass(again, server, {frame_of(64, 1)});
    pass(server, again, {frame_of(64, 2)});
}

TEST(Memif, AClientWhoseServerLeftConnectsAgainOnFreshMemory) {
    const std::string sock = socket_name();
    MemifNic client(options("c", sock, false));
    std::array<uint8_t*, 8> first{};
    {
        MemifNic server(options("s", sock, true));
        connect_pair(server, client);
        ASSERT_EQ(client.tx_reserve(8, first.data()), 8);
        client.tx_commit(0, nullptr, 64);
    }  // the server says goodbye
    EXPECT_FALSE(client.alive());
    EXPECT_NE(client.error().find("the peer disconnected"), std::string::npos) << client.error();
    MemifNic server(options("s2", sock, true));
    connect_pair(server, client);
    std::array<uint8_t*, 8> second{};
    ASSERT_EQ(client.tx_reserve(8, second.data()), 8);
    client.tx_commit(0, nullptr, 64);
    EXPECT_NE(first[0], second[0]) << "the old server's region reused";
    pass(client, server, {frame_of(64, 3), frame_of(1000, 4)});
    pass(server, client, {frame_of(1518, 5)});
}

// --- the test as a peer ---

// The control channel's messages as the protocol lays them out (offsets include the
// 16-bit type).
struct Msg {
    std::array<uint8_t, 128> b{};
    template <typename T>
    void put(std::size_t at, T v) {
        std::memcpy(b.data() + at, &v, sizeof v);
    }
    template <typename T>
    T get(std::size_t at) const {
        T v;
        std::memcpy(&v, b.data() + at, sizeof v);
        return v;
    }
    uint16_t type() const { return get<uint16_t>(0); }
    std::string text(std::size_t at) const { return reinterpret_cast<const char*>(b.data() + at); }
};
enum : uint16_t {
    kAck = 1,
    kHello,
    kInit,
    kAddRegion,
    kAddRing,
    kConnect,
    kConnected,
    kDisconnect
};

Msg msg(uint16_t type) {
    Msg m;
    m.put<uint16_t>(0, type);
    return m;
}

void send_msg(int fd, const Msg& m, int pass_fd = -1) {
    iovec iov{const_cast<uint8_t*>(m.b.data()), m.b.size()};
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
    ASSERT_EQ(sendmsg(fd, &mh, MSG_NOSIGNAL), 128);
}

Msg recv_msg(int fd, UniqueFd* passed = nullptr) {
    Msg m;
    iovec iov{m.b.data(), m.b.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1 || recvmsg(fd, &mh, 0) != 128) {
        ADD_FAILURE() << "no message";
        return m;
    }
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    if (c != nullptr && passed != nullptr) {
        int one;
        std::memcpy(&one, CMSG_DATA(c), sizeof one);
        passed->reset(one);
    }
    return m;
}

sockaddr_un abstract_address(const std::string& name, socklen_t* len) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    return a;
}

// The ring header: cookie, flags, head on one cache line, tail on the next, then
// 16-byte descriptors {flags, region, length, offset, metadata}.
struct RingView {
    uint8_t* at;
    uint16_t& head() const { return *reinterpret_cast<uint16_t*>(at + 6); }
    uint16_t& tail() const { return *reinterpret_cast<uint16_t*>(at + 64); }
    uint32_t* desc(uint16_t slot) const {
        return reinterpret_cast<uint32_t*>(at + 128 + 16 * slot);
    }
    void set_desc(uint16_t slot, uint16_t flags, uint16_t region, uint32_t length,
                  uint32_t offset) const {
        uint8_t* d = at + 128 + 16 * slot;
        std::memcpy(d, &flags, 2);
        std::memcpy(d + 2, &region, 2);
        std::memcpy(d + 4, &length, 4);
        std::memcpy(d + 8, &offset, 4);
    }
};

// The test as a memif client: one region it can seal or not, one ring each way of 8.
class RawClient {
  public:
    static constexpr uint32_t kRegionBytes = 1 << 16;
    static constexpr uint32_t kC2s = 0, kS2c = 1024, kBuffers = 4096;

    explicit RawClient(const std::string& sock, bool seal = true) {
        region_.reset(memfd_create("test memif", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        EXPECT_EQ(ftruncate(region_.get(), kRegionBytes), 0);
        if (seal) {
            EXPECT_EQ(fcntl(region_.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
        }
        base_ = static_cast<uint8_t*>(
            mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, region_.get(), 0));
        for (uint32_t r : {kC2s, kS2c}) {
            std::memcpy(base_ + r, &kCookie, 4);
        }
        channel_.reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        socklen_t len;
        const sockaddr_un a = abstract_address(sock, &len);
        for (int tries = 0; tries < 100; ++tries) {
            if (connect(channel_.get(), reinterpret_cast<const sockaddr*>(&a), len) == 0) {
                break;
            }
            usleep(10000);
        }
    }
    ~RawClient() { munmap(base_, kRegionBytes); }

    int fd() const { return channel_.get(); }
    RingView ring(uint32_t offset) const { return {base_ + offset}; }
    uint8_t* bytes(uint32_t offset) const { return base_ + offset; }

    // HELLO, INIT, the region: each answered as expected.
    void start() {
        EXPECT_EQ(recv_msg(fd()).type(), kHello);
        Msg init = msg(kInit);
        init.put<uint16_t>(2, 0x0200);
        send_msg(fd(), init);
        EXPECT_EQ(recv_msg(fd()).type(), kAck);
    }
    // Returns the answer's type (an ACK or a DISCONNECT with its reason in *why).
    uint16_t add_region(std::string* why) {
        Msg m = msg(kAddRegion);
        m.put<uint16_t>(2, 0);
        m.put<uint64_t>(4, kRegionBytes);
        send_msg(fd(), m, region_.get());
        const Msg answer = recv_msg(fd());
        *why = answer.text(6);
        return answer.type();
    }
    uint16_t add_ring(bool c2s, uint32_t offset, std::string* why) {
        Msg m = msg(kAddRing);
        m.put<uint16_t>(2, c2s ? 1 : 0);
        m.put<uint16_t>(4, 0);  // index
        m.put<uint16_t>(6, 0);  // region
        m.put<uint32_t>(8, offset);
        m.put<uint8_t>(12, 3);  // 8 descriptors
        UniqueFd interrupt(eventfd(0, EFD_CLOEXEC));
        send_msg(fd(), m, interrupt.get());
        const Msg answer = recv_msg(fd());
        *why = answer.text(6);
        return answer.type();
    }
    void finish() {
        std::string why;
        ASSERT_EQ(add_region(&why), kAck) << why;
        ASSERT_EQ(add_ring(true, kC2s, &why), kAck) << why;
        ASSERT_EQ(add_ring(false, kS2c, &why), kAck) << why;
        send_msg(fd(), msg(kConnect));
        ASSERT_EQ(recv_msg(fd()).type(), kConnected);
    }

  private:
    static constexpr uint32_t kCookie = 0x3E31F20;
    UniqueFd region_, channel_;
    uint8_t* base_ = nullptr;
};

TEST(Memif, TheServerRefusesARegionTheClientCouldShrink) {
    const std::string sock = socket_name();
    MemifNic server(options("s", sock, true));
    auto served = std::async(std::launch::async, [&] { server.connect(1s); });
    RawClient client(sock, /*seal=*/false);
    client.start();
    std::string why;
    EXPECT_EQ(client.add_region(&why), kDisconnect);
    EXPECT_NE(why.find("not sealed against shrinking"), std::string::npos) << why;
    EXPECT_THROW(served.get(), std::runtime_error);
}

TEST(Memif, TheServerRefusesARingOutsideTheRegion) {
    const std::string sock = socket_name();
    MemifNic server(options("s", sock, true));
    auto served = std::async(std::launch::async, [&] { server.connect(1s); });
    RawClient client(sock);
    client.start();
    std::string why;
    ASSERT_EQ(client.add_region(&why), kAck) << why;
    EXPECT_EQ(client.add_ring(true, RawClient::kRegionBytes - 64, &why), kDisconnect);
    EXPECT_NE(why.find("does not lie inside a region"), std::string::npos) << why;
    EXPECT_THROW(served.get(), std::runtime_error);
}

TEST(Memif, TheServerSkipsAndCountsDescriptorsOutsideTheRegionAndBadIndexesEndTheSession) {
    const std::string sock = socket_name();
    MemifNic server(options("s", sock, true));
    auto served = std::async(std::launch::async, [&] { server.connect(5s); });
    RawClient client(sock);
    client.start();
    client.finish();
    served.get();
    const RingView c2s = client.ring(RawClient::kC2s);
    // Slot 0: a good frame; 1: past the region's end; 2: a chained frame (two slots);
    // 4: a good frame.
    std::memset(client.bytes(RawClient::kBuffers), 0xab, 64);
    c2s.set_desc(0, 0, 0, 64, RawClient::kBuffers);
    c2s.set_desc(1, 0, 0, 64, RawClient::kRegionBytes - 32);
    c2s.set_desc(2, 1, 0, 64, RawClient::kBuffers);
    c2s.set_desc(3, 0, 0, 64, RawClient::kBuffers);
    c2s.set_desc(4, 0, 7, 64, RawClient::kBuffers);  // region 7: none
    c2s.set_desc(5, 0, 0, 60, RawClient::kBuffers);
    __atomic_store_n(&c2s.head(), uint16_t{6}, __ATOMIC_RELEASE);
    std::array<const uint8_t*, 8> got{};
    std::array<uint32_t, 8> lens{};
    ASSERT_EQ(server.rx_poll(0, got.data(), lens.data(), 8), 2);
    EXPECT_EQ(lens[0], 64u);
    EXPECT_EQ(got[0][0], 0xab);
    EXPECT_EQ(lens[1], 60u);
    EXPECT_EQ(server.bad_entries(), 3u);  // outside, chained (counted once), no region
    server.rx_release(0);
    EXPECT_EQ(__atomic_load_n(&c2s.tail(), __ATOMIC_ACQUIRE), 6);
    // A head 100 slots on in an 8-slot ring.
    __atomic_store_n(&c2s.head(), uint16_t{106}, __ATOMIC_RELEASE);
    EXPECT_EQ(server.rx_poll(0, got.data(), lens.data(), 8), 0);
    EXPECT_FALSE(server.alive());
    EXPECT_NE(server.error().find("ring index past its ring"), std::string::npos) << server.error();
    // And the client is told.
    EXPECT_EQ(recv_msg(client.fd()).type(), kDisconnect);
}

TEST(Memif, TheServerWritesOnlyIntoBuffersInsideTheRegionBigEnoughForAFrame) {
    const std::string sock = socket_name();
    MemifOptions so = options("s", sock, true);
    so.frame_room = 1600;
    MemifNic server(so);
    auto served = std::async(std::launch::async, [&] { server.connect(5s); });
    RawClient client(sock);
    client.start();
    client.finish();
    served.get();
    const RingView s2c = client.ring(RawClient::kS2c);
    s2c.set_desc(0, 0, 0, 2048, RawClient::kBuffers);
    s2c.set_desc(1, 0, 0, 1024, RawClient::kBuffers + 2048);  // smaller than a frame
    __atomic_store_n(&s2c.head(), uint16_t{2}, __ATOMIC_RELEASE);
    std::array<uint8_t*, 8> bufs{};
    ASSERT_EQ(server.tx_reserve(8, bufs.data()), 1);
    ASSERT_NE(bufs[0], nullptr);
    std::memset(bufs[0], 0x5a, 100);
    server.tx_commit(1, nullptr, 100);
    EXPECT_EQ(__atomic_load_n(&s2c.tail(), __ATOMIC_ACQUIRE), 1);
    EXPECT_EQ(s2c.desc(0)[1], 100u);  // the length written
    EXPECT_EQ(client.bytes(RawClient::kBuffers)[99], 0x5a);
    EXPECT_EQ(server.bad_entries(), 1u);
    EXPECT_FALSE(server.alive());
    EXPECT_NE(server.error().find("smaller than the largest frame"), std::string::npos)
        << server.error();
}

// The test as a memif server, for a client of ours: it maps the client's region and
// writes the server's side of the rings.
class RawServer {
  public:
    explicit RawServer(const std::string& sock) {
        listener_.reset(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        socklen_t len;
        const sockaddr_un a = abstract_address(sock, &len);
        EXPECT_EQ(bind(listener_.get(), reinterpret_cast<const sockaddr*>(&a), len), 0);
        EXPECT_EQ(listen(listener_.get(), 1), 0);
    }
    ~RawServer() {
        if (base_ != nullptr) {
            munmap(base_, size_);
        }
    }
    // Accepts and answers a whole handshake; remembers where the rings are.
    void serve() {
        channel_.reset(accept(listener_.get(), nullptr, nullptr));
        Msg hello = msg(kHello);
        hello.put<uint16_t>(34, 0x0200);
        hello.put<uint16_t>(36, 0x0200);
        hello.put<uint16_t>(40, 7);
        hello.put<uint16_t>(42, 7);
        hello.put<uint8_t>(44, 14);
        send_msg(channel_.get(), hello);
        for (;;) {
            UniqueFd passed;
            const Msg m = recv_msg(channel_.get(), &passed);
            if (m.type() == kAddRegion) {
                size_ = m.get<uint64_t>(4);
                region_ = std::move(passed);
                base_ = static_cast<uint8_t*>(
                    mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, region_.get(), 0));
            } else if (m.type() == kAddRing) {
                (m.get<uint16_t>(2) & 1 ? c2s_ : s2c_) = m.get<uint32_t>(8);
            } else if (m.type() == kConnect) {
                send_msg(channel_.get(), msg(kConnected));
                return;
            } else if (m.type() != kInit) {
                ADD_FAILURE() << "message " << m.type();
                return;
            }
            send_msg(channel_.get(), msg(kAck));
        }
    }
    RingView c2s() const { return {base_ + c2s_}; }
    uint8_t* bytes(uint32_t offset) const { return base_ + offset; }
    RingView s2c() const { return {base_ + s2c_}; }
    int fd() const { return channel_.get(); }

  private:
    UniqueFd listener_, channel_, region_;
    uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    uint32_t c2s_ = 0, s2c_ = 0;
};

TEST(Memif, TheClientReadsItsOwnBuffersWhateverTheServerWritesAndChecksLengths) {
    const std::string sock = socket_name();
    RawServer server(sock);
    MemifNic client(options("c", sock, false));
    auto serving = std::async(std::launch::async, [&] { server.serve(); });
    client.connect(5s);
    serving.get();
    const RingView s2c = server.s2c();
    // The client handed all 8 receive buffers out, each 2048 bytes.
    EXPECT_EQ(__atomic_load_n(&s2c.head(), __ATOMIC_ACQUIRE), 8);
    EXPECT_EQ(s2c.desc(0)[1], 2048u);
    const uint32_t own_offset = s2c.desc(0)[2];
    // Slot 0: a frame, but the server pointed the descriptor elsewhere (the client still
    // reads slot 0's own buffer); slot 1: longer than a buffer.
    s2c.desc(0)[1] = 64;
    s2c.desc(0)[2] = 12;
    server.bytes(own_offset)[0] = 0x11;
    server.bytes(12)[0] = 0x22;
    s2c.desc(1)[1] = 4096;
    __atomic_store_n(&s2c.tail(), uint16_t{2}, __ATOMIC_RELEASE);
    std::array<const uint8_t*, 8> got{};
    std::array<uint32_t, 8> lens{};
    ASSERT_EQ(client.rx_poll(0, got.data(), lens.data(), 8), 1);
    EXPECT_EQ(lens[0], 64u);
    EXPECT_EQ(got[0][0], 0x11) << "read where the server pointed, not its own buffer";
    EXPECT_EQ(client.bad_entries(), 1u);
    client.rx_release(0);
    // Both buffers back, whole, at their own offsets.
    EXPECT_EQ(__atomic_load_n(&s2c.head(), __ATOMIC_ACQUIRE), 10);
    EXPECT_EQ(s2c.desc(0)[1], 2048u);
    EXPECT_EQ(s2c.desc(0)[2], own_offset);
    EXPECT_EQ(s2c.desc(1)[1], 2048u);
    // The client's frames: in its transmit ring, at head.
    std::array<uint8_t*, 8> bufs{};
    ASSERT_EQ(client.tx_reserve(8, bufs.data()), 8);
    client.tx_commit(2, nullptr, 77);
    EXPECT_EQ(__atomic_load_n(&server.c2s().head(), __ATOMIC_ACQUIRE), 2);
    EXPECT_EQ(server.c2s().desc(1)[1], 77u);
    // A tail the server moved past the ring ends the session, and says so to it.
    __atomic_store_n(&s2c.tail(), uint16_t{2 + 50}, __ATOMIC_RELEASE);
    EXPECT_EQ(client.rx_poll(0, got.data(), lens.data(), 8), 0);
    EXPECT_FALSE(client.alive());
    EXPECT_NE(client.error().find("ring index past its ring"), std::string::npos) << client.error();
    const Msg bye = recv_msg(server.fd());
    EXPECT_EQ(bye.type(), kDisconnect);
    EXPECT_NE(bye.text(6).find("ring index past its ring"), std::string::npos) << bye.text(6);
}

}  // namespace
