#include "vmm/devices/console.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>

#include "vmm/devices/serial.h"
#include "vmm/util/error.h"
#include "vmm/util/log.h"

namespace conduit::vmm {

namespace {
constexpr uint8_t kCtrlA = 0x01;
}

Console::Console(const SerialConfig& config) : config_(config) {
    stop_event_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_event_) {
        throw_errno("eventfd");
    }
    switch (config_.kind) {
        case SerialConfig::Kind::kFile:
            out_.reset(
                ::open(config_.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            if (!out_) {
                throw ConfigError("serial file '" + config_.path + "': " + std::strerror(errno));
            }
            break;
        case SerialConfig::Kind::kSocket: {
            sockaddr_un addr{};
            addr.sun_family = AF_UNIX;
            if (config_.path.size() >= sizeof addr.sun_path) {
                throw ConfigError("serial socket path '" + config_.path + "' is longer than " +
                                  std::to_string(sizeof addr.sun_path - 1) + " bytes");
            }
            std::memcpy(addr.sun_path, config_.path.c_str(), config_.path.size() + 1);
            struct stat st {};
            if (lstat(config_.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
                unlink(config_.path.c_str());  // left by a VMM that was killed
            }
            listen_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
            if (!listen_ ||
                bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
                listen(listen_.get(), 1) != 0) {
                throw ConfigError("serial socket '" + config_.path + "': " + std::strerror(errno));
            }
            break;
        }
        case SerialConfig::Kind::kStdio:
            if (isatty(STDIN_FILENO)) {
                saved_termios_ = std::make_unique<termios>();
                if (tcgetattr(STDIN_FILENO, saved_termios_.get()) == 0) {
                    termios raw = *saved_termios_;
                    cfmakeraw(&raw);
                    raw.c_oflag |= OPOST | ONLCR;  // our own log lines still start at column 0
                    tcsetattr(STDIN_FILENO, TCSANOW, &raw);
                } else {
                    saved_termios_.reset();
                }
            }
            break;
        case SerialConfig::Kind::kNone:
            break;
    }
}

Console::~Console() {
    stop_input();
    if (saved_termios_) {
        tcsetattr(STDIN_FILENO, TCSANOW, saved_termios_.get());
    }
    if (config_.kind == SerialConfig::Kind::kSocket && listen_) {
        unlink(config_.path.c_str());
    }
}

void Console::output(uint8_t byte) {
    ssize_t n = 1;
    switch (config_.kind) {
        case SerialConfig::Kind::kStdio:
            n = ::write(STDOUT_FILENO, &byte, 1);
            break;
        case SerialConfig::Kind::kFile:
            n = ::write(out_.get(), &byte, 1);
            break;
        case SerialConfig::Kind::kSocket: {
            std::lock_guard lock(client_mutex_);
            // Never block a vCPU on a slow reader: what it cannot take now is dropped.
            n = client_ ? ::send(client_.get(), &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) : -1;
            break;
        }
        case SerialConfig::Kind::kNone:
            break;
    }
    if (n != 1) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
    }
}

void Console::start_input(Serial8250& uart, Quit quit) {
    if (config_.kind == SerialConfig::Kind::kFile || config_.kind == SerialConfig::Kind::kNone) {
        return;
    }
    input_ = std::thread([this, &uart, quit = std::move(quit)] { input_loop(uart, quit); });
}

void Console::stop_input() {
    if (input_.joinable()) {
        const uint64_t one = 1;
        (void)!::write(stop_event_.get(), &one, sizeof one);
        input_.join();
    }
}

bool Console::feed(Serial8250& uart, const uint8_t* data, size_t size, const Quit& quit) {
    // Ctrl-A x quits; Ctrl-A Ctrl-A sends one Ctrl-A. Only on a terminal.
    size_t start = 0;
    for (size_t i = 0; i < size && saved_termios_; ++i) {
        if (escape_pending_) {
            escape_pending_ = false;
            if (data[i] == 'x') {
                quit();
                return false;
            }
            continue;
        }
        if (data[i] == kCtrlA) {
            escape_pending_ = true;
        }
    }
    while (start < size) {
        start += uart.enqueue_input(std::span(data + start, size - start));
        if (start < size) {
            // The guest has not drained its FIFO: wait a little, unless we are stopping.
            pollfd stop{stop_event_.get(), POLLIN, 0};
            if (poll(&stop, 1, 5) > 0) {
                return false;
            }
        }
    }
    return true;
}

void Console::input_loop(Serial8250& uart, Quit quit) {
    const int in = config_.kind == SerialConfig::Kind::kStdio ? STDIN_FILENO : -1;
    uint8_t buf[256];
    for (;;) {
        int client = -1;
        {
            std::lock_guard lock(client_mutex_);
            client = client_.get();
        }
        pollfd fds[3] = {
            {stop_event_.get(), POLLIN, 0},
            {config_.kind == SerialConfig::Kind::kSocket ? listen_.get() : -1, POLLIN, 0},
            {config_.kind == SerialConfig::Kind::kSocket ? client : in, POLLIN, 0}};
        if (poll(fds, 3, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            VLOG_WARN("console", "poll: %s", std::strerror(errno));
            return;
        }
        if (fds[0].revents) {
            return;
        }
        if (fds[1].revents & POLLIN) {
            UniqueFd accepted(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
            if (accepted) {
                // One console client at a time: a new one replaces the old.
                std::lock_guard lock(client_mutex_);
                client_ = std::move(accepted);
                continue;  // poll again with the new client
            }
        }
        if (fds[2].fd >= 0 && fds[2].revents) {
            const ssize_t n = ::read(fds[2].fd, buf, sizeof buf);
            if (n > 0) {
                if (!feed(uart, buf, static_cast<size_t>(n), quit)) {
                    return;
                }
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                if (config_.kind == SerialConfig::Kind::kSocket) {
                    std::lock_guard lock(client_mutex_);
                    if (client_.get() == fds[2].fd) {
                        client_.reset();
                    }
                } else {
                    return;  // stdin closed: the console is output-only from now on
                }
            }
        }
    }
}

}  // namespace conduit::vmm
