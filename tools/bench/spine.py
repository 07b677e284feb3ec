#!/usr/bin/env python3
"""conduitd against dpdk-testpmd io forwarding and OVS-DPDK, in one run.

Each switch forwards between two vhost-user guest ports on CPU 1. The guests are one
generator: dpdk-testpmd with two virtio-user ports (listening, server=1) in mac
forwarding mode on CPU 0, seeded with `start tx_first` (the recipe in shared/RIG.md).
Frames loop guest -> switch -> guest; the generator rewrites the MACs so that each
direction is proper unicast (port 1's MAC to port 0's and back), which the learning
switches learn. Rate = frames the generator received on both ports per second, read
from its telemetry at the start and end of a timed window after a warm-up.

The loop is closed: a switch that is slower or drops more keeps fewer frames in flight,
and results on a shared 2-core machine drift, so every case runs several trials
interleaved across switches and the median is reported; only ratios within one run
mean anything.
"""
import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tools"))
from conduit_telemetry import Telemetry, TelemetryError  # noqa: E402

HUGE = os.environ.get("CONDUIT_HUGEPAGES", "1") == "1"
GEN_MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02")
OVS_VSWITCHD = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def remove_dpdk_files(prefix):
    for f in pathlib.Path("/dev/hugepages").glob(f"{prefix}map_*"):
        f.unlink(missing_ok=True)
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def mem_args(mb):
    return ["--single-file-segments", "-m", str(mb)] if HUGE else ["--no-huge", "-m", str(mb)]


class Generator:
    """testpmd, two listening virtio-user ports, mac forwarding on CPU 0."""
    prefix = "bench-gen"

    def __init__(self, work):
        self.work = work
        self.socks = [str(work / "g0.sock"), str(work / "g1.sock")]

    def start(self):
        remove_dpdk_files(self.prefix)
        for s in self.socks:
            pathlib.Path(s).unlink(missing_ok=True)
        fifo = self.work / "gen.in"
        if not fifo.exists():
            os.mkfifo(fifo)
        args = ["dpdk-testpmd", f"--file-prefix={self.prefix}", "--no-pci", *mem_args(512),
                "--lcores", "0@0,1@0", "--log-level=*:warning"]
        for i, s in enumerate(self.socks):
            args += ["--vdev", f"net_virtio_user{i},path={s},server=1,queues=1,mac={GEN_MACS[i]}"]
        args += ["--", "-i", "--total-num-mbufs=16384", "--forward-mode=mac"]
        self.log = open(self.work / "gen.log", "a")
        self.proc = subprocess.Popen(args, stdin=open(fifo, "r+b", buffering=0),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.cmd_pipe = open(fifo, "w", buffering=1)

    def cmd(self, line):
        self.cmd_pipe.write(line + "\n")

    def connected(self):
        if self.proc.poll() is not None:
            raise RuntimeError("the generator exited; see " + str(self.work / "gen.log"))
        try:
            with Telemetry(self.prefix) as t:
                return len(t.query("/ethdev/list")) == 2
        except (TelemetryError, OSError, ValueError):
            return False

    def received(self):
        with Telemetry(self.prefix) as t:
            return sum(t.query(f"/ethdev/stats,{p}")["ipackets"] for p in (0, 1))

    def stop(self):
        with contextlib.suppress(Exception):
            self.cmd("stop")
            self.cmd("quit")
            self.proc.wait(timeout=15)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            self.cmd_pipe.close()
        self.log.close()
        remove_dpdk_files(self.prefix)


class Conduitd:
    name = "conduitd"
    prefix = "bench-cd"

    def start(self, work, socks):
        cfg = work / "conduitd.yaml"
        cfg.write_text(
            "conduitd:\n"
            f"  file_prefix: {self.prefix}\n  main_cpu: 0\n  workers: [1]\n"
            f"  hugepages: {'true' if HUGE else 'false'}\n  memory_mb: 256\n"
            "bridges:\n  - name: br0\n    ports:\n"
            f"      - {{name: vm1, type: vhost-user, socket: {socks[0]}}}\n"
            f"      - {{name: vm2, type: vhost-user, socket: {socks[1]}}}\n")
        self.log = open(work / "conduitd.log", "a")
        self.proc = subprocess.Popen([str(TOP / "build/release/control/conduitd"), "--config",
                                      str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)

    def drops(self):
        try:
            with Telemetry(self.prefix) as t:
                ports = t.query("/conduit/ports")
            return sum(v for p in ports.values() for k, v in p.items() if k.startswith("drop_"))
        except (TelemetryError, OSError, ValueError):
            return None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        remove_dpdk_files(self.prefix)


class TestpmdIo:
    name = "testpmd io"
    prefix = "bench-tp"

    def start(self, work, socks):
        args = ["dpdk-testpmd", f"--file-prefix={self.prefix}", "--no-pci", *mem_args(256),
                "--lcores", "0@0,1@1", "--log-level=*:warning",
                "--vdev", f"net_vhost0,iface={socks[0]},client=1",
                "--vdev", f"net_vhost1,iface={socks[1]},client=1",
                "--", "-i", "--forward-mode=io", "--auto-start", "--total-num-mbufs=16384"]
        self.log = open(work / "testpmd.log", "a")
        # Interactive with a stdin that stays open: testpmd keeps forwarding until quit.
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)

    def drops(self):
        return None

    def stop(self):
        with contextlib.suppress(Exception):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=15)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        remove_dpdk_files(self.prefix)


class OvsDpdk:
    name = "OVS-DPDK"
    prefix = "bench-ovs"

    def start(self, work, socks):
        self.run = work / "ovs"
        shutil.rmtree(self.run, ignore_errors=True)
        self.run.mkdir()
        env = dict(os.environ, OVS_RUNDIR=str(self.run), OVS_LOGDIR=str(self.run),
                   OVS_DBDIR=str(self.run))
        self.env = env
        db = self.run / "conf.db"
        sh = lambda *a: subprocess.run(a, check=True, capture_output=True, env=env)  # noqa: E731
        sh("ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema")
        sh("ovsdb-server", str(db), f"--remote=punix:{self.run}/db.sock",
           f"--pidfile={self.run}/ovsdb.pid", "--detach", f"--log-file={self.run}/ovsdb.log",
           f"--unixctl={self.run}/ovsdb.ctl")
        vsctl = ["ovs-vsctl", f"--db=unix:{self.run}/db.sock"]
        sh(*vsctl, "--no-wait", "init")
        sh(*vsctl, "--no-wait", "set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
           "other_config:dpdk-lcore-mask=0x1", "other_config:pmd-cpu-mask=0x2",
           "other_config:dpdk-socket-mem=512",
           f"other_config:dpdk-extra=--file-prefix={self.prefix} --no-pci")
        sh(OVS_VSWITCHD, f"unix:{self.run}/db.sock", f"--pidfile={self.run}/vswitchd.pid",
           "--detach", f"--log-file={self.run}/vswitchd.log", f"--unixctl={self.run}/vswitchd.ctl")
        sh(*vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
        for i, s in enumerate(socks):
            sh(*vsctl, "add-port", "br0", f"vm{i + 1}", "--", "set", "Interface", f"vm{i + 1}",
               "type=dpdkvhostuserclient", f"options:vhost-server-path={s}")
        # br0's default flow is NORMAL: MAC learning, like conduitd.

    def drops(self):
        return None

    def stop(self):
        for ctl in ("vswitchd.ctl", "ovsdb.ctl"):
            subprocess.run(["ovs-appctl", "-t", str(self.run / ctl), "exit"],
                           capture_output=True, env=self.env, timeout=30)
        for pidfile in ("vswitchd.pid", "ovsdb.pid"):
            with contextlib.suppress(Exception):
                pid = int((self.run / pidfile).read_text())
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
        remove_dpdk_files(self.prefix)


def trial(work, switch, size, bursts, warmup, duration):
    gen = Generator(work)
    gen.start()
    try:
        switch.start(work, gen.socks)
        try:
            wait_for(gen.connected, 60, f"{switch.name} to connect to both guest ports")
            for i, peer in ((0, GEN_MACS[1]), (1, GEN_MACS[0])):
                gen.cmd(f"set eth-peer {i} {peer}")
            gen.cmd(f"set txpkts {size}")
            gen.cmd(f"start tx_first {bursts}")
            time.sleep(warmup)
            r0, t0 = gen.received(), time.monotonic()
            time.sleep(duration)
            r1, t1 = gen.received(), time.monotonic()
            drops = switch.drops()
            return (r1 - r0) / (t1 - t0) / 1e6, drops
        finally:
            switch.stop()
    finally:
        gen.stop()


def ceiling(work, size, duration):
    """The generator with no switch: mac forwarding between two net_null ports on CPU 0
    (each receive hands it fresh mbufs; each transmit frees them). What a switch could
    never exceed with this generator."""
    prefix = "bench-ceil"
    remove_dpdk_files(prefix)
    args = ["dpdk-testpmd", f"--file-prefix={prefix}", "--no-pci", *mem_args(256),
            "--lcores", "0@0,1@0", "--log-level=*:warning",
            "--vdev", f"net_null0,size={size}", "--vdev", f"net_null1,size={size}",
            "--", "-i", "--forward-mode=mac", "--auto-start", "--total-num-mbufs=16384"]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        def rx():
            with Telemetry(prefix) as t:
                return sum(t.query(f"/ethdev/stats,{p}")["ipackets"] for p in (0, 1))
        wait_for(lambda: _try(rx), 30, "the ceiling run")
        time.sleep(1)
        r0, t0 = rx(), time.monotonic()
        time.sleep(duration)
        r1, t1 = rx(), time.monotonic()
        return (r1 - r0) / (t1 - t0) / 1e6
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(timeout=15)
        if proc.poll() is None:
            proc.kill()
        remove_dpdk_files(prefix)


def _try(fn):
    try:
        fn()
        return True
    except (TelemetryError, OSError, ValueError):
        return False


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def main():
    ap = argparse.ArgumentParser(description="conduitd vs testpmd io vs OVS-DPDK")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds measured per trial")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--bursts", type=int, default=32, help="tx_first bursts seeding the loop")
    ap.add_argument("--quick", action="store_true", help="1 trial of 2 s per case")
    ap.add_argument("--out", default=str(TOP / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    if args.quick:
        args.trials, args.duration, args.warmup = 1, 2.0, 2.0
    if not pathlib.Path(OVS_VSWITCHD).exists():
        raise SystemExit(f"{OVS_VSWITCHD} missing: install openvswitch-switch-dpdk (tools/setup.sh)")

    work = pathlib.Path(tempfile.mkdtemp(prefix="conduit-bench."))
    switches = [Conduitd(), TestpmdIo(), OvsDpdk()]
    sizes = [64, 1518]
    results = {s.name: {z: [] for z in sizes} for s in switches}
    drops = {z: [] for z in sizes}
    load_start = loadavg()
    started = time.monotonic()
    try:
        for r in range(args.trials):
            for size in sizes:
                for sw in switches:
                    mpps, d = trial(work, sw, size, args.bursts, args.warmup, args.duration)
                    results[sw.name][size].append(mpps)
                    if d is not None:
                        drops[size].append(d)
                    log(f"trial {r + 1}/{args.trials} {size:>4} B {sw.name:<10} {mpps:6.2f} Mpps")
        ceil = {z: ceiling(work, z, args.duration) for z in sizes}
        for z, v in ceil.items():
            log(f"generator ceiling {z} B: {v:.2f} Mpps")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = loadavg()
    elapsed = time.monotonic() - started
    med = {n: {z: statistics.median(v) for z, v in per.items()} for n, per in results.items()}
    write_report(args, results, med, ceil, drops, load_start, load_end, elapsed)


def write_report(args, results, med, ceil, drops, load_start, load_end, elapsed):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    dpdk = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                          text=True).stdout.strip()
    ovs = subprocess.run(["ovs-vsctl", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    cd, tp, ovsm = med["conduitd"], med["testpmd io"], med["OVS-DPDK"]
    r_tp = {z: cd[z] / tp[z] for z in cd}
    r_ovs = {z: cd[z] / ovsm[z] for z in cd}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "conduitd against `dpdk-testpmd` io forwarding and OVS-DPDK (NORMAL action), forwarding",
        "between two vhost-user guest ports, measured in one run by `tools/bench/spine.sh`.",
        "",
        "Reproduce: `sudo tools/run bench` (or `tools/bench/spine.sh --trials N --duration S`).",
        "",
        f"- Run: {now}; {args.trials} trial(s) per case, {args.duration:g} s measured after "
        f"{args.warmup:g} s warm-up, loop seeded with `tx_first {args.bursts}`; took {elapsed:.0f} s.",
        f"- Machine: {os.cpu_count()} CPUs ({cpu}); DPDK {dpdk}; {ovs}; "
        f"hugepages {'on' if HUGE else 'off (--no-huge)'}.",
        f"- Load average at start {' '.join(load_start)}, at end {' '.join(load_end)}.",
        "- Switch under test on CPU 1, one core; generator on CPU 0.",
        "",
        "## Results (median Mpps, both directions together)",
        "",
        "| switch | 64 B | 1518 B | all 64 B trials | all 1518 B trials |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for name in ("conduitd", "testpmd io", "OVS-DPDK"):
        lines.append(f"| {name} | {med[name][64]:.2f} | {med[name][1518]:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in results[name][64])} | "
                     f"{', '.join(f'{v:.2f}' for v in results[name][1518])} |")
    lines += [
        "",
        "| ratio | 64 B | 1518 B | target at 64 B |",
        "| --- | ---: | ---: | --- |",
        f"| conduitd / testpmd io | {r_tp[64]:.2f} | {r_tp[1518]:.2f} | >= 0.9: "
        f"{'met' if r_tp[64] >= 0.9 else 'NOT met'} |",
        f"| conduitd / OVS-DPDK | {r_ovs[64]:.2f} | {r_ovs[1518]:.2f} | >= 1.3: "
        f"{'met' if r_ovs[64] >= 1.3 else 'NOT met'} |",
        "",
        f"Generator ceiling (its own mac forwarding between two `net_null` ports, no switch, "
        f"CPU 0): {ceil[64]:.2f} Mpps at 64 B, {ceil[1518]:.2f} Mpps at 1518 B. This is its",
        "forwarding loop alone; its side of the virtio rings is not in it, so when conduitd and",
        "testpmd io come out close, both may be at the generator's limit with virtio rather than",
        "their own (`conduit-gen`, a later issue, measures that ceiling properly).",
        "",
        "## Method",
        "",
        "The generator is one `dpdk-testpmd` holding two virtio-user ports that listen",
        "(`server=1`), in `mac` forwarding mode, seeded with `start tx_first`: frames loop",
        "guest -> switch -> guest, with the destination rewritten to the other port's MAC so",
        "that the learning switches see ordinary unicast between two known hosts. The rate is",
        "what the generator received on both ports per second, from its telemetry. conduitd",
        "runs the shipped defaults (learning, counters, idle back-off on); testpmd runs the",
        "vhost PMD in `io` mode (no lookup at all); OVS-DPDK runs a netdev bridge with",
        "`dpdkvhostuserclient` ports and its default NORMAL flow.",
        "",
        "The loop is closed: frames a switch drops while the loop fills are gone, and fewer",
        "frames in flight means a lower rate, so results are bimodal on a busy machine. Each",
        "case therefore runs several trials, interleaved across switches, and the median is",
        "reported with every trial listed. Compare ratios within one run only.",
    ]
    if drops[64] or drops[1518]:
        lines.append("")
        lines.append(f"conduitd's drop counters after each trial (frames lost while the loop "
                     f"filled): 64 B {drops[64]}, 1518 B {drops[1518]}.")
    out = pathlib.Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"date": now, "trials": results, "median": med, "ratio_vs_testpmd": r_tp,
         "ratio_vs_ovs": r_ovs, "generator_ceiling": ceil,
         "loadavg": {"start": load_start, "end": load_end}}, indent=2) + "\n")
    print("\n".join(lines[13:26]))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
