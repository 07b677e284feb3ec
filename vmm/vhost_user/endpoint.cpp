#include "vmm/vhost_user/endpoint.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

namespace conduit::vmm::vhost_user {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void config_error(const std::string& what) {
    throw Error(Error::Kind::Config, what);
}

[[noreturn]] void system_error(const std::string& what, int err) {
    throw Error(Error::Kind::System, what + ": " + std::strerror(err));
}

sockaddr_un socket_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty()) {
        config_error("vhost-user socket path is empty");
    }
    // sun_path needs room for the terminating NUL: a longer path would be silently cut
    // by some callers; here it is refused with the numbers.
    if (path.size() >= sizeof addr.sun_path) {
        config_error("vhost-user socket path '" + path + "' is " + std::to_string(path.size()) +
                     " bytes; a unix socket path holds at most " +
                     std::to_string(sizeof addr.sun_path - 1));
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

std::string directory_of(const std::string& path) {
    std::string dir = std::filesystem::path(path).parent_path().string();
    return dir.empty() ? "." : dir;
}

void check_directory(const std::string& path) {
    const std::string dir = directory_of(path);
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) {
        const int err = errno;
        if (err == ENOENT) {
            config_error("cannot create vhost-user socket '" + path + "': directory '" + dir +
                         "' does not exist");
        }
        if (err == EACCES) {
            config_error("cannot create vhost-user socket '" + path +
                         "': permission denied looking up directory '" + dir + "'");
        }
        config_error("cannot create vhost-user socket '" + path + "': directory '" + dir +
                     "': " + std::strerror(err));
    }
    if (!S_ISDIR(st.st_mode)) {
        config_error("cannot create vhost-user socket '" + path + "': '" + dir +
                     "' is not a directory");
    }
}

UniqueFd stream_socket(const std::string& what) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        system_error(what + ": socket", errno);
    }
    return fd;
}

// An existing file at the path: a socket nobody listens on (left by a process that
// died) is removed; a live socket or anything else is not ours to remove.
void remove_if_stale(const std::string& path, const sockaddr_un& addr) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) {
            return;
        }
        config_error("cannot create vhost-user socket '" + path + "': " + std::strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode)) {
        config_error("cannot create vhost-user socket '" + path +
                     "': the path exists and is not a socket; not replacing it");
    }
    UniqueFd probe = stream_socket("probing '" + path + "'");
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 ||
        errno == EAGAIN) {
        // EAGAIN: a listener whose backlog is full is very much alive.
        config_error("cannot create vhost-user socket '" + path +
                     "': another process is listening on it");
    }
    const int err = errno;
    if (err != ECONNREFUSED) {
        config_error("cannot create vhost-user socket '" + path +
                     "': cannot tell whether the existing socket is in use: " + std::strerror(err));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        const int uerr = errno;
        config_error("cannot remove the stale vhost-user socket '" + path + "': " +
                     (uerr == EACCES || uerr == EPERM ? std::string("permission denied")
                                                      : std::string(std::strerror(uerr))));
    }
}

}  // namespace

Endpoint Endpoint::listen(const std::string& path) {
    const sockaddr_un addr = socket_address(path);
    check_directory(path);
    remove_if_stale(path, addr);

    Endpoint ep;
    ep.mode_ = Mode::Server;
    ep.path_ = path;
    ep.fd_ = stream_socket("listening on '" + path + "'");
    if (::bind(ep.fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        if (err == EACCES || err == EPERM) {
            config_error("cannot create vhost-user socket '" + path +
                         "': permission denied in directory '" + directory_of(path) + "'");
        }
        if (err == EADDRINUSE) {
            config_error("cannot create vhost-user socket '" + path +
                         "': the path was taken by another process meanwhile");
        }
        if (err == ENOENT || err == ENOTDIR) {
            config_error("cannot create vhost-user socket '" + path + "': directory '" +
                         directory_of(path) + "' does not exist");
        }
        system_error("cannot create vhost-user socket '" + path + "': bind", err);
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        ep.sock_dev_ = st.st_dev;
        ep.sock_ino_ = st.st_ino;
    }
    // One backend at a time: a backlog of one is enough for a backend that reconnects.
    if (::listen(ep.fd_.get(), 1) != 0) {
        const int err = errno;
        ep.remove_socket_file();
        system_error("listen on '" + path + "'", err);
    }
    return ep;
}

Endpoint Endpoint::connect_to(const std::string& path, RetryPolicy retry) {
    socket_address(path);  // refuses a path that can never work, now
    if (retry.initial.count() <= 0 || retry.max < retry.initial) {
        throw std::invalid_argument("vhost-user retry policy: need 0 < initial <= max");
    }
    Endpoint ep;
    ep.mode_ = Mode::Client;
    ep.path_ = path;
    ep.retry_ = retry;
    ep.next_delay_ = retry.initial;
    ep.fd_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!ep.fd_) {
        system_error("vhost-user client '" + path + "': timerfd_create", errno);
    }
    ep.schedule_attempt(std::chrono::nanoseconds(0));
    return ep;
}

Endpoint::Endpoint(Endpoint&& other) noexcept {
    *this = std::move(other);
}

Endpoint& Endpoint::operator=(Endpoint&& other) noexcept {
    if (this != &other) {
        if (mode_ == Mode::Server) {
            remove_socket_file();
        }
        mode_ = other.mode_;
        path_ = std::move(other.path_);
        fd_ = std::move(other.fd_);
        retry_ = other.retry_;
        next_delay_ = other.next_delay_;
        attempts_ = other.attempts_;
        last_error_ = std::move(other.last_error_);
        sock_dev_ = std::exchange(other.sock_dev_, 0);
        sock_ino_ = std::exchange(other.sock_ino_, 0);
        other.path_.clear();
    }
    return *this;
}

Endpoint::~Endpoint() {
    if (mode_ == Mode::Server) {
        remove_socket_file();
    }
}

void Endpoint::remove_socket_file() {
    if (path_.empty() || sock_ino_ == 0) {
        return;
    }
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == sock_dev_ && st.st_ino == sock_ino_) {
        ::unlink(path_.c_str());
    }
    sock_ino_ = 0;
}

int Endpoint::wait_fd() const {
    return fd_.get();
}

void Endpoint::schedule_attempt(std::chrono::nanoseconds delay) {
    // it_value 0 would disarm the timer: "now" is one nanosecond.
    const auto ns = std::max<int64_t>(delay.count(), 1);
    itimerspec spec{};
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (::timerfd_settime(fd_.get(), 0, &spec, nullptr) != 0) {
        system_error("vhost-user client '" + path_ + "': timerfd_settime", errno);
    }
}

std::optional<UniqueFd> Endpoint::take_connection() {
    if (!fd_) {
        throw std::logic_error("vhost-user endpoint used after move");
    }
    if (mode_ == Mode::Server) {
        for (;;) {
            UniqueFd conn(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (conn) {
                return conn;
            }
            if (errno == EINTR) {
                continue;
            }
            // EAGAIN: nobody waiting; ECONNABORTED: the peer gave up before we accepted.
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) {
                return std::nullopt;
            }
            system_error("accepting a backend on '" + path_ + "'", errno);
        }
    }

    uint64_t expirations;
    while (::read(fd_.get(), &expirations, sizeof expirations) < 0 && errno == EINTR) {
    }
    ++attempts_;
    const sockaddr_un addr = socket_address(path_);
    UniqueFd sock = stream_socket("connecting to '" + path_ + "'");
    int rc;
    do {
        rc = ::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) {
        last_error_.clear();
        next_delay_ = retry_.initial;
        itimerspec off{};
        ::timerfd_settime(fd_.get(), 0, &off, nullptr);
        return sock;
    }
    // ENOENT (backend not started), ECONNREFUSED (stale socket), EAGAIN (its backlog is
    // full), EACCES (permissions may yet be fixed): all worth another try later.
    const int err = errno;
    last_error_ = "connect '" + path_ + "': " + std::strerror(err) + " (attempt " +
                  std::to_string(attempts_) + ", next in " + std::to_string(next_delay_.count()) +
                  " ms)";
    schedule_attempt(next_delay_);
    next_delay_ = std::min(next_delay_ * 2, retry_.max);
    return std::nullopt;
}

UniqueFd Endpoint::wait_for_connection(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (auto conn = take_connection()) {
            return std::move(*conn);
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            std::string msg = "no backend connected on '" + path_ + "' within " +
                              std::to_string(timeout.count()) + " ms";
            if (!last_error_.empty()) {
                msg += " (last attempt: " + last_error_ + ")";
            }
            throw Error(Error::Kind::Timeout, msg);
        }
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count()) + 1) < 0 && errno != EINTR) {
            system_error("waiting for a backend on '" + path_ + "'", errno);
        }
    }
}

int Endpoint::refuse_pending() {
    if (mode_ != Mode::Server) {
        return 0;
    }
    int refused = 0;
    while (auto conn = take_connection()) {
        ++refused;  // closed here: the backend sees EOF
    }
    return refused;
}

void Endpoint::session_ended() {
    if (mode_ != Mode::Client) {
        return;
    }
    next_delay_ = retry_.initial;
    schedule_attempt(std::chrono::nanoseconds(0));
}

}  // namespace conduit::vmm::vhost_user
