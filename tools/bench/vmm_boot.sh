#!/usr/bin/env bash
# Benchmark: conduit-vmm against QEMU/KVM, boot time and resident overhead, in the nested
# KVM rig (one run; see tools/bench/vmm_boot.py and docs/vmm.md, "Measured").
# Usage (as root, after tools/setup.sh and a build; the rig lock is the caller's):
#   flock /tmp/conduit-rig.lock tools/bench/vmm_boot.sh [--rounds N] [--json FILE]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
exec /usr/bin/python3 "$top/tools/bench/vmm_boot.py" "$@"
