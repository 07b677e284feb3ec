#include "tools/gen/plan.h"

#include <stdexcept>

namespace conduit::gen {

namespace {

// Benchmarking addresses (RFC 2544 appendix C): sources in 198.18/16, destinations
// in 198.19/16, the third octet naming the port.
uint32_t ip_of(bool source, unsigned port) {
    return (198u << 24) | ((source ? 18u : 19u) << 16) | ((port & 0xff) << 8) | 1u;
}

}  // namespace

TrafficPlan make_plan(const std::vector<PlanPort>& ports, const std::string& topology,
                      bool expect_loopback, uint32_t macs, uint32_t flows, unsigned learn_rounds) {
    const auto n = static_cast<uint32_t>(ports.size());
    if (n == 0) {
        throw std::invalid_argument("no ports");
    }
    TrafficPlan plan;
    const uint32_t total = macs == 0 ? n : macs;
    if (total < n) {
        throw std::invalid_argument("--macs " + std::to_string(total) + " is fewer than the " +
                                    std::to_string(n) + " ports (each needs one)");
    }
    for (uint32_t i = 0; i < n; ++i) {
        plan.hosts.push_back(total / n + (i < total % n ? 1 : 0));
    }
    // (sender, receiver) positions in `ports`.
    std::vector<std::pair<uint32_t, uint32_t>> pairs;
    if (topology == "pairs") {
        if (n % 2 != 0) {
            throw std::invalid_argument("topology pairs needs an even number of ports, not " +
                                        std::to_string(n));
        }
        for (uint32_t i = 0; i < n; i += 2) {
            pairs.emplace_back(i, i + 1);
            pairs.emplace_back(i + 1, i);
        }
    } else if (topology == "star" || topology.rfind("star:", 0) == 0) {
        uint32_t hub = n - 1;
        if (topology.size() > 5) {
            const std::string name = topology.substr(5);
            hub = n;
            for (uint32_t i = 0; i < n; ++i) {
                if (ports[i].name == name) {
                    hub = i;
                }
            }
            if (hub == n) {
                throw std::invalid_argument("topology star: no port named '" + name + "'");
            }
        }
        if (n < 2) {
            throw std::invalid_argument("topology star needs at least two ports");
        }
        for (uint32_t i = 0; i < n; ++i) {
            if (i != hub) {
                pairs.emplace_back(i, hub);
                pairs.emplace_back(hub, i);
            }
        }
    } else if (topology == "mesh") {
        for (uint32_t i = 0; i < n; ++i) {
            for (uint32_t j = 0; j < n; ++j) {
                if (i != j) {
                    pairs.emplace_back(i, j);
                }
            }
        }
        if (pairs.empty()) {
            throw std::invalid_argument("topology mesh needs at least two ports");
        }
    } else if (topology == "loop") {
        for (uint32_t i = 0; i < n; ++i) {
            pairs.emplace_back(i, i);
        }
    } else {
        throw std::invalid_argument("unknown topology '" + topology +
                                    "' (pairs, star[:PORT], mesh, loop)");
    }
    for (const auto& [a, b] : pairs) {
        StreamSpec s;
        s.name = ports[a].name + "->" + ports[b].name;
        s.tx_port = ports[a].index;
        s.rx_port = expect_loopback ? ports[a].index : ports[b].index;
        s.src_base = host_mac(ports[a].index, 0);
        s.src_count = plan.hosts[a];
        s.dst_base = host_mac(ports[b].index, 0);
        s.dst_count = plan.hosts[b];
        s.flows = flows;
        s.ip_src = ip_of(true, ports[a].index);
        s.ip_dst = ip_of(false, ports[b].index);
        plan.streams.push_back(s);
    }
    for (uint32_t i = 0; i < n; ++i) {
        StreamSpec s;
        s.name = ports[i].name + "->learning";
        s.tx_port = ports[i].index;
        s.rx_port = ports[i].index;
        s.src_base = host_mac(ports[i].index, 0);
        s.src_count = plan.hosts[i];
        s.dst_base = kBroadcast;
        s.dst_count = 1;
        s.ip_src = ip_of(true, ports[i].index);
        s.ip_dst = 0xffffffffu;
        s.frames = uint64_t{plan.hosts[i]} * learn_rounds;
        plan.learning.push_back(s);
    }
    return plan;
}

}  // namespace conduit::gen
