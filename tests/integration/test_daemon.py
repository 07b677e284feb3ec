"""conduitd as a daemon: server-mode ports, a full MAC table, running without
hugepages, refusing a bad config, and the README's demo."""
import os
import pathlib
import subprocess
import time

import rig as rigmod
from rig import wait_for
from test_forwarding import BROADCAST, start_pair, vport


def test_server_mode_port_listens_and_removes_its_socket(rig):
    # g1: conduitd listens (server mode) and the guest connects; g2: the default.
    s1, s2 = rig.sock("srv/g1"), rig.sock("g2")
    cd = rig.conduitd([{"name": "br0", "ports": [vport("g1", s1, mode="server"),
                                                 vport("g2", s2)]}]).start()
    wait_for(lambda: pathlib.Path(s1).is_socket(), what="conduitd's listening socket")
    g = rig.guests([s1, s2], connect=[0]).start().wait_ready()
    cd.wait_port("g1", "up")
    cd.wait_port("g2", "up")
    cd.record_baseline()
    g.send(0, BROADCAST, 16)
    wait_for(lambda: g.rx(1) == 16, what="server-mode port to client-mode port")
    g.send(1, g.macs[0], 24)
    wait_for(lambda: g.rx(0) == 24, what="client-mode port to server-mode port")
    cd.assert_mempool_at_baseline()
    g.stop()
    cd.stop()
    assert not pathlib.Path(s1).exists(), "conduitd left its listening socket behind"


def test_full_mac_table_learns_no_more_and_floods(rig):
    socks = [rig.sock(f"g{i}") for i in range(3)]
    cd = rig.conduitd([{"name": "br0", "mac_table_size": 2,
                        "ports": [vport(f"g{i}", socks[i]) for i in range(3)]}]).start()
    g = rig.guests(socks).start().wait_ready()
    for i in range(3):
        cd.wait_port(f"g{i}", "up")
    cd.record_baseline()
    g.send(0, BROADCAST, 8)
    g.send(1, BROADCAST, 8)
    wait_for(lambda: g.rx(2) == 16, what="two hosts learned")
    g.send(2, BROADCAST, 8)  # a third host: the table is full
    wait_for(lambda: g.rx(0) == 16 and g.rx(1) == 16, what="third host's broadcast")
    br = cd.bridges()["br0"]
    assert br["mac_entries"] == 2 and br["mac_learn_table_full"] >= 1
    assert cd.fdb("br0") == {g.macs[0]: "g0", g.macs[1]: "g1"}
    # Frames to the unlearned host are flooded; the learned ones still go direct.
    g.send(0, g.macs[2], 16)
    wait_for(lambda: g.rx(2) == 16 + 16 and g.rx(1) == 16 + 16, what="flood to the unknown host")
    g.send(2, g.macs[1], 8)
    wait_for(lambda: g.rx(1) == 32 + 8, what="unicast to a learned host")
    time.sleep(0.3)
    assert g.rx(0) == 16


def test_runs_without_hugepages(rig):
    cd, g = start_pair(rig, daemon={"extra": {"hugepages": False}})
    assert "--no-huge" in cd.log_text()
    g.send(0, BROADCAST, 8)
    g.send(1, g.macs[0], 32)
    wait_for(lambda: g.rx(0) == 32 and g.rx(1) == 8, what="forwarding without hugepages")


def test_bad_config_is_refused_with_file_line_and_reason(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("conduitd:\n  workers: [1]\nbridges:\n  - name: br0\n    ports:\n"
                   "      - {name: g1, type: vhost-user, socket: /tmp/x.sock, mode: listen}\n")
    r = subprocess.run([str(rigmod.CONDUITD), "--config", str(cfg)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert f"{cfg}:6: mode must be" in r.stderr, r.stderr
    assert "starting DPDK" not in r.stderr, "a bad config must be refused before anything starts"
    missing = subprocess.run([str(rigmod.CONDUITD), "--config", str(tmp_path / "none.yaml")],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "cannot read the file" in missing.stderr


def test_the_readme_demo_runs(tmp_path):
    """The README's first command (after setup): tools/demo.sh on configs/default.yaml."""
    r = subprocess.run([str(rigmod.TOP / "tools" / "demo.sh")], capture_output=True, text=True,
                       timeout=180, env=dict(os.environ))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "5 packets transmitted, 5 packets received" in out, out[-3000:]
    assert "0 dropped" in out, out[-3000:]
    assert not pathlib.Path("/run/conduit/vm1.sock").exists()
    assert not any(pathlib.Path("/dev/hugepages").glob("conduitdmap_*"))
