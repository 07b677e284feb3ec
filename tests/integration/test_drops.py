"""Every drop reason provoked once and counted exactly, each by its own counter."""
import time

import rig as rigmod
from rig import wait_for
from test_forwarding import BROADCAST, start_pair, vport


def drops(port):
    return {k: v for k, v in port.items() if k.startswith("drop_") and v}


def test_port_down_guest_not_connected(rig):
    socks = [rig.sock("g1"), rig.sock("g2"), rig.sock("absent")]
    cd = rig.conduitd([{"name": "br0", "ports": [vport("g1", socks[0]), vport("g2", socks[1]),
                                                 vport("absent", socks[2])]}]).start()
    g = rig.guests(socks[:2]).start().wait_ready()
    cd.wait_port("g1", "up")
    cd.wait_port("g2", "up")
    assert cd.port("absent")["state"] == "down"
    cd.record_baseline()
    g.send(0, BROADCAST, 16)
    wait_for(lambda: g.rx(1) == 16, what="broadcast")
    wait_for(lambda: cd.port("absent")["drop_tx_port_down"] == 16, what="port-down drops")
    assert drops(cd.port("absent")) == {"drop_tx_port_down": 16}
    assert drops(cd.port("g1")) == {} and drops(cd.port("g2")) == {}


def test_tx_queue_full_guest_not_draining(rig):
    cd, g = start_pair(rig)
    g.send(1, BROADCAST, 8)  # g2 learned
    wait_for(lambda: g.rx(0) == 8, what="learning")
    g.stop_polling([0])  # g2 stops draining its receive ring
    g.send(0, g.macs[1], 512, poll_after=[0])
    wait_for(lambda: cd.port("g2")["tx_packets"] + cd.port("g2")["drop_tx_queue_full"] == 512,
             what="all 512 frames accounted for")
    p = cd.port("g2")
    delivered, dropped = p["tx_packets"], p["drop_tx_queue_full"]
    assert 0 < delivered <= 256 and dropped == 512 - delivered, p
    assert drops(p) == {"drop_tx_queue_full": dropped}
    g.stop_polling([0, 1])  # draining again: exactly the delivered frames arrive
    wait_for(lambda: g.rx(1) == delivered, what="the delivered frames")
    time.sleep(0.3)
    assert g.rx(1) == delivered


def test_rx_nombuf_frames_wait_in_the_guest_ring(rig):
    # No per-worker cache, so every mbuf comes from the shared pool the hook empties.
    cd, g = start_pair(rig, daemon={"mbufs": 4095, "extra": {"mbuf_cache": 0}})
    g.send(1, BROADCAST, 8)
    wait_for(lambda: g.rx(0) == 8, what="learning")
    held = cd.query("/conduit/debug/mempool_hold,4095")["held"]
    assert held == cd.mempool()["size"]
    g.send(0, g.macs[1], 64)
    wait_for(lambda: cd.port("g1")["drop_rx_nombuf"] > 0, what="no-mbuf counted")
    assert g.rx(1) == 0
    cd.query("/conduit/debug/mempool_hold,0")
    # Nothing was lost: the frames waited in g1's ring and now go through.
    wait_for(lambda: g.rx(1) == 64, what="frames delivered once mbufs are back")
    assert cd.port("g1")["rx_packets"] == 64
    assert set(drops(cd.port("g1"))) == {"drop_rx_nombuf"}


def test_ingress_drops_runt_bad_source_hairpin_no_destination(rig):
    """Crafted frames enter through a real ethdev (net_pcap replaying a capture) on a
    bridge where the uplink is alone."""
    a, b, c = "02:aa:00:00:00:01", "02:bb:00:00:00:02", "02:cc:00:00:00:03"
    frames = (
        [rigmod.frame(b, a, length=10)] * 3                          # runts
        + [rigmod.frame(b, "01:00:5e:00:00:01"), rigmod.frame(b, BROADCAST),
           rigmod.frame(b, "00:00:00:00:00:00"), rigmod.frame(b, "03:00:00:00:00:09")]  # bad sources
        + [rigmod.frame(b, a)] * 2                                   # A learned; flood has nowhere to go
        + [rigmod.frame(a, c)] * 5                                   # to A, behind the ingress port: hairpin
    )
    pcap_in = rig.workdir / "in.pcap"
    rigmod.write_pcap(pcap_in, frames)
    devargs = f"net_pcap0,rx_pcap={pcap_in},tx_pcap={rig.workdir / 'out.pcap'}"
    cd = rig.conduitd([{"name": "solo", "ports": [{"name": "wire", "type": "ethdev",
                                                   "devargs": devargs}]}]).start()
    wait_for(lambda: cd.port("wire")["rx_packets"] == len(frames), what="capture replayed")
    time.sleep(0.3)
    p = cd.port("wire")
    assert p["rx_packets"] == 14 and p["tx_packets"] == 0
    assert drops(p) == {"drop_runt": 3, "drop_bad_src_mac": 4, "drop_no_destination": 2,
                        "drop_hairpin": 5}
    assert cd.fdb("solo") == {a: "wire", c: "wire"}
