// vmm/vhost_user/channel: one connected vhost-user socket (SOCK_STREAM, AF_UNIX) seen
// from the frontend: send a request with its fds, receive the one reply it expects.
//
// Ownership: the Channel owns the socket and closes it (close() or destruction). The
// socket is switched to non-blocking; every send and receive waits in poll() against a
// deadline, so no call blocks longer than the timeout it is given.
//
// Trust boundary: the backend decides how its bytes are split, which fds it attaches
// and when it closes. receive() reads exactly one header (validated as the reply to the
// expected request before the payload is read, so an absurd size is never read or
// allocated) and exactly the announced payload, never a byte of the next message. Every
// fd that arrives is owned at once (UniqueFd), so fds a hostile backend sends are closed
// however the call ends; more fds than kMaxFds (MSG_CTRUNC) is an error.
//
// Thread-safety: none. One thread uses a Channel at a time.
#pragma once

#include <chrono>

#include "vmm/util/unique_fd.h"
#include "vmm/vhost_user/message.h"

namespace conduit::vmm::vhost_user {

class Channel {
  public:
    // Takes a connected AF_UNIX SOCK_STREAM socket; makes it non-blocking and close-on-exec.
    explicit Channel(UniqueFd socket);

    Channel(Channel&&) = default;
    Channel& operator=(Channel&&) = default;

    bool is_open() const { return socket_.valid(); }
    int fd() const { return socket_.get(); }
    void close() { socket_.reset(); }

    // Sends the whole message (partial writes resumed, EINTR retried, the fds attached
    // to its first byte). Error(Disconnected) if the backend is gone, Error(Timeout) if
    // the socket stays full.
    void send(const OutgoingMessage& msg, std::chrono::milliseconds timeout);

    // Receives one complete reply to `expected` within `timeout`: Error(Timeout) when it
    // does not arrive in full, Error(Disconnected) on EOF (before or inside the
    // message), Error(Protocol) for an invalid header or too many fds. The payload size
    // is only bounded here; decode_*_reply checks it exactly.
    ReceivedMessage receive(Request expected, std::chrono::milliseconds timeout);

    // What an idle connection (no request outstanding) has to say, without blocking.
    enum class IdleState {
        Quiet,        // nothing to read: still connected
        Closed,       // EOF or reset: the backend went away
        Unsolicited,  // bytes nobody asked for: a protocol violation
    };
    IdleState poll_idle();

  private:
    UniqueFd socket_;
};

}  // namespace conduit::vmm::vhost_user
