// A vhost-user backend for unit tests: the other end of a socketpair, in its own thread.
//
// It parses requests and builds replies by hand (plain recvmsg/sendmsg and memcpy, not the
// library's codec), so that the codec is checked against an independent reading of the
// spec. By default it behaves like DPDK 22.11's vhost library: it validates every request
// the way lib/vhost/vhost_user.c does (payload size, fd count, NEED_REPLY only once
// REPLY_ACK is agreed) and records what it found wrong in `violations`. A hook can take
// over any request to misbehave.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "vmm/util/unique_fd.h"
#include "vmm/vhost_user/message.h"

namespace vhost_test {

using conduit::vmm::UniqueFd;
namespace vu = conduit::vmm::vhost_user;

inline constexpr uint32_t kReplyFlags = 0x1 | 0x4;  // version 1 | reply

struct RawMessage {
    uint32_t request = 0;
    uint32_t flags = 0;
    std::vector<uint8_t> payload;
    std::vector<UniqueFd> fds;

    uint64_t u64() const {
        uint64_t v = 0;
        std::memcpy(&v, payload.data(), std::min(payload.size(), sizeof v));
        return v;
    }
    uint32_t u32_at(size_t off) const {
        uint32_t v = 0;
        if (off + 4 <= payload.size()) {
            std::memcpy(&v, payload.data() + off, 4);
        }
        return v;
    }
    uint64_t u64_at(size_t off) const {
        uint64_t v = 0;
        if (off + 8 <= payload.size()) {
            std::memcpy(&v, payload.data() + off, 8);
        }
        return v;
    }
    bool need_reply() const { return (flags & 0x8) != 0; }
};

// What one request looked like, kept after the fds are closed.
struct Recorded {
    uint32_t request;
    uint32_t flags;
    std::vector<uint8_t> payload;
    std::vector<std::pair<dev_t, ino_t>> fd_ids;  // identity of each fd received

    uint64_t u64() const {
        uint64_t v = 0;
        std::memcpy(&v, payload.data(), std::min(payload.size(), sizeof v));
        return v;
    }
    uint32_t u32_at(size_t off) const {
        uint32_t v = 0;
        std::memcpy(&v, payload.data() + off, 4);
        return v;
    }
    uint64_t u64_at(size_t off) const {
        uint64_t v = 0;
        std::memcpy(&v, payload.data() + off, 8);
        return v;
    }
};

inline std::pair<dev_t, ino_t> fd_identity(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return {0, 0};
    }
    return {st.st_dev, st.st_ino};
}

// The backend's end of the connection.
class BackendSocket {
  public:
    explicit BackendSocket(UniqueFd fd) : fd_(std::move(fd)) {}

    int fd() const { return fd_.get(); }
    void close() { fd_.reset(); }

    // One request; nullopt on EOF. Throws after `timeout_ms` of silence.
    std::optional<RawMessage> read(int timeout_ms = 10000) {
        RawMessage m;
        uint8_t header[12];
        if (!read_exact(header, sizeof header, m.fds, timeout_ms, true)) {
            return std::nullopt;
        }
        uint32_t size;
        std::memcpy(&m.request, header, 4);
        std::memcpy(&m.flags, header + 4, 4);
        std::memcpy(&size, header + 8, 4);
        if (size > 4096) {
            throw std::runtime_error("fake backend: request with " + std::to_string(size) +
                                     " payload bytes");
        }
        m.payload.resize(size);
        if (size != 0 && !read_exact(m.payload.data(), size, m.fds, timeout_ms, false)) {
            throw std::runtime_error("fake backend: EOF inside a request");
        }
        return m;
    }

    void write_bytes(std::span<const uint8_t> bytes, std::span<const int> fds = {}) {
        size_t sent = 0;
        while (sent < bytes.size()) {
            iovec iov{const_cast<uint8_t*>(bytes.data()) + sent, bytes.size() - sent};
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            std::vector<char> control;
            if (sent == 0 && !fds.empty()) {
                control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
                mh.msg_control = control.data();
                mh.msg_controllen = control.size();
                cmsghdr* c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
                std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
            }
            const ssize_t n = ::sendmsg(fd_.get(), &mh, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                throw std::runtime_error(std::string("fake backend: sendmsg: ") +
                                         std::strerror(errno));
            }
            sent += static_cast<size_t>(n);
        }
    }

    static std::vector<uint8_t> message(uint32_t request, uint32_t flags,
                                        std::span<const uint8_t> payload) {
        std::vector<uint8_t> out(12 + payload.size());
        const uint32_t size = static_cast<uint32_t>(payload.size());
        std::memcpy(out.data(), &request, 4);
        std::memcpy(out.data() + 4, &flags, 4);
        std::memcpy(out.data() + 8, &size, 4);
        if (!payload.empty()) {
            std::memcpy(out.data() + 12, payload.data(), payload.size());
        }
        return out;
    }

    void reply(uint32_t request, std::span<const uint8_t> payload, uint32_t flags = kReplyFlags,
               std::span<const int> fds = {}) {
        write_bytes(message(request, flags, payload), fds);
    }
    void reply_u64(uint32_t request, uint64_t v, uint32_t flags = kReplyFlags) {
        reply(request, std::span(reinterpret_cast<const uint8_t*>(&v), sizeof v), flags);
    }
    void reply_state(uint32_t request, uint32_t index, uint32_t num) {
        uint32_t s[2] = {index, num};
        reply(request, std::span(reinterpret_cast<const uint8_t*>(s), sizeof s));
    }

  private:
    // Reads exactly len bytes; false on EOF before the first byte when `eof_ok`.
    bool read_exact(uint8_t* buf, size_t len, std::vector<UniqueFd>& fds, int timeout_ms,
                    bool eof_ok) {
        size_t got = 0;
        while (got < len) {
            pollfd p{fd_.get(), POLLIN, 0};
            const int pr = ::poll(&p, 1, timeout_ms);
            if (pr == 0) {
                throw std::runtime_error("fake backend: no request within timeout");
            }
            if (pr < 0) {
                if (errno == EINTR) {
                    continue;
                }
                throw std::runtime_error("fake backend: poll failed");
            }
            iovec iov{buf + got, len - got};
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = control;
            mh.msg_controllen = sizeof control;
            const ssize_t n = ::recvmsg(fd_.get(), &mh, MSG_CMSG_CLOEXEC);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                if (errno == ECONNRESET && got == 0 && eof_ok) {
                    return false;
                }
                throw std::runtime_error(std::string("fake backend: recvmsg: ") +
                                         std::strerror(errno));
            }
            for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                    for (size_t i = 0; i < count; ++i) {
                        int fd;
                        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                        fds.emplace_back(fd);
                    }
                }
            }
            if (n == 0) {
                if (got == 0 && eof_ok) {
                    return false;
                }
                throw std::runtime_error("fake backend: EOF inside a request");
            }
            got += static_cast<size_t>(n);
        }
        return true;
    }

    UniqueFd fd_;
};

// The behaviour of the backend; DPDK 22.11's net_vhost defaults.
struct BackendModel {
    uint64_t features = vu::bit(vu::virtio_bit::kVersion1) | vu::kProtocolFeaturesBit |
                        vu::bit(vu::virtio_bit::kNetMrgRxbuf) | vu::bit(vu::virtio_bit::kNetMtu) |
                        vu::bit(vu::virtio_bit::kNetMq) | vu::bit(vu::virtio_bit::kEventIdx) |
                        vu::bit(vu::virtio_bit::kRingPacked) | vu::bit(vu::virtio_bit::kLogAll);
    uint64_t protocol_features =
        vu::bit(vu::protocol_bit::kMq) | vu::bit(vu::protocol_bit::kLogShmfd) |
        vu::bit(vu::protocol_bit::kRarp) | vu::bit(vu::protocol_bit::kReplyAck) |
        vu::bit(vu::protocol_bit::kNetMtu) | vu::bit(vu::protocol_bit::kBackendReq) |
        vu::bit(vu::protocol_bit::kStatus);
    uint64_t queue_num = 1;
    // Takes over a request when it returns true: it may reply, misbehave or close.
    std::function<bool(BackendSocket&, RawMessage&)> hook;
};

class FakeBackend {
  public:
    FakeBackend(UniqueFd sock, BackendModel model)
        : sock_(std::move(sock)), model_(std::move(model)), thread_([this] { run(); }) {}
    ~FakeBackend() { join(); }

    // Waits for the backend thread (it ends on EOF, on a hook closing, or on error).
    void join() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }

    // After join():
    std::vector<Recorded> log;
    std::vector<std::string> violations;
    std::string failure;  // an exception inside the backend thread
    uint64_t agreed_protocol = 0;

    std::vector<uint32_t> requests() const {
        std::vector<uint32_t> out;
        for (const auto& r : log) {
            out.push_back(r.request);
        }
        return out;
    }

  private:
    void violation(const RawMessage& m, const std::string& what) {
        violations.push_back(vu::request_name(m.request) + ": " + what);
    }

    // The checks DPDK's vhost_user_msg_handler and its handlers make.
    void validate(const RawMessage& m) {
        if ((m.flags & 0x3) != 1) {
            violation(m, "version " + std::to_string(m.flags & 0x3));
        }
        if ((m.flags & ~0xbu) != 0) {
            violation(m, "stray flags");
        }
        if (m.need_reply() && (agreed_protocol & vu::bit(vu::protocol_bit::kReplyAck)) == 0) {
            violation(m, "NEED_REPLY before REPLY_ACK was agreed");
        }
        size_t want_size = 0;
        size_t want_fds = 0;
        using R = vu::Request;
        switch (static_cast<R>(m.request)) {
            case R::GetFeatures:
            case R::GetProtocolFeatures:
            case R::GetQueueNum:
            case R::SetOwner:
                break;
            case R::SetFeatures:
            case R::SetProtocolFeatures:
            case R::NetSetMtu:
                want_size = 8;
                break;
            case R::SetVringNum:
            case R::SetVringBase:
            case R::GetVringBase:
            case R::SetVringEnable:
                want_size = 8;
                break;
            case R::SetVringAddr:
                want_size = 40;
                break;
            case R::SetVringKick:
            case R::SetVringCall:
                want_size = 8;
                want_fds = (m.u64() & 0x100) != 0 ? 0 : 1;
                break;
            case R::SetMemTable:
                want_size = 8 + 8 * 32;
                want_fds = m.u32_at(0);
                if (want_fds == 0 || want_fds > 8) {
                    violation(m, "nregions " + std::to_string(want_fds));
                }
                break;
            default:
                violation(m, "request a net frontend should not send");
                return;
        }
        if (m.payload.size() != want_size) {
            violation(m, "payload " + std::to_string(m.payload.size()) + " bytes, expected " +
                             std::to_string(want_size));
        }
        if (m.fds.size() != want_fds) {
            violation(m,
                      std::to_string(m.fds.size()) + " fds, expected " + std::to_string(want_fds));
        }
    }

    void record(const RawMessage& m) {
        Recorded r{m.request, m.flags, m.payload, {}};
        for (const auto& fd : m.fds) {
            r.fd_ids.push_back(fd_identity(fd.get()));
        }
        log.push_back(std::move(r));
    }

    void run() {
        try {
            while (auto msg = sock_.read()) {
                validate(*msg);
                record(*msg);
                if (model_.hook && model_.hook(sock_, *msg)) {
                    if (sock_.fd() < 0) {
                        return;  // the hook closed the connection
                    }
                    continue;
                }
                handle(*msg);
            }
        } catch (const std::exception& e) {
            failure = e.what();
        }
    }

    void handle(RawMessage& m) {
        using R = vu::Request;
        switch (static_cast<R>(m.request)) {
            case R::GetFeatures:
                sock_.reply_u64(m.request, model_.features);
                return;
            case R::GetProtocolFeatures:
                sock_.reply_u64(m.request, model_.protocol_features);
                return;
            case R::GetQueueNum:
                sock_.reply_u64(m.request, model_.queue_num);
                return;
            case R::SetProtocolFeatures:
                if ((m.u64() & ~model_.protocol_features) != 0) {
                    violation(m, "protocol features the backend did not offer");
                }
                agreed_protocol = m.u64();
                break;
            case R::SetFeatures:
                if ((m.u64() & ~model_.features) != 0) {
                    violation(m, "features the backend did not offer");
                }
                break;
            case R::SetVringBase:
                bases_[m.u32_at(0)] = m.u32_at(4);
                break;
            case R::GetVringBase:
                sock_.reply_state(m.request, m.u32_at(0), bases_[m.u32_at(0)] + 7);
                return;
            default:
                break;
        }
        if (m.need_reply()) {
            sock_.reply_u64(m.request, 0);
        }
    }

    BackendSocket sock_;
    BackendModel model_;
    std::map<uint32_t, uint32_t> bases_;
    std::thread thread_;
};

// A connected pair: [0] for the frontend, [1] for the backend.
inline std::pair<UniqueFd, UniqueFd> socket_pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        throw std::runtime_error("socketpair failed");
    }
    return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// How many fds this process has open (to prove nothing leaked).
inline int open_fd_count() {
    int n = 0;
    for (int fd = 0; fd < 4096; ++fd) {
        if (::fcntl(fd, F_GETFD) >= 0) {
            ++n;
        }
    }
    return n;
}

}  // namespace vhost_test
