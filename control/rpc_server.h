// control/rpc_server: the JSON-RPC control server on a unix socket (0660, owned by root
// and the configured group). One asio thread serves every client: reads and writes are
// asynchronous, so a slow or stalled client never holds up another; requests are
// handled one at a time, in order.
//
// Misbehaving clients: a message over rpc::kMaxMessage bytes gets an error and the
// connection is closed; a message left half-sent for stall_timeout_ms gets an error and
// is closed; a client that does not read its replies is closed after the same time;
// beyond max_clients a new client gets an error and is closed.
#pragma once

// Boost 1.74's asio uses std::exchange without including <utility> in C++20.
#include <utility>

#include <boost/asio.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "control/config.h"
#include "control/rpc.h"

namespace conduit::control {

class RpcServer {
  public:
    // Binds and listens; throws std::runtime_error (socket in use, directory not writable).
    RpcServer(boost::asio::io_context& io, const ControlConfig& config,
              const rpc::Dispatcher& dispatcher);
    ~RpcServer();  // closes every connection and removes the socket file
    RpcServer(const RpcServer&) = delete;
    RpcServer& operator=(const RpcServer&) = delete;

    struct Stats {
        uint64_t connections = 0;  // accepted in all
        uint64_t clients = 0;      // connected now
        uint64_t requests = 0;     // messages handled
        uint64_t errors = 0;       // replies that were errors
        uint64_t rejected = 0;     // connections closed for misbehaving or over the limit
    };
    Stats stats() const { return stats_; }
    const std::string& path() const { return path_; }

  private:
    class Session;
    void accept();

    boost::asio::io_context& io_;
    const rpc::Dispatcher& dispatcher_;
    ControlConfig config_;
    std::string path_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    Stats stats_;
    std::shared_ptr<bool> alive_;  // sessions outliving the server see false
};

}  // namespace conduit::control
