#!/usr/bin/env bash
# conduit: install what the project needs (idempotent), prepare hugepages, build.
# Usage: tools/setup.sh [--no-build]
# Writes build/conduit-env.sh with facts later scripts read (hugepages or not).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (DPDK needs hugepages and vhost sockets)" >&2
    exit 1
fi

# Everything the build, the demo and the test suite use, by Debian 12 package name.
packages=(
    build-essential g++ meson ninja-build pkg-config python3 python3-pytest
    dpdk dpdk-dev libdpdk-dev libyaml-cpp-dev nlohmann-json3-dev libboost-dev
    libgtest-dev libgmock-dev clang libclang-rt-14-dev libedit-dev
    iproute2 ethtool procps psmisc kmod cpio gzip busybox-static tshark
    qemu-system-x86 linux-image-amd64 openvswitch-switch-dpdk gnuplot-nox
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Hugepages: 2 MiB pages, 1536 of them (3 GiB) shared by conduitd, the guests
# and the peers the benchmark runs. Fall back to EAL --no-huge when impossible.
huge=1
want=1536
have=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
if [ "$have" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages 2>/dev/null || true
fi
mkdir -p /dev/hugepages
if ! mountpoint -q /dev/hugepages; then
    mount -t hugetlbfs none /dev/hugepages 2>/dev/null || true
fi
free_pages=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
if ! mountpoint -q /dev/hugepages || [ "${free_pages:-0}" -lt 256 ]; then
    echo "setup: hugepages unavailable (free=${free_pages:-0}); using EAL --no-huge" >&2
    huge=0
fi

mkdir -p build
cat > build/conduit-env.sh <<ENV
# written by tools/setup.sh
export CONDUIT_HUGEPAGES=$huge
ENV

if [ "${1:-}" != "--no-build" ]; then
    if [ ! -f build/release/build.ninja ]; then
        meson setup build/release --buildtype=debugoptimized
    fi
    ninja -C build/release
fi
