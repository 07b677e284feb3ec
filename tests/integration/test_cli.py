"""conduitctl end to end against a running conduitd: every command, in text and in JSON,
its idempotency flags and exit codes, --help, bash completion and the interactive mode."""
import os
import pathlib
import pty
import re
import select
import subprocess
import sys
import time

import rig as rigmod
from rig import wait_for
from test_forwarding import BROADCAST, start_pair, vport

NETRAW = str(pathlib.Path(__file__).with_name("netraw.py"))

# Exit codes (docs/control.md).
OK, FAILED, USAGE, UNREACHABLE, NOT_FOUND, EXISTS, INVALID, RESTART, INCOMPLETE = range(9)


def rc(cd, *args):
    return cd.ctl(*args, check=False).returncode


def test_show_commands_in_text_and_json(rig):
    cd, g = start_pair(rig)
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="g1's broadcast at g2")
    g.send(1, g.macs[0], 16)
    wait_for(lambda: g.rx(0) == 16, what="g2 -> g1")

    out = cd.ctl("version").stdout
    assert out.startswith("conduitctl 0.1.0, conduitd 0.1.0 (API 1)"), out
    assert cd.ctl("version", json_out=True)["api"] == 1

    text = cd.ctl("show", "bridges").stdout.splitlines()
    assert text[0].split() == ["BRIDGE", "PORTS", "MACS", "TABLE", "AGING", "LEARNED", "FLOODED",
                               "KNOWN"]
    assert text[1].split() == ["br0", "g1,g2", "2", "8192", "300s", "2", "8", "16"], text
    bridges = cd.ctl("show", "bridges", json_out=True)
    assert bridges[0]["name"] == "br0" and bridges[0]["ports"] == ["g1", "g2"]
    assert bridges[0]["counters"]["unicast_known"] == 16

    rows = [line.split() for line in cd.ctl("show", "ports").stdout.splitlines()]
    assert rows[0][:8] == ["PORT", "BRIDGE", "TYPE", "STATE", "ADMIN", "RX", "TX", "DROPS"]
    assert rows[1][:8] == ["g1", "br0", "vhost-user", "up", "up", "8", "16", "0"], rows
    assert rows[2][:8] == ["g2", "br0", "vhost-user", "up", "up", "16", "8", "0"], rows
    detail = cd.ctl("show", "ports", "g2").stdout
    assert "endpoint" in detail and "tx_packets          8" in detail, detail
    ports = cd.ctl("show", "ports", json_out=True)
    assert [p["name"] for p in ports] == ["g1", "g2"]
    assert ports[0]["counters"]["rx_packets"] == 8 and ports[0]["mode"] == "client"
    assert cd.ctl("show", "ports", "g1", json_out=True)[0]["name"] == "g1"

    fdb = cd.ctl("show", "fdb", "br0").stdout
    assert f"{g.macs[0]}  g1" in fdb and f"{g.macs[1]}  g2" in fdb and "2 entries" in fdb, fdb
    fdb_json = cd.ctl("show", "fdb", "br0", json_out=True)
    assert {e["mac"]: e["port"] for e in fdb_json["entries"]} == {g.macs[0]: "g1",
                                                                  g.macs[1]: "g2"}

    stats = cd.ctl("show", "stats").stdout
    assert "RX_PACKETS" in stats and "mbufs:" in stats and "LEARNED" in stats, stats
    stats_json = cd.ctl("show", "stats", json_out=True)
    assert stats_json["ports"]["g2"]["rx_packets"] == 16
    assert stats_json["bridges"]["br0"]["flooded"] == 8
    assert stats_json["mempool"]["size"] == 8191
    assert list(cd.ctl("show", "stats", "g1", json_out=True)["ports"]) == ["g1"]

    pmd = cd.ctl("show", "pmd").stdout
    assert "worker 0 (cpu 1, lcore 1)" in pmd and "cycles per packet" in pmd, pmd
    assert "packets received:   24" in pmd, pmd
    w = cd.ctl("show", "pmd", json_out=True)["workers"][0]
    assert w["rx_packets"] == 24 and w["queues"] == ["g1:0", "g2:0"]
    assert w["busy_cycles"] > 0 and w["cycles_per_packet"] > 0 and w["packets_per_burst"] >= 1
    assert w["idle_sleeps"] > 0 and w["sleep_cycles"] > 0  # idle back-off, measured
    assert abs(w["busy_percent"] + w["idle_percent"] + w["sleep_percent"] - 100) < 0.01

    config = cd.ctl("show", "config").stdout
    assert "# running config (conduitd started with" in config and "name: g2" in config
    assert cd.ctl("show", "config", json_out=True)["bridges"][0]["ports"][1]["name"] == "g2"

    assert cd.ctl("show", "captures").stdout == "no captures\n"
    assert cd.ctl("show", "captures", json_out=True) == []
    assert "in use" in cd.ctl("show", "mempool").stdout
    assert cd.ctl("show", "mempool", json_out=True)["size"] == 8191

    # Not found, in text and JSON alike.
    assert rc(cd, "show", "fdb", "nope") == NOT_FOUND
    assert rc(cd, "show", "ports", "nope") == NOT_FOUND
    assert rc(cd, "--json", "show", "bridges", "nope") == NOT_FOUND


def test_changes_flags_and_exit_codes(rig):
    host = rig.host().start()
    cd, g = start_pair(rig)
    g.send(0, BROADCAST, 8)
    g.send(1, BROADCAST, 8)
    wait_for(lambda: g.rx(0) == 8 and g.rx(1) == 8, what="both learned")

    # Bridges.
    out = cd.ctl("add-bridge", "br1", "--mac-aging", "60", "--mac-table-size", "100").stdout
    assert out == "+ bridge br1 (mac_aging 60s, mac_table_size 100)\n"
    assert rc(cd, "add-bridge", "br1") == EXISTS
    assert cd.ctl("add-bridge", "br1", "--may-exist").stdout == "no changes\n"
    assert cd.ctl("--json", "add-bridge", "br1", "--may-exist", json_out=False).returncode == OK
    assert rc(cd, "add-bridge", "bad-name") == INVALID
    assert rc(cd, "add-bridge") == USAGE
    assert rc(cd, "add-bridge", "br9", "--mac-aging", "x") == USAGE
    assert cd.ctl("set", "bridge", "br1", "mac_aging=30", "mac_table_size=200").returncode == OK
    b1 = cd.ctl("show", "bridges", "br1", json_out=True)[0]
    assert (b1["mac_aging"], b1["mac_table_size"]) == (30, 200)
    assert rc(cd, "set", "bridge", "br1", "colour=blue") == USAGE
    assert rc(cd, "set", "bridge", "nope", "mac_aging=3") == NOT_FOUND

    # Ports: vhost-user (server mode) and, at run time, the uplink ethdev.
    result = cd.ctl("add-port", "br1", "s1", "--socket", rig.sock("s1"), "--mode", "server",
                    json_out=True)
    assert result["changed"] and result["changes"][0]["kind"] == "add_port"
    wait_for(lambda: pathlib.Path(rig.sock("s1")).is_socket(), what="s1 listening")
    assert rc(cd, "add-port", "br1", "s1", "--socket", rig.sock("s9")) == EXISTS
    assert rc(cd, "add-port", "br1", "s1", "--socket", rig.sock("s9"), "--may-exist") == OK
    assert rc(cd, "add-port", "nope", "s2", "--socket", rig.sock("s2")) == NOT_FOUND
    assert rc(cd, "add-port", "br1", "s2", "--socket", rig.sock("g1")) == INVALID  # g1's socket
    assert rc(cd, "add-port", "br1", "s2") == USAGE  # neither --socket nor --devargs
    assert rc(cd, "add-port", "br1", "s2", "--socket", "/x", "--mode", "both") == USAGE
    # A port that cannot start changes nothing.
    assert rc(cd, "add-port", "br1", "s3", "--socket", "/proc/none/s3.sock", "--mode",
              "server") == FAILED
    assert "s3" not in {p["name"] for p in cd.call("port.list")}

    devargs = f"net_af_packet0,iface={host.root_if}"
    cd.ctl("add-port", "br0", "uplink", "--devargs", devargs)
    cd.wait_port("uplink", "up")
    host.run(sys.executable, NETRAW, "send", host.ns_if, g.macs[0], host.mac(), "24")
    wait_for(lambda: g.rx(0) == 8 + 24, what="frames from the runtime uplink at g1")
    assert rc(cd, "add-port", "br1", "up2", "--devargs", "net_null0") == INVALID  # one uplink
    # Removed and added again: the device is detached and probed again.
    cd.ctl("del-port", "uplink")
    cd.ctl("add-port", "br0", "uplink", "--devargs", devargs)
    cd.wait_port("uplink", "up")
    host.run(sys.executable, NETRAW, "send", host.ns_if, g.macs[0], host.mac(), "8")
    wait_for(lambda: g.rx(0) == 8 + 32, what="frames after re-adding the uplink")
    cd.ctl("del-port", "uplink")

    # Admin state: down stops forwarding to and from g1 (its frames wait in its ring).
    assert cd.ctl("set", "port", "g1", "admin=down").stdout == "~ port br0/g1: admin up -> down\n"
    assert cd.call("port.list", {"name": "g1"})[0]["admin"] == "down"
    # Its MACs are forgotten, so g2's frames for g1 are flooded, and the flood has no
    # other port to go to.
    assert g.macs[0] not in cd.fdb("br0")
    g.send(1, g.macs[0], 16)
    wait_for(lambda: cd.port("g2")["drop_no_destination"] == 16, what="frames to g1 while down")
    assert g.rx(0) == 8 + 32
    g.send(0, g.macs[1], 8)
    time.sleep(0.3)
    assert g.rx(1) == 8 and cd.port("g1")["rx_packets"] == 8
    cd.ctl("set", "port", "g1", "admin=up")
    wait_for(lambda: g.rx(1) == 16, what="g1's waiting frames once up again")
    assert rc(cd, "set", "port", "g1", "admin=sideways") == INVALID
    assert rc(cd, "set", "port", "nope", "admin=up") == NOT_FOUND
    assert rc(cd, "set", "port", "g1") == USAGE
    # An endpoint setting re-creates the port; its guest reconnects.
    out = cd.ctl("set", "port", "s1", "mode=client").stdout
    assert "(re-created; its guest reconnects)" in out, out
    assert cd.call("port.list", {"name": "s1"})[0]["mode"] == "client"

    # Static MACs: kept in the config, listed, followed by forwarding.
    static = "02:00:00:00:00:99"
    assert cd.ctl("add-mac", "br0", static, "g2").stdout == \
        f"+ mac br0 {static} -> g2 (static)\n"
    assert rc(cd, "add-mac", "br0", static, "g2") == EXISTS
    assert rc(cd, "add-mac", "br0", static, "g2", "--may-exist") == OK
    assert rc(cd, "add-mac", "br0", "01:00:5e:00:00:01", "g2") == INVALID
    assert rc(cd, "add-mac", "br0", static, "s1") == NOT_FOUND  # s1 is in br1
    entries = cd.ctl("show", "fdb", "br0", json_out=True)["entries"]
    assert {"mac": static, "port": "g2", "age_s": 0, "static": True} in entries
    before = g.rx(1)
    g.send(0, static, 8)
    wait_for(lambda: g.rx(1) == before + 8, what="frames to the static MAC at g2")
    assert "static_macs" in cd.ctl("show", "config").stdout
    cd.ctl("del-mac", "br0", static)
    assert rc(cd, "del-mac", "br0", static) == NOT_FOUND
    assert rc(cd, "del-mac", "br0", static, "--if-exists") == OK
    # A learned entry can be forgotten; flush-fdb forgets them all.
    cd.ctl("del-mac", "br0", g.macs[0])
    assert g.macs[0] not in cd.fdb("br0")
    assert cd.ctl("flush-fdb", "br0").stdout == "flushed 1 learned entries\n"
    assert cd.fdb("br0") == {}
    assert cd.ctl("flush-fdb", "br0", "g1", json_out=True) == {"flushed": 0}
    assert rc(cd, "flush-fdb", "nope") == NOT_FOUND

    # Counters: cleared for one port, then for all (workers too).
    cd.ctl("clear", "stats", "g1")
    g1 = cd.port("g1")
    assert g1["rx_packets"] == 0 and g1["tx_packets"] == 0 and cd.port("g2")["rx_packets"]
    assert cd.ctl("clear", "stats").stdout.startswith("cleared the counters of every port")
    assert cd.port("g2")["rx_packets"] == 0
    assert cd.ctl("show", "pmd", json_out=True)["workers"][0]["rx_packets"] == 0
    assert rc(cd, "clear", "stats", "nope") == NOT_FOUND

    # Removal, idempotent.
    cd.ctl("del-port", "s1")
    assert rc(cd, "del-port", "s1") == NOT_FOUND
    assert cd.ctl("del-port", "s1", "--if-exists").stdout == "no changes\n"
    out = cd.ctl("del-bridge", "br1").stdout
    assert out == "- bridge br1 (mac_aging 30s, mac_table_size 200)\n", out
    assert rc(cd, "del-bridge", "br1") == NOT_FOUND
    assert rc(cd, "del-bridge", "br1", "--if-exists") == OK
    # --quiet prints nothing on success.
    q = cd.ctl("--quiet", "add-bridge", "br2")
    assert q.stdout == "" and q.returncode == OK
    cd.ctl("del-bridge", "br2")

    # Usage errors and an unreachable conduitd.
    assert rc(cd, "frobnicate") == USAGE
    assert rc(cd, "show", "ports", "--bogus") == USAGE
    r = subprocess.run([str(rigmod.CONDUITCTL), "--socket", str(rig.workdir / "none.sock"),
                        "show", "ports"], capture_output=True, text=True)
    assert r.returncode == UNREACHABLE and "is conduitd running?" in r.stderr


def test_apply_dry_run_and_save(rig):
    cd, g = start_pair(rig)
    wanted = dict(cd.config)
    wanted["bridges"] = [
        {"name": "br0", "mac_aging": 60, "ports": [vport("g1", rig.sock("g1")),
                                                   vport("g2", rig.sock("g2"))]},
        {"name": "br5", "ports": [vport("n1", rig.sock("n1"))],
         "static_macs": [{"mac": "02:00:00:00:05:01", "port": "n1"}]},
    ]
    path = rig.workdir / "wanted.yaml"
    path.write_text(rigmod.yaml_of(wanted) + "\n")
    dry = cd.ctl("apply", "--dry-run", path)
    assert dry.stdout.splitlines() == [
        "~ bridge br0: mac_aging 300s, mac_table_size 8192 -> mac_aging 60s, mac_table_size 8192",
        "+ bridge br5 (mac_aging 300s, mac_table_size 8192)",
        f"+ port br5/n1: vhost-user {rig.sock('n1')} client, 1 queue",
        "+ mac br5 02:00:00:00:05:01 -> n1 (static)",
    ], dry.stdout
    assert cd.ctl("show", "bridges", json_out=True)[0]["mac_aging"] == 300  # nothing changed
    plan = cd.ctl("apply", "--dry-run", path, json_out=True)
    assert plan["changed"] is False and len(plan["changes"]) == 4
    cd.ctl("apply", path)
    assert [b["name"] for b in cd.call("bridge.list")] == ["br0", "br5"]
    assert cd.ctl("apply", path).stdout == "no changes\n"
    # Forwarding between the untouched guests went on.
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="forwarding after apply")

    # Invalid: file, line and reason; nothing changes.
    bad = rig.workdir / "bad.yaml"
    bad.write_text("bridges:\n  - name: br0\n    ports:\n      - {name: g1, type: vhost-user}\n")
    r = cd.ctl("apply", bad, check=False)
    assert r.returncode == INVALID and f"{bad}:4: vhost-user port 'g1' has no 'socket'" in \
        r.stderr, r.stderr
    # Start-only settings: refused (exit 7), the dry run says which.
    restart = dict(wanted)
    restart["conduitd"] = dict(wanted["conduitd"], workers=[0, 1])
    path2 = rig.workdir / "restart.yaml"
    path2.write_text(rigmod.yaml_of(restart) + "\n")
    r = cd.ctl("apply", path2, check=False)
    assert r.returncode == RESTART and "conduitd.workers: [1] -> [0, 1]" in r.stderr, r.stderr
    r = cd.ctl("apply", "--dry-run", path2, check=False)
    assert r.returncode == RESTART and "! conduitd.workers" in r.stdout
    # A file without the conduitd and control sections keeps the running ones.
    partial = rig.workdir / "partial.yaml"
    partial.write_text(rigmod.yaml_of({"bridges": wanted["bridges"][:1]}) + "\n")
    assert cd.ctl("apply", partial).stdout.startswith("- port br5/n1")
    assert rc(cd, "apply", rig.workdir / "missing.yaml") == USAGE

    # save: the running config replaces the file; the old one is kept.
    original = cd.config_path.read_text()
    out = cd.ctl("save").stdout
    assert out == (f"saved the running config to {cd.config_path} "
                   f"(previous version: {cd.config_path}.prev)\n"), out
    assert pathlib.Path(f"{cd.config_path}.prev").read_text() == original
    saved = cd.config_path.read_text()
    assert "written by `conduitctl save`" in saved and "mac_aging: 60" in saved
    assert "br5" not in saved
    r = subprocess.run([str(rigmod.CONDUITD), "--config", str(cd.config_path), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert cd.ctl("save", json_out=True)["path"] == str(cd.config_path)


def test_help_completion_and_interactive_mode(rig):
    cd, g = start_pair(rig)
    general = subprocess.run([str(rigmod.CONDUITCTL), "--help"], capture_output=True, text=True)
    assert general.returncode == 0 and "exit codes:" in general.stdout
    names = [re.split(r"\s{2,}", line.strip())[0] for line in
             general.stdout.split("commands:\n")[1].split("\n\n")[0].splitlines()]
    assert len(names) >= 22
    for name in names:
        if name in ("interactive", "completion bash"):
            continue
        words = name.split()
        r = cd.ctl(*words, "--help")
        assert r.stdout.startswith(f"usage: conduitctl {name}"), (name, r.stdout)
        assert cd.ctl("help", *words).stdout == r.stdout

    # bash completion, through the script conduitctl prints.
    script = rig.workdir / "completion.bash"
    script.write_text(subprocess.run([str(rigmod.CONDUITCTL), "completion", "bash"],
                                     capture_output=True, text=True, check=True).stdout)
    bindir = rig.workdir / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "conduitctl").unlink(missing_ok=True)
    (bindir / "conduitctl").symlink_to(rigmod.CONDUITCTL)

    def complete(line):
        code = (f'source {script}; COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; '
                f'COMP_WORDS=({line}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); '
                '[[ "$COMP_LINE" == *" " ]] && COMP_CWORD=${#COMP_WORDS[@]}; '
                '_conduitctl; printf "%s\\n" "${COMPREPLY[@]}"')
        env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
        r = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=env)
        return sorted(x for x in r.stdout.splitlines() if x)

    sock = cd.socket
    assert complete("conduitctl sh") == ["show"]
    assert complete("conduitctl show ") == ["bridges", "captures", "config", "fdb", "mempool",
                                            "pmd", "ports", "stats"]
    assert complete(f"conduitctl -s {sock} show ports ") == ["g1", "g2"]
    assert complete(f"conduitctl -s {sock} del-bridge b") == ["br0"]
    assert complete("conduitctl add-port br0 p1 --mo") == ["--mode"]
    assert complete("conduitctl add-port br0 p1 --mode ") == ["client", "server"]
    assert complete(f"conduitctl -s {sock} set port g1 ad") == ["admin="]
    assert complete(f"conduitctl -s {sock} set port g1 admin=") == ["down", "up"]
    assert complete("conduitctl capture g1 --direction ") == ["both", "in", "out"]

    # The interactive mode on a terminal: commands, line editing, Tab completion.
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(str(rigmod.CONDUITCTL), [str(rigmod.CONDUITCTL), "--socket", sock],
                  dict(os.environ, TERM="xterm", HOME=str(rig.workdir)))

    def read_until(marker, timeout=10):
        buf = b""
        deadline = time.monotonic() + timeout
        while marker.encode() not in buf and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    buf += os.read(fd, 4096)
                except OSError:
                    break
        return buf.decode(errors="replace")

    try:
        assert "conduit> " in read_until("conduit> ")
        os.write(fd, b"show bridges\r")
        out = read_until("conduit> ")
        assert "BRIDGE" in out and "br0" in out, out
        os.write(fd, b"show po\t")  # completes to "show ports "
        os.write(fd, b"g\t")  # g1 and g2: completes to the common "g"
        os.write(fd, b"2\r")
        out = read_until("conduit> ")
        assert "endpoint" in out and "g2.sock" in out, out
        os.write(fd, b"show fdb nope\r")
        assert "no bridge 'nope'" in read_until("conduit> ")
        os.write(fd, b"quit\r")
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status)
    finally:
        os.close(fd)
