#!/usr/bin/env python3
"""Reads conduitd's counters from DPDK's telemetry socket and prints them.

    tools/conduit_telemetry.py [-f FILE_PREFIX] [ports|bridges|fdb BRIDGE|mempool|workers|raw CMD]

The socket is /var/run/dpdk/<file_prefix>/dpdk_telemetry.v2 (SOCK_SEQPACKET): the
server greets with a JSON line, then answers each command with one JSON object.
Importable: `Telemetry(prefix).query("/conduit/ports")`.
"""
import argparse
import json
import socket
import sys


class TelemetryError(RuntimeError):
    pass


class Telemetry:
    def __init__(self, file_prefix="conduitd", runtime_dir="/var/run/dpdk", timeout=5.0):
        self.path = f"{runtime_dir}/{file_prefix}/dpdk_telemetry.v2"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as err:
            self.sock.close()
            raise TelemetryError(f"cannot connect to {self.path}: {err} (is conduitd running "
                                 f"with file_prefix '{file_prefix}'?)") from err
        greeting = json.loads(self.sock.recv(1 << 16).decode())
        self.max_output = greeting.get("max_output_len", 16384)

    def query(self, command):
        self.sock.send(command.encode())
        reply = json.loads(self.sock.recv(self.max_output + 1024).decode())
        key = command.split(",", 1)[0]
        value = reply.get(key)
        if value is None:
            raise TelemetryError(f"{command}: no answer (unknown command or bad parameter)")
        return value

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def print_ports(ports):
    cols = ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes"]
    print(f"{'port':<10} {'type':<10} {'state':<5} " + " ".join(f"{c:>12}" for c in cols) +
          "  drops")
    for name, p in ports.items():
        drops = ", ".join(f"{k[5:]}={v}" for k, v in p.items() if k.startswith("drop_") and v)
        print(f"{name:<10} {p['type']:<10} {p['state']:<5} " +
              " ".join(f"{p[c]:>12}" for c in cols) + f"  {drops or '-'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-f", "--file-prefix", default="conduitd")
    ap.add_argument("what", nargs="?", default="ports")
    ap.add_argument("arg", nargs="?")
    ap.add_argument("--json", action="store_true", help="print the raw JSON answer")
    args = ap.parse_args()
    commands = {"ports": "/conduit/ports", "bridges": "/conduit/bridges",
                "mempool": "/conduit/mempool", "workers": "/conduit/workers"}
    try:
        with Telemetry(args.file_prefix) as t:
            if args.what == "fdb":
                value = t.query(f"/conduit/fdb,{args.arg or 'br0'}")
            elif args.what == "raw":
                value = t.query(args.arg)
            elif args.what in commands:
                value = t.query(commands[args.what])
            else:
                ap.error(f"unknown: {args.what}")
            if args.json or args.what not in ("ports",):
                print(json.dumps(value, indent=2))
            else:
                print_ports(value)
    except TelemetryError as err:
        print(f"conduit_telemetry: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
