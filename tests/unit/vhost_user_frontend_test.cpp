// The vhost-user frontend against a fake backend thread that checks every request the
// way DPDK 22.11's vhost library does: the full handshake, and every way a backend can
// misbehave, each ending in a closed session with a precise error and no fd leaked.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <memory>
#include <optional>

#include "tests/unit/vhost_user_fake_backend.h"
#include "vmm/vhost_user/frontend.h"

using namespace std::chrono_literals;
using namespace vhost_test;
using vu::bit;

namespace {

constexpr uint64_t kVersion1 = bit(vu::virtio_bit::kVersion1);
constexpr uint64_t kMrgRxbuf = bit(vu::virtio_bit::kNetMrgRxbuf);
constexpr uint64_t kMtu = bit(vu::virtio_bit::kNetMtu);
constexpr uint64_t kMq = bit(vu::virtio_bit::kNetMq);
constexpr uint64_t kStatus = bit(vu::virtio_bit::kNetStatus);
constexpr uint32_t R(vu::Request r) {
    return static_cast<uint32_t>(r);
}

// Fails the test if the process has more fds open at the end than at the start.
struct FdLeakCheck {
    int before = open_fd_count();
    ~FdLeakCheck() { EXPECT_EQ(open_fd_count(), before) << "fds leaked"; }
};

// Guest memory and the eventfds a VMM would wire to KVM.
struct Guest {
    UniqueFd mem{::memfd_create("guest-ram", MFD_CLOEXEC)};
    UniqueFd kick[2] = {UniqueFd(::eventfd(0, EFD_CLOEXEC)), UniqueFd(::eventfd(0, EFD_CLOEXEC))};
    UniqueFd call[2] = {UniqueFd(::eventfd(0, EFD_CLOEXEC)), UniqueFd(::eventfd(0, EFD_CLOEXEC))};

    Guest() {
        if (::ftruncate(mem.get(), 4 << 20) != 0) {
            throw std::runtime_error("ftruncate");
        }
    }
    std::vector<vu::MemoryRegion> regions() const {
        return {{0x0, 2 << 20, 0x7f0000000000, 0, mem.get()},
                {0x100000000, 2 << 20, 0x7f0000200000, 2 << 20, mem.get()}};
    }
    std::vector<vu::VringSetup> vrings(uint16_t base0 = 0, uint16_t base1 = 0) const {
        return {{0, 256, 0x7f0000001000, 0x7f0000002000, 0x7f0000003000, base0, kick[0].get(),
                 call[0].get()},
                {1, 256, 0x7f0000005000, 0x7f0000006000, 0x7f0000007000, base1, kick[1].get(),
                 call[1].get()}};
    }
};

vu::FrontendOptions options(uint16_t mtu = 0, uint32_t pairs = 1,
                            std::chrono::milliseconds timeout = 2s) {
    vu::FrontendOptions o;
    o.name = "net0";
    o.reply_timeout = timeout;
    o.queue_pairs = pairs;
    o.mtu = mtu;
    return o;
}

// A frontend and a fake backend on the two ends of a socketpair. The frontend is
// destroyed first, so the backend thread sees EOF and ends.
struct Session {
    std::unique_ptr<FakeBackend> backend;
    std::optional<vu::Frontend> fe;

    explicit Session(BackendModel model, vu::FrontendOptions opts = options()) {
        auto [f, b] = socket_pair();
        backend = std::make_unique<FakeBackend>(std::move(b), std::move(model));
        fe.emplace(std::move(f), std::move(opts));
    }
    ~Session() { fe.reset(); }

    // Ends the session and waits for the backend: its log is then complete.
    FakeBackend& finish() {
        fe.reset();
        backend->join();
        EXPECT_EQ(backend->failure, "");
        EXPECT_TRUE(backend->violations.empty()) << backend->violations.front();
        return *backend;
    }
};

template <typename F>
std::string error_of(F&& f, vu::Error::Kind kind) {
    try {
        f();
    } catch (const vu::Error& e) {
        EXPECT_STREQ(vu::kind_name(e.kind()), vu::kind_name(kind)) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// A hook that handles `request` with `act` and leaves every other request to the model.
std::function<bool(BackendSocket&, RawMessage&)> on(
    vu::Request request, std::function<void(BackendSocket&, RawMessage&)> act) {
    return [request, act](BackendSocket& s, RawMessage& m) {
        if (m.request != R(request)) {
            return false;
        }
        act(s, m);
        return true;
    };
}

}  // namespace

TEST(VhostUserFrontend, FullHandshakeLikeDpdk) {
    FdLeakCheck leaks;
    Guest guest;
    Session s(BackendModel{}, options(9000));
    const uint64_t wanted = kVersion1 | kMrgRxbuf | kMtu | kMq | kStatus;
    const vu::BackendFeatures b = s.fe->negotiate(wanted);
    const BackendModel model;
    EXPECT_EQ(b.offered, model.features);
    EXPECT_EQ(b.usable, kVersion1 | kMrgRxbuf | kMtu | kMq);  // STATUS not offered
    EXPECT_EQ(b.protocol, bit(vu::protocol_bit::kReplyAck) | bit(vu::protocol_bit::kMq) |
                              bit(vu::protocol_bit::kNetMtu));
    EXPECT_EQ(b.max_queue_pairs, 1u);
    EXPECT_EQ(s.fe->state(), vu::Frontend::State::Negotiated);

    const uint64_t acked = kVersion1 | kMrgRxbuf | kMtu;
    s.fe->start(acked, guest.regions(), guest.vrings(0, 0));
    EXPECT_EQ(s.fe->state(), vu::Frontend::State::Running);
    EXPECT_FALSE(s.fe->disconnected());
    const auto bases = s.fe->stop();
    ASSERT_EQ(bases.size(), 2u);
    EXPECT_EQ(bases[0].index, 0);
    EXPECT_EQ(bases[0].next_avail, 7);  // the fake reports base + 7
    EXPECT_EQ(bases[1].next_avail, 7);
    EXPECT_EQ(s.fe->state(), vu::Frontend::State::Negotiated);
    // The fds were borrowed, not taken.
    EXPECT_GE(::fcntl(guest.mem.get(), F_GETFD), 0);

    FakeBackend& be = s.finish();
    using Q = vu::Request;
    const std::vector<uint32_t> expected = {R(Q::SetOwner),
                                            R(Q::GetFeatures),
                                            R(Q::GetProtocolFeatures),
                                            R(Q::SetProtocolFeatures),
                                            R(Q::GetQueueNum),
                                            R(Q::SetFeatures),
                                            R(Q::SetMemTable),
                                            R(Q::NetSetMtu),
                                            R(Q::SetVringNum),
                                            R(Q::SetVringAddr),
                                            R(Q::SetVringBase),
                                            R(Q::SetVringKick),
                                            R(Q::SetVringCall),
                                            R(Q::SetVringNum),
                                            R(Q::SetVringAddr),
                                            R(Q::SetVringBase),
                                            R(Q::SetVringKick),
                                            R(Q::SetVringCall),
                                            R(Q::SetVringEnable),
                                            R(Q::SetVringEnable),
                                            R(Q::SetVringEnable),
                                            R(Q::SetVringEnable),
                                            R(Q::GetVringBase),
                                            R(Q::GetVringBase)};
    ASSERT_EQ(be.requests(), expected);
    const auto& log = be.log;
    // Before REPLY_ACK is agreed nothing asks for a reply; after, every request without
    // a reply of its own does.
    for (size_t i = 0; i < log.size(); ++i) {
        const bool own_reply =
            log[i].request == R(Q::GetFeatures) || log[i].request == R(Q::GetProtocolFeatures) ||
            log[i].request == R(Q::GetQueueNum) || log[i].request == R(Q::GetVringBase);
        EXPECT_EQ((log[i].flags & vu::kFlagNeedReply) != 0, i >= 5 && !own_reply)
            << vu::request_name(log[i].request);
    }
    EXPECT_EQ(log[3].u64(), b.protocol);
    EXPECT_EQ(log[5].u64(), acked | vu::kProtocolFeaturesBit);  // the transport bit re-added
    // SET_MEM_TABLE: both regions, each with the memfd.
    EXPECT_EQ(log[6].u32_at(0), 2u);
    EXPECT_EQ(log[6].u64_at(8 + 32 + 0), 0x100000000u);
    EXPECT_EQ(log[6].u64_at(8 + 32 + 8), 2u << 20);
    EXPECT_EQ(log[6].u64_at(8 + 32 + 16), 0x7f0000200000u);
    EXPECT_EQ(log[6].u64_at(8 + 32 + 24), 2u << 20);
    ASSERT_EQ(log[6].fd_ids.size(), 2u);
    EXPECT_EQ(log[6].fd_ids[0], fd_identity(guest.mem.get()));
    EXPECT_EQ(log[6].fd_ids[1], fd_identity(guest.mem.get()));
    EXPECT_EQ(log[7].u64(), 9000u);
    // vring 1 (TX): size, addresses (desc, used, avail, log), base, kick, call.
    EXPECT_EQ(log[13].u32_at(0), 1u);
    EXPECT_EQ(log[13].u32_at(4), 256u);
    EXPECT_EQ(log[14].u64_at(8), 0x7f0000005000u);
    EXPECT_EQ(log[14].u64_at(16), 0x7f0000007000u);
    EXPECT_EQ(log[14].u64_at(24), 0x7f0000006000u);
    EXPECT_EQ(log[14].u64_at(32), 0u);
    EXPECT_EQ(log[16].u64(), 1u);
    EXPECT_EQ(log[16].fd_ids.at(0), fd_identity(guest.kick[1].get()));
    EXPECT_EQ(log[17].fd_ids.at(0), fd_identity(guest.call[1].get()));
    EXPECT_EQ(log[18].u32_at(4), 1u);  // enable
    EXPECT_EQ(log[20].u32_at(4), 0u);  // disable on stop
}

TEST(VhostUserFrontend, BaseFromTheUsedIndexOnReconnect) {
    Guest guest;
    Session s(BackendModel{});
    s.fe->negotiate(kVersion1);
    s.fe->start(kVersion1, guest.regions(), guest.vrings(1234, 65535));
    FakeBackend& be = s.finish();
    std::vector<uint32_t> bases;
    for (const auto& r : be.log) {
        if (r.request == R(vu::Request::SetVringBase)) {
            bases.push_back(r.u32_at(4));
        }
    }
    EXPECT_EQ(bases, (std::vector<uint32_t>{1234, 65535}));
}

TEST(VhostUserFrontend, BackendWithoutProtocolFeatures) {
    FdLeakCheck leaks;
    Guest guest;
    BackendModel legacy;
    legacy.features = kVersion1 | kMrgRxbuf | kMtu | kMq;
    Session s(legacy, options(1500));
    const auto b = s.fe->negotiate(kVersion1 | kMrgRxbuf | kMtu | kMq);
    EXPECT_EQ(b.protocol, 0u);
    EXPECT_EQ(b.max_queue_pairs, 1u);
    // No way to tell it the MTU, no multiqueue: neither may reach the guest.
    EXPECT_EQ(b.usable, kVersion1 | kMrgRxbuf);
    s.fe->start(kVersion1 | kMrgRxbuf, guest.regions(), guest.vrings());
    s.fe->stop();
    FakeBackend& be = s.finish();
    using Q = vu::Request;
    const std::vector<uint32_t> expected = {
        R(Q::SetOwner),     R(Q::GetFeatures),  R(Q::SetFeatures),  R(Q::SetMemTable),
        R(Q::SetVringNum),  R(Q::SetVringAddr), R(Q::SetVringBase), R(Q::SetVringKick),
        R(Q::SetVringCall), R(Q::SetVringNum),  R(Q::SetVringAddr), R(Q::SetVringBase),
        R(Q::SetVringKick), R(Q::SetVringCall), R(Q::GetFeatures),  R(Q::GetVringBase),
        R(Q::GetVringBase)};
    EXPECT_EQ(be.requests(), expected);
    EXPECT_EQ(be.log[2].u64(), kVersion1 | kMrgRxbuf);  // no transport bit to re-add
    for (const auto& r : be.log) {
        EXPECT_EQ(r.flags, vu::kVersion) << vu::request_name(r.request);
    }
}

TEST(VhostUserFrontend, StartAgainAfterStop) {
    Guest guest;
    Session s(BackendModel{});
    s.fe->negotiate(kVersion1);
    s.fe->start(kVersion1, guest.regions(), guest.vrings());
    const auto bases = s.fe->stop();
    s.fe->start(kVersion1, guest.regions(), guest.vrings(bases[0].next_avail, bases[1].next_avail));
    EXPECT_EQ(s.fe->state(), vu::Frontend::State::Running);
    s.finish();
}

TEST(VhostUserFrontend, BackendWithoutVersion1IsRefused) {
    FdLeakCheck leaks;
    BackendModel old;
    old.features = kMrgRxbuf | vu::kProtocolFeaturesBit;
    Session s(old);
    const auto what = error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Incompatible);
    EXPECT_TRUE(contains(what, "net0: the backend does not offer VIRTIO_F_VERSION_1")) << what;
    EXPECT_EQ(s.fe->state(), vu::Frontend::State::Closed);
    EXPECT_EQ(s.fe->poll_fd(), -1);
    EXPECT_EQ(s.fe->error(), what);
    EXPECT_TRUE(s.fe->disconnected());
    s.finish();
}

TEST(VhostUserFrontend, BackendLackingAFeatureTheGuestAckedIsRefused) {
    FdLeakCheck leaks;
    Guest guest;
    BackendModel changed;
    changed.features &= ~kMrgRxbuf;  // the backend that came back is older
    Session s(changed);
    s.fe->negotiate(kVersion1 | kMrgRxbuf);
    const auto what =
        error_of([&] { s.fe->start(kVersion1 | kMrgRxbuf, guest.regions(), guest.vrings()); },
                 vu::Error::Kind::Incompatible);
    EXPECT_EQ(what, "net0: the backend lacks VIRTIO_NET_F_MRG_RXBUF, which the guest acked");
    EXPECT_FALSE(s.fe->is_open());
    FakeBackend& be = s.finish();
    for (const auto& r : be.log) {
        EXPECT_NE(r.request, R(vu::Request::SetFeatures));  // nothing was configured
    }
}

TEST(VhostUserFrontend, MoreQueuePairsThanTheBackendServes) {
    BackendModel one;
    one.queue_num = 1;
    Session s(one, options(0, 2));
    const auto what =
        error_of([&] { s.fe->negotiate(kVersion1 | kMq); }, vu::Error::Kind::Incompatible);
    EXPECT_EQ(what, "net0: the card has 2 queue pairs but the backend serves 1");
    s.finish();
}

TEST(VhostUserFrontend, MultiqueueBackend) {
    BackendModel four;
    four.queue_num = 4;
    Session s(four, options(0, 2));
    const auto b = s.fe->negotiate(kVersion1 | kMq);
    EXPECT_EQ(b.max_queue_pairs, 4u);
    EXPECT_NE(b.usable & kMq, 0u);
    s.finish();
}

TEST(VhostUserFrontend, ImplausibleQueueCount) {
    BackendModel zero;
    zero.queue_num = 0;
    Session s(zero);
    const auto what =
        error_of([&] { s.fe->negotiate(kVersion1 | kMq); }, vu::Error::Kind::Protocol);
    EXPECT_EQ(what, "net0: GET_QUEUE_NUM reply: 0 queue pairs is not a valid count (1 to 32768)");
    s.finish();
}

TEST(VhostUserFrontend, ReplyAckNackClosesTheSession) {
    FdLeakCheck leaks;
    Guest guest;
    BackendModel nack;
    nack.hook = on(vu::Request::SetMemTable,
                   [](BackendSocket& s, RawMessage& m) { s.reply_u64(m.request, 1); });
    Session s(nack);
    s.fe->negotiate(kVersion1);
    const auto what = error_of([&] { s.fe->start(kVersion1, guest.regions(), guest.vrings()); },
                               vu::Error::Kind::Rejected);
    EXPECT_EQ(what, "net0: SET_MEM_TABLE: the backend refused it (REPLY_ACK 1)");
    EXPECT_FALSE(s.fe->is_open());
    FakeBackend& be = s.finish();
    EXPECT_EQ(be.log.back().request, R(vu::Request::SetMemTable));  // nothing after the nack
}

TEST(VhostUserFrontend, GarbageInsteadOfAReply) {
    FdLeakCheck leaks;
    BackendModel garbage;
    garbage.hook = on(vu::Request::GetFeatures, [](BackendSocket& s, RawMessage&) {
        std::vector<uint8_t> junk(64);
        for (size_t i = 0; i < junk.size(); ++i) {
            junk[i] = static_cast<uint8_t>(i * 37 + 11);
        }
        s.write_bytes(junk);
    });
    Session s(garbage);
    const auto what = error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Protocol);
    EXPECT_TRUE(contains(what, "net0: GET_FEATURES reply: backend answered request")) << what;
    s.finish();
}

TEST(VhostUserFrontend, WrongReplyCodeAndMissingReplyFlag) {
    {
        BackendModel wrong;
        wrong.hook = on(vu::Request::GetFeatures, [](BackendSocket& s, RawMessage&) {
            s.reply_u64(R(vu::Request::GetProtocolFeatures), kVersion1);
        });
        Session s(wrong);
        EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Protocol),
                  "net0: GET_FEATURES reply: backend answered GET_PROTOCOL_FEATURES (code 15)");
        s.finish();
    }
    {
        BackendModel noflag;
        noflag.hook = on(vu::Request::GetFeatures, [](BackendSocket& s, RawMessage& m) {
            s.reply_u64(m.request, kVersion1, /*flags=*/1);
        });
        Session s(noflag);
        EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Protocol),
                  "net0: GET_FEATURES reply: reply flag missing (flags 0x1)");
        s.finish();
    }
}

TEST(VhostUserFrontend, TruncatedAndOversizedReplies) {
    {
        BackendModel shortp;
        shortp.hook = on(vu::Request::GetFeatures, [](BackendSocket& s, RawMessage& m) {
            const uint32_t four = 0;
            s.reply(m.request, std::span(reinterpret_cast<const uint8_t*>(&four), 4));
        });
        Session s(shortp);
        EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Protocol),
                  "net0: GET_FEATURES reply: payload 4 bytes, expected 8");
        s.finish();
    }
    {
        BackendModel big;
        big.hook = on(vu::Request::GetFeatures, [](BackendSocket& s, RawMessage& m) {
            const uint32_t header[3] = {m.request, kReplyFlags, 4096};
            s.write_bytes(std::span(reinterpret_cast<const uint8_t*>(header), 12));
        });
        Session s(big);
        EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Protocol),
                  "net0: GET_FEATURES reply: payload of 4096 bytes exceeds the protocol maximum "
                  "of 264");
        s.finish();
    }
    {
        BackendModel cut;
        cut.hook = on(vu::Request::GetFeatures, [](BackendSocket& s, RawMessage& m) {
            const uint32_t header[3] = {m.request, kReplyFlags, 8};
            s.write_bytes(std::span(reinterpret_cast<const uint8_t*>(header), 12));
            s.close();  // EOF inside the message
        });
        Session s(cut);
        EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Disconnected),
                  "net0: GET_FEATURES reply: the backend closed the connection after 0 of 8 "
                  "payload bytes");
        s.finish();
    }
}

TEST(VhostUserFrontend, FdsSentWithAReplyAreClosed) {
    FdLeakCheck leaks;
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    UniqueFd read_end(p[0]);
    auto write_end = std::make_shared<UniqueFd>(p[1]);
    BackendModel sneaky;
    sneaky.hook = on(vu::Request::GetFeatures, [write_end](BackendSocket& s, RawMessage& m) {
        const uint64_t f = kVersion1;
        const int fds[2] = {write_end->get(), write_end->get()};
        s.reply(m.request, std::span(reinterpret_cast<const uint8_t*>(&f), 8), kReplyFlags, fds);
        write_end->reset();
    });
    Session s(sneaky);
    EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Protocol),
              "net0: GET_FEATURES reply: 2 file descriptors attached, expected none");
    s.finish();
    pollfd pf{read_end.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pf, 1, 0), 1);
    EXPECT_NE(pf.revents & POLLHUP, 0) << "a copy of the backend's fd is still open";
}

TEST(VhostUserFrontend, BackendClosesMidHandshake) {
    FdLeakCheck leaks;
    BackendModel quitter;
    quitter.hook =
        on(vu::Request::GetProtocolFeatures, [](BackendSocket& s, RawMessage&) { s.close(); });
    Session s(quitter);
    EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1); }, vu::Error::Kind::Disconnected),
              "net0: GET_PROTOCOL_FEATURES reply: the backend closed the connection before "
              "replying");
    EXPECT_FALSE(s.fe->is_open());
    s.finish();
}

TEST(VhostUserFrontend, BackendClosesDuringStart) {
    FdLeakCheck leaks;
    Guest guest;
    BackendModel quitter;
    quitter.hook = on(vu::Request::SetVringAddr, [](BackendSocket& s, RawMessage&) { s.close(); });
    Session s(quitter);
    s.fe->negotiate(kVersion1);
    const auto what = error_of([&] { s.fe->start(kVersion1, guest.regions(), guest.vrings()); },
                               vu::Error::Kind::Disconnected);
    EXPECT_EQ(what,
              "net0: SET_VRING_ADDR reply: the backend closed the connection before replying");
    s.finish();
}

TEST(VhostUserFrontend, SilentBackendTimesOut) {
    FdLeakCheck leaks;
    BackendModel silent;
    silent.hook = on(vu::Request::GetQueueNum, [](BackendSocket&, RawMessage&) {});
    Session s(silent, options(0, 1, 100ms));
    EXPECT_EQ(error_of([&] { s.fe->negotiate(kVersion1 | kMq); }, vu::Error::Kind::Timeout),
              "net0: GET_QUEUE_NUM reply: no complete reply within 100 ms (0 of 12 header bytes)");
    EXPECT_FALSE(s.fe->is_open());
    s.finish();
}

TEST(VhostUserFrontend, GetVringBaseForAnotherVring) {
    Guest guest;
    BackendModel confused;
    confused.hook = on(vu::Request::GetVringBase, [](BackendSocket& s, RawMessage& m) {
        s.reply_state(m.request, m.u32_at(0) + 1, 5);
    });
    Session s(confused);
    s.fe->negotiate(kVersion1);
    s.fe->start(kVersion1, guest.regions(), guest.vrings());
    EXPECT_EQ(error_of([&] { s.fe->stop(); }, vu::Error::Kind::Protocol),
              "net0: GET_VRING_BASE reply: state of vring 1, asked for vring 0");
    s.finish();
}

TEST(VhostUserFrontend, GetVringBaseBeyondSixteenBits) {
    Guest guest;
    BackendModel wide;
    wide.hook = on(vu::Request::GetVringBase, [](BackendSocket& s, RawMessage& m) {
        s.reply_state(m.request, m.u32_at(0), 0x10000);
    });
    Session s(wide);
    s.fe->negotiate(kVersion1);
    s.fe->start(kVersion1, guest.regions(), guest.vrings());
    EXPECT_EQ(error_of([&] { s.fe->stop(); }, vu::Error::Kind::Protocol),
              "net0: GET_VRING_BASE reply: base 65536 of vring 0 does not fit a split ring's "
              "16-bit index");
    s.finish();
}

TEST(VhostUserFrontend, BackendGoingAwayIsSeenOnThePollFd) {
    FdLeakCheck leaks;
    Guest guest;
    auto [f, b] = socket_pair();
    vu::Frontend fe(std::move(f), options());
    auto backend = std::make_unique<FakeBackend>(std::move(b), BackendModel{});
    fe.negotiate(kVersion1);
    fe.start(kVersion1, guest.regions(), guest.vrings());
    pollfd p{fe.poll_fd(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0);
    EXPECT_FALSE(fe.disconnected());
    // The fake backend exits when it reads EOF, which a half-close of our sending side
    // gives it; destroying it closes its end of the connection.
    ::shutdown(fe.poll_fd(), SHUT_WR);
    backend.reset();
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    EXPECT_TRUE(fe.disconnected());
    EXPECT_EQ(fe.error(), "net0: the backend closed the connection");
    EXPECT_EQ(fe.poll_fd(), -1);
    EXPECT_EQ(fe.state(), vu::Frontend::State::Closed);
    EXPECT_THROW(fe.stop(), std::logic_error);
}

TEST(VhostUserFrontend, UnsolicitedMessageEndsTheSession) {
    auto [f, b] = socket_pair();
    BackendSocket be(std::move(b));
    vu::Frontend fe(std::move(f), options());
    be.write_bytes(BackendSocket::message(2, kReplyFlags, {}));
    EXPECT_TRUE(fe.disconnected());
    EXPECT_EQ(fe.error(), "net0: the backend sent a message nobody asked for; closing the session");
}

TEST(VhostUserFrontend, CallerMistakesLeaveTheSessionIntact) {
    Guest guest;
    Session s(BackendModel{});
    EXPECT_THROW(s.fe->start(kVersion1, guest.regions(), guest.vrings()), std::logic_error);
    EXPECT_THROW(s.fe->stop(), std::logic_error);
    s.fe->negotiate(kVersion1 | kMrgRxbuf);
    auto bad = guest.vrings();
    bad[1].size = 100;
    EXPECT_THROW(s.fe->start(kVersion1, guest.regions(), bad), std::invalid_argument);
    bad = guest.vrings();
    bad[1].index = 0;
    EXPECT_THROW(s.fe->start(kVersion1, guest.regions(), bad), std::invalid_argument);
    bad = guest.vrings();
    bad[1].index = 2;  // one queue pair: vrings 0 and 1 only
    EXPECT_THROW(s.fe->start(kVersion1, guest.regions(), bad), std::invalid_argument);
    auto regions = guest.regions();
    regions[1].guest_phys_addr = 0x1000;  // overlaps region 0
    EXPECT_THROW(s.fe->start(kVersion1, regions, guest.vrings()), std::invalid_argument);
    EXPECT_THROW(s.fe->start(kMrgRxbuf, guest.regions(), guest.vrings()), std::invalid_argument);
    EXPECT_THROW(
        s.fe->start(kVersion1 | bit(vu::virtio_bit::kRingPacked), guest.regions(), guest.vrings()),
        std::invalid_argument);
    EXPECT_THROW(s.fe->start(kVersion1 | kMtu, guest.regions(), guest.vrings()),
                 std::invalid_argument);  // no MTU configured
    EXPECT_EQ(s.fe->state(), vu::Frontend::State::Negotiated);
    s.fe->start(kVersion1 | kMrgRxbuf, guest.regions(), guest.vrings());
    FakeBackend& be = s.finish();
    size_t set_features = 0;
    for (const auto& r : be.log) {
        set_features += r.request == R(vu::Request::SetFeatures);
    }
    EXPECT_EQ(set_features, 1u);  // only the valid start() sent anything
}

TEST(VhostUserFrontend, InvalidOptions) {
    auto [f, b] = socket_pair();
    EXPECT_THROW(vu::Frontend(std::move(f), options(0, 0)), std::invalid_argument);
    auto [f2, b2] = socket_pair();
    EXPECT_THROW(vu::Frontend(std::move(f2), options(20)), std::invalid_argument);
}
