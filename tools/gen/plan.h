// tools/gen/plan: who sends to whom. A topology over the ports becomes streams; host
// MACs are spread over the ports, and each stream cycles through the source hosts of
// its port and the destination hosts of the port it is for.
#pragma once

#include <string>
#include <vector>

#include "tools/gen/traffic.h"

namespace conduit::gen {

// Host h of port p: 02:c0:pp:hh:hh:hh (locally administered, unicast).
inline Mac host_mac(unsigned port, uint32_t host) {
    return 0x02C0'0000'0000ULL | (uint64_t{port & 0xff} << 24) | (host & 0xff'ffff);
}

// RFC 2889 learning addresses of iteration i: 02:c1:ii:nn:nn:nn, fresh for every
// iteration so that nothing left from an earlier one can make a later one pass.
inline Mac learning_mac(unsigned iteration, uint32_t n) {
    return 0x02C1'0000'0000ULL | (uint64_t{iteration & 0xff} << 24) | (n & 0xff'ffff);
}

struct TrafficPlan {
    std::vector<StreamSpec> streams;   // the measured traffic
    std::vector<StreamSpec> learning;  // per port: each of its hosts once, to broadcast
    std::vector<uint32_t> hosts;       // host MACs per port
};

struct PlanPort {
    uint16_t index;  // in the PortSet
    std::string name;
};

// topology: pairs | star[:PORT] | mesh | loop, over `ports`. macs: host MACs over those
// ports (at least one each); flows: UDP flows per stream; rounds: learning frames per
// host. Throws std::invalid_argument on a topology the ports cannot form.
TrafficPlan make_plan(const std::vector<PlanPort>& ports, const std::string& topology,
                      bool expect_loopback, uint32_t macs, uint32_t flows, unsigned learn_rounds);

}  // namespace conduit::gen
