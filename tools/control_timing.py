#!/usr/bin/env python3
"""Measures the control plane: the median `conduitctl` round trip and the time to apply
a 256-port config. Not a test (figures depend on the machine): it prints the figures and
the markdown table kept in docs/control.md.

    sudo tools/control_timing.py [--calls 300] [--applies 5] [--ports 256]

It starts its own conduitd (file prefix ctltiming, sockets in a temporary directory,
no guests) and takes the rig lock (/tmp/conduit-rig.lock) while it runs, as every user
of polling DPDK processes on the shared machine must.
"""
import argparse
import fcntl
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[1]
CONDUITD = TOP / "build" / "release" / "control" / "conduitd"
CONDUITCTL = TOP / "build" / "release" / "control" / "conduitctl"
PREFIX = "ctltiming"


def config_text(work, ports, hugepages):
    lines = ["conduitd:", f"  file_prefix: {PREFIX}", "  main_cpu: 0", "  workers: [1]",
             f"  hugepages: {'true' if hugepages else 'false'}", "  memory_mb: 192",
             "  mbufs: 8191", "control:", f"  socket: {work}/ctl.sock",
             "  metrics: \"127.0.0.1:0\"", "bridges:"]
    if ports == 0:
        lines[-1] += " []"
        return "\n".join(lines) + "\n"
    lines += ["  - name: br0", "    ports:"]
    for i in range(ports):
        lines += [f"      - name: p{i}", "        type: vhost-user",
                  f"        socket: {work}/p{i}.sock"]
    return "\n".join(lines) + "\n"


def rpc_round_trips(path, count):
    """Round trips of one request on one connection (no process start)."""
    times = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        for i in range(count):
            t0 = time.perf_counter()
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": i,
                                  "method": "system.version"}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                buf += s.recv(65536)
            times.append(time.perf_counter() - t0)
    return times


def timed(args):
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed ({r.returncode}): {r.stderr}")
    return elapsed, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--applies", type=int, default=5)
    ap.add_argument("--ports", type=int, default=256)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("control_timing: run as root (DPDK)")
    for binary in (CONDUITD, CONDUITCTL):
        if not binary.exists():
            raise SystemExit(f"control_timing: {binary} is not built (tools/setup.sh)")
    hugepages = os.environ.get("CONDUIT_HUGEPAGES", "1") == "1"

    lock = open("/tmp/conduit-rig.lock", "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    work = pathlib.Path(tempfile.mkdtemp(prefix="ctltiming."))
    proc = None
    try:
        empty, big = work / "empty.yaml", work / "big.yaml"
        empty.write_text(config_text(work, 0, hugepages))
        big.write_text(config_text(work, args.ports, hugepages))
        running = work / "conduitd.yaml"
        shutil.copy(empty, running)
        log = open(work / "conduitd.log", "w")
        proc = subprocess.Popen([str(CONDUITD), "--config", str(running)], stdout=log,
                                stderr=subprocess.STDOUT)
        ctl = [str(CONDUITCTL), "--socket", str(work / "ctl.sock")]
        deadline = time.monotonic() + 30
        while subprocess.run(ctl + ["version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("conduitd did not start:\n" + (work / "conduitd.log").read_text())
            time.sleep(0.1)

        # Round trips: the whole command (process start, connect, request, reply, exit),
        # and the request alone on an open connection.
        cli = [timed(ctl + ["version"])[0] for _ in range(args.calls)]
        cli_show = [timed(ctl + ["show", "ports"])[0] for _ in range(args.calls // 3)]
        raw = rpc_round_trips(str(work / "ctl.sock"), args.calls)

        # Applying the big config to an empty switch, and back.
        add, remove = [], []
        for _ in range(args.applies):
            t, out = timed(ctl + ["--quiet", "apply", str(big)])
            add.append(t)
            ports = json.loads(timed(ctl + ["--json", "show", "ports"])[1])
            assert len(ports) == args.ports, len(ports)
            remove.append(timed(ctl + ["--quiet", "apply", str(empty)])[0])
        ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
        result = {
            "conduitctl_version_median_ms": round(ms(cli), 2),
            "conduitctl_show_ports_median_ms": round(ms(cli_show), 2),
            "rpc_round_trip_median_ms": round(ms(raw), 3),
            "apply_ports": args.ports,
            "apply_median_s": round(statistics.median(add), 3),
            "apply_max_s": round(max(add), 3),
            "remove_median_s": round(statistics.median(remove), 3),
            "calls": args.calls,
            "applies": args.applies,
        }
        print(json.dumps(result, indent=2))
        print()
        print(f"Measured with `sudo tools/control_timing.py` on {platform.node()} "
              f"({os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}):\n")
        print("| what | median | target |\n| --- | --- | --- |")
        print(f"| `conduitctl version` round trip (process start to exit), {args.calls} runs | "
              f"{result['conduitctl_version_median_ms']} ms | < 5 ms |")
        print(f"| `conduitctl show ports` round trip, {args.calls // 3} runs | "
              f"{result['conduitctl_show_ports_median_ms']} ms | |")
        print(f"| one JSON-RPC request on an open connection, {args.calls} runs | "
              f"{result['rpc_round_trip_median_ms']} ms | |")
        print(f"| `conduitctl apply` of a {args.ports}-port config onto an empty switch, "
              f"{args.applies} runs | {result['apply_median_s']} s (max {result['apply_max_s']} s)"
              f" | < 2 s |")
        print(f"| `conduitctl apply` removing those {args.ports} ports | "
              f"{result['remove_median_s']} s | |")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in pathlib.Path("/dev/hugepages").glob(f"{PREFIX}map_*"):
            f.unlink(missing_ok=True)
        shutil.rmtree(f"/var/run/dpdk/{PREFIX}", ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
