"""conduitd's control server under bad requests (invalid JSON, unknown method, wrong
types, oversized messages, a client that stalls half-way, too many clients): each gets
an error reply or a closed connection while the daemon, its other clients and its
traffic carry on. Also: the socket's permissions, several clients at once, the
Prometheus endpoint and conduitd's DPDK telemetry commands."""
import json
import os
import socket
import stat
import time
import urllib.error
import urllib.request

from rig import wait_for
from test_forwarding import BROADCAST, start_pair


class Client:
    """A raw client of the control socket: bytes in, reply lines out."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method, params=None, id=1):
        req = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            req["params"] = params
        self.send(json.dumps(req) + "\n")
        return self.reply()

    def closed(self, timeout=10):
        """True once the server closed the connection (after any replies)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def error_code(reply):
    return reply.get("error", {}).get("code")


def test_bad_requests_get_errors_and_harm_nothing(rig):
    cd, g = start_pair(rig)
    st = os.stat(cd.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)

    c = Client(cd.socket)
    # Invalid JSON, not an object, wrong version, unknown method, wrong types, unknown
    # parameters, an empty batch: each an error reply, the connection still usable.
    c.send(b"{this is not json\n")
    assert error_code(c.reply()) == -32700
    c.send(b"[1,2]\n")
    assert [error_code(r) for r in c.reply()] == [-32600, -32600]
    c.send(b'{"jsonrpc":"1.0","id":1,"method":"port.list"}\n')
    assert error_code(c.reply()) == -32600
    assert error_code(c.call("port.frobnicate")) == -32601
    assert error_code(c.call("port.list", {"name": 5})) == -32602
    assert error_code(c.call("port.list", [1, 2])) == -32602
    assert error_code(c.call("bridge.add", {"name": "b", "mac_aging": "soon"})) == -32602
    assert error_code(c.call("bridge.add", {"name": "b", "mac_aging": -5})) == -32602
    assert error_code(c.call("bridge.add", {"name": "b", "colour": "red"})) == -32602
    assert error_code(c.call("port.add", {"bridge": "br0", "name": "x"})) == -32602  # no socket
    assert error_code(c.call("port.add", {"bridge": "br0", "name": "x",
                                          "socket": cd.config["bridges"][0]["ports"][0]["socket"]})) \
        == -32003  # g1's socket: the config would be invalid
    assert error_code(c.call("config.apply", {"text": "bridges: [", "path": "t.yaml"})) == -32003
    c.send(b"[]\n")
    assert error_code(c.reply()) == -32600
    c.send(b'{"jsonrpc":"2.0","method":"system.version"}\n')  # a notification: no reply
    c.send(b'[{"jsonrpc":"2.0","id":"a","method":"system.version"},'
           b'{"jsonrpc":"2.0","id":"b","method":"nope"}]\n')
    batch = c.reply()
    assert batch[0]["id"] == "a" and batch[0]["result"]["api"] == 1
    assert error_code(batch[1]) == -32601
    # Two requests in one write, and one split across writes.
    c.send(b'{"jsonrpc":"2.0","id":1,"method":"system.version"}\n{"jsonrpc":"2.0","id":2,')
    assert c.reply()["id"] == 1
    c.send(b'"method":"system.version"}\n')
    assert c.reply()["id"] == 2

    # A client that stalls half-way through a request: closed after stall_timeout_ms
    # (1 s in the rig), with an error; meanwhile another client is served at once.
    staller = Client(cd.socket)
    staller.send(b'{"jsonrpc":"2.0","id":1,"meth')
    other = Client(cd.socket)
    t0 = time.monotonic()
    assert other.call("system.version")["result"]["api"] == 1
    assert time.monotonic() - t0 < 0.5
    assert error_code(staller.reply()) == -32007
    assert staller.closed()

    # Oversized: more than 1 MiB without a newline gets an error and a closed connection.
    big = Client(cd.socket)
    try:
        big.send(b'{"jsonrpc":"2.0","id":1,"method":"system.version","params":{"x":"' +
                 b"a" * (2 << 20) + b'"}}\n')
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    assert error_code(big.reply()) == -32006
    assert big.closed()

    # A client that never reads its replies is dropped, not buffered for ever.
    hog = Client(cd.socket)
    hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = b'{"jsonrpc":"2.0","id":1,"method":"system.methods"}\n' * 2000
    try:
        hog.send(request)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    wait_for(lambda: cd.call("system.info")["server"]["rejected"] >= 3, timeout=20,
             what="the non-reading client dropped")

    # Several clients at once, and the daemon, its traffic and later clients unaffected.
    clients = [Client(cd.socket) for _ in range(20)]
    for i, cl in enumerate(clients):
        cl.send(json.dumps({"jsonrpc": "2.0", "id": i, "method": "port.list"}) + "\n")
    for i, cl in enumerate(clients):
        r = cl.reply()
        assert r["id"] == i and [p["name"] for p in r["result"]] == ["g1", "g2"]
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="traffic after the bad requests")
    assert c.call("system.version")["result"]["version"] == "0.1.0"
    for cl in clients + [c, other, hog]:
        cl.close()
    assert cd.proc.poll() is None
    info = cd.call("system.info")["server"]
    assert info["errors"] >= 10 and info["rejected"] >= 3


def test_too_many_clients_are_refused(rig):
    cd = rig.conduitd([{"name": "br0", "ports": []}], control={"max_clients": 3}).start()
    held = [Client(cd.socket) for _ in range(3)]
    for cl in held:
        assert cl.call("system.version")["result"]["api"] == 1
    extra = Client(cd.socket)
    assert error_code(extra.reply()) == -32004
    assert extra.closed()
    held[0].close()
    wait_for(lambda: cd.rpc("system.version").get("result"), what="a slot free again")
    for cl in held[1:]:
        cl.close()


def test_prometheus_metrics_and_telemetry(rig):
    cd, g = start_pair(rig)
    g.send(0, BROADCAST, 8)
    g.send(1, g.macs[0], 16)
    wait_for(lambda: g.rx(0) == 16, what="traffic")
    address = cd.call("system.info")["metrics"]
    host, port = address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['conduit_port_rx_packets_total{port="g1",bridge="br0"}'] == 8
    assert samples['conduit_port_tx_packets_total{port="g1",bridge="br0"}'] == 16
    assert samples['conduit_port_up{port="g2",bridge="br0",type="vhost-user"}'] == 1
    assert samples['conduit_bridge_flooded_total{bridge="br0"}'] == 8
    assert samples['conduit_bridge_mac_entries{bridge="br0"}'] == 2
    assert samples['conduit_worker_rx_packets_total{worker="0",cpu="1"}'] == 24
    assert samples['conduit_worker_busy_seconds_total{worker="0",cpu="1"}'] > 0
    assert samples["conduit_mempool_size"] == 8191
    assert samples["conduit_control_requests_total"] >= 1
    # Every counter of every port is there, each with HELP and TYPE.
    for name in cd.port("g1"):
        if name.startswith(("rx_", "tx_", "drop_")):
            assert f"# TYPE conduit_port_{name}_total counter" in text, name
    # conduitd's own DPDK telemetry commands include the PMD statistics.
    w = cd.workers()["worker0"]
    assert w["rx_packets"] == 24 and w["rx_bursts"] >= 1 and w["busy_cycles"] > 0
    assert cd.port("g1")["admin"] == "up"
    # Counters keep counting across `clear stats` (Prometheus wants them monotonic).
    cd.ctl("clear", "stats")
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as r:
        assert 'conduit_port_rx_packets_total{port="g1",bridge="br0"} 8' in r.read().decode()
    for path, status in (("/nope", 404), ("/", 200)):
        try:
            with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as r:
                assert r.status == status
        except urllib.error.HTTPError as e:
            assert e.code == status
    req = urllib.request.Request(f"http://{address}/metrics", data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("POST accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405

