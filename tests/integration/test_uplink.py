"""A guest and a kernel host in a network namespace, through the uplink: a veth pair
whose root end conduitd drives with net_af_packet. Exact counts both ways."""
import pathlib
import subprocess
import sys
import time

from rig import wait_for
from test_forwarding import vport

NETRAW = str(pathlib.Path(__file__).with_name("netraw.py"))


def test_guest_and_netns_host_through_the_uplink(rig):
    host = rig.host().start()
    sock = rig.sock("g1")
    cd = rig.conduitd([{"name": "br0", "ports": [
        vport("g1", sock),
        {"name": "uplink", "type": "ethdev", "devargs": f"net_af_packet0,iface={host.root_if}"},
    ]}]).start()
    g = rig.guests([sock]).start().wait_ready()
    cd.wait_port("g1", "up")
    cd.wait_port("uplink", "up")
    cd.record_baseline()
    host_mac = host.mac()

    # Host -> guest: 40 frames to the guest's MAC (unknown yet: flooded to the guest only).
    host.run(sys.executable, NETRAW, "send", host.ns_if, g.macs[0], host_mac, "40")
    wait_for(lambda: g.rx(0) == 40, what="40 frames from the host at the guest")
    assert cd.fdb("br0") == {host_mac: "uplink"}

    # Guest -> host: 48 frames to the host's MAC, now known on the uplink.
    counter = subprocess.Popen(["ip", "netns", "exec", host.ns, sys.executable, NETRAW, "count",
                                host.ns_if, g.macs[0], "48", "20"],
                               stdout=subprocess.PIPE, text=True)
    assert counter.stdout.readline().strip() == "ready"
    g.send(0, host_mac, 48)
    out, _ = counter.communicate(timeout=30)
    assert int(out.strip()) == 48

    time.sleep(0.3)
    assert g.rx(0) == 40
    up = cd.port("uplink")
    assert (up["rx_packets"], up["tx_packets"]) == (40, 48), up
    assert cd.port("g1")["tx_packets"] == 40 and cd.port("g1")["rx_packets"] == 48
    assert cd.bridges()["br0"]["unicast_known"] == 48
