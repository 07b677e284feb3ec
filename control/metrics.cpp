#include "control/metrics.h"

#include <rte_cycles.h>
#include <rte_mempool.h>

#include <sstream>

#include "dataplane/dataplane.h"
#include "dataplane/log.h"

namespace conduit::control {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// Label values escape backslash, double quote and newline (exposition format 0.0.4).
std::string label(const std::string& value) {
    std::string out;
    for (const char c : value) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

class Family {
  public:
    Family(std::ostringstream& out, std::string name, const char* type, const std::string& help)
        : out_(out), name_(std::move(name)) {
        out_ << "# HELP " << name_ << ' ' << help << "\n# TYPE " << name_ << ' ' << type << '\n';
    }
    template <typename T>
    void sample(const std::string& labels, T value) {
        out_ << name_;
        if (!labels.empty()) {
            out_ << '{' << labels << '}';
        }
        out_ << ' ' << value << '\n';
    }

  private:
    std::ostringstream& out_;
    std::string name_;
};

}  // namespace

std::string render_metrics(dp::Dataplane& dp, const std::string& extra) {
    std::ostringstream out;
    const auto lock = dp.lock();
    const auto ports = dp.ports();
    const auto bridges = dp.bridges();

    Family info(out, "conduit_info", "gauge", "conduitd's version");
    info.sample("version=\"" CONDUIT_VERSION "\"", 1);

    auto port_labels = [&](const dp::PortEntry& e) {
        return "port=\"" + label(e.config.name) + "\",bridge=\"" + label(dp.bridge(e.bridge).name) +
               "\"";
    };
    Family up(out, "conduit_port_up", "gauge", "1 when the port's guest or link is up");
    for (const auto* e : ports) {
        up.sample(port_labels(*e) + ",type=\"" + e->port->type() + "\"", e->port->is_up() ? 1 : 0);
    }
    Family admin(out, "conduit_port_admin_up", "gauge", "1 when the port is administratively up");
    for (const auto* e : ports) {
        admin.sample(port_labels(*e), e->config.admin_up ? 1 : 0);
    }
    // Raw counters: Prometheus wants them never to go back (clear stats does not touch them).
    std::vector<std::pair<const dp::PortEntry*, dp::CounterList>> port_values;
    for (const auto* e : ports) {
        port_values.emplace_back(e, dp.port_counters(e->port->index(), true));
    }
    if (!port_values.empty()) {
        const auto& names = port_values.front().second;
        for (std::size_t i = 0; i < names.size(); ++i) {
            const std::string name = names[i].first;
            const char* help = i < sw::PortCounters::kCount
                                   ? sw::PortCounters::kHelp[i]
                                   : "ethdev only: frames the NIC dropped for lack of "
                                     "receive descriptors";
            Family f(out, "conduit_port_" + name + "_total", "counter", help);
            for (const auto& [e, values] : port_values) {
                f.sample(port_labels(*e), values[i].second);
            }
        }
    }

    Family entries(out, "conduit_bridge_mac_entries", "gauge", "live MAC table entries");
    Family size(out, "conduit_bridge_mac_table_size", "gauge", "MAC table capacity");
    Family aging(out, "conduit_bridge_mac_aging_seconds", "gauge", "MAC aging time");
    for (const auto* b : bridges) {
        const std::string l = "bridge=\"" + label(b->name) + "\"";
        entries.sample(l, b->fdb->size());
    }
    for (const auto* b : bridges) {
        size.sample("bridge=\"" + label(b->name) + "\"", b->fdb->capacity());
    }
    for (const auto* b : bridges) {
        aging.sample("bridge=\"" + label(b->name) + "\"", b->fdb->aging_ms() / 1000);
    }
    for (std::size_t i = 0; i < sw::BridgeCounters::kCount; ++i) {
        Family f(out, std::string("conduit_bridge_") + sw::BridgeCounters::kNames[i] + "_total",
                 "counter", sw::BridgeCounters::kHelp[i]);
        for (const auto* b : bridges) {
            f.sample("bridge=\"" + label(b->name) + "\"",
                     dp.bridge_counters(b->id, true)[i].second);
        }
    }

    const auto workers = dp.workers(true);
    const double hz = static_cast<double>(rte_get_tsc_hz());
    auto worker_labels = [](const dp::WorkerReport& w) {
        return "worker=\"" + std::to_string(w.id) + "\",cpu=\"" + std::to_string(w.cpu) + "\"";
    };
    struct WorkerFamily {
        const char* name;
        const char* help;
        double (*value)(const dp::WorkerStatsSnapshot&, double hz);
    };
    static const WorkerFamily kWorker[] = {
        {"conduit_worker_polls_total", "poll loops",
         [](const dp::WorkerStatsSnapshot& s, double) { return static_cast<double>(s.polls); }},
        {"conduit_worker_busy_polls_total", "poll loops that received frames",
         [](const dp::WorkerStatsSnapshot& s, double) {
             return static_cast<double>(s.busy_polls);
         }},
        {"conduit_worker_rx_packets_total", "frames received by the worker",
         [](const dp::WorkerStatsSnapshot& s, double) {
             return static_cast<double>(s.rx_packets);
         }},
        {"conduit_worker_rx_bursts_total", "receive calls that returned frames",
         [](const dp::WorkerStatsSnapshot& s, double) { return static_cast<double>(s.rx_bursts); }},
        {"conduit_worker_busy_seconds_total", "time in loops that forwarded frames",
         [](const dp::WorkerStatsSnapshot& s, double hz) {
             return static_cast<double>(s.busy_cycles) / hz;
         }},
        {"conduit_worker_idle_seconds_total", "time polling without finding frames",
         [](const dp::WorkerStatsSnapshot& s, double hz) {
             return static_cast<double>(s.idle_cycles) / hz;
         }},
        {"conduit_worker_sleep_seconds_total", "time asleep in the idle back-off",
         [](const dp::WorkerStatsSnapshot& s, double hz) {
             return static_cast<double>(s.sleep_cycles) / hz;
         }},
        {"conduit_worker_idle_sleeps_total", "idle back-off sleeps",
         [](const dp::WorkerStatsSnapshot& s, double) { return static_cast<double>(s.sleeps); }},
        {"conduit_worker_idle_holds_total",
         "idle spells polled through, without sleeping, after a high rate",
         [](const dp::WorkerStatsSnapshot& s, double) { return static_cast<double>(s.holds); }},
        {"conduit_worker_stalls_total",
         "times the worker was held up over 500 us (its CPU taken away)",
         [](const dp::WorkerStatsSnapshot& s, double) { return static_cast<double>(s.stalls); }},
    };
    for (const auto& wf : kWorker) {
        Family f(out, wf.name, "counter", wf.help);
        for (const auto& w : workers) {
            f.sample(worker_labels(w), wf.value(w.stats, hz));
        }
    }
    Family longest(out, "conduit_worker_longest_sleep_seconds", "gauge",
                   "the longest single idle back-off sleep");
    for (const auto& w : workers) {
        longest.sample(worker_labels(w), static_cast<double>(w.stats.longest_sleep_us) / 1e6);
    }
    Family longest_stall(out, "conduit_worker_longest_stall_seconds", "gauge",
                         "the longest time the worker was held up");
    for (const auto& w : workers) {
        longest_stall.sample(worker_labels(w), static_cast<double>(w.stats.longest_stall_us) / 1e6);
    }

    const rte_mempool* pool = dp.pool();
    Family pool_size(out, "conduit_mempool_size", "gauge", "mbufs in the pool");
    pool_size.sample("", pool->size);
    Family in_use(out, "conduit_mempool_in_use", "gauge", "mbufs in use (frames in flight)");
    in_use.sample("", rte_mempool_in_use_count(pool));
    out << extra;
    return out.str();
}

// One HTTP exchange: read the request head (8 KiB at most, 5 s at most), answer, close.
class MetricsServer::Connection : public std::enable_shared_from_this<Connection> {
  public:
    Connection(MetricsServer& server, tcp::socket socket)
        : server_(server), alive_(server.alive_), socket_(std::move(socket)), timer_(server.io_) {}

    void start() {
        auto self = shared_from_this();
        timer_.expires_after(std::chrono::seconds(5));
        timer_.async_wait([self](boost::system::error_code ec) {
            if (!ec) {
                boost::system::error_code ignored;
                self->socket_.close(ignored);
            }
        });
        read();
    }

  private:
    void read() {
        auto self = shared_from_this();
        socket_.async_read_some(
            asio::buffer(chunk_), [self](boost::system::error_code ec, std::size_t n) {
                if (ec || !*self->alive_) {
                    self->timer_.cancel();
                    return;
                }
                self->request_.append(self->chunk_.data(), n);
                if (self->request_.find("\r\n\r\n") != std::string::npos ||
                    self->request_.find("\n\n") != std::string::npos) {
                    self->respond();
                } else if (self->request_.size() > 8192) {
                    self->reply("431 Request Header Fields Too Large", "request too large\n");
                } else {
                    self->read();
                }
            });
    }

    void respond() {
        const std::string line = request_.substr(0, request_.find_first_of("\r\n"));
        if (line.rfind("GET ", 0) != 0) {
            reply("405 Method Not Allowed", "only GET\n");
        } else if (line.rfind("GET /metrics ", 0) == 0 || line == "GET /metrics" ||
                   line.rfind("GET /metrics?", 0) == 0) {
            reply("200 OK", server_.render_(), "text/plain; version=0.0.4; charset=utf-8");
        } else if (line.rfind("GET / ", 0) == 0) {
            reply("200 OK", "conduitd metrics: GET /metrics\n");
        } else {
            reply("404 Not Found", "not found: try /metrics\n");
        }
    }

    void reply(const std::string& status, const std::string& body,
               const std::string& type = "text/plain; charset=utf-8") {
        response_ = "HTTP/1.0 " + status + "\r\nContent-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n" + body;
        auto self = shared_from_this();
        asio::async_write(socket_, asio::buffer(response_),
                          [self](boost::system::error_code, std::size_t) {
                              boost::system::error_code ignored;
                              self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
                              self->socket_.close(ignored);
                              self->timer_.cancel();
                          });
    }

    MetricsServer& server_;
    std::shared_ptr<bool> alive_;
    tcp::socket socket_;
    asio::steady_timer timer_;
    std::array<char, 2048> chunk_;
    std::string request_;
    std::string response_;
};

MetricsServer::MetricsServer(asio::io_context& io, const std::string& address,
                             std::function<std::string()> render)
    : io_(io), acceptor_(io), render_(std::move(render)), alive_(std::make_shared<bool>(true)) {
    const auto colon = address.rfind(':');
    boost::system::error_code ec;
    const auto host = asio::ip::make_address_v4(address.substr(0, colon), ec);
    if (ec || colon == std::string::npos) {
        throw std::runtime_error("metrics: bad address '" + address + "'");
    }
    const auto port = static_cast<unsigned short>(std::stoul(address.substr(colon + 1)));
    const tcp::endpoint endpoint(host, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) {
        acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
        acceptor_.bind(endpoint, ec);
    }
    if (!ec) {
        acceptor_.listen(16, ec);
    }
    if (ec) {
        throw std::runtime_error("metrics: cannot listen on " + address + ": " + ec.message() +
                                 " (set control.metrics to another address, or off)");
    }
    accept();
    CLOG_INFO("control", "metrics on http://%s/metrics", this->address().c_str());
}

MetricsServer::~MetricsServer() {
    *alive_ = false;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
}

std::string MetricsServer::address() const {
    boost::system::error_code ec;
    const auto endpoint = acceptor_.local_endpoint(ec);
    return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

void MetricsServer::accept() {
    acceptor_.async_accept(
        [this, alive = alive_](boost::system::error_code ec, tcp::socket socket) {
            if (!*alive) {
                return;
            }
            if (!ec) {
                std::make_shared<Connection>(*this, std::move(socket))->start();
            }
            accept();
        });
}

}  // namespace conduit::control
