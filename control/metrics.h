// control/metrics: every counter in Prometheus' text format, served over HTTP
// (GET /metrics) on the address in control.metrics (127.0.0.1:9477 by default).
#pragma once

// Boost 1.74's asio uses std::exchange without including <utility> in C++20.
#include <utility>

#include <boost/asio.hpp>
#include <functional>
#include <memory>
#include <string>

namespace conduit::dp {
class Dataplane;
}

namespace conduit::control {

// The exposition text: ports, bridges, workers (PMD statistics), the mbuf pool, captures
// and whatever `extra` adds (the control server's own counters).
std::string render_metrics(dp::Dataplane& dp, const std::string& extra);

class MetricsServer {
  public:
    // address: "IPV4:PORT" (port 0 picks a free one). Throws std::runtime_error.
    MetricsServer(boost::asio::io_context& io, const std::string& address,
                  std::function<std::string()> render);
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    std::string address() const;  // where it listens, with the real port

  private:
    class Connection;
    void accept();

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::function<std::string()> render_;
    std::shared_ptr<bool> alive_;
};

}  // namespace conduit::control
