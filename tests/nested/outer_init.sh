#!/bin/busybox sh
# The outer guest's agent (busybox sh, run by mkinitramfs's /init after it loaded the
# virtio, 9p and KVM modules). It builds a root for the host's files, proves /dev/kvm
# runs a vCPU, then runs the jobs kvmrig.NestedKvm queues until it is told to power off.
#
# Kernel command line: rig.work=DIR (the host's per-session work directory, shared
# writable as 9p tag "work" and mounted at the same path inside), rig.top=DIR (the
# checkout: rig_run.sh and kvmprobe.py are read from it).
#
# Protocol, all under rig.work: the host writes runs/N/{script.sh,env.sh,timeout}, then
# creates queue/N; this agent removes queue/N, runs the job and writes runs/N/status
# ("RC START END", guest uptimes) last, by rename. queue/poweroff ends the guest.
# state/ready (facts about this guest) or state/boot-failed (the reason) ends the boot.

log() { echo "kvmrig: $*"; }

arg() {
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1"=*) echo "${word#*=}" ;; esac
    done
}

WORK=$(arg rig.work)
TOP=$(arg rig.top)
W=/host$WORK

die() {
    log "BOOT-FAILED: $*"
    if [ -d "$W/state" ]; then
        echo "$*" >"$W/state/boot-failed.tmp" && mv "$W/state/boot-failed.tmp" "$W/state/boot-failed"
    fi
    poweroff -f
    sleep 600
}

# Run in order: the ones after need the ones before.
mounts() {
    mkdir -p /host || return 1
    # The host's files are read-only and do not change under a test: cache them.
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostfs /host ||
        { echo "cannot mount the host's root (9p tag hostfs)"; return 1; }
    # A checkout under /tmp or /run (a CI job's clone, say) must stay visible through the
    # guest's own tmpfs there: hold it aside and bind it back.
    keep=""
    case "$TOP" in
        /tmp/*|/run/*)
            mkdir -p /keep-top && mount -o bind "/host$TOP" /keep-top ||
                { echo "cannot hold the checkout $TOP aside"; return 1; }
            keep=1 ;;
    esac
    mount -t tmpfs -o mode=0755 tmpfs /host/run || { echo "tmpfs on /run"; return 1; }
    mount -t tmpfs -o mode=1777 tmpfs /host/tmp || { echo "tmpfs on /tmp"; return 1; }
    if [ -n "$keep" ]; then
        mkdir -p "/host$TOP" && mount -o bind /keep-top "/host$TOP" ||
            { echo "cannot bind the checkout $TOP back under its tmpfs"; return 1; }
    fi
    mkdir -p "$W" || { echo "cannot create $WORK"; return 1; }
    # The work directory is written by both sides while the guest runs: no cache.
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none work "$W" ||
        { echo "cannot mount the work directory (9p tag work) on $WORK"; return 1; }
    mount -t proc proc /host/proc || { echo "proc"; return 1; }
    mount -t sysfs sysfs /host/sys || { echo "sysfs"; return 1; }
    mount -t devtmpfs devtmpfs /host/dev || { echo "devtmpfs"; return 1; }
    mkdir -p /host/dev/pts /host/dev/shm /host/dev/hugepages
    mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /host/dev/pts || { echo "devpts"; return 1; }
    mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm || { echo "tmpfs on /dev/shm"; return 1; }
    mount -t hugetlbfs -o pagesize=2M nodev /host/dev/hugepages || { echo "hugetlbfs"; return 1; }
    mount -t bpf bpf /host/sys/fs/bpf || log "no bpffs (continuing)"
    # devtmpfs has no /dev/fd; bash process substitution needs it.
    ln -sf /proc/self/fd /host/dev/fd
    ln -sf /proc/self/fd/0 /host/dev/stdin
    ln -sf /proc/self/fd/1 /host/dev/stdout
    ln -sf /proc/self/fd/2 /host/dev/stderr
    ip link set lo up || { echo "loopback"; return 1; }
}

why=$(mounts 2>&1) || die "mounts: $why"
# kvm_amd options (rig.kvm_amd=npt=0,...) need a reload: /init loaded it without any.
# (Without kvm_amd at all, the /dev/kvm check below says so.)
options=$(arg rig.kvm_amd | tr , ' ')
if [ -n "$options" ] && grep -q '^kvm_amd ' /proc/modules; then
    rmmod kvm_amd && insmod /lib/modules/kvm-amd.ko $options || die "cannot load kvm_amd $options"
    log "kvm_amd loaded with $options"
fi
# The kernel asks for modules (veth, bridge, tun, ...) through its modprobe helper, run
# in this initramfs: send it to the host's modprobe, whose /lib/modules matches us.
printf '#!/bin/busybox sh\nexec /bin/busybox chroot /host /sbin/modprobe "$@"\n' >/sbin/rig-modprobe
chmod 755 /sbin/rig-modprobe && echo /sbin/rig-modprobe >/proc/sys/kernel/modprobe
[ -d "$W/state" ] || die "the work directory has no state/ (is rig.work right?)"
if [ ! -c /host/dev/kvm ]; then
    grep -q '^kvm_amd ' /proc/modules || die "no /dev/kvm after loading kvm_amd: kvm_amd is not loaded"
    die "no /dev/kvm after loading kvm_amd: $(dmesg | grep -E 'SVM|kvm_amd|kvm:' | tail -n 3)"
fi
probe=$(chroot /host /usr/bin/python3 "$TOP/tests/nested/kvmprobe.py" 2>&1) || die "$probe"
log "$probe"

hugepages=$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)
{
    echo "kernel=$(uname -r)"
    echo "uptime=$(cut -d' ' -f1 /proc/uptime)"
    echo "cpus=$(nproc)"
    echo "mem_kib=$(awk '/MemTotal/ {print $2}' /proc/meminfo)"
    echo "hugepages=$hugepages"
    echo "npt=$(cat /sys/module/kvm_amd/parameters/npt)"
    echo "kvm=$probe"
} >"$W/state/ready.tmp" && mv "$W/state/ready.tmp" "$W/state/ready"
log "ready: $(uname -r), $(nproc) cpus, $hugepages hugepages"

run_job() {
    name=$1
    run=$WORK/runs/$name
    limit=$(cat "/host$run/timeout")
    log "run $name: start (limit ${limit}s)"
    start=$(cut -d' ' -f1 /proc/uptime)
    # timeout(1) signals its whole process group; unshare's child (PID 1 of the new PID
    # namespace) takes every process of the run with it.
    chroot /host /usr/bin/timeout --verbose -k 10 "$limit" \
        /usr/bin/unshare --mount --pid --net --ipc --uts --fork --kill-child --mount-proc \
        --propagation private /bin/bash "$TOP/tests/nested/rig_run.sh" "$run" \
        </dev/null >"/host$run/stdout" 2>"/host$run/stderr"
    rc=$?
    end=$(cut -d' ' -f1 /proc/uptime)
    # The console line first: the host reads the console up to the status file.
    log "run $name: exit $rc (uptime $start..$end s)"
    echo "$rc $start $end" >"/host$run/status.tmp" && mv "/host$run/status.tmp" "/host$run/status"
}

while :; do
    for name in $(ls "$W/queue"); do
        rm -f "$W/queue/$name"
        if [ "$name" = poweroff ]; then
            log "powering off"
            sync
            poweroff -f
            sleep 600
        fi
        run_job "$name"
    done
    sleep 0.2
done
