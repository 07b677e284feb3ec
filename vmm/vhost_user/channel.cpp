#include "vmm/vhost_user/channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace conduit::vmm::vhost_user {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void system_error(const std::string& what, int err) {
    throw Error(Error::Kind::System, what + ": " + std::strerror(err));
}

bool is_disconnect(int err) {
    return err == EPIPE || err == ECONNRESET || err == ENOTCONN;
}

// Waits until `events` is ready on fd or the deadline passes. False on timeout.
// EINTR restarts the wait with the time that is left.
bool wait_ready(int fd, short events, Clock::time_point deadline, const std::string& what) {
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        // Round up so that a sub-millisecond remainder still waits instead of spinning.
        const int ms =
            left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count() + 1, 1 << 30));
        pollfd p{fd, events, 0};
        const int n = ::poll(&p, 1, ms);
        if (n > 0) {
            return true;  // readable, writable, HUP or ERR: the next call tells which
        }
        if (n == 0) {
            if (Clock::now() >= deadline) {
                return false;
            }
            continue;
        }
        if (errno != EINTR) {
            system_error(what + ": poll", errno);
        }
    }
}

// Takes ownership of every fd in the control data at once, before anything can throw,
// so that nothing the backend sent can leak.
void collect_fds(msghdr& msg, std::vector<UniqueFd>& out) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0)) {
            continue;
        }
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const auto* data = CMSG_DATA(c);
        for (size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, data + i * sizeof(int), sizeof fd);
            if (fd >= 0) {
                out.emplace_back(fd);
            }
        }
    }
}

}  // namespace

Channel::Channel(UniqueFd socket) : socket_(std::move(socket)) {
    if (!socket_.valid()) {
        throw std::invalid_argument("vhost-user channel: no socket");
    }
    const int fl = ::fcntl(socket_.get(), F_GETFL);
    if (fl < 0 || ::fcntl(socket_.get(), F_SETFL, fl | O_NONBLOCK) < 0) {
        system_error("vhost-user channel: making the socket non-blocking", errno);
    }
    const int fdfl = ::fcntl(socket_.get(), F_GETFD);
    if (fdfl < 0 || ::fcntl(socket_.get(), F_SETFD, fdfl | FD_CLOEXEC) < 0) {
        system_error("vhost-user channel: setting close-on-exec", errno);
    }
}

void Channel::send(const OutgoingMessage& msg, std::chrono::milliseconds timeout) {
    const std::string what = request_name(msg.request);
    if (!is_open()) {
        throw Error(Error::Kind::Disconnected, what + ": the connection is closed");
    }
    if (msg.fds.size() > kMaxFds) {
        throw std::invalid_argument(what + ": more than " + std::to_string(kMaxFds) + " fds");
    }
    const auto deadline = Clock::now() + timeout;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    size_t sent = 0;
    while (sent < msg.bytes.size()) {
        iovec iov{const_cast<uint8_t*>(msg.bytes.data()) + sent, msg.bytes.size() - sent};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        // The fds ride on the first byte; once any byte is out they have been delivered.
        if (sent == 0 && !msg.fds.empty()) {
            const size_t len = sizeof(int) * msg.fds.size();
            std::memset(control, 0, sizeof control);
            mh.msg_control = control;
            mh.msg_controllen = CMSG_SPACE(len);
            cmsghdr* c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(len);
            std::memcpy(CMSG_DATA(c), msg.fds.data(), len);
        }
        // MSG_NOSIGNAL: a backend that went away is an error to report, not a SIGPIPE.
        const ssize_t n = ::sendmsg(socket_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_ready(socket_.get(), POLLOUT, deadline, what)) {
                throw Error(Error::Kind::Timeout,
                            what + ": the backend did not take the request within " +
                                std::to_string(timeout.count()) + " ms (" + std::to_string(sent) +
                                " of " + std::to_string(msg.bytes.size()) + " bytes sent)");
            }
            continue;
        }
        if (n < 0 && is_disconnect(errno)) {
            throw Error(Error::Kind::Disconnected, what + ": the backend closed the connection (" +
                                                       std::strerror(errno) + ")");
        }
        system_error(what + ": sendmsg", n < 0 ? errno : EIO);
    }
}

ReceivedMessage Channel::receive(Request expected, std::chrono::milliseconds timeout) {
    const std::string what = request_name(expected) + " reply";
    if (!is_open()) {
        throw Error(Error::Kind::Disconnected, what + ": the connection is closed");
    }
    const auto deadline = Clock::now() + timeout;
    ReceivedMessage msg;

    // Reads exactly `len` bytes into `buf`, gathering fds from every piece. `part`
    // names the piece for errors ("header", "payload").
    auto read_exact = [&](uint8_t* buf, size_t len, const char* part) {
        size_t got = 0;
        while (got < len) {
            iovec iov{buf + got, len - got};
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = control;
            mh.msg_controllen = sizeof control;
            // MSG_CMSG_CLOEXEC: fds we are about to close must not slip into a child
            // forked meanwhile by another thread of the VMM.
            const ssize_t n = ::recvmsg(socket_.get(), &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
            if (n >= 0) {
                collect_fds(mh, msg.fds);
                if ((mh.msg_flags & MSG_CTRUNC) != 0) {
                    // The kernel closed the fds that did not fit; the ones that did are
                    // in msg.fds and close with it.
                    throw Error(Error::Kind::Protocol,
                                what + ": the backend attached more file descriptors than " +
                                    std::to_string(kMaxFds) + " (control data truncated)");
                }
                if (msg.fds.size() > kMaxFds) {
                    throw Error(Error::Kind::Protocol,
                                what + ": the backend attached " + std::to_string(msg.fds.size()) +
                                    " file descriptors, more than a message may carry");
                }
            }
            if (n > 0) {
                got += static_cast<size_t>(n);
                continue;
            }
            if (n == 0) {
                const std::string where = got == 0 && std::strcmp(part, "header") == 0
                                              ? "before replying"
                                              : "after " + std::to_string(got) + " of " +
                                                    std::to_string(len) + " " + part + " bytes";
                throw Error(Error::Kind::Disconnected,
                            what + ": the backend closed the connection " + where);
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!wait_ready(socket_.get(), POLLIN, deadline, what)) {
                    throw Error(Error::Kind::Timeout, what + ": no complete reply within " +
                                                          std::to_string(timeout.count()) +
                                                          " ms (" + std::to_string(got) + " of " +
                                                          std::to_string(len) + " " + part +
                                                          " bytes)");
                }
                continue;
            }
            if (is_disconnect(errno)) {
                throw Error(Error::Kind::Disconnected,
                            what + ": the connection was reset (" + std::strerror(errno) + ")");
            }
            system_error(what + ": recvmsg", errno);
        }
    };

    uint8_t header[kHeaderSize];
    read_exact(header, sizeof header, "header");
    // Validated before the payload is read: the size it announces is bounded here.
    msg.header = decode_header(header, expected);
    msg.payload.resize(msg.header.size);
    if (msg.header.size != 0) {
        read_exact(msg.payload.data(), msg.payload.size(), "payload");
    }
    return msg;
}

Channel::IdleState Channel::poll_idle() {
    if (!is_open()) {
        return IdleState::Closed;
    }
    for (;;) {
        uint8_t byte;
        // MSG_PEEK without a control buffer: nothing is consumed and no fd is installed.
        const ssize_t n = ::recv(socket_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0) {
            return IdleState::Unsolicited;
        }
        if (n == 0) {
            return IdleState::Closed;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return IdleState::Quiet;
        }
        // ECONNRESET and any other socket error: the connection is unusable.
        return IdleState::Closed;
    }
}

}  // namespace conduit::vmm::vhost_user
