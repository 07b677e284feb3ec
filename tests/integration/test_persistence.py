"""Persistence: changes made at run time, saved, survive a restart of conduitd."""
import pathlib

from rig import wait_for
from test_forwarding import BROADCAST, start_pair


def test_saved_config_is_what_runs_after_a_restart(rig):
    cd, g = start_pair(rig)
    original = cd.config_path.read_text()
    cd.ctl("add-bridge", "br7", "--mac-aging", "45", "--mac-table-size", "500")
    cd.ctl("add-port", "br7", "srv1", "--socket", rig.sock("srv1"), "--mode", "server",
           "--queues", "2")
    cd.ctl("add-mac", "br0", "02:00:00:00:07:07", "g2")
    cd.ctl("set", "bridge", "br0", "mac_aging=90")
    cd.ctl("set", "port", "g2", "admin=down")
    before = cd.ctl("show", "config", json_out=True)
    cd.ctl("save")
    assert pathlib.Path(f"{cd.config_path}.prev").read_text() == original

    cd.stop()
    cd.start()
    after = cd.ctl("show", "config", json_out=True)
    assert after == before
    # And the datapath runs it: the new bridge and port exist, the static entry is there,
    # g1 reconnected while g2 stays administratively down.
    ports = {p["name"]: p for p in cd.call("port.list")}
    assert ports["srv1"]["bridge"] == "br7" and ports["srv1"]["queues"] == 2
    assert ports["srv1"]["mode"] == "server" and ports["g2"]["admin"] == "down"
    wait_for(lambda: pathlib.Path(rig.sock("srv1")).is_socket(), what="srv1 listening again")
    bridges = {b["name"]: b for b in cd.call("bridge.list")}
    assert (bridges["br7"]["mac_aging"], bridges["br7"]["mac_table_size"]) == (45, 500)
    assert bridges["br0"]["mac_aging"] == 90
    assert {"mac": "02:00:00:00:07:07", "port": "g2", "age_s": 0, "static": True} in \
        cd.call("fdb.list", {"bridge": "br0"})["entries"]
    cd.wait_port("g1", "up")
    cd.wait_port("g2", "up")
    cd.record_baseline()
    cd.ctl("set", "port", "g2", "admin=up")
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="forwarding after the restart")
