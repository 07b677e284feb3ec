// control/config_diff: what changes between two configs, as a list of operations the
// datapath can apply while running, and the settings that only a restart can change.
// Used by `conduitctl apply` (and its --dry-run) and by every single-item command.
#pragma once

#include <string>
#include <vector>

#include "control/config.h"

namespace conduit::control {

struct ConfigChange {
    enum class Kind {
        kRemoveMac,
        kRemovePort,
        kRemoveBridge,
        kSetBridge,    // MAC aging or table size
        kSetAdmin,     // a port's admin state, nothing else
        kReplacePort,  // endpoint settings changed: the port is re-created
        kSetLogLevel,
        kAddBridge,
        kAddPort,
        kAddMac,
    };
    Kind kind;
    std::string bridge;
    std::string port;
    uint64_t mac = 0;
    std::string text;  // one line for people: "+ port br0/vm3: vhost-user /run/vm3.sock client"
};

struct ConfigPlan {
    // In the order they are applied: removals, settings, additions.
    std::vector<ConfigChange> changes;
    // Settings that differ but are read only at start ("conduitd.workers: [1] -> [0, 1]").
    std::vector<std::string> restart_required;

    bool empty() const { return changes.empty() && restart_required.empty(); }
    std::string text() const;  // every line, or "no changes"
};

ConfigPlan diff_configs(const Config& from, const Config& to);

const char* change_kind_name(ConfigChange::Kind kind);

// One line describing a port's endpoint: "vhost-user /run/x.sock client, 1 queue".
std::string describe_port(const PortConfig& port);

}  // namespace conduit::control
