"""The integration rig: the real conduitd, real DPDK virtio-user guests (dpdk-testpmd),
a host in a network namespace on a veth uplink, and crafted frames fed through a real
pcap ethdev. Every helper cleans up after itself, even when a test fails.

CPU placement: conduitd's worker polls on CPU 1 (CPU 0 and 1 with two workers); the
guests' forwarding lcore polls on CPU 0. Two pollers on one CPU fall to a few thousand
frames per second, so tests send small, exact batches and wait on counters, never on time.
"""
import contextlib
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import sys
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tools"))
from conduit_telemetry import Telemetry, TelemetryError  # noqa: E402

CONDUITD = TOP / "build" / "release" / "control" / "conduitd"
CONDUITCTL = TOP / "build" / "release" / "control" / "conduitctl"
HUGEPAGES = os.environ.get("CONDUIT_HUGEPAGES", "1") == "1"


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value; fails with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def only_cpus(cpus):
    """Runs the test process (and every process it starts meanwhile) on `cpus` only, so
    that the CPU conduitd's worker polls on is left to it."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def take_cpu(cpu, seconds, after=0.0):
    """Takes `cpu` away from everything else for `seconds`: a real-time (SCHED_FIFO) task
    spins on it, so a normally scheduled poller there cannot run until it ends. It
    sleeps `after` seconds first (asleep, it takes nothing). Returns when it has ended."""
    hog = (f"import time\n"
           f"time.sleep({after})\n"
           f"end = time.monotonic() + {seconds}\n"
           f"while time.monotonic() < end:\n"
           f"    pass\n")
    subprocess.run(["chrt", "--fifo", "10", "taskset", "-c", str(cpu), sys.executable, "-c",
                    hog], check=True, timeout=30 + after + seconds)


def remove_dpdk_files(prefix):
    for f in pathlib.Path("/dev/hugepages").glob(f"{prefix}map_*"):
        f.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", f"/var/run/dpdk/{prefix}"], check=False)


def yaml_of(value, indent=0):
    """A tiny YAML writer for configs (dicts, lists, scalars): no dependency needed."""
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and not v:
                out.append(f"{pad}{k}: {'{}' if isinstance(v, dict) else '[]'}")
            elif isinstance(v, (dict, list)):
                out.append(f"{pad}{k}:")
                out.append(yaml_of(v, indent + 2))
            else:
                out.append(f"{pad}{k}: {json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else v}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                inner = yaml_of(item, indent + 2).splitlines()
                out.append(f"{pad}- {inner[0].strip()}")
                out.extend(inner[1:])
            else:
                out.append(f"{pad}- {item}")
    return "\n".join(out)


class Conduitd:
    """One conduitd process on a config built by the test."""

    def __init__(self, workdir, bridges, prefix="itest-cd", workers=(1,), mbufs=8191,
                 extra=None, control=None, netns=None):
        self.workdir = pathlib.Path(workdir)
        self.prefix = prefix
        # Run inside this network namespace (its uplink devices live there).
        self.netns = netns
        daemon = {"file_prefix": prefix, "main_cpu": 0, "workers": list(workers),
                  "hugepages": HUGEPAGES, "memory_mb": 192, "mbufs": mbufs}
        daemon.update(extra or {})
        # The control socket lives with the test; metrics on a port the kernel picks.
        self.socket = str(self.workdir / "ctl.sock")
        ctl = {"socket": self.socket, "metrics": "127.0.0.1:0", "stall_timeout_ms": 1000}
        ctl.update(control or {})
        self.config = {"conduitd": daemon, "control": ctl, "bridges": bridges}
        self.config_path = self.workdir / "conduitd.yaml"
        self.config_path.write_text(yaml_of(self.config) + "\n")
        self.log_path = self.workdir / "conduitd.log"
        self.proc = None
        self.baseline_in_use = None

    def ports(self):
        return [p["name"] for b in self.config["bridges"] for p in b.get("ports", [])]

    def start(self, wait_up=()):
        remove_dpdk_files(self.prefix)
        self.log = open(self.log_path, "a")
        wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(wrap + [str(CONDUITD), "--config", str(self.config_path)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_for(lambda: self._alive() and self._query_ok(), what="conduitd's telemetry")
        # The control server binds its socket after the telemetry is up: a test that
        # connects at once found no file there (test_too_many_clients_are_refused, once).
        control = self.config["control"].get("socket")
        if control:
            wait_for(lambda: self._alive() and pathlib.Path(control).is_socket(),
                     what=f"conduitd's control socket {control}")
        for name in wait_up:
            self.wait_port(name, "up")
        return self

    def _alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"conduitd exited with {self.proc.returncode}:\n" + self.log_text())
        return True

    def _query_ok(self):
        try:
            self.query("/conduit/mempool")
            return True
        except (TelemetryError, OSError, ValueError):
            return False

    def log_text(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def ctl(self, *args, check=True, timeout=60, json_out=False):
        """Runs conduitctl against this conduitd; returns the CompletedProcess (or the
        parsed JSON with json_out)."""
        cmd = [str(CONDUITCTL), "--socket", self.socket] + (["--json"] if json_out else []) + \
            [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return json.loads(r.stdout) if json_out else r

    def rpc(self, method, params=None, timeout=30):
        """One JSON-RPC request on the control socket; returns the whole reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            req = {"jsonrpc": "2.0", "id": 1, "method": method}
            if params is not None:
                req["params"] = params
            s.sendall((json.dumps(req) + "\n").encode())
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise AssertionError(f"{method}: connection closed without a reply")
                buf += chunk
            return json.loads(buf)

    def call(self, method, params=None):
        """The result of a JSON-RPC request, which must succeed."""
        reply = self.rpc(method, params)
        assert "result" in reply, f"{method} {params}: {reply}"
        return reply["result"]

    def query(self, command):
        with Telemetry(self.prefix) as t:
            return t.query(command)

    def port(self, name):
        return self.query(f"/conduit/port,{name}")

    def all_ports(self):
        return self.query("/conduit/ports")

    def bridges(self):
        return self.query("/conduit/bridges")

    def fdb(self, bridge):
        return {line.split()[0]: line.split()[1]
                for line in self.query(f"/conduit/fdb,{bridge}")["table"]}

    def mempool(self):
        return self.query("/conduit/mempool")

    def workers(self):
        return self.query("/conduit/workers")

    def wait_port(self, name, state, timeout=20):
        # conduitd answers telemetry before it has added its config's ports: a port it
        # does not know yet is not up yet (CI once queried g1 in that gap).
        def in_state():
            self._alive()
            try:
                return self.port(name)["state"] == state
            except TelemetryError:
                return False
        wait_for(in_state, timeout=timeout, what=f"port {name} {state}")

    def wait_counter(self, port, counter, value, timeout=20):
        return wait_for(lambda: self.port(port)[counter] >= value and self.port(port)[counter],
                        timeout=timeout, what=f"{port}.{counter} >= {value}") and \
            self.port(port)[counter]

    def record_baseline(self):
        self.baseline_in_use = self.mempool()["in_use"]
        return self.baseline_in_use

    def assert_mempool_at_baseline(self, timeout=10):
        """No mbuf leak: once traffic stops, in_use returns to its baseline."""
        base = self.baseline_in_use if self.baseline_in_use is not None else 0
        wait_for(lambda: self.mempool()["in_use"] == base, timeout=timeout,
                 what=f"mempool in_use back at baseline {base} (now {self.mempool()})")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self):
        """SIGTERM: must exit 0 and leave no hugepage or runtime files behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        assert rc == 0, f"conduitd exited {rc} on SIGTERM:\n{self.log_text()}"
        leftovers = list(pathlib.Path("/dev/hugepages").glob(f"{self.prefix}map_*"))
        assert not leftovers, f"hugepage files left behind: {leftovers}"
        assert not pathlib.Path(f"/var/run/dpdk/{self.prefix}").exists(), "runtime dir left"

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        remove_dpdk_files(self.prefix)


class Guests:
    """Guest NICs: one dpdk-testpmd process holding several virtio-user ports.

    Each port listens on its socket (server=1), as a VM's NIC does in our setup, so it
    waits across conduitd restarts. testpmd is driven over a fifo on its stdin and read
    through its own telemetry socket (/ethdev/stats), which counts exactly.
    """

    def __init__(self, workdir, sockets, prefix="itest-guests", mac_base="02:00:00:00:00:",
                 cpu=0, connect=()):
        self.workdir = pathlib.Path(workdir)
        self.sockets = [str(s) for s in sockets]
        self.prefix = prefix
        self.macs = [f"{mac_base}{i + 1:02x}" for i in range(len(sockets))]
        self.cpu = cpu
        # Ports listed in `connect` connect to a listening switch (server=0) instead.
        self.connect = set(connect)
        self.proc = None
        self.fifo = self.workdir / f"{prefix}.in"
        self.log_path = self.workdir / f"{prefix}.log"
        self.writer = None

    def start(self):
        remove_dpdk_files(self.prefix)
        for i, s in enumerate(self.sockets):
            if i not in self.connect:
                pathlib.Path(s).unlink(missing_ok=True)
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        mem = ["--single-file-segments", "-m", "128"] if HUGEPAGES else ["--no-huge", "-m", "128"]
        args = ["dpdk-testpmd", f"--file-prefix={self.prefix}", "--no-pci", *mem,
                "--lcores", f"0@{self.cpu},1@{self.cpu}", "--log-level=*:warning"]
        for i, (s, mac) in enumerate(zip(self.sockets, self.macs)):
            server = 0 if i in self.connect else 1
            args += ["--vdev", f"net_virtio_user{i},path={s},server={server},queues=1,mac={mac}"]
        # Each virtio-user receive ring keeps 256 mbufs posted; leave room to transmit.
        mbufs = 1024 + 320 * len(self.sockets)
        args += ["--", "-i", f"--total-num-mbufs={mbufs}", "--forward-mode=rxonly",
                 "--port-topology=loop"]
        self.log = open(self.log_path, "a")
        # testpmd opens the fifo for reading; we keep the write end open for commands.
        self.proc = subprocess.Popen(args, stdin=open(self.fifo, "r+b", buffering=0),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.writer = open(self.fifo, "w", buffering=1)
        return self

    def wait_ready(self, timeout=60):
        """Ready once testpmd's telemetry lists every port (each virtio-user port blocks
        at probe until the switch connects, so this also waits for conduitd)."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"testpmd exited {self.proc.returncode}:\n" +
                                     self.log_path.read_text()[-3000:])
            try:
                with Telemetry(self.prefix) as t:
                    return len(t.query("/ethdev/list")) == len(self.sockets)
            except (TelemetryError, OSError, ValueError):
                return False
        wait_for(ready, timeout=timeout, what="guests' ports probed")
        # Start polling so the ports count what they receive.
        self.cmd("start")
        return self

    def cmd(self, line):
        self.writer.write(line + "\n")
        self.writer.flush()

    def stats(self, port):
        with Telemetry(self.prefix) as t:
            return t.query(f"/ethdev/stats,{port}")

    def rx(self, port):
        return self.stats(port)["ipackets"]

    def tx(self, port):
        return self.stats(port)["opackets"]

    def send(self, port, dst, count, size=64, poll_after=None):
        """Sends exactly `count` frames from `port` (source = its MAC) to `dst`, then
        goes back to receiving on every port (or only on `poll_after`). count must be a
        multiple of 8. Frames go out in chunks of at most 128, each fully sent before
        the next, so they always fit the guest's 256-slot transmit ring (testpmd drops,
        rather than retries, what does not fit)."""
        assert count % 8 == 0 and count > 0
        start = self.tx(port)
        all_ports = ",".join(str(i) for i in range(len(self.sockets)))
        for line in ["stop", f"set portlist {port}", f"set eth-peer {port} {dst}",
                     f"set txpkts {size}", "set burst 8"]:
            self.cmd(line)
        done = 0
        while done < count:
            chunk = min(128, count - done)
            self.cmd(f"start tx_first {chunk // 8}")
            target = start + done + chunk
            wait_for(lambda: self.tx(port) >= target, timeout=20,
                     what=f"guest port {port} sent {done + chunk} of {count}")
            self.cmd("stop")
            done += chunk
        polled = all_ports if poll_after is None else ",".join(str(p) for p in poll_after)
        for line in [f"set portlist {polled}", "start"]:
            self.cmd(line)
        sent = self.tx(port) - start
        assert sent == count, f"guest port {port} sent {sent}, not {count}"

    def stop_polling(self, ports_polled):
        """Polls only `ports_polled`: the other ports stop draining their receive rings."""
        self.cmd("stop")
        self.cmd("set portlist " + ",".join(str(p) for p in ports_polled))
        self.cmd("start")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.cmd("stop")
                self.cmd("quit")
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.writer.close()
        self.log.close()
        self.proc = None
        remove_dpdk_files(self.prefix)
        for i, s in enumerate(self.sockets):
            if i not in self.connect:
                pathlib.Path(s).unlink(missing_ok=True)


PACER = TOP / "build" / "release" / "tests" / "traffic" / "pacer"


class Pacer:
    """Guests that send numbered frames at a fixed rate and count what arrives
    (tests/traffic/pacer.cpp): one DPDK process, several virtio-user NICs listening on
    their sockets. `flows` are (port index, destination MAC, frames per second)."""

    def __init__(self, workdir, sockets, macs, flows, prefix="itest-pacer", cpu=0,
                 flow_base=0, best_effort=False, realtime=False, wait_for_go=False, ring=1024):
        self.workdir = pathlib.Path(workdir)
        self.sockets, self.macs, self.flows = [str(s) for s in sockets], macs, flows
        self.prefix = prefix
        self.status_path = self.workdir / f"{prefix}.status.json"
        self.log_path = self.workdir / f"{prefix}.log"
        self.args = [str(PACER), "--prefix", prefix, "--cpu", str(cpu), "--status",
                     str(self.status_path), "--flow-base", str(flow_base), "--ring", str(ring)]
        if not HUGEPAGES:
            self.args.append("--no-huge")
        self.go_path = self.workdir / f"{prefix}.go"
        if wait_for_go:
            self.args += ["--start-file", str(self.go_path)]
        if best_effort:
            self.args.append("--best-effort")
        if realtime:
            self.args.append("--rt")
        for sock, mac in zip(self.sockets, macs):
            self.args += ["--port", f"{sock},{mac}"]
        for port, dst, pps in flows:
            self.args += ["--flow", f"{port}:{dst}:{pps}"]
        self.proc = None

    def start(self):
        remove_dpdk_files(self.prefix)
        for s in self.sockets:
            pathlib.Path(s).unlink(missing_ok=True)
        self.status_path.unlink(missing_ok=True)
        self.go_path.unlink(missing_ok=True)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        return self

    def status(self):
        if self.proc.poll() is not None and not self.status_path.exists():
            raise AssertionError(f"pacer exited {self.proc.returncode}:\n" +
                                 self.log_path.read_text()[-3000:])
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None

    def wait_running(self, timeout=60):
        """Running once every NIC was connected to (EAL init returns only then)."""
        wait_for(lambda: (self.status() or {}).get("state") == "running", timeout=timeout,
                 what=f"pacer {self.prefix} running")
        return self

    def go(self):
        """Starts the flows of a pacer made with wait_for_go."""
        self.go_path.write_text("go\n")

    def finish(self, timeout=30):
        """Stops sending, lets the last frames arrive, returns the final status."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=timeout)
        assert rc == 0, f"pacer exited {rc}:\n" + self.log_path.read_text()[-3000:]
        final = self.status()
        assert final and final["state"] == "done", final
        return final

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()
            self.proc = None
        remove_dpdk_files(self.prefix)
        for s in self.sockets:
            pathlib.Path(s).unlink(missing_ok=True)


class NetnsHost:
    """A host in its own network namespace at the end of a veth pair; the root end is
    the switch's uplink (net_af_packet). IPv6 is off on both ends so that only the
    frames a test sends cross the wire."""

    def __init__(self, ns="itest-host", root_if="itest-up0", ns_if="eth0", ip="10.9.0.100/24",
                 switch_ns=None):
        self.ns, self.root_if, self.ns_if, self.ip = ns, root_if, ns_if, ip
        # The switch's end in this namespace (made by the caller) instead of the root one.
        self.switch_ns = switch_ns

    def run(self, *args, check=True, **kw):
        return subprocess.run(["ip", "netns", "exec", self.ns, *args], check=check,
                              capture_output=True, text=True, **kw)

    def start(self):
        self.stop()
        sh = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        at = ["ip", "netns", "exec", self.switch_ns] if self.switch_ns else []
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.root_if, *(["netns", self.switch_ns] if self.switch_ns else []),
           "type", "veth", "peer", "name", self.ns_if, "netns", self.ns)
        sh(*at, "sysctl", "-qw", f"net.ipv6.conf.{self.root_if}.disable_ipv6=1")
        sh(*at, "ip", "link", "set", self.root_if, "up")
        self.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        self.run("sysctl", "-qw", f"net.ipv6.conf.{self.ns_if}.disable_ipv6=1")
        self.run("ip", "addr", "add", self.ip, "dev", self.ns_if)
        self.run("ip", "link", "set", self.ns_if, "up")
        self.run("ip", "link", "set", "lo", "up")
        return self

    def mac(self):
        return pathlib.Path(f"/sys/class/net/{self.ns_if}/address").read_text().strip() \
            if False else self.run("cat", f"/sys/class/net/{self.ns_if}/address").stdout.strip()

    def stop(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.root_if], capture_output=True)


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def frame(dst, src, length=64, ethertype=0x88B5):
    """An Ethernet frame (local experimental ethertype) padded to `length` bytes."""
    head = mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype)
    return (head + bytes(max(0, length - len(head))))[:length] if length >= 14 else \
        (mac_bytes(dst) + mac_bytes(src))[:length]


def write_pcap(path, frames):
    """A classic libpcap file (microsecond timestamps, Ethernet link type)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, data in enumerate(frames):
            f.write(struct.pack("<IIII", 1, i, len(data), len(data)))
            f.write(data)


def read_pcap(path):
    data = pathlib.Path(path).read_bytes()
    frames, off = [], 24
    while off + 16 <= len(data):
        _, _, caplen, _ = struct.unpack_from("<IIII", data, off)
        frames.append(data[off + 16: off + 16 + caplen])
        off += 16 + caplen
    return frames


KERNEL = sorted(pathlib.Path("/boot").glob("vmlinuz-*"))
GUEST_INIT = """
arg() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
ip link set lo up
ip link set eth0 up
ip addr add $(arg guest_ip) dev eth0
echo "GUEST-UP $(arg guest_ip)"
for peer in $(arg guest_peers | tr , ' '); do
    ok=0
    for try in $(seq 90); do
        if ping -c 1 -W 1 $peer >/dev/null 2>&1; then ok=1; break; fi
    done
    if [ $ok = 1 ] && ping -c 3 -i 0.2 -W 2 $peer >/dev/null 2>&1; then
        echo "PING-OK $peer"
    else
        echo "PING-FAIL $peer"
    fi
done
echo GUEST-DONE
sleep 3600
"""


# A guest that serves commands on its second serial port (ttyS1): each line "ID:COMMAND"
# runs with sh; its output follows, then "@@ID RC". The console (ttyS0) shows progress.
SHELL_GUEST_INIT = """
arg() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
ip link set lo up
ip link set eth0 up
ip addr add $(arg guest_ip) dev eth0
exec 3<>/dev/ttyS1
stty raw -echo <&3
echo "GUEST-UP $(arg guest_ip)"
while IFS= read -r line <&3; do
    id=${line%%:*}
    sh -c "${line#*:}" </dev/null >/tmp/.shell-out 2>&1
    rc=$?
    cat /tmp/.shell-out >&3
    echo "@@$id $rc" >&3
done
echo "SHELL-GONE"
"""


def guest_initramfs(workdir, init_text=GUEST_INIT, name="net-guest"):
    """busybox + virtio-net modules + an init script (by default the pinging one above),
    for the stock kernel in /boot."""
    if not KERNEL:
        raise AssertionError("no kernel in /boot: install linux-image-amd64 (tools/setup.sh)")
    kver = KERNEL[-1].name[len("vmlinuz-"):]
    script = pathlib.Path(workdir) / f"{name}-init.sh"
    script.write_text(init_text)
    out = TOP / "build" / "guest" / f"{name}.cpio.gz"
    subprocess.run([sys.executable, str(TOP / "tests" / "guest" / "mkinitramfs.py"),
                    "--out", str(out), "--kernel-version", kver,
                    "--modules", "virtio_pci,virtio_net", "--init", str(script)],
                   check=True, capture_output=True)
    return KERNEL[-1], out


class GuestShell:
    """Runs commands in a guest booted with SHELL_GUEST_INIT, over its second serial port
    (a unix socket QEMU listens on)."""

    def __init__(self, guest, path):
        self.guest, self.path = guest, str(path)
        self.sock = None
        self.next_id = 1
        self.buf = b""

    def _connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        self.sock = s

    def run(self, command, timeout=120, check=True):
        """(rc, output) of `command` run with sh in the guest."""
        if self.sock is None:
            wait_for(lambda: self.guest._alive() and pathlib.Path(self.path).exists(),
                     timeout=30, what=f"{self.guest.name}'s shell socket")
            self._connect()
        ident = self.next_id
        self.next_id += 1
        assert "\n" not in command
        self.sock.sendall(f"{ident}:{command}\n".encode())
        marker = f"@@{ident} ".encode()
        deadline = time.monotonic() + timeout
        while True:
            at = self.buf.find(marker)
            end = self.buf.find(b"\n", at) if at >= 0 else -1
            if at >= 0 and end >= 0:
                out = self.buf[:at].decode(errors="replace")
                rc = int(self.buf[at + len(marker):end])
                self.buf = self.buf[end + 1:]
                break
            left = deadline - time.monotonic()
            self.guest._alive()
            if left <= 0:
                raise AssertionError(f"{self.guest.name}: '{command}' did not finish within "
                                     f"{timeout}s (output so far: {self.buf[-500:]!r}; console: "
                                     f"{self.guest.output()[-500:]!r})")
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise AssertionError(f"{self.guest.name}: shell connection closed")
            self.buf += chunk
        if check and rc != 0:
            raise AssertionError(f"{self.guest.name}: '{command}' exited {rc}:\n{out}")
        return rc, out

    def wait_ready(self, timeout=300):
        """Waits until the guest booted and answers (its first commands may be lost while
        the shell loop starts, so they are repeated)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.guest._alive()
            if "GUEST-UP" in self.guest.output():
                try:
                    self.run("true", timeout=5)
                    return self
                except AssertionError as err:
                    if "did not finish" not in str(err):
                        raise
                    self.buf = b""
            time.sleep(1)
        raise AssertionError(f"{self.guest.name} did not boot to its shell within {timeout}s:\n"
                             + self.guest.output()[-2000:])

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class LinuxGuest:
    """A real Linux VM under QEMU (TCG, no KVM needed) whose NIC is virtio-net over
    vhost-user; QEMU listens on the socket (server=on) and conduitd connects to it.
    `device_opts` are added to the virtio-net-pci device (e.g. "csum=off,..."); with
    `shell`, the guest's second serial port is a unix socket for GuestShell."""

    def __init__(self, workdir, name, sock, mac, ip, peers, kernel, initrd, device_opts="",
                 shell=False):
        self.workdir, self.name, self.sock = pathlib.Path(workdir), name, sock
        self.console = self.workdir / f"{name}.console"
        self.shell_path = self.workdir / f"{name}.shell" if shell else None
        device = f"virtio-net-pci,netdev=n0,mac={mac},vectors=0"
        if device_opts:
            device += "," + device_opts
        self.args = [
            "qemu-system-x86_64", "-machine", "q35", "-cpu", "max", "-m", "256",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
            "-numa", "node,memdev=mem",
            "-chardev", f"socket,id=c0,path={sock},server=on,wait=off",
            "-netdev", "vhost-user,id=n0,chardev=c0",
            # vectors=0: QEMU 7.2 under TCG crashes with MSI-X on vhost-user (RIG.md).
            "-device", device,
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"console=ttyS0 quiet panic=-1 guest_ip={ip} guest_peers={','.join(peers)}",
        ]
        if shell:
            self.args += ["-chardev", f"socket,id=sh0,path={self.shell_path},server=on,wait=off",
                          "-serial", "chardev:sh0"]
        self.proc = None
        self.shell = GuestShell(self, self.shell_path) if shell else None

    def start(self):
        pathlib.Path(self.sock).unlink(missing_ok=True)
        self.log = open(self.workdir / f"{self.name}.qemu.log", "w")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_for(lambda: self._alive() and pathlib.Path(self.sock).exists(), timeout=30,
                 what=f"{self.name}'s vhost-user socket")
        return self

    def _alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name}: qemu exited {self.proc.returncode}: " +
                                 (self.workdir / f"{self.name}.qemu.log").read_text()[-2000:])
        return True

    def output(self):
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def stop(self):
        if self.shell is not None:
            self.shell.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.log.close()
        if self.shell_path is not None:
            self.shell_path.unlink(missing_ok=True)
        pathlib.Path(self.sock).unlink(missing_ok=True)
