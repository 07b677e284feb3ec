// vmm/vhost_user/error: the one exception type of the vhost-user frontend library.
//
// Every failure that involves the backend (what it sent, that it went away, that it
// stayed silent) or the host (a socket call) is an Error whose what() is a complete
// sentence for a log line, e.g. "net0: GET_FEATURES reply: payload 4 bytes, expected 8".
// Mistakes of the caller (a call in the wrong state, an invalid VringSetup) are
// std::logic_error / std::invalid_argument instead: they are bugs in the VMM, not events.
#pragma once

#include <stdexcept>
#include <string>

namespace conduit::vmm::vhost_user {

class Error : public std::runtime_error {
  public:
    enum class Kind {
        Protocol,      // the backend sent something malformed or unexpected
        Rejected,      // the backend answered a REPLY_ACK with failure
        Incompatible,  // well-formed, but the features cannot work together
        Timeout,       // no (complete) reply within the call's timeout
        Disconnected,  // the backend closed the connection (EOF, EPIPE, ECONNRESET)
        System,        // a system call failed for a local reason (errno in the text)
        Config,        // a socket path or setting cannot work (too long, no directory...)
    };

    Error(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    Kind kind() const { return kind_; }

  private:
    Kind kind_;
};

inline const char* kind_name(Error::Kind kind) {
    switch (kind) {
        case Error::Kind::Protocol:
            return "protocol";
        case Error::Kind::Rejected:
            return "rejected";
        case Error::Kind::Incompatible:
            return "incompatible";
        case Error::Kind::Timeout:
            return "timeout";
        case Error::Kind::Disconnected:
            return "disconnected";
        case Error::Kind::System:
            return "system";
        case Error::Kind::Config:
            return "config";
    }
    return "unknown";
}

}  // namespace conduit::vmm::vhost_user
