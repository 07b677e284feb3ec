// The vhost-user channel on a real socketpair: fds travel with requests, replies are
// reassembled from any split, and every way a backend can break a message (EOF, silence,
// oversize, stray or surplus fds) ends in a precise error with no fd left open.
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include "tests/unit/vhost_user_fake_backend.h"
#include "vmm/vhost_user/channel.h"

using namespace std::chrono_literals;
using namespace vhost_test;

namespace {

constexpr uint32_t kGetFeatures = 1;

std::vector<uint8_t> get_features_reply(uint64_t v) {
    return BackendSocket::message(kGetFeatures, kReplyFlags,
                                  std::span(reinterpret_cast<const uint8_t*>(&v), 8));
}

// A pipe whose write end we hand to the backend; the read end tells whether every copy
// of the write end is closed (POLLHUP).
struct Pipe {
    UniqueFd read, write;
    Pipe() {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) {
            throw std::runtime_error("pipe2");
        }
        read = UniqueFd(p[0]);
        write = UniqueFd(p[1]);
    }
    bool all_writers_closed() const {
        pollfd p{read.get(), POLLIN, 0};
        return ::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) != 0;
    }
};

template <typename F>
vu::Error expect_error(F&& f, vu::Error::Kind kind) {
    try {
        f();
    } catch (const vu::Error& e) {
        EXPECT_EQ(vu::kind_name(e.kind()), std::string(vu::kind_name(kind))) << e.what();
        return e;
    }
    ADD_FAILURE() << "no error";
    return vu::Error(kind, "");
}

}  // namespace

TEST(VhostUserChannel, SendsFdsWithTheMessage) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    BackendSocket be(std::move(back));
    UniqueFd mem(::memfd_create("guest", MFD_CLOEXEC));
    ASSERT_TRUE(mem.valid());
    const vu::MemoryRegionDesc region{0, 4096, 0x1000, 0};
    const int fd = mem.get();
    ch.send(vu::encode_mem_table(std::span(&region, 1), std::span(&fd, 1)), 1s);
    auto got = be.read();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->request, 5u);
    EXPECT_EQ(got->payload.size(), 264u);
    ASSERT_EQ(got->fds.size(), 1u);
    EXPECT_EQ(fd_identity(got->fds[0].get()), fd_identity(mem.get()));
}

TEST(VhostUserChannel, ReassemblesAReplySplitAnywhere) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    std::thread backend([sock = std::move(back)]() mutable {
        BackendSocket be(std::move(sock));
        const auto bytes = get_features_reply(0x1'2345'6789ull);
        // header in three pieces, payload in two
        const size_t cuts[] = {0, 3, 7, 12, 15, 20};
        for (size_t i = 0; i + 1 < std::size(cuts); ++i) {
            be.write_bytes(std::span(bytes).subspan(cuts[i], cuts[i + 1] - cuts[i]));
            std::this_thread::sleep_for(5ms);
        }
    });
    const auto msg = ch.receive(vu::Request::GetFeatures, 5s);
    backend.join();
    EXPECT_EQ(vu::decode_u64_reply(msg, vu::Request::GetFeatures), 0x1'2345'6789ull);
}

namespace {
std::atomic<int> g_signals{0};
void count_signal(int) {
    g_signals.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

TEST(VhostUserChannel, SignalsDuringTheWaitAreRetried) {
    struct sigaction sa {};
    sa.sa_handler = count_signal;  // no SA_RESTART: poll and recvmsg see EINTR
    sigemptyset(&sa.sa_mask);
    struct sigaction old {};
    ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);

    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    const pthread_t receiver = ::pthread_self();
    std::atomic<bool> done{false};
    g_signals = 0;
    std::thread backend([&, sock = std::move(back)]() mutable {
        BackendSocket be(std::move(sock));
        // Interrupt the receiver many times before the reply comes, in two halves.
        const auto bytes = get_features_reply(42);
        for (int i = 0; i < 20; ++i) {
            ::pthread_kill(receiver, SIGUSR1);
            std::this_thread::sleep_for(2ms);
        }
        be.write_bytes(std::span(bytes).first(6));
        for (int i = 0; i < 20; ++i) {
            ::pthread_kill(receiver, SIGUSR1);
            std::this_thread::sleep_for(2ms);
        }
        be.write_bytes(std::span(bytes).subspan(6));
        while (!done) {
            std::this_thread::sleep_for(1ms);
        }
    });
    const auto msg = ch.receive(vu::Request::GetFeatures, 10s);
    done = true;
    backend.join();
    ::sigaction(SIGUSR1, &old, nullptr);
    EXPECT_EQ(vu::decode_u64_reply(msg, vu::Request::GetFeatures), 42u);
    EXPECT_GT(g_signals.load(), 0);
}

TEST(VhostUserChannel, EofBeforeTheReply) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    back.reset();
    const auto e = expect_error([&] { ch.receive(vu::Request::GetFeatures, 1s); },
                                vu::Error::Kind::Disconnected);
    EXPECT_STREQ(e.what(), "GET_FEATURES reply: the backend closed the connection before replying");
}

TEST(VhostUserChannel, TruncatedHeaderThenEof) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    {
        BackendSocket be(std::move(back));
        be.write_bytes(std::span<const uint8_t>(get_features_reply(1)).first(5));
    }
    const auto e = expect_error([&] { ch.receive(vu::Request::GetFeatures, 1s); },
                                vu::Error::Kind::Disconnected);
    EXPECT_STREQ(e.what(),
                 "GET_FEATURES reply: the backend closed the connection after 5 of 12 header "
                 "bytes");
}

TEST(VhostUserChannel, TruncatedPayloadThenEof) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    {
        BackendSocket be(std::move(back));
        be.write_bytes(std::span<const uint8_t>(get_features_reply(1)).first(15));
    }
    const auto e = expect_error([&] { ch.receive(vu::Request::GetFeatures, 1s); },
                                vu::Error::Kind::Disconnected);
    EXPECT_STREQ(e.what(),
                 "GET_FEATURES reply: the backend closed the connection after 3 of 8 payload "
                 "bytes");
}

TEST(VhostUserChannel, OversizedPayloadIsNeverRead) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    BackendSocket be(std::move(back));
    const std::vector<uint8_t> big(100000, 0xab);
    std::thread writer([&] {
        try {
            be.reply(kGetFeatures, big);
        } catch (const std::exception&) {
            // the frontend may close before everything is written
        }
    });
    const auto e =
        expect_error([&] { ch.receive(vu::Request::GetFeatures, 1s); }, vu::Error::Kind::Protocol);
    EXPECT_STREQ(e.what(),
                 "GET_FEATURES reply: payload of 100000 bytes exceeds the protocol maximum of "
                 "264");
    // Nothing after the header was consumed: the rest is still waiting.
    EXPECT_EQ(ch.poll_idle(), vu::Channel::IdleState::Unsolicited);
    ch.close();
    writer.join();
}

TEST(VhostUserChannel, FdsAttachedToAReplyAreOwnedAndClosed) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    Pipe a, b;
    {
        BackendSocket be(std::move(back));
        const auto bytes = get_features_reply(3);
        // One fd on the header, one on the payload: both must be collected.
        const int fa = a.write.get();
        const int fb = b.write.get();
        be.write_bytes(std::span(bytes).first(12), std::span(&fa, 1));
        be.write_bytes(std::span(bytes).subspan(12), std::span(&fb, 1));
    }
    a.write.reset();
    b.write.reset();
    EXPECT_FALSE(a.all_writers_closed());  // the channel's copies are in flight / held
    {
        const auto msg = ch.receive(vu::Request::GetFeatures, 1s);
        EXPECT_EQ(msg.fds.size(), 2u);
        const auto e = expect_error([&] { vu::decode_u64_reply(msg, vu::Request::GetFeatures); },
                                    vu::Error::Kind::Protocol);
        EXPECT_STREQ(e.what(), "GET_FEATURES reply: 2 file descriptors attached, expected none");
    }
    EXPECT_TRUE(a.all_writers_closed());
    EXPECT_TRUE(b.all_writers_closed());
}

TEST(VhostUserChannel, MoreFdsThanAMessageMayCarryAreAllClosed) {
    const int before = open_fd_count();
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    std::vector<Pipe> pipes(12);
    {
        BackendSocket be(std::move(back));
        std::vector<int> fds;
        for (auto& p : pipes) {
            fds.push_back(p.write.get());
        }
        be.write_bytes(get_features_reply(0), fds);
    }
    for (auto& p : pipes) {
        p.write.reset();
    }
    const auto e =
        expect_error([&] { ch.receive(vu::Request::GetFeatures, 1s); }, vu::Error::Kind::Protocol);
    EXPECT_STREQ(e.what(),
                 "GET_FEATURES reply: the backend attached more file descriptors than 8 "
                 "(control data truncated)");
    for (auto& p : pipes) {
        EXPECT_TRUE(p.all_writers_closed());
    }
    ch.close();
    pipes.clear();
    EXPECT_EQ(open_fd_count(), before);
}

TEST(VhostUserChannel, SilenceIsATimeout) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    const auto e =
        expect_error([&] { ch.receive(vu::Request::GetFeatures, 50ms); }, vu::Error::Kind::Timeout);
    EXPECT_STREQ(e.what(),
                 "GET_FEATURES reply: no complete reply within 50 ms (0 of 12 header bytes)");
}

TEST(VhostUserChannel, HalfAReplyIsATimeout) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    BackendSocket be(std::move(back));
    be.write_bytes(std::span<const uint8_t>(get_features_reply(1)).first(16));
    const auto e =
        expect_error([&] { ch.receive(vu::Request::GetFeatures, 50ms); }, vu::Error::Kind::Timeout);
    EXPECT_STREQ(e.what(),
                 "GET_FEATURES reply: no complete reply within 50 ms (4 of 8 payload bytes)");
}

TEST(VhostUserChannel, SendToAGoneBackendIsDisconnected) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    back.reset();
    const auto e = expect_error([&] { ch.send(vu::encode(vu::Request::SetOwner), 1s); },
                                vu::Error::Kind::Disconnected);
    EXPECT_NE(std::string(e.what()).find("SET_OWNER: the backend closed the connection"),
              std::string::npos)
        << e.what();
}

TEST(VhostUserChannel, ABackendThatStopsReadingIsASendTimeout) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    const auto msg = vu::encode_u64(vu::Request::SetFeatures, 1);
    bool timed_out = false;
    for (int i = 0; i < 100000 && !timed_out; ++i) {
        try {
            ch.send(msg, 20ms);
        } catch (const vu::Error& e) {
            EXPECT_EQ(e.kind(), vu::Error::Kind::Timeout) << e.what();
            EXPECT_NE(std::string(e.what()).find("SET_FEATURES: the backend did not take"),
                      std::string::npos)
                << e.what();
            timed_out = true;
        }
    }
    EXPECT_TRUE(timed_out);
}

TEST(VhostUserChannel, IdleStates) {
    auto [front, back] = socket_pair();
    vu::Channel ch(std::move(front));
    BackendSocket be(std::move(back));
    EXPECT_EQ(ch.poll_idle(), vu::Channel::IdleState::Quiet);
    be.write_bytes(get_features_reply(0));
    EXPECT_EQ(ch.poll_idle(), vu::Channel::IdleState::Unsolicited);
    EXPECT_EQ(ch.poll_idle(), vu::Channel::IdleState::Unsolicited);  // peeked, not consumed
    be.close();
    auto [front2, back2] = socket_pair();
    vu::Channel ch2(std::move(front2));
    back2.reset();
    EXPECT_EQ(ch2.poll_idle(), vu::Channel::IdleState::Closed);
    ch2.close();
    EXPECT_EQ(ch2.poll_idle(), vu::Channel::IdleState::Closed);
    EXPECT_THROW(ch2.send(vu::encode(vu::Request::SetOwner), 1s), vu::Error);
}
