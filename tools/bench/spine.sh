#!/usr/bin/env bash
# Benchmark: conduitd vs dpdk-testpmd io forwarding vs OVS-DPDK (NORMAL), between two
# guest ports, 64- and 1518-byte frames, one run; writes docs/benchmarks.md.
# Usage (as root, after tools/setup.sh): tools/bench/spine.sh [--trials N] [--duration S] [--quick]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/build/conduit-env.sh"
exec /usr/bin/python3 "$top/tools/bench/spine.py" "$@"
