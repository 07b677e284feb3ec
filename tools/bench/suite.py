#!/usr/bin/env python3
"""The benchmark suite: conduitd against dpdk-testpmd io forwarding and OVS-DPDK (NORMAL
action), driven by conduit-gen, in one run on this machine; writes docs/benchmarks.md
(and .json) with the plots.

Cases: 2 guest ports, and 16 guest ports plus the uplink (a memif link to the
generator, traffic between every guest and the uplink), each with 1 flow and with
10,000 MACs; frame sizes 64, 1518 and IMIX. For every switch, case and size,
conduit-gen (RFC 2544 mode) measures the forwarding rate at the maximum offered load,
then searches the PDR (loss <= 0.5%) and the NDR (no loss) and reports latency at the
NDR. The switch under test polls on CPU 1, one core, alone: the generator, this script,
every other thread of the switch and the kernel's movable threads and interrupts are on
CPU 0 for the run (quiet_cpu.py).

The generator's ceiling comes first: conduit-gen alone on a loopback ring and on a
memif pair in one process, next to testpmd's mac forwarding on the same links, and
both generators driving testpmd io as two guests (conduit-gen with its own guest NICs,
testpmd with virtio-user), each reporting its CPU cycles per frame.
"""
import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tools"))
from conduit_telemetry import Telemetry, TelemetryError  # noqa: E402
from quiet_cpu import QuietCpu  # noqa: E402  (tools/bench, this script's directory)

HUGE = os.environ.get("CONDUIT_HUGEPAGES", "1") == "1"
GEN = TOP / "build" / "release" / "tools" / "gen" / "conduit-gen"
CONDUITD = TOP / "build" / "release" / "control" / "conduitd"
SHIPPED_CONFIG = TOP / "configs" / "default.yaml"
OVS_VSWITCHD = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
SIZES = ["64", "1518", "imix"]
SWITCHES = ["conduitd", "testpmd io", "OVS-DPDK"]
GUEST_RING = 1024
GEN_CPU = 0  # conduit-gen, this script and every thread that is not a switch's poller
SWITCH_CPU = 1  # the switch under test's poller, alone
MAC_TABLE = 16384  # every switch's MAC table holds the 10,000-MAC cases with room


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg():
    return float(open("/proc/loadavg").read().split()[0])


def remove_dpdk_files(prefix):
    for f in pathlib.Path("/dev/hugepages").glob(f"{prefix}map_*"):
        f.unlink(missing_ok=True)
    shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)


def mem_args(mb):
    return ["--single-file-segments", "-m", str(mb)] if HUGE else ["--no-huge", "-m", str(mb)]


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def telemetry_ok(prefix, command):
    try:
        with Telemetry(prefix) as t:
            return t.query(command)
    except (TelemetryError, OSError, ValueError):
        return None


class Case:
    def __init__(self, key, title, guests, uplink, macs):
        self.key, self.title, self.guests, self.uplink, self.macs = key, title, guests, uplink, macs

    def port_names(self):
        return [f"vm{i + 1}" for i in range(self.guests)] + (["uplink"] if self.uplink else [])


CASES = [
    Case("2p-1flow", "2 guests, 1 flow", 2, False, None),
    Case("2p-10k", "2 guests, 10,000 MACs", 2, False, 10000),
    Case("16p-1flow", "16 guests + uplink, 1 flow", 16, True, None),
    Case("16p-10k", "16 guests + uplink, 10,000 MACs", 16, True, 10000),
]


class Switch:
    """A switch under test: started after the generator listens on the guests' sockets,
    connected to them as a VM's vhost-user backend would be."""
    name = ""
    prefix = ""

    def uplink_tx_queues(self):
        """The transmit queues the switch's memif server sends on: the generator's memif
        client must open as many receive queues, since on memif the client sets the
        link's ring counts and a queue it did not open carries nothing."""
        return 1

    def start(self, work, case, socks, memif):
        raise NotImplementedError

    def ready(self):
        return True

    def counters(self):
        return None

    def stop(self):
        raise NotImplementedError


class Conduitd(Switch):
    name = "conduitd"
    prefix = "bench-cd"

    def uplink_tx_queues(self):
        # One transmit queue per worker on an ethdev port.
        return len(yaml.safe_load(SHIPPED_CONFIG.read_text())["conduitd"]["workers"])

    def start(self, work, case, socks, memif):
        # The shipped config (configs/default.yaml) with the case's ports; what would clash
        # with another conduitd on this machine moved into the work directory (file
        # prefix, control socket; metrics off), and a MAC table that holds 10,000 MACs,
        # sized as the other switches' are.
        cfg = yaml.safe_load(SHIPPED_CONFIG.read_text())
        cfg["conduitd"]["file_prefix"] = self.prefix
        cfg["conduitd"]["hugepages"] = HUGE
        cfg["control"] = dict(cfg.get("control") or {}, socket=str(work / "conduitd.sock"),
                              metrics="off")
        bridge = cfg["bridges"][0]
        bridge["mac_table_size"] = MAC_TABLE
        ports = [{"name": n, "type": "vhost-user", "socket": s}
                 for n, s in zip(case.port_names(), socks)]
        if case.uplink:
            ports.append({"name": "uplink", "type": "ethdev",
                          "devargs": f"net_memif0,role=server,socket={memif}"})
        bridge["ports"] = ports
        cfg["bridges"] = [bridge]
        path = work / "conduitd.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.case = case
        self.log = open(work / "conduitd.log", "a")
        self.proc = subprocess.Popen([str(CONDUITD), "--config", str(path)], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"conduitd exited {self.proc.returncode}")
        ports = telemetry_ok(self.prefix, "/conduit/ports")
        return bool(ports) and all(p["state"] == "up" for p in ports.values())

    def counters(self):
        # Per-port counters and drop reasons, and the worker's PMD statistics (cycles
        # per frame, busy share): what to look at when conduitd misses a target.
        return {"ports": telemetry_ok(self.prefix, "/conduit/ports"),
                "workers": telemetry_ok(self.prefix, "/conduit/workers")}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        remove_dpdk_files(self.prefix)


class TestpmdIo(Switch):
    """testpmd's io forwarding: no lookup at all. With the uplink it cannot switch by MAC,
    so every port loops back to itself (--port-topology=loop): each port then carries
    exactly the frames it carries in the switched case, and the generator expects each
    frame back on the port that sent it."""
    name = "testpmd io"
    prefix = "bench-tp"

    def __init__(self, memif_ports=False):
        # memif_ports: each of `socks` is a memif server's socket instead of a guest's.
        self.memif_ports = memif_ports

    def start(self, work, case, socks, memif):
        args = ["dpdk-testpmd", f"--file-prefix={self.prefix}", "--no-pci", *mem_args(512),
                "--lcores", "0@0,1@1", "--log-level=*:warning"]
        for i, s in enumerate(socks):
            args += ["--vdev", f"net_memif{i},role=server,socket={s}" if self.memif_ports
                     else f"net_vhost{i},iface={s},client=1"]
        if case.uplink:
            args += ["--vdev", f"net_memif0,role=server,socket={memif}"]
        args += ["--", "-i", "--forward-mode=io", "--auto-start", "--nb-cores=1",
                 "--total-num-mbufs=32768",
                 f"--port-topology={'loop' if case.uplink else 'paired'}"]
        self.log = open(work / "testpmd.log", "a")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=self.log,
                                     stderr=subprocess.STDOUT, text=True)

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"testpmd exited {self.proc.returncode}")
        return True

    def stop(self):
        with contextlib.suppress(Exception):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=20)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        remove_dpdk_files(self.prefix)


class OvsDpdk(Switch):
    name = "OVS-DPDK"
    prefix = "bench-ovs"
    PMD_CPU_MASK = 0x2

    def uplink_tx_queues(self):
        # dpif-netdev asks a DPDK port for one transmit queue per PMD thread plus one for
        # its main (non-PMD) thread, which takes queue 0: the PMD thread sends on queue 1.
        return bin(self.PMD_CPU_MASK).count("1") + 1

    def start(self, work, case, socks, memif):
        self.run = work / "ovs"
        shutil.rmtree(self.run, ignore_errors=True)
        self.run.mkdir()
        env = dict(os.environ, OVS_RUNDIR=str(self.run), OVS_LOGDIR=str(self.run),
                   OVS_DBDIR=str(self.run))
        self.env = env
        db = self.run / "conf.db"

        def sh(*a):
            subprocess.run(a, check=True, capture_output=True, env=env)
        sh("ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema")
        sh("ovsdb-server", str(db), f"--remote=punix:{self.run}/db.sock",
           f"--pidfile={self.run}/ovsdb.pid", "--detach", f"--log-file={self.run}/ovsdb.log",
           f"--unixctl={self.run}/ovsdb.ctl")
        vsctl = ["ovs-vsctl", f"--db=unix:{self.run}/db.sock"]
        sh(*vsctl, "--no-wait", "init")
        # PMD on CPU 1. Its other threads stay free to run on CPU 0: confined to CPU 1
        # with the PMD (taskset), the thread that answers memif's handshake starved and
        # the generator's memif client could not connect.
        sh(*vsctl, "--no-wait", "set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
           "other_config:dpdk-lcore-mask=0x1",
           f"other_config:pmd-cpu-mask={self.PMD_CPU_MASK:#x}",
           "other_config:dpdk-socket-mem=1024",
           f"other_config:dpdk-extra=--file-prefix={self.prefix} --no-pci"
           + ("" if HUGE else " --no-huge"))
        sh(OVS_VSWITCHD, f"unix:{self.run}/db.sock", f"--pidfile={self.run}/vswitchd.pid",
           "--detach", f"--log-file={self.run}/vswitchd.log",
           f"--unixctl={self.run}/vswitchd.ctl")
        # NORMAL (the bridge's default flow): MAC learning, like conduitd; its table sized
        # like conduitd's (OVS's default is 2048 entries).
        sh(*vsctl, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
           f"other_config:mac-table-size={MAC_TABLE}")
        for name, s in zip(case.port_names(), socks):
            sh(*vsctl, "add-port", "br0", name, "--", "set", "Interface", name,
               "type=dpdkvhostuserclient", f"options:vhost-server-path={s}")
        if case.uplink:
            sh(*vsctl, "add-port", "br0", "uplink", "--", "set", "Interface", "uplink",
               "type=dpdk", f"options:dpdk-devargs=net_memif0,role=server,socket={memif}")
        self.ports = len(case.port_names())

    def ready(self):
        # Every port's receive queue is polled by the PMD thread.
        out = subprocess.run(["ovs-appctl", "-t", str(self.run / "vswitchd.ctl"),
                              "dpif-netdev/pmd-rxq-show"], capture_output=True, text=True,
                             env=self.env).stdout
        return out.count("port:") >= self.ports

    def counters(self):
        # The PMD's cache hits, upcalls and cycles: what explains a low rate.
        out = subprocess.run(["ovs-appctl", "-t", str(self.run / "vswitchd.ctl"),
                              "dpif-netdev/pmd-stats-show"], capture_output=True, text=True,
                             env=self.env, timeout=30).stdout
        return {"pmd_stats": out}

    def stop(self):
        for ctl in ("vswitchd.ctl", "ovsdb.ctl"):
            subprocess.run(["ovs-appctl", "-t", str(self.run / ctl), "exit"],
                           capture_output=True, env=self.env, timeout=60)
        for pidfile in ("vswitchd.pid", "ovsdb.pid"):
            with contextlib.suppress(Exception):
                pid = int((self.run / pidfile).read_text())
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
        remove_dpdk_files(self.prefix)


class GenRun:
    """One conduit-gen process; it waits on stdin once its ports are up."""

    def __init__(self, work, name, args):
        self.work = work
        self.json_path = work / f"{name}.json"
        self.log_path = work / f"{name}.log"
        self.args = [str(GEN), "--file-prefix=bench-gen", "--cpu", "0", "--progress", "5",
                     "--json", str(self.json_path), *args]
        if not HUGE:
            self.args.append("--no-huge")

    def start(self, wait_on_stdin=True):
        remove_dpdk_files("bench-gen")
        self.json_path.unlink(missing_ok=True)
        self.log = open(self.log_path, "w")
        args = self.args + (["--start-on-stdin"] if wait_on_stdin else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self.log, text=True)

    def output(self):
        return self.log_path.read_text()

    def wait_ready(self, timeout):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"conduit-gen exited {self.proc.returncode}:\n"
                                   f"{self.output()[-3000:]}")
            return "conduit-gen: ready" in self.output()
        wait_for(ready, timeout, "conduit-gen's ports")

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout):
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            remove_dpdk_files("bench-gen")
        if rc not in (0, 3):
            raise RuntimeError(f"conduit-gen exited {rc}:\n{self.output()[-3000:]}")
        return json.loads(self.json_path.read_text())


def gen_case_args(case, switch, socks, memif, args):
    # Rings of 1024 descriptors, as a VM's NIC may have (QEMU's largest): with the default
    # 256 a 1 ms stall of the switch's vCPU (common on a shared machine) loses frames at
    # any rate above 256,000 per second and guest, which would make NDR measure the host.
    ports = [f"--port={n}=virtio:path={s},queue_size={GUEST_RING},driver={args.guest_driver}"
             for n, s in zip(case.port_names(), socks)]
    if case.uplink:
        queues = switch.uplink_tx_queues()
        ports.append(f"--port=uplink=memif:socket={memif},driver={args.memif_driver}"
                     + (f",rxq={queues}" if queues > 1 else ""))
    out = ports + ["--mode", "rfc2544", "--sizes", ",".join(SIZES),
                   "--trials", str(args.trials), "--duration", str(args.duration),
                   "--warmup", str(args.warmup), "--search-steps", str(args.steps),
                   "--search-duration", str(args.search_duration),
                   "--search-tries", str(args.tries),
                   "--topology", "star:uplink" if case.uplink else "pairs",
                   "--title", f"{switch.name}: {case.title}"]
    if case.macs:
        out += ["--macs", str(case.macs)]
    if case.uplink and isinstance(switch, TestpmdIo):
        out.append("--expect-loopback")
    return out


def run_case(work, switch, case, args):
    socks = [str(work / f"{n}.sock") for n in case.port_names() if n != "uplink"]
    memif = str(work / "memif.sock")
    pathlib.Path(memif).unlink(missing_ok=True)
    gen = GenRun(work, f"gen-{case.key}-{switch.prefix}",
                 gen_case_args(case, switch, socks, memif, args))
    gen.start()
    load = [loadavg()]
    try:
        time.sleep(0.5)
        switch.start(work, case, socks, memif)
        try:
            gen.wait_ready(180)
            wait_for(switch.ready, 60, f"{switch.name} ready")
            time.sleep(2)  # link state reaches every side's datapath
            gen.go()
            result = gen.finish(3600)
            load.append(loadavg())
            result["switch_counters"] = switch.counters()
        finally:
            switch.stop()
    finally:
        if gen.proc.poll() is None:
            gen.proc.kill()
            gen.proc.wait()
        remove_dpdk_files("bench-gen")
    result["loadavg"] = load
    # Frames each port of the generator received in the maximum-load trials: a switch
    # that never delivers to one port (or one direction) shows here.
    per_port = {}
    for s in result.get("sizes", []):
        for i in s["max_trials"]:
            for name, c in result["trials"][i]["ports"].items():
                per_port[name] = per_port.get(name, 0) + c["rx_frames"]
    result["max_trials_rx_per_port"] = per_port
    return result


# --- the generator's ceiling and cost per frame ----------------------------------------

class TestpmdMac:
    """dpdk-testpmd in mac forwarding mode on CPU 0 (the generator's), driven through a
    fifo, counting its own cycles per packet (--record-core-cycles). close() quits it
    (or kills it) and returns those cycles."""
    prefix = "bench-tpmac"

    def __init__(self, work, vdevs, mem_mb, log_name):
        remove_dpdk_files(self.prefix)
        fifo = work / "tpmac.in"
        if not fifo.exists():
            os.mkfifo(fifo)
        self.logp = work / log_name
        args = ["dpdk-testpmd", f"--file-prefix={self.prefix}", "--no-pci", *mem_args(mem_mb),
                "--lcores", "0@0,1@0", "--log-level=*:warning"]
        for v in vdevs:
            args += ["--vdev", v]
        args += ["--", "-i", "--total-num-mbufs=16384", "--forward-mode=mac",
                 "--record-core-cycles"]
        self.proc = subprocess.Popen(args, stdin=open(fifo, "r+b", buffering=0),
                                     stdout=open(self.logp, "w"), stderr=subprocess.STDOUT)
        self.w = open(fifo, "w", buffering=1)

    def send(self, commands):
        self.w.write(commands)

    def ports(self):
        return telemetry_ok(self.prefix, "/ethdev/list") or []

    def rx_rate(self, ports, seconds):
        """Frames per second received on PORTS over SECONDS."""
        def rx():
            with Telemetry(self.prefix) as t:
                return sum(t.query(f"/ethdev/stats,{p}")["ipackets"] for p in ports)
        r0, t0 = rx(), time.monotonic()
        time.sleep(seconds)
        r1, t1 = rx(), time.monotonic()
        return (r1 - r0) / (t1 - t0)

    def close(self):
        try:
            if self.proc.poll() is None:
                self.w.write("quit\n")
                self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.w.close()
            remove_dpdk_files(self.prefix)
        try:  # in a finally block: an unreadable log must not hide the error being raised
            cycles = re.findall(r"CPU cycles/packet=([0-9.]+)", self.logp.read_text())
        except OSError:
            return None
        return float(cycles[-1]) if cycles else None


def testpmd_mac_loop(work, vdevs, size, seconds, attach=None, bursts=16):
    """testpmd mac forwarding on links inside its own process, seeded with tx_first:
    the Mpps it loops and its own cycles per packet. `attach` is a device added once the
    others are configured (a virtio-user NIC connecting to testpmd's own vhost-user
    port, whose socket appears only then)."""
    tp = TestpmdMac(work, vdevs, 256, "tpmac.log")
    try:
        wait_for(lambda: telemetry_ok(tp.prefix, "/ethdev/list") is not None, 60, "testpmd mac")
        time.sleep(1)
        ports = len(vdevs)
        if attach:
            tp.send(f"port attach {attach}\n")
            ports += 1
            wait_for(lambda: len(tp.ports()) == ports, 60, "testpmd's attached port")
            tp.send("port start all\n")
            time.sleep(2)
        tp.send(f"set txpkts {size}\nstart tx_first {bursts}\n")
        time.sleep(1)
        pps = tp.rx_rate(range(ports), seconds)
        tp.send("stop\n")
        time.sleep(1)
    finally:
        cycles = tp.close()
    return pps, cycles


def generator_costs(work, args):
    """conduit-gen's ceiling (no switch), and per frame costs next to testpmd's mac
    forwarding: on the same in-process links, and driving testpmd io over virtio-user.
    The costs are measured in --cost-rounds rounds, conduit-gen and testpmd taking turns
    in each, and each figure is the median over the rounds: this machine's speed drifts
    by tens of percent within minutes (other tenants of its host), so one measurement of
    each, minutes apart, compares the moments more than the two programs."""
    out = {"ceiling": None, "links": [], "virtio": [], "rounds": args.cost_rounds}
    gen = GenRun(work, "gen-ceiling", ["--mode", "ceiling", "--sizes", ",".join(SIZES),
                                       "--trials", str(args.ceiling_trials), "--duration",
                                       str(args.duration), "--warmup", str(args.warmup)])
    gen.start(wait_on_stdin=False)
    ceiling = gen.finish(1800)
    out["ceiling"] = ceiling["ceiling"]
    # The first round takes conduit-gen's figures from the ceiling just run, when it
    # measured both sizes compared (--sizes may have left one out).
    measured = {c["size"] for c in ceiling["ceiling"]}
    reuse = ceiling if {"64", "1518"} <= measured else None
    links, via = [], []
    for r in range(args.cost_rounds):
        log(f"cost per frame, round {r + 1} of {args.cost_rounds}")
        links.append(link_costs(work, args, reuse if r == 0 else None))
        via.append(via_switch_costs(work, args))
    out["links"] = median_rows(links, ("link", "size"))
    out["virtio"] = median_rows(via, ("link", "size"))
    return out


def median_rows(rounds, keys):
    """One row per KEYS of the rows of every round: each figure the median over the
    rounds (None when no round measured it), the rounds' own figures under "rounds"."""
    rows = []
    for first in rounds[0]:
        same = [next(x for x in rnd if all(x[k] == first[k] for k in keys)) for rnd in rounds]
        row = {k: first[k] for k in keys}
        for field in first:
            if field in keys:
                continue
            values = [x[field] for x in same if x[field] is not None]
            row[field] = statistics.median(values) if values else None
        row["rounds"] = [{f: x[f] for f in x if f not in keys} for x in same]
        rows.append(row)
    return rows


def link_costs(work, args, ceiling=None):
    """conduit-gen alone, then testpmd mac, on each in-process link at 64 and 1518 bytes.
    CEILING: a ceiling run to take conduit-gen's figures from (else one is run)."""
    if ceiling is None:
        gen = GenRun(work, "gen-cost", ["--mode", "ceiling", "--sizes", "64,1518", "--trials",
                                        "1", "--duration", str(args.duration), "--warmup",
                                        str(args.warmup)])
        gen.start(wait_on_stdin=False)
        ceiling = gen.finish(1800)
    msock = str(work / "tpmac-memif.sock")
    vsock = str(work / "tpmac-vhost.sock")
    links = {"ring": (["net_ring0", "net_ring1"], None),
             "memif": ([f"net_memif0,role=server,socket={msock}",
                        f"net_memif1,role=client,socket={msock}"], None),
             "virtio": ([f"net_vhost0,iface={vsock}"], f"net_virtio_user1,path={vsock}")}
    rows = []
    for link, (vdevs, attach) in links.items():
        for size in ("64", "1518"):
            pathlib.Path(msock).unlink(missing_ok=True)
            pathlib.Path(vsock).unlink(missing_ok=True)
            pps, cycles = testpmd_mac_loop(work, vdevs, size, args.duration, attach)
            row = next(c for c in ceiling["ceiling"] if c["link"] == link and c["size"] == size)
            rows.append({"link": link, "size": size, "gen_pps": row["rx_pps"],
                         "gen_cycles": row["cycles_per_frame"], "testpmd_pps": pps,
                         "testpmd_cycles": cycles})
            log(f"per frame on {link} {size} B: conduit-gen {row['cycles_per_frame']:.0f} cycles "
                f"({row['rx_pps'] / 1e6:.2f} Mpps), testpmd mac {cycles} cycles "
                f"({pps / 1e6:.2f} Mpps)")
    return rows


def via_switch_costs(work, args):
    """Both generators driving the same switch (testpmd io, CPU 1) over two links: two
    guests (virtio-user for testpmd, the generator's own guest NICs) and two memif
    clients (DPDK's net_memif for testpmd, the generator's own memif NICs): the rate
    each gets through and what each frame cost the generator's CPU."""
    case = CASES[0]
    rows = []
    for link in ("virtio", "memif"):
        for size in ("64", "1518"):
            rows.append(via_switch_cost(work, args, case, link, size))
    return rows


def via_switch_cost(work, args, case, link, size):
    socks = [str(work / f"via{i + 1}.sock") for i in range(2)]
    for s in socks:
        pathlib.Path(s).unlink(missing_ok=True)
    macs = [f"02:00:00:00:00:0{i + 1}" for i in range(2)]
    if link == "virtio":
        vdevs = [f"net_virtio_user{i},path={s},server=1,queues=1,mac={m}"
                 for i, (s, m) in enumerate(zip(socks, macs))]
        gen_ports = [f"--port=vm{i + 1}=virtio:path={s}" for i, s in enumerate(socks)]
    else:
        vdevs = [f"net_memif{i},role=client,socket={s},mac={m}"
                 for i, (s, m) in enumerate(zip(socks, macs))]
        gen_ports = [f"--port=w{i + 1}=memif:socket={s}" for i, s in enumerate(socks)]
    sw = TestpmdIo(memif_ports=link == "memif")
    result = {"link": link, "size": size}

    def with_switch(fn):
        sw.start(work, case, socks, None)
        try:
            return fn()
        finally:
            sw.stop()

    def start_testpmd():
        return TestpmdMac(work, vdevs, 512, f"tpmac-via-{link}.log")
    # testpmd mac as the generator. Its virtio-user probes wait for the switch, so the
    # switch starts while testpmd is still starting; its memif clients connect only
    # when started, so there the switch's memif servers come first.
    tp = start_testpmd() if link == "virtio" else None

    def measure_testpmd():
        nonlocal tp
        if tp is None:
            wait_for(lambda: telemetry_ok(sw.prefix, "/ethdev/list") == [0, 1], 60,
                     "testpmd io's memif servers")
            tp = start_testpmd()
        wait_for(lambda: tp.ports() == [0, 1], 60, "testpmd's ports")
        tp.send(f"set eth-peer 0 {macs[1]}\nset eth-peer 1 {macs[0]}\n")
        tp.send(f"set txpkts {size}\nstart tx_first 32\n")
        time.sleep(args.warmup + 1)
        pps = tp.rx_rate((0, 1), args.duration)
        tp.send("stop\n")
        time.sleep(1)
        return pps
    try:
        time.sleep(0.5)
        result["testpmd_pps"] = with_switch(measure_testpmd)
    finally:
        result["testpmd_cycles"] = tp.close() if tp is not None else None
    for s in socks:
        pathlib.Path(s).unlink(missing_ok=True)
    g = GenRun(work, f"gen-via-{link}-{size}",
               gen_ports + ["--mode", "max", "--size", size, "--trials", "1", "--duration",
                            str(args.duration + args.warmup), "--warmup", str(args.warmup)])
    g.start()

    def measure_gen():
        g.wait_ready(60)
        time.sleep(1)
        g.go()
        return g.finish(600)
    r = with_switch(measure_gen)
    t = r["trials"][0]
    result.update({"gen_pps": t["rx_pps"], "gen_cycles": t["cycles_per_frame"],
                   "gen_busy": t["generator_busy"]})
    log(f"through testpmd io on {link}, {size} B: conduit-gen {t['rx_pps'] / 1e6:.2f} Mpps at "
        f"{t['cycles_per_frame']:.0f} cycles/frame (busy {100 * t['generator_busy']:.0f}%), "
        f"testpmd mac {result['testpmd_pps'] / 1e6:.2f} Mpps at "
        f"{result['testpmd_cycles']} cycles/packet")
    return result


# --- the report -------------------------------------------------------------------------

def figures(result, size):
    s = next((x for x in (result or {}).get("sizes", []) if x["size"] == size), None)
    if s is None:  # the run failed (see its "error")
        return dict.fromkeys(("max", "pdr", "ndr", "ndr_failed", "ndr_p99", "ndr_p50", "busy",
                              "gen_cycles"))
    ndr = s["ndr"]
    return {"max": s["throughput_pps"], "pdr": s["pdr"]["rate_pps"], "ndr": ndr["rate_pps"],
            "ndr_failed": ndr.get("upper_pps") or None,  # the NDR search's lowest failing rate
            "ndr_p99": ndr.get("latency", {}).get("p99_us"),
            "ndr_p50": ndr.get("latency", {}).get("p50_us"),
            "busy": statistics.median([result["trials"][i]["generator_busy"]
                                       for i in s["max_trials"]]),
            "gen_cycles": statistics.median([result["trials"][i]["cycles_per_frame"]
                                             for i in s["max_trials"]])}


def ndr_stalls(result, size):
    """(count, longest us) of the generator's stalls over the tries of the NDR search at
    SIZE; None for a run that did not count them (before conduit-gen reported stalls)."""
    s = next((x for x in (result or {}).get("sizes", []) if x["size"] == size), None)
    if s is None:
        return None
    tries = [result["trials"][i] for i in s["ndr"].get("steps", [])]
    if not tries or any("generator_stalls" not in t for t in tries):
        return None
    return (sum(t["generator_stalls"] for t in tries),
            max(t["generator_longest_stall_us"] for t in tries))


def fmt_mpps(v):
    return f"{v / 1e6:.2f}" if v else "-"


def ratio(a, b):
    return a / b if a and b else None


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}"


def fmt_pct(v):
    return "-" if v is None else f"{100 * v:.0f}%"


def fmt_us(v):
    return "-" if v is None else (f"{v:.1f}" if v < 100 else f"{v:.0f}")


def plot(results, out_dir):
    """docs/benchmarks.png: forwarding rate at the maximum load per case (2x2);
    docs/benchmarks-ndr.png: NDR and its p99 latency at 64 bytes."""
    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="conduit-plot."))
    try:
        script = ["set terminal pngcairo size 1200,800 font 'sans,10'",
                  f"set output '{out_dir / 'benchmarks.png'}'",
                  "set multiplot layout 2,2 title 'Forwarding rate at the maximum offered load "
                  "(Mpps, all streams together)'",
                  "set style data histograms", "set style histogram clustered gap 1",
                  "set style fill solid 0.85 border -1", "set boxwidth 0.9", "set grid ytics",
                  "set yrange [0:*]", "set key top right"]
        for case in CASES:
            d = data_dir / f"{case.key}.dat"
            rows = ["size " + " ".join(f'"{s}"' for s in SWITCHES)]
            for size in SIZES:
                rows.append(f"{size} " + " ".join(
                    f"{(figures(results[case.key][s], size)['max'] or 0) / 1e6:.3f}" for s in SWITCHES))
            d.write_text("\n".join(rows) + "\n")
            script += [f"set title '{case.title}'",
                       f"plot '{d}' using 2:xtic(1) title columnheader(2), '' using 3 title "
                       "columnheader(3), '' using 4 title columnheader(4)"]
        script.append("unset multiplot")
        d = data_dir / "ndr.dat"
        rows = ["case " + " ".join(f'"{s}"' for s in SWITCHES)]
        lat = ["case " + " ".join(f'"{s}"' for s in SWITCHES)]
        for case in CASES:
            rows.append(f'"{case.title}" ' + " ".join(
                f"{(figures(results[case.key][s], '64')['ndr'] or 0) / 1e6:.3f}" for s in SWITCHES))
            lat.append(f'"{case.title}" ' + " ".join(
                f"{figures(results[case.key][s], '64')['ndr_p99'] or 0:.1f}" for s in SWITCHES))
        d.write_text("\n".join(rows) + "\n")
        dl = data_dir / "lat.dat"
        dl.write_text("\n".join(lat) + "\n")
        script += ["set terminal pngcairo size 1200,500 font 'sans,10'",
                   f"set output '{out_dir / 'benchmarks-ndr.png'}'",
                   "set multiplot layout 1,2 title '64-byte frames at the no-drop rate (NDR)'",
                   "set title 'NDR (Mpps)'", "set xtics rotate by -20",
                   f"plot '{d}' using 2:xtic(1) title columnheader(2), '' using 3 title "
                   "columnheader(3), '' using 4 title columnheader(4)",
                   "set title 'p99 latency at the NDR (us)'",
                   f"plot '{dl}' using 2:xtic(1) title columnheader(2), '' using 3 title "
                   "columnheader(3), '' using 4 title columnheader(4)",
                   "unset multiplot"]
        gp = data_dir / "plot.gp"
        gp.write_text("\n".join(script) + "\n")
        subprocess.run(["gnuplot", str(gp)], check=True, capture_output=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def switch_load(result):
    """What the switch's own counters say about its one core over the whole case:
    conduitd's worker (busy share, cycles per frame received) or OVS's PMD (cycles per
    frame, the share of frames that missed its flow caches and went up to its slow path)."""
    c = (result or {}).get("switch_counters") or {}
    workers = c.get("workers")
    if workers:
        w = next(iter(workers.values()))
        busy, idle = w.get("busy_cycles", 0), w.get("idle_cycles", 0)
        frames = w.get("rx_packets", 0)
        text = (f"worker busy {100 * busy / max(busy + idle, 1):.0f}% of its polling time, "
                f"{busy / max(frames, 1):.0f} busy cycles per frame received")
        if "stalls" in w:  # counted since conduitd reports them
            text += (f"; held up (its CPU taken away) {w['stalls']} time(s) over 500 us, "
                     f"longest {w['longest_stall_us']} us")
        return text
    text = c.get("pmd_stats")
    if text:
        def num(label):
            m = re.search(rf"{label}: ([0-9.]+)", text)
            return float(m.group(1)) if m else 0.0
        rx = num("packets received")
        up = num("miss with success upcall") + num("miss with failed upcall")
        return (f"PMD {num('avg processing cycles per packet'):.0f} processing cycles per "
                f"frame; {100 * up / max(rx, 1):.1f}% of frames missed the flow caches "
                f"(upcalls), {100 * num('emc hits') / max(rx, 1):.0f}% hit the EMC")
    return None


def why(results):
    L = ["## What the switches' own counters say", "",
         "Over each whole case (all sizes, the searches included), from conduitd's worker",
         "statistics and OVS's `dpif-netdev/pmd-stats-show` (testpmd io keeps none):", ""]
    for case in CASES:
        for s in ("conduitd", "OVS-DPDK"):
            load = switch_load(results[case.key][s])
            if load:
                L.append(f"- {case.title}, {s}: {load}.")
    silent = [(c.title, s, [p for p, n in results[c.key][s].get("max_trials_rx_per_port",
                                                                   {}).items() if n == 0])
              for c in CASES for s in SWITCHES]
    silent = [(t, s, ports) for t, s, ports in silent if ports]
    if silent:
        L += ["", "**Ports that received nothing from the switch** in the maximum-load trials "
              "(so that switch's figures there count one direction only, and are not "
              "comparable):", ""]
        L += [f"- {t}, {s}: {', '.join(ports)}" for t, s, ports in silent]
    L += ["", "*(!)*: the generator was busy in at least 90% of its loop: that figure may be",
          "its limit rather than the switch's (see the ceiling below). *generator cycles/frame*",
          "is what each frame received cost the generator in the maximum-load trials (median):",
          "the same traffic costs it more when a switch hands it frames a few at a time or",
          "through a link whose copies fall on the generator's core (the memif uplink), and",
          "it moves from run to run with how the host places this machine's two vCPUs (every",
          "frame crosses between them through shared caches): in the 16-guest cases, where",
          "the generator is the limit, the same case run twice minutes apart can differ by a",
          "factor of two, so there a ratio says little about the switches.", ""]
    return L


def ceiling_section(costs):
    """The report's section on the generator's ceiling and cost per frame (markdown lines)."""
    L = ["## The generator's ceiling", "",
         "So that a generator limit is never read as a switch limit: conduit-gen alone (no",
         "switch, one core) on an in-process loopback ring (no copy), on a memif pair and on",
         "a guest NIC connected to a vhost-user port of its own (both ends' work paid by its",
         "one core), next to testpmd's mac forwarding on the same kinds of link; then both",
         "generators driving the same switch (testpmd io on the other core) as two guests",
         "and as two memif clients. Each uses its own drivers: conduit-gen its native guest",
         "and memif NICs (docs/conduit-gen.md), testpmd DPDK's virtio-user and net_memif.",
         "On the memif pair that makes a difference of kind: conduit-gen's sender builds",
         "each frame in the shared buffer its receiver reads it from (no copy at all), where",
         "DPDK's net_memif copies each frame in and out; the rows through testpmd io, where",
         "the switch makes the copies, compare the two generators on equal terms.",
         "Cycles per frame: the TSC cycles of conduit-gen's receive and transmit calls that",
         "received, built or sent frames (building, stamping, sending, receiving, sequence",
         "and latency accounting, and the loop's bookkeeping before each such call; empty",
         "polls and refused retries left out) per frame received. Every such frame was sent",
         "once and received once on the link by that one core. testpmd's figure is its own",
         "`--record-core-cycles` one for its mac forwarding loop (seeded with `tx_first`):",
         "busy cycles (empty polls left out) per packet received, each packet received also",
         "sent once. Both are thus the cost of one receive and one transmit on the link per",
         "frame, plus what each does with the frame: testpmd swaps its addresses,",
         "conduit-gen builds, stamps and accounts for it (sequence, loss, latency).", ""]
    rounds = costs.get("rounds", 1)
    if rounds > 1:
        L += [f"Each figure is the median of {rounds} rounds in which the two took turns on each",
              "link (this machine's speed drifts by tens of percent within minutes); every",
              "round's figures are in `docs/benchmarks.json`.", ""]
    L += ["| link | size | conduit-gen Mpps | conduit-gen cycles/frame | testpmd mac Mpps | "
          "testpmd mac cycles/packet |", "| --- | --- | ---: | ---: | ---: | ---: |"]

    def cycles(v):
        return "-" if v is None else f"{v:.1f}"
    for row in costs["links"]:
        L.append(f"| {row['link']} | {row['size']} | {fmt_mpps(row['gen_pps'])} | "
                 f"{cycles(row['gen_cycles'])} | {fmt_mpps(row['testpmd_pps'])} | "
                 f"{cycles(row['testpmd_cycles'])} |")
    for row in costs["virtio"]:
        via = ("2 memif clients via testpmd io" if row.get("link") == "memif"
               else "2 guests via testpmd io")
        L.append(f"| {via} | {row['size']} | {fmt_mpps(row['gen_pps'])} | "
                 f"{cycles(row['gen_cycles'])} | {fmt_mpps(row['testpmd_pps'])} | "
                 f"{cycles(row['testpmd_cycles'])} |")
    if costs.get("error"):
        L += ["", f"**Measuring the generator failed**: {costs['error'].splitlines()[0]}"]
    L += ["", "conduit-gen's ceiling for every size (Mpps, no switch):", "",
          "| link | " + " | ".join(SIZES) + " |", "| --- |" + " ---: |" * len(SIZES)]
    for link in ("ring", "memif", "virtio"):
        L.append(f"| {link} | " + " | ".join(
            fmt_mpps(next((c["rx_pps"] for c in costs["ceiling"]
                           if c["link"] == link and c["size"] == s), None)) for s in SIZES) + " |")
    return L


def write_report(args, command, results, costs, loads, started_utc, elapsed, out, quiet):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    dpdk = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                          text=True).stdout.strip()
    ovs = subprocess.run(["ovs-vsctl", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    busy_load = max(loads) > 2.6
    L = ["# Benchmarks", "",
         "conduitd against `dpdk-testpmd` io forwarding and OVS-DPDK (NORMAL action), driven by",
         "[conduit-gen](conduit-gen.md), all in one run on this machine. Generated by",
         "`tools/bench/suite.py`; do not edit by hand.", "",
         f"Reproduce: `sudo tools/run bench` (exactly: `{command}`).", "",
         f"- Run: {started_utc}, took {elapsed / 60:.0f} min; per switch, case and size: "
         f"{args.trials} trial(s) of {args.duration:g} s at the maximum offered load "
         f"(first {args.warmup:g} s not counted), then PDR and NDR binary searches of "
         f"{args.steps} steps of {args.search_duration:g} s each, a step passing when one "
         f"of {args.tries} tries meets its loss limit (the host takes a virtual machine's "
         f"CPU away for a millisecond now and then; see conduit-gen's `--search-tries`).",
         f"- Machine: {os.cpu_count()} CPUs ({cpu}); DPDK {dpdk}; {ovs}; hugepages "
         f"{'on' if HUGE else 'off (--no-huge)'}.",
         (f"- The switch under test polls on CPU {SWITCH_CPU} (one core); conduit-gen, the "
          f"switch's other threads and this script run on CPU {GEN_CPU}; {quiet}."
          if quiet else f"- The switch under test polls on CPU {SWITCH_CPU} (one core); "
          f"conduit-gen on CPU {GEN_CPU}."),
         f"- Load average (1 min) sampled through the run: {min(loads):.2f} to {max(loads):.2f} "
         "(the two polling processes alone make about 2)."]
    if busy_load:
        L.append("- **Other work was running on the machine during this run** (load average "
                 "above 2.6 at times): absolute figures are lower than on a quiet machine; "
                 "the switches were measured in turn, so compare ratios with care.")
    L += ["",
          "Rates are frames per second over all streams (both directions) together; frames carry",
          "no FCS on these virtual links (a 64-byte frame is 64 bytes). IMIX is 7 x 64, 4 x 570,",
          "1 x 1518 bytes. *max*: the rate received while offering as much as the ports take;",
          "*PDR*: the highest offered rate losing at most 0.5%; *NDR*: the highest losing none;",
          "latency is measured on every frame of the NDR trial (stamped when built, read when",
          "received, one TSC).", "",
          "![forwarding rate](benchmarks.png)", "",
          "![NDR at 64 bytes](benchmarks-ndr.png)", ""]
    # Targets.
    c2 = results["2p-1flow"]
    c16 = results["16p-10k"]
    cd64 = figures(c2["conduitd"], "64")
    tp64 = figures(c2["testpmd io"], "64")
    ov64 = figures(c2["OVS-DPDK"], "64")
    cd16 = figures(c16["conduitd"], "64")
    ov16 = figures(c16["OVS-DPDK"], "64")
    def silent(result):  # a port the switch delivered nothing to
        return any(n == 0 for n in result.get("max_trials_rx_per_port", {}).values())
    targets = [
        ("2 guests, 1 flow, 64 B: conduitd / testpmd io", ratio(cd64["max"], tp64["max"]),
         ratio(cd64["ndr"], tp64["ndr"]), 0.9, silent(c2["testpmd io"])),
        ("2 guests, 1 flow, 64 B: conduitd / OVS-DPDK", ratio(cd64["max"], ov64["max"]),
         ratio(cd64["ndr"], ov64["ndr"]), 1.3, silent(c2["OVS-DPDK"])),
        ("16 guests + uplink, 10,000 MACs, 64 B: conduitd / OVS-DPDK",
         ratio(cd16["max"], ov16["max"]), ratio(cd16["ndr"], ov16["ndr"]), 1.5,
         silent(c16["OVS-DPDK"])),
    ]
    L += ["## Targets", "", "| ratio | at the maximum load | at the NDR | target | met |",
          "| --- | ---: | ---: | ---: | --- |"]
    for name, rmax, rndr, want, not_comparable in targets:
        def met(r):
            if not_comparable:
                return "not comparable (a port got nothing, see below)"
            return "-" if r is None else ("yes" if r >= want else "NO")
        L.append(f"| {name} | {fmt_ratio(rmax)} | {fmt_ratio(rndr)} | >= {want} | "
                 f"{met(rmax)} at the maximum load, {met(rndr)} at the NDR |")
    def bracket(f):
        return (f"passed at {fmt_mpps(f['ndr'])}"
                + (f", failed at {fmt_mpps(f['ndr_failed'])}" if f["ndr_failed"]
                   else ", nothing above it tried"))
    L += ["", "The NDR ratios move from run to run more than the maximum-load ones: an NDR is "
          f"the highest rate at which one of {args.tries} tries of {args.search_duration:g} s "
          f"lost nothing, found in {args.steps} steps of a binary search, and on this virtual "
          "machine a try loses frames whenever the host holds a switch's vCPU for longer than "
          f"a guest's ring lasts at that rate ({GUEST_RING} descriptors last "
          f"{GUEST_RING / 2.8e6 * 1e3:.2f} ms at 2.8 Mpps per guest). Where each switch's "
          "64-byte NDR search for 2 guests ended (Mpps): "
          + "; ".join(f"{s} {bracket(figures(c2[s], '64'))}" for s in SWITCHES) + "."]
    held = [(s, ndr_stalls(c2[s], "64")) for s in SWITCHES]
    if all(h is not None for _, h in held):
        L[-1] += (" conduit-gen's own lcore was held up (over 250 us between two readings of "
                  "its clock) during those searches' tries: "
                  + "; ".join(f"{s} {n} time(s), longest {fmt_us(longest)} us"
                              for s, (n, longest) in held) + ".")
    failed = [(c.title, s, results[c.key][s]["error"]) for c in CASES for s in SWITCHES
              if "error" in results[c.key][s]]
    if failed:
        L += ["", "**Runs that failed** (their cells show `-`):", ""]
        L += [f"- {t}, {s}: {e.splitlines()[0] if e else 'error'}" for t, s, e in failed]
    L += ["", "## Results", ""]
    for case in CASES:
        L += [f"### {case.title}", "",
              "| switch | size | max Mpps | PDR Mpps | NDR Mpps | NDR p50 us | NDR p99 us | "
              "generator busy | generator cycles/frame |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for size in SIZES:
            for s in SWITCHES:
                f = figures(results[case.key][s], size)
                L.append(f"| {s} | {size} | {fmt_mpps(f['max'])} | {fmt_mpps(f['pdr'])} | "
                         f"{fmt_mpps(f['ndr'])} | {fmt_us(f['ndr_p50'])} | {fmt_us(f['ndr_p99'])} "
                         f"| {fmt_pct(f['busy'])}{' (!)' if (f['busy'] or 0) >= 0.9 else ''} | "
                         f"{'-' if f['gen_cycles'] is None else round(f['gen_cycles'])} |")
        L += ["", "| ratio | size | max | NDR |", "| --- | --- | ---: | ---: |"]
        for size in SIZES:
            cd = figures(results[case.key]["conduitd"], size)
            for other in ("testpmd io", "OVS-DPDK"):
                o = figures(results[case.key][other], size)
                L.append(f"| conduitd / {other} | {size} | {fmt_ratio(ratio(cd['max'], o['max']))}"
                         f" | {fmt_ratio(ratio(cd['ndr'], o['ndr']))} |")
        L.append("")
    # The generator.
    L += why(results)
    L += ceiling_section(costs)
    L += ["",
          "*generator busy* in the results is the share of conduit-gen's loop that moved",
          "frames during the maximum-load trials: below 100% it had time to spare, so the",
          "switch, not the generator, set the rate.", "",
          "## Method", "",
          *(["conduit-gen acts as the guests: one guest NIC of its own per guest",
             "(`driver=native`: split virtqueues over vhost-user, VIRTIO_F_VERSION_1, no",
             "mergeable buffers; `--guest-driver dpdk` gives DPDK's virtio-user), listening"]
            if getattr(args, "guest_driver", "dpdk") == "native" else
            ["conduit-gen acts as the guests: one DPDK virtio-user port per guest",
             "(`--guest-driver dpdk`), listening"]),
          "(`server=1`, as a VM's NIC does with conduitd's default client mode) with rings of",
          f"{GUEST_RING} descriptors (`queue_size`, the largest QEMU gives a VM), and, in the",
          *(["16-guest cases, as the wire: a memif client of its own (`driver=native`, frames",
             "built and read in the shared buffers; `--memif-driver dpdk` gives DPDK's",
             "net_memif) to the switch's memif server port."]
            if getattr(args, "memif_driver", "dpdk") == "native" else
            ["16-guest cases, as the wire: a DPDK `net_memif` client (`--memif-driver dpdk`)",
             "to the switch's memif server port."]),
          "It sends IPv4/UDP frames, each stamped with its stream, sequence number and",
          "TSC; streams run both ways between the two guests, or between every guest and the",
          "uplink. With 10,000 MACs the hosts are spread over the ports (5,000 per guest with",
          "two guests; 588 or so per port with seventeen) and every stream cycles through its",
          "source and destination hosts. Before each trial every host sends a broadcast so",
          "that every switch has learned every MAC (RFC 2544 section 23). At the fixed rates",
          "of the PDR and NDR searches each port's frames go out 8 at a time (or every",
          "200 us when fewer are due; conduit-gen's `--tx-batch`).", "",
          "- conduitd: the shipped configuration's semantics (learning, counters and idle",
          "  back-off on, client-mode guest ports), one worker on CPU 1, `mac_table_size:",
          f"  {MAC_TABLE}`; the uplink is `net_memif0,role=server`.",
          "- testpmd: `--forward-mode=io`, one forwarding core on CPU 1, `net_vhost` ports in",
          "  client mode. With the uplink it cannot switch by MAC, so it runs",
          "  `--port-topology=loop` (each port's frames go back out of the same port) and the",
          "  generator expects them there: every port carries the same frames as in the",
          "  switched case, with no lookup at all. It does not cost the generator the same,",
          "  though: switched, almost every frame of the 16-guest cases (16 guests to one",
          "  uplink) reaches the generator through the memif uplink, whose client copies it",
          "  out on the generator's core, and the uplink's frames reach each guest two or so",
          "  at a time; looped, each guest's frames come back whole bursts at a time to its",
          "  guest NIC, copied by testpmd's vhost side. With the generator the limit there",
          "  (*(!)* below), part of testpmd's lead in those cases is the generator's, not",
          "  the switch's: compare its cycles per frame in `docs/benchmarks.json`.",
          "- OVS-DPDK: a netdev bridge with `dpdkvhostuserclient` ports, the memif uplink as a",
          f"  `dpdk` port, the default NORMAL flow, `mac-table-size={MAC_TABLE}` (its default",
          "  of 2048 would flood most of 10,000 MACs). Its PMD thread polls on CPU 1; its other",
          "  threads (handlers and revalidators, its slow path, which installs a flow for each",
          "  new source/destination pair) may run on CPU 0, the generator's. conduitd and",
          "  testpmd have no slow path: their CPU 0 threads (control, vhost-user messages,",
          "  testpmd's prompt) are idle while frames flow.", "",
          "The generator's memif client opens as many receive queues as the switch sends on",
          f"(`rxq=`, one transmit queue): {Conduitd().uplink_tx_queues()} for conduitd (one per",
          f"worker), {TestpmdIo().uplink_tx_queues()} for testpmd, "
          f"{OvsDpdk().uplink_tx_queues()} for OVS-DPDK, whose PMD thread",
          "sends to a DPDK port on transmit queue 1 (its main thread has queue 0). On memif",
          "the client sets the link's ring counts: with one receive queue, OVS's frames to the",
          "uplink would go nowhere.", "",
          "The ratios compare figures measured minutes apart on a shared 2-core virtual machine;",
          "the raw results (every trial, every stream, the switches' own counters) are in",
          "`docs/benchmarks.json`."]
    out.write_text("\n".join(L) + "\n")


def slim(results):
    """The results without each trial's per-stream and per-port figures (32 streams and
    17 ports a trial in the 16-guest cases; the trial's totals stay, and so do the
    switches' own counters)."""
    out = {}
    for case, per_switch in results.items():
        out[case] = {}
        for sw, r in per_switch.items():
            r = dict(r)
            if "trials" in r:
                r["trials"] = [{k: v for k, v in t.items() if k not in ("streams", "ports")}
                               for t in r["trials"]]
            out[case][sw] = r
    return out


def main():
    ap = argparse.ArgumentParser(description="conduitd vs testpmd io vs OVS-DPDK, with conduit-gen")
    # The defaults keep the whole run within about 25 minutes on a 2-core machine.
    ap.add_argument("--trials", type=int, default=3, help="maximum-load trials per size")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per maximum-load trial")
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=4, help="steps of each binary search")
    ap.add_argument("--search-duration", type=float, default=1.0)
    ap.add_argument("--tries", type=int, default=3, help="tries of a failing search step")
    ap.add_argument("--ceiling-trials", type=int, default=1)
    ap.add_argument("--cost-rounds", type=int, default=3,
                    help="rounds of the generator's cost per frame, next to testpmd's (medians)")
    ap.add_argument("--quick", action="store_true", help="1 trial, 2-step searches (a smoke run)")
    ap.add_argument("--guest-driver", choices=["native", "dpdk"], default="native",
                    help="conduit-gen's guest NICs: its own (native) or DPDK's virtio-user")
    ap.add_argument("--memif-driver", choices=["native", "dpdk"], default="native",
                    help="the generator's memif uplink: its own memif NIC or DPDK's net_memif")
    ap.add_argument("--cases", default=",".join(c.key for c in CASES))
    ap.add_argument("--switches", default=",".join(SWITCHES))
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the generator's ceiling")
    ap.add_argument("--only", choices=["ceiling"],
                    help="ceiling: only the generator's ceiling and cost per frame, printed "
                         "(docs/benchmarks.* untouched unless --out is given)")
    ap.add_argument("--out", default=str(TOP / "docs" / "benchmarks.md"))
    ap.add_argument("--report-only", metavar="JSON",
                    help="measure nothing: write the report (and plots) again from a run's "
                         "saved JSON, e.g. after a change to the report's wording")
    args = ap.parse_args()
    if args.report_only:
        report_from_json(pathlib.Path(args.report_only), pathlib.Path(args.out))
        return
    if not 1 <= args.tries <= 10:
        ap.error("--tries must be from 1 to 10")
    if not 1 <= args.cost_rounds <= 20:
        ap.error("--cost-rounds must be from 1 to 20")
    if args.quick:
        args.trials, args.duration, args.steps, args.search_duration = 1, 1.0, 2, 0.5
        args.tries = args.cost_rounds = 1
    # Checked before a run of many minutes, not when its report is written.
    if not pathlib.Path(args.out).parent.is_dir():
        ap.error(f"--out {args.out}: no directory {pathlib.Path(args.out).parent}")
    SIZES[:] = args.sizes.split(",")
    for path in (GEN, CONDUITD):
        if not path.exists():
            raise SystemExit(f"{path} is not built: run tools/setup.sh")
    if not pathlib.Path(OVS_VSWITCHD).exists():
        raise SystemExit(f"{OVS_VSWITCHD} missing: install openvswitch-switch-dpdk (tools/setup.sh)")
    # This script, and so everything it starts, runs on the generator's CPU: each switch
    # pins its poller to SWITCH_CPU itself, and conduit-gen keeps all its threads on its
    # own CPU. The kernel's movable threads and interrupts go there too for the run.
    os.sched_setaffinity(0, {GEN_CPU})
    # Stopped (SIGTERM), the run still ends through its cleanup: the switches and the
    # generator stopped, the kernel's threads and interrupts put back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with QuietCpu(SWITCH_CPU, {GEN_CPU}) as quiet:
        log(quiet.summary())
        measure(ap, args, quiet.summary())


def measure(ap, args, quiet):
    """The run main() asked for (the ceiling only, or everything), reported."""
    if args.only == "ceiling":
        work = pathlib.Path(tempfile.mkdtemp(prefix="conduit-bench."))
        try:
            costs = generator_costs(work, args)
        finally:
            if args.keep:
                log(f"logs kept in {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
        print("\n".join(ceiling_section(costs)))
        if args.out != ap.get_default("out"):
            pathlib.Path(args.out).with_suffix(".json").write_text(json.dumps(
                {"args": vars(args), "generator": costs}, separators=(",", ":")) + "\n")
        return
    command = "tools/bench/run.sh " + " ".join(sys.argv[1:]) if sys.argv[1:] else "tools/bench/run.sh"
    started_utc = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    started = time.monotonic()
    work = pathlib.Path(tempfile.mkdtemp(prefix="conduit-bench."))
    keys = args.cases.split(",")
    loads = [loadavg()]
    results = {}
    costs = None
    try:
        log("the generator's ceiling and cost per frame")
        costs = None
        if not args.no_ceiling:
            try:
                costs = generator_costs(work, args)
            except Exception as err:  # noqa: BLE001 - the switches are still measured
                log(f"  the generator's ceiling FAILED: {err}")
                costs = {"ceiling": [], "links": [], "virtio": [], "error": str(err)}
        loads.append(loadavg())
        for case in CASES:
            if case.key not in keys:
                continue
            results[case.key] = {}
            for sw in (Conduitd(), TestpmdIo(), OvsDpdk()):
                if sw.name not in args.switches.split(","):
                    continue
                log(f"{case.title}: {sw.name}")
                try:
                    r = run_case(work, sw, case, args)
                except Exception as err:  # noqa: BLE001 - one failed run must not end the suite
                    log(f"  FAILED: {err}")
                    results[case.key][sw.name] = {"error": str(err)}
                    continue
                results[case.key][sw.name] = r
                loads += r["loadavg"]
                for size in SIZES:
                    f = figures(r, size)
                    log(f"  {size:>5} B: max {fmt_mpps(f['max'])}, PDR {fmt_mpps(f['pdr'])}, "
                        f"NDR {fmt_mpps(f['ndr'])} Mpps, NDR p99 {fmt_us(f['ndr_p99'])} us, "
                        f"generator busy {fmt_pct(f['busy'])}")
    finally:
        failed = (costs or {}).get("error") or any("error" in r for c in results.values()
                                                   for r in c.values())
        if failed or args.keep:
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    out = pathlib.Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(
        {"date": started_utc, "command": command, "args": vars(args), "loadavg": loads,
         "elapsed_s": round(elapsed), "quiet_cpu": quiet, "generator": costs,
         "results": slim(results)},
        separators=(",", ":")) + "\n")
    complete = (costs is not None and len(results) == len(CASES)
                and all(len(r) == len(SWITCHES) for r in results.values()))
    if complete:
        plot(results, out.parent)
        write_report(args, command, results, costs, loads, started_utc, elapsed, out,
                     quiet)
        log(f"wrote {out}")
    else:
        log(f"only some cases ran: raw results in {out.with_suffix('.json')}, no report")


def report_from_json(path, out):
    """The report of a finished run, from the JSON it saved (every figure comes from there;
    the machine's description is read again)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"{path}: cannot read a saved run: {err}")
    missing = [k for k in ("date", "command", "args", "loadavg", "elapsed_s", "generator",
                           "results") if k not in saved]
    if missing:
        raise SystemExit(f"{path}: not a complete saved run (no {', '.join(missing)})")
    args = argparse.Namespace(**saved["args"])
    SIZES[:] = args.sizes.split(",")
    results = saved["results"]
    if len(results) != len(CASES) or any(len(r) != len(SWITCHES) for r in results.values()):
        raise SystemExit(f"{path}: only some cases ran; no report")
    plot(results, out.parent)
    write_report(args, saved["command"], results, saved["generator"], saved["loadavg"],
                 saved["date"], saved["elapsed_s"], out, saved.get("quiet_cpu"))
    log(f"wrote {out} from {path}")


if __name__ == "__main__":
    main()
