#include "control/ctl_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace conduit::ctl {

namespace {

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

Client::Client(std::string socket_path, int timeout_ms)
    : path_(std::move(socket_path)), timeout_ms_(timeout_ms) {}

Client::~Client() {
    disconnect();
}

void Client::disconnect() {
    if (fd_ >= 0) {
        close(fd_);
        fd_ = -1;
    }
    buffer_.clear();
}

void Client::connect() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof addr.sun_path) {
        throw ConnectError("socket path too long: " + path_);
    }
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        throw ConnectError(std::string("socket: ") + std::strerror(errno));
    }
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        const int err = errno;
        disconnect();
        std::string hint;
        if (err == ENOENT || err == ECONNREFUSED) {
            hint = " (is conduitd running? its control.socket, or conduitctl -s PATH)";
        } else if (err == EACCES) {
            hint = " (the socket is 0660 root: run as root or as a member of its group)";
        }
        throw ConnectError("cannot connect to " + path_ + ": " + std::strerror(err) + hint);
    }
}

void Client::send_all(const std::string& data) {
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            const std::string why = std::strerror(errno);
            disconnect();
            throw ConnectError("sending to conduitd: " + why);
        }
        done += static_cast<std::size_t>(n);
    }
}

std::string Client::read_line() {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms_);
    for (;;) {
        const auto newline = buffer_.find('\n');
        if (newline != std::string::npos) {
            std::string line = buffer_.substr(0, newline);
            buffer_.erase(0, newline + 1);
            return line;
        }
        pollfd p{fd_, POLLIN, 0};
        const int ready = poll(&p, 1, remaining_ms(deadline));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready == 0) {
            disconnect();
            throw ConnectError("conduitd did not answer within " + std::to_string(timeout_ms_) +
                               " ms (--timeout)");
        }
        char chunk[65536];
        const ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0) {
            disconnect();
            throw ConnectError("conduitd closed the connection");
        }
        buffer_.append(chunk, static_cast<std::size_t>(n));
    }
}

json Client::call(const std::string& method, const json& params) {
    if (fd_ < 0) {
        connect();
    }
    const uint64_t id = next_id_++;
    json request = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
    if (!params.empty()) {
        request["params"] = params;
    }
    send_all(request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
    json reply;
    try {
        reply = json::parse(read_line());
    } catch (const json::parse_error& e) {
        disconnect();
        throw ConnectError(std::string("conduitd sent something that is not JSON: ") + e.what());
    }
    if (reply.contains("error")) {
        const json& e = reply["error"];
        throw RpcError(e.value("code", 0), e.value("message", std::string("unknown error")),
                       e.value("data", json()));
    }
    if (!reply.contains("result") || reply.value("id", json()) != json(id)) {
        disconnect();
        throw ConnectError("conduitd sent an unexpected reply");
    }
    return reply["result"];
}

}  // namespace conduit::ctl
