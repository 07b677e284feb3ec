#include "control/rpc_server.h"

#include <grp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>

#include "dataplane/log.h"

namespace conduit::control {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

class RpcServer::Session : public std::enable_shared_from_this<Session> {
  public:
    Session(RpcServer& server, stream::socket socket)
        : server_(server),
          alive_(server.alive_),
          socket_(std::move(socket)),
          stall_timer_(server.io_),
          write_timer_(server.io_) {}

    void start() {
        ++server_.stats_.clients;
        read();
    }

    // Refuses the client with an error, then closes.
    void refuse(int code, const std::string& message) {
        ++server_.stats_.rejected;
        send(rpc::to_line(rpc::error_reply(nullptr, code, message)));
        closing_ = true;
    }

    ~Session() {
        if (*alive_) {
            --server_.stats_.clients;
        }
    }

  private:
    void read() {
        if (closing_) {
            return;
        }
        auto self = shared_from_this();
        socket_.async_read_some(asio::buffer(buffer_),
                                [self](boost::system::error_code ec, std::size_t n) {
                                    if (ec || !*self->alive_) {
                                        self->close();
                                        return;
                                    }
                                    self->received(std::string_view(self->buffer_.data(), n));
                                });
    }

    void received(std::string_view data) {
        const bool fits = framer_.feed(data);
        while (auto message = framer_.next()) {
            ++server_.stats_.requests;
            if (auto reply = server_.dispatcher_.handle(*message)) {
                // Keys are serialised in order, so an error reply starts with it.
                if (reply->starts_with("{\"error\"")) {
                    ++server_.stats_.errors;
                }
                send(std::move(*reply));
            }
        }
        if (!fits || framer_.overflowed()) {
            CLOG_WARN("control", "client sent a message over %zu bytes: closing it",
                      rpc::kMaxMessage);
            refuse(rpc::kTooLarge,
                   "message larger than " + std::to_string(rpc::kMaxMessage) + " bytes");
            return;
        }
        // A message begun but not finished must be finished in time.
        if (framer_.pending() != 0) {
            if (!stall_armed_) {
                stall_armed_ = true;
                stall_timer_.expires_after(
                    std::chrono::milliseconds(server_.config_.stall_timeout_ms));
                auto self = shared_from_this();
                stall_timer_.async_wait([self](boost::system::error_code ec) {
                    if (ec || !*self->alive_ || !self->stall_armed_) {
                        return;
                    }
                    CLOG_WARN("control", "client left a request unfinished: closing it");
                    self->refuse(rpc::kTimeout,
                                 "request incomplete after " +
                                     std::to_string(self->server_.config_.stall_timeout_ms) +
                                     " ms");
                });
            }
        } else if (stall_armed_) {
            stall_armed_ = false;
            stall_timer_.cancel();
        }
        // Replies the client has not taken yet: stop reading its requests until it does
        // (or the write deadline drops it), so it cannot make us buffer without end.
        if (outbox_bytes_ > kMaxOutbox) {
            read_paused_ = true;
            return;
        }
        read();
    }

    void send(std::string line) {
        line += '\n';
        outbox_bytes_ += line.size();
        outbox_.push_back(std::move(line));
        if (!writing_) {
            write();
        }
    }

    void write() {
        if (outbox_.empty()) {
            writing_ = false;
            if (closing_) {
                close();
            }
            return;
        }
        writing_ = true;
        auto self = shared_from_this();
        // A client that stops reading its replies is dropped rather than buffered forever.
        write_timer_.expires_after(std::chrono::milliseconds(server_.config_.stall_timeout_ms));
        write_timer_.async_wait([self](boost::system::error_code ec) {
            if (!ec && *self->alive_ && self->writing_) {
                CLOG_WARN("control", "client does not read its replies: closing it");
                ++self->server_.stats_.rejected;
                self->close();
            }
        });
        asio::async_write(socket_, asio::buffer(outbox_.front()),
                          [self](boost::system::error_code ec, std::size_t) {
                              self->write_timer_.cancel();
                              if (ec || !*self->alive_) {
                                  self->close();
                                  return;
                              }
                              self->outbox_bytes_ -= self->outbox_.front().size();
                              self->outbox_.pop_front();
                              if (self->read_paused_ && self->outbox_bytes_ <= kMaxOutbox) {
                                  self->read_paused_ = false;
                                  self->read();
                              }
                              self->write();
                          });
    }

    void close() {
        boost::system::error_code ignored;
        stall_timer_.cancel();
        write_timer_.cancel();
        socket_.shutdown(stream::socket::shutdown_both, ignored);
        socket_.close(ignored);
        outbox_.clear();
        outbox_bytes_ = 0;
    }

    RpcServer& server_;
    std::shared_ptr<bool> alive_;
    stream::socket socket_;
    asio::steady_timer stall_timer_;
    asio::steady_timer write_timer_;
    std::array<char, 64 * 1024> buffer_;
    rpc::LineFramer framer_;
    std::deque<std::string> outbox_;
    bool writing_ = false;
    bool closing_ = false;
    bool stall_armed_ = false;
    bool read_paused_ = false;
    std::size_t outbox_bytes_ = 0;
    static constexpr std::size_t kMaxOutbox = 4 << 20;
};

RpcServer::RpcServer(asio::io_context& io, const ControlConfig& config,
                     const rpc::Dispatcher& dispatcher)
    : io_(io),
      dispatcher_(dispatcher),
      config_(config),
      path_(config.socket),
      acceptor_(io),
      alive_(std::make_shared<bool>(true)) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(fs::path(path_).parent_path(), ec);
    if (ec) {
        throw std::runtime_error("control socket: cannot create the directory of " + path_ + ": " +
                                 ec.message());
    }
    // A socket file left by a conduitd that was killed would make bind() fail; one that
    // answers belongs to a conduitd still running.
    struct stat st {};
    if (lstat(path_.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            throw std::runtime_error("control socket: " + path_ + " exists and is not a socket");
        }
        stream::socket probe(io);
        boost::system::error_code connect_error;
        probe.connect(stream::endpoint(path_), connect_error);
        if (!connect_error) {
            throw std::runtime_error("control socket: " + path_ +
                                     " is in use (another conduitd is running)");
        }
        unlink(path_.c_str());
    }
    const mode_t old_mask = umask(0117);  // the socket is created 0660, never wider
    boost::system::error_code bind_error;
    acceptor_.open(stream(), bind_error);
    if (!bind_error) {
        acceptor_.bind(stream::endpoint(path_), bind_error);
    }
    umask(old_mask);
    if (bind_error) {
        throw std::runtime_error("control socket: cannot bind " + path_ + ": " +
                                 bind_error.message());
    }
    gid_t group = 0;
    if (!config_.socket_group.empty()) {
        const struct group* g = getgrnam(config_.socket_group.c_str());
        if (g == nullptr) {
            throw std::runtime_error("control socket: no group '" + config_.socket_group + "'");
        }
        group = g->gr_gid;
    }
    if (chown(path_.c_str(), 0, group) != 0 || chmod(path_.c_str(), 0660) != 0) {
        throw std::runtime_error("control socket: cannot set the owner and mode of " + path_ +
                                 ": " + std::strerror(errno));
    }
    acceptor_.listen(64);
    accept();
    CLOG_INFO("control", "control server on %s (JSON-RPC 2.0, API %d)", path_.c_str(),
              rpc::kApiVersion);
}

RpcServer::~RpcServer() {
    *alive_ = false;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    unlink(path_.c_str());
}

void RpcServer::accept() {
    acceptor_.async_accept(
        [this, alive = alive_](boost::system::error_code ec, stream::socket socket) {
            if (!*alive) {
                return;
            }
            if (!ec) {
                ++stats_.connections;
                auto session = std::make_shared<Session>(*this, std::move(socket));
                if (stats_.clients >= config_.max_clients) {
                    CLOG_WARN("control", "more than %u clients: refusing one", config_.max_clients);
                    ++stats_.clients;  // the session's destructor counts it out again
                    session->refuse(rpc::kFailed, "too many clients (max_clients " +
                                                      std::to_string(config_.max_clients) + ")");
                } else {
                    session->start();
                }
            }
            accept();
        });
}

}  // namespace conduit::control
