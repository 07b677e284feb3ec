"""The nested-KVM harness proves itself: on every KVM host (see conftest.py) a vCPU runs
our own code, QEMU boots the stock kernel on KVM, DPDK forwards on hugepages, and runs
get their files, environment, exit status and a clean world, and end at their timeout;
conduitd switches two KVM guests that ping each other, as later tests will do it.
Inputs are random per run, so nothing here can pass on a stale or canned answer."""
import json
import re
import secrets
import subprocess

import pytest

import kvmrig

HERE = kvmrig.HERE


@pytest.fixture(scope="session")
def kvm_port_io(tmp_path_factory):
    """tests/nested/kvm_port_io.cpp, compiled on the host (the rig sees the host's
    libraries, so the binary runs inside as it is)."""
    out = tmp_path_factory.mktemp("bin") / "kvm_port_io"
    subprocess.run(["g++", "-std=c++20", "-O1", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
                    "-o", str(out), str(HERE / "kvm_port_io.cpp")], check=True)
    return out


def test_a_vcpu_runs_our_code_and_its_port_write_is_seen(kvm_host, kvm_port_io):
    a, b, port = secrets.randbelow(0x8000), secrets.randbelow(0x8000), 0x40 + secrets.randbelow(0x40)
    r = kvm_host.run(f"./kvm_port_io {a} {b} {port}", timeout=120,
                     files={"kvm_port_io": kvm_port_io})
    r.assert_ok()
    lines = r.stdout.splitlines()
    assert lines == ["api=12", f"io port=0x{port:x} size=2 value=0x{a + b:x} dir=out", "hlt"], \
        r.describe()


def test_qemu_boots_the_stock_kernel_on_kvm(kvm_host, tmp_path):
    kernel, _ = kvmrig.stock_kernel()
    nonce = secrets.token_hex(8)
    initrd = kvmrig.build_initramfs(tmp_path / "marker.cpio.gz", init_text="""
for word in $(cat /proc/cmdline); do
    case "$word" in rig.nonce=*) nonce=${word#*=} ;; esac
done
echo "INNER-GUEST-UP nonce=$nonce cpus=$(nproc) $(dmesg | grep -o 'Hypervisor detected: [A-Za-z]*')"
poweroff -f
""")
    # quiet: every console byte of the inner guest is a nested exit, and costs ~10 ms.
    r = kvm_host.run("""
set -e
start=$(date +%s.%N)
qemu-system-x86_64 -enable-kvm -cpu host -smp 1 -m 256 -nographic -no-reboot \\
    -kernel "$KERNEL" -initrd marker.cpio.gz -append "console=ttyS0 panic=-1 quiet rig.nonce=$NONCE"
echo "qemu exit $? after $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}') s"
""", timeout=600, files={"marker.cpio.gz": initrd}, env={"KERNEL": kernel, "NONCE": nonce})
    r.assert_ok()
    assert f"INNER-GUEST-UP nonce={nonce} cpus=1 Hypervisor detected: KVM" in r.stdout, \
        r.describe()
    assert re.search(r"^qemu exit 0 after [0-9.]+ s$", r.stdout, re.M), r.describe()


def _forward_stats(text):
    """{port: (rx, tx)} from testpmd's per-port 'Forward statistics' blocks."""
    stats = {}
    for m in re.finditer(r"Forward statistics for port (\d+)\s+-+\s+RX-packets: (\d+).*?"
                         r"TX-packets: (\d+)", text, re.S):
        stats[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    return stats


def test_dpdk_testpmd_forwards_on_hugepages(kvm_host):
    prefix = f"rig{secrets.token_hex(3)}"
    # testpmd forwards until a line arrives on stdin: a fifo gives the script the
    # moment forwarding started, and the hugepage count while it runs. Fifos and
    # sockets live in /tmp or /run: the run directory is 9p in the nested rig. stdbuf:
    # testpmd's stdout is a file, which stdio would otherwise flush only at exit.
    r = kvm_host.run(f"""
set -eu
free_pages() {{ awk '/HugePages_Free/ {{print $2}}' /proc/meminfo; }}
echo "hugepages-free-before=$(free_pages)"
mkfifo /tmp/ctl
stdbuf -oL dpdk-testpmd -l 0,1 -n 1 --no-pci --file-prefix={prefix} --huge-unlink -m 128 \\
    --vdev net_null0 --vdev net_null1 -- \\
    --forward-mode=io --nb-cores=1 --total-num-mbufs=4096 </tmp/ctl >testpmd.log 2>&1 &
pmd=$!
exec 3>/tmp/ctl
for i in $(seq 1200); do
    grep -q "Press enter to exit" testpmd.log && break
    kill -0 $pmd 2>/dev/null || break
    sleep 0.5
done
grep -q "Press enter to exit" testpmd.log || {{ echo "testpmd did not start"; cat testpmd.log; exit 1; }}
start=$(date +%s.%N)
sleep 1
echo "hugepages-free-during=$(free_pages)"
echo "forwarding-seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {{printf "%.2f", e - s}}')"
echo >&3
wait $pmd
echo "testpmd-exit=$?"
cat testpmd.log
""", timeout=600)
    r.assert_ok()
    assert "testpmd-exit=0" in r.stdout, r.describe()
    before = int(re.search(r"hugepages-free-before=(\d+)", r.stdout).group(1))
    during = int(re.search(r"hugepages-free-during=(\d+)", r.stdout).group(1))
    assert during < before, f"testpmd took no hugepages ({before} -> {during}):\n{r.describe()}"
    assert float(re.search(r"forwarding-seconds=([0-9.]+)", r.stdout).group(1)) >= 1.0
    stats = _forward_stats(r.stdout)
    assert set(stats) == {0, 1}, r.describe()
    for port, (rx, tx) in stats.items():
        assert rx > 0 and tx > 0, f"port {port} forwarded nothing: {stats}\n{r.describe()}"


def test_a_run_gets_its_files_environment_output_and_exit_status(kvm_host):
    token = secrets.token_hex(8)
    status = 3 + secrets.randbelow(100)
    r = kvm_host.run(f"""
cat data.txt
test -x tool.sh && ./tool.sh
echo "host=$RIG_HOST dir=$RIG_RUN_DIR pwd=$PWD extra=$EXTRA top=$RIG_TOP"
echo "to stderr {token}" >&2
exit {status}
""", timeout=120, files={"data.txt": f"data {token}\n",
                         "tool.sh": b"#!/bin/sh\necho tool ran\n"},
        env={"EXTRA": f"x {token}"})
    assert r.returncode == status and not r.timed_out, r.describe()
    assert r.stderr.strip() == f"to stderr {token}", r.describe()
    # Files given as bytes or str are plain files: tool.sh was not executable, so it did
    # not run, and the script's first lines are the data and the environment.
    assert r.stdout.splitlines() == [
        f"data {token}",
        f"host={kvm_host.name} dir={r.workdir} pwd={r.workdir} extra=x {token} top={kvmrig.TOP}",
    ], r.describe()


def test_runs_are_isolated_and_a_timeout_ends_one(kvm_host):
    token = secrets.token_hex(8)
    link = f"l{token[:8]}"
    # The first run leaves everything it can behind: a process, files in /tmp, /run and
    # /dev/shm, a hugepage file, a network link and an address.
    leave = kvm_host.run(f"""
set -e
free_pages() {{ awk '/HugePages_Free/ {{print $2}}' /proc/meminfo; }}
echo "free-before=$(free_pages)"
setsid sleep 1000 </dev/null >/dev/null 2>&1 &
echo {token} >/tmp/left-{token}; echo {token} >/run/left-{token}; echo {token} >/dev/shm/left-{token}
fallocate -l 2M /dev/hugepages/left-{token}
echo "free-holding=$(free_pages)"
ip link add {link}a type veth peer name {link}b
ip addr add 10.99.0.1/32 dev lo
echo "links=$(ip -o link | grep -c {link})"
""", timeout=120)
    leave.assert_ok()
    free_before = int(re.search(r"free-before=(\d+)", leave.stdout).group(1))
    free_holding = int(re.search(r"free-holding=(\d+)", leave.stdout).group(1))
    assert free_holding == free_before - 1 and "links=2" in leave.stdout, leave.describe()

    # The hugepage comes back only when the first run's mount namespace is gone, which
    # needs every process it left (the sleep) to be gone too.
    check = kvm_host.run(f"""
free_pages() {{ awk '/HugePages_Free/ {{print $2}}' /proc/meminfo; }}
for i in $(seq 20); do [ "$(free_pages)" = "$FREE_BEFORE" ] && break; sleep 0.5; done
echo "free=$(free_pages)"
found=0
pgrep -f 'sleep 1000' && found=1
ls /tmp /run /dev/shm /dev/hugepages | grep {token} && found=1
ip -o link | grep {link} && found=1
ip -o addr | grep 10.99.0.1 && found=1
echo "links=$(ip -o link | awk '{{print $2}}' | tr -d '\n')"
exit $found
""", timeout=120, env={"FREE_BEFORE": free_before})
    assert check.returncode == 0, f"the first run's leftovers are visible:\n{check.describe()}"
    assert f"free={free_before}" in check.stdout, check.describe()
    assert "links=lo:" in check.stdout, check.describe()

    slow = kvm_host.run("echo started; sleep 1000; echo never", timeout=5)
    assert slow.timed_out and slow.returncode == 124, slow.describe()
    assert slow.stdout.strip() == "started", slow.describe()
    assert 5 <= slow.seconds < 500, slow.describe()  # the sleep alone would take 1000 s
    after = kvm_host.run(f"echo alive {token}", timeout=120)
    after.assert_ok()
    assert after.stdout.strip() == f"alive {token}"


def _first_try_breaks_the_outer_kernel(request, kvm_hosts, breaking_commands, crash_says):
    """Runs a script whose first try runs BREAKING_COMMANDS in the outer guest and checks
    that the rig counted one outer-kernel crash saying CRASH_SAYS, booted a fresh outer
    guest and repeated the run there (a prepared file, which keeps what the first try
    appended, tells the tries apart; a file the first try created must be gone)."""
    if "nested" not in request.config.kvm_host_names:
        pytest.skip("only the nested rig has an outer kernel, and it was not chosen")
    kvm_host = kvm_hosts.ready("nested")
    token = secrets.token_hex(8)
    crashes_before = len(kvm_host.crashes)
    boots_before = len(kvm_host.boots)
    kvm_host.label = request.node.nodeid
    try:
        r = kvm_host.run(f"""
echo try >>tries
if [ "$(wc -l <tries)" = 1 ]; then
    echo partial >made-by-the-first-try
    sync
{breaking_commands}
    sleep 60
fi
echo "files: $(ls | tr '\\n' ' ')"
echo "tries: $(wc -l <tries)"
echo second-try {token}
""", timeout=180, files={"tries": ""})
        r.assert_ok()
        assert f"second-try {token}" in r.stdout, r.describe()
        assert "tries: 2" in r.stdout, r.describe()
        assert "made-by-the-first-try" not in r.stdout, r.describe()
        assert len(kvm_host.crashes) == crashes_before + 1, kvm_host.crashes
        assert crash_says in kvm_host.crashes[-1], kvm_host.crashes
        assert len(kvm_host.boots) == boots_before + 1
        after = kvm_host.run(f"echo alive {token}", timeout=120)
        after.assert_ok()
    finally:
        kvm_host.label = ""


def test_an_outer_kernel_crash_reboots_the_outer_guest_and_repeats_the_run_once(request,
                                                                                kvm_hosts):
    """TCG's SVM emulation sometimes crashes the outer kernel (kvmrig.OuterKernelCrash);
    the rig then repeats the run on a fresh outer guest and says so. Here the first try
    panics the outer kernel on purpose."""
    _first_try_breaks_the_outer_kernel(request, kvm_hosts, "    echo c >/proc/sysrq-trigger",
                                       "kernel panicked")


def test_an_outer_guest_that_resets_itself_is_a_crash_too(request, kvm_hosts):
    """A reset of the outer machine with no panic (a triple fault leaves no kernel message)
    ends its QEMU with status 0 under -no-reboot; seen once in CI as the run of a two-VM
    test began. Here the first try resets the outer guest on purpose (sysrq b)."""
    _first_try_breaks_the_outer_kernel(request, kvm_hosts, "    echo b >/proc/sysrq-trigger",
                                       "reset itself")


@pytest.mark.parametrize("detector", ["watchdog", "rcu"])
def test_an_outer_kernel_soft_lockup_is_a_crash_too(request, kvm_hosts, detector):
    """An outer kernel whose soft-lockup watchdog, or RCU stall detector, reports a CPU
    stuck for SOFT_LOCKUP_LIMIT_S or more is not waited on until the run's timeout: the
    rig repeats the run on a fresh outer guest. A real lockup cannot be made on demand, so
    the first try writes the detector's lines (at KERN_EMERG) to the outer kernel's log,
    which puts them on the console as the detector would; the rig must react to those
    console lines alone."""
    stuck = kvmrig.SOFT_LOCKUP_LIMIT_S + 10
    if detector == "watchdog":
        lines = [f"watchdog: BUG: soft lockup - CPU#1 stuck for {stuck}s! [sh:1]"]
    else:
        jiffies = stuck * kvmrig._outer_hz(kvmrig.stock_kernel()[1])
        lines = ["rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
                 f"\t(detected by 1, t={jiffies} jiffies, g=1, q=1 ncpus=2)"]
    writes = "\n".join(f"    printf '<0>{line}\\n' >/dev/kmsg" for line in lines)
    _first_try_breaks_the_outer_kernel(request, kvm_hosts, writes,
                                       f"a CPU stuck for {stuck} s")


def test_an_outer_guest_without_kvm_fails_with_the_reason(tmp_path):
    """The boot-failure path every nested test relies on to fail loudly: an outer guest
    whose initramfs lacks kvm_amd must not be taken for a KVM host."""
    modules = [m for m in kvmrig.OUTER_MODULES if m != "kvm_amd"]
    rig = kvmrig.NestedKvm(tmp_path / "nokvm", memory="1G", hugepages=0,
                           outer_modules=modules)
    try:
        with pytest.raises(kvmrig.RigError) as failure:
            rig.run("echo must not run", timeout=60)
        message = str(failure.value)
        assert "no /dev/kvm after loading kvm_amd" in message, message
        assert "kvmrig: BOOT-FAILED" in message, message  # the console's lines are in it
        with pytest.raises(kvmrig.RigError):  # and later runs fail at once, the same way
            rig.run("echo must not run either", timeout=60)
        assert not (tmp_path / "nokvm" / "runs" / "0001" / "stdout").exists()
    finally:
        rig.close()


def test_an_outer_boot_that_stalls_is_tried_once_more_then_fails_with_both(tmp_path):
    """A boot not ready within boot_timeout (here 2 s: no outer guest under TCG is) is
    tried again on a fresh QEMU once; a second stall fails the run, saying so, and every
    stall is kept for the suite summary."""
    rig = kvmrig.NestedKvm(tmp_path / "stall", memory="1G", hugepages=0, boot_timeout=2)
    try:
        with pytest.raises(kvmrig.RigError) as failure:
            rig.run("echo must not run", timeout=60)
        message = str(failure.value)
        assert message.startswith("2 boots in a row stalled; the last one: the outer guest "
                                  "was not ready after 2 s"), message
        assert "--- outer console" in message, message
        assert [s.split(":")[0] for s in rig.boot_stalls] == ["boot 1", "boot 2"], \
            rig.boot_stalls
        assert all((tmp_path / "stall" / f"console-{i}.log").exists() for i in (1, 2))
        assert not rig._alive()  # neither QEMU is left running
        with pytest.raises(kvmrig.RigError, match="2 boots in a row stalled"):
            rig.run("echo must not run either", timeout=60)  # at once: no third boot
        assert len(rig.boot_stalls) == 2
    finally:
        rig.close()


GUEST_PING_INIT = r"""
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
ip link set lo up
ip link set eth0 up
ip addr add "$(arg ip)/24" dev eth0
for try in $(seq 90); do ping -c 1 -W 1 "$(arg peer)" >/dev/null 2>&1 && break; done
if ping -c 3 -i 0.2 -W 2 "$(arg peer)" >/dev/null 2>&1; then
    echo "PING-OK $(arg ip) -> $(arg peer)"
else
    echo "PING-FAIL $(arg ip) -> $(arg peer)"
fi
# Stay up, answering the peer's pings, until the host has both verdicts and stops the VMs:
# on a slow outer guest one VM can finish its pings long before the other starts them.
while :; do sleep 1; done
"""


def test_conduitd_switches_two_kvm_guests(kvm_host, tmp_path):
    """What later tests do in the rig: conduitd and several VMs in one run. Here the VMs
    are QEMU on KVM with vhost-user NICs (MSI-X works on KVM, unlike TCG)."""
    conduitd = kvmrig.TOP / "build" / "release" / "control" / "conduitd"
    assert conduitd.exists(), f"{conduitd} is not built: run tools/setup.sh"
    kernel, version = kvmrig.stock_kernel()
    guest = kvmrig.build_initramfs(tmp_path / "ping-guest.cpio.gz", version,
                                   ["virtio_pci", "virtio_net"], init_text=GUEST_PING_INIT)
    prefix = f"cd{secrets.token_hex(3)}"
    config = f"""
conduitd: {{file_prefix: {prefix}, main_cpu: 0, workers: [1], hugepages: true, memory_mb: 192, mbufs: 8191}}
bridges:
  - name: br0
    ports:
      - {{name: vm1, type: vhost-user, socket: /run/vm1.sock}}
      - {{name: vm2, type: vhost-user, socket: /run/vm2.sock}}
"""
    r = kvm_host.run(f"""
set -eu
vm() {{  # NAME IP PEER MAC: QEMU listens on /run/NAME.sock, conduitd connects
    qemu-system-x86_64 -enable-kvm -cpu host -smp 1 -m 256 -nographic -no-reboot \\
        -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \\
        -chardev socket,id=c0,path=/run/$1.sock,server=on,wait=off \\
        -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0,mac=$4 \\
        -kernel "$KERNEL" -initrd ping-guest.cpio.gz \\
        -append "console=ttyS0 quiet panic=-1 ip=$2 peer=$3" >$1.console 2>&1 &
}}
vm vm1 10.0.0.1 10.0.0.2 52:54:00:00:00:01
vm1=$!
vm vm2 10.0.0.2 10.0.0.1 52:54:00:00:00:02
vm2=$!
while [ ! -S /run/vm1.sock ] || [ ! -S /run/vm2.sock ]; do sleep 0.2; done
{conduitd} --config conduitd.yaml >conduitd.log 2>&1 &
cd=$!
verdicts() {{ cat vm1.console vm2.console | grep -ac -E 'PING-(OK|FAIL)'; }}
for try in $(seq 1500); do [ "$(verdicts)" = 2 ] && break; sleep 0.4; done
echo "verdicts=$(verdicts)"
kill -TERM $vm1 $vm2
wait $vm1 && echo "vm1-exit=0"
wait $vm2 && echo "vm2-exit=0"
python3 - <<'EOF'
import json, sys
sys.path.insert(0, "{kvmrig.TOP / 'tools'}")
from conduit_telemetry import Telemetry
with Telemetry("{prefix}") as t:
    print("PORTS " + json.dumps(t.query("/conduit/ports")))
EOF
kill -TERM $cd
wait $cd && echo "conduitd-exit=0"
grep -ah PING vm1.console vm2.console
""", timeout=900, files={"ping-guest.cpio.gz": guest, "conduitd.yaml": config},
        env={"KERNEL": kernel})
    r.assert_ok()
    for line in ("vm1-exit=0", "vm2-exit=0", "conduitd-exit=0",
                 "PING-OK 10.0.0.1 -> 10.0.0.2", "PING-OK 10.0.0.2 -> 10.0.0.1"):
        assert line in r.stdout, f"no '{line}':\n{r.describe()}"
    ports = json.loads(re.search(r"^PORTS (.*)$", r.stdout, re.M).group(1))
    for name in ("vm1", "vm2"):
        assert ports[name]["rx_packets"] > 0 and ports[name]["tx_packets"] > 0, ports
