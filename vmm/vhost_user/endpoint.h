// vmm/vhost_user/endpoint: where a card's vhost-user connection comes from.
//
// Server mode (conduit-vmm's default): the VMM binds and listens on the socket path and
// a backend (conduitd's client-mode port, DPDK's vhost PMD with client=1) connects, and
// connects again after it restarts. Client mode: the VMM connects to a backend that
// listens, retrying with exponential backoff until it is there.
//
// Event-loop use: put wait_fd() in the VMM's epoll (EPOLLIN). When it is readable, call
// take_connection(); it never blocks and either hands over a connected socket or
// returns nothing (client mode: the next attempt is scheduled on wait_fd()). While a
// session runs, take wait_fd() out of the epoll set (server mode: a second backend waits
// in the listen backlog; refuse_pending() turns it away) and, in client mode, call
// session_ended() when the session is over so the next attempt starts at once.
//
// Ownership: an Endpoint owns its listening socket / timer. A server Endpoint removes
// its socket file when destroyed, unless the file has been replaced by someone else.
//
// Thread-safety: none; one thread (the VMM's control thread) uses an Endpoint.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

#include "vmm/util/unique_fd.h"
#include "vmm/vhost_user/error.h"

namespace conduit::vmm::vhost_user {

struct RetryPolicy {
    std::chrono::milliseconds initial{100};  // delay after the first failed attempt
    std::chrono::milliseconds max{5000};     // the delay doubles up to this
};

class Endpoint {
  public:
    enum class Mode { Server, Client };

    // Server mode: binds and listens on `path` now. A stale socket file (nobody
    // listening) is removed first; a live one, or any other kind of file, is left alone
    // and reported. Error(Config) for a path longer than a unix socket address holds, a
    // missing directory or a permission problem; Error(System) for anything else.
    static Endpoint listen(const std::string& path);

    // Client mode: connects to `path` on the first take_connection() and retries per
    // `retry`. Error(Config) at once for a path that can never work (too long, empty).
    static Endpoint connect_to(const std::string& path, RetryPolicy retry = {});

    Endpoint(Endpoint&&) noexcept;
    Endpoint& operator=(Endpoint&&) noexcept;
    ~Endpoint();

    Mode mode() const { return mode_; }
    const std::string& path() const { return path_; }

    // Readable when take_connection() has something to do: the listening socket (server)
    // or a timerfd that fires when the next connection attempt is due (client).
    int wait_fd() const;

    // Never blocks. Server: accepts one pending backend. Client: makes one attempt, and
    // on failure schedules the next on wait_fd() with the backoff (last_error() says
    // why it failed: "connect /run/x.sock: No such file or directory (attempt 3)").
    std::optional<UniqueFd> take_connection();

    // Blocking convenience for tools and tests: waits on wait_fd() and calls
    // take_connection() until a connection comes or `timeout` passes (Error(Timeout),
    // with last_error() in the message in client mode).
    UniqueFd wait_for_connection(std::chrono::milliseconds timeout);

    // Server: accepts and closes every connection waiting in the backlog (a second
    // backend while one is in session sees EOF at once). Returns how many.
    int refuse_pending();

    // Client: the session on the last connection ended; the next attempt is due now and
    // the backoff starts over. No effect in server mode.
    void session_ended();

    const std::string& last_error() const { return last_error_; }
    int attempts() const { return attempts_; }

  private:
    Endpoint() = default;
    void schedule_attempt(std::chrono::nanoseconds delay);
    void remove_socket_file();

    Mode mode_ = Mode::Server;
    std::string path_;
    UniqueFd fd_;  // listening socket (server) or timerfd (client)
    RetryPolicy retry_;
    std::chrono::milliseconds next_delay_{0};
    int attempts_ = 0;
    std::string last_error_;
    // Identity of the socket file we created, so that we never unlink a file that
    // replaced ours.
    dev_t sock_dev_ = 0;
    ino_t sock_ino_ = 0;
};

}  // namespace conduit::vmm::vhost_user
