// control/telemetry: conduitd's own commands on DPDK's telemetry socket
// (/var/run/dpdk/<file_prefix>/dpdk_telemetry.v2; query with dpdk-telemetry.py -f PREFIX).
#pragma once

namespace conduit::dp {
class Dataplane;
}

namespace conduit::control {

// Registers the /conduit/... commands, answering from `dp`. Call detach before `dp` goes.
void telemetry_attach(dp::Dataplane& dp);
void telemetry_detach();

}  // namespace conduit::control
