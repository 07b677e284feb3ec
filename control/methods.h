// control/methods: the JSON-RPC methods conduitd offers (API version rpc::kApiVersion),
// documented in docs/control.md. Each checks its parameters, then reads the datapath or
// changes the running config.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "control/rpc.h"

namespace conduit::dp {
class Dataplane;
}

namespace conduit::control {

class RunningConfig;

struct ServerInfo {
    std::string socket;
    std::string metrics;               // the address it listens on, or "off"
    std::function<rpc::json()> stats;  // the control server's own counters
};

void register_methods(rpc::Dispatcher& dispatcher, dp::Dataplane& dp, RunningConfig& config,
                      ServerInfo info);

// The config as JSON (the same structure as the YAML file).
rpc::json config_to_json(const struct Config& config);

}  // namespace conduit::control
