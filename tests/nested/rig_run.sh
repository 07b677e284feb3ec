#!/bin/bash
# Runs one kvmrig script in a clean world; the same file serves the nested rig (inside
# the outer guest, chrooted into the host's files) and the direct rig (on the host).
#
#   unshare --mount --pid --net --ipc --uts --fork --kill-child --mount-proc \
#       --propagation private bash rig_run.sh RUN_DIR
#
# This shell is PID 1 of its own PID namespace: whatever the script leaves running dies
# when it ends. In the private mount namespace it gets fresh /run, /tmp, /dev/shm and
# its own hugetlbfs instance (stale hugepage files of an earlier run cannot eat pages),
# a sysfs of its own network namespace (only loopback, brought up here) and bpffs.
# RUN_DIR and the checkout keep their paths. The script's exit status is this shell's.
set -u
run=$1
fail() { echo "rig_run: $*" >&2; exit 125; }
# As PID 1 this shell ignores every signal it has no handler for, so timeout(1)'s
# SIGTERM needs one: before the script starts it ends the run, after it is passed on.
terminated=0
trap 'terminated=1' TERM INT

# /tmp and /run are replaced below: a run directory under them is carried over through
# an open descriptor and bound back at the same path.
exec 9<"$run" || fail "cannot open $run"
# So is the checkout this script lives in, when it is under them (a CI job's clone).
top=$(cd "$(dirname "$0")/../.." && pwd)
exec 8<"$top" || fail "cannot open $top"
mount -t tmpfs -o mode=0755 tmpfs /run || fail "cannot mount a tmpfs on /run"
mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "cannot mount a tmpfs on /tmp"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "cannot mount a tmpfs on /dev/shm"
case "$run" in
    /run/* | /tmp/* | /dev/shm/*)
        mkdir -p "$run" && mount --no-canonicalize --bind /proc/self/fd/9 "$run" ||
            fail "cannot bind $run back after replacing its parent"
        ;;
esac
case "$top" in
    /run/* | /tmp/*)
        mkdir -p "$top" && mount --no-canonicalize --bind /proc/self/fd/8 "$top" ||
            fail "cannot bind the checkout $top back after replacing its parent"
        ;;
esac
exec 9<&- 8<&-
mount -t sysfs sysfs /sys || fail "cannot mount sysfs for the new network namespace"
mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "rig_run: no bpffs here" >&2
[ -d /dev/hugepages ] || mkdir -p /dev/hugepages
mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages || fail "cannot mount hugetlbfs"
ip link set lo up || fail "cannot bring loopback up"

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TMPDIR=/tmp
# shellcheck disable=SC1091
. "$run/env.sh" || fail "cannot read $run/env.sh"
cd "$run" || fail "cannot enter $run"
[ "$terminated" = 0 ] || exit 143
# A child, not exec: the script's processes should behave as they would anywhere else,
# not as PID 1. In the background, so that a trapped signal interrupts the wait.
bash "$run/script.sh" </dev/null &
script=$!
trap 'kill -TERM "$script" 2>/dev/null' TERM INT
while :; do
    wait "$script"
    rc=$?
    # A signal interrupts wait with 128+N while the script may still be running.
    kill -0 "$script" 2>/dev/null || break
done
exit "$rc"
