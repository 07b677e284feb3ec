#!/usr/bin/env bash
# The benchmark suite: conduitd vs dpdk-testpmd io forwarding vs OVS-DPDK (NORMAL), driven
# by conduit-gen; 2 guests and 16 guests + uplink, 1 flow and 10,000 MACs, 64 B, 1518 B
# and IMIX; rewrites docs/benchmarks.md, .json and the plots. Holds the rig lock while it
# runs (other checkouts' rig users wait), through tools/rig-lock: a caller that holds
# the lock already (flock /tmp/conduit-rig.lock tools/bench/run.sh) does not wait on itself.
# Usage (as root, after tools/setup.sh): tools/bench/run.sh [--quick] [--trials N] ...
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/build/conduit-env.sh"
exec "$top/tools/rig-lock" /usr/bin/python3 "$top/tools/bench/suite.py" "$@"
