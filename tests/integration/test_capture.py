"""Packet capture into pcapng files that tshark reads: a guest port with
`conduitctl capture` (each direction, and both), and the uplink with DPDK's own
dpdk-dumpcap attached to conduitd through the pdump framework. Each file holds exactly
the frames the test sent."""
import pathlib
import subprocess
import sys
import time

import rig as rigmod
from rig import wait_for
from test_forwarding import BROADCAST, start_pair, vport

NETRAW = str(pathlib.Path(__file__).with_name("netraw.py"))
IN, OUT = "0x00000001", "0x00000002"  # pcapng packet flags: inbound, outbound


def tshark(path, fields=("eth.src", "eth.dst", "frame.len")):
    """Every frame in the file, as tuples of the fields, read by tshark."""
    args = ["tshark", "-r", str(path), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [tuple(line.split("\t")) for line in r.stdout.splitlines() if line]


def test_capture_a_guest_port_with_conduitctl(rig):
    cd, g = start_pair(rig)
    g.send(1, BROADCAST, 8)  # g2 learned
    wait_for(lambda: g.rx(0) == 8, what="learning")

    # In: what g1 sends into the switch. 40 frames wanted; g1 sends 48, g2 sends 16 to g1.
    inbound = rig.workdir / "g1-in.pcapng"
    capture = subprocess.Popen([str(rigmod.CONDUITCTL), "--socket", cd.socket, "capture", "g1",
                                "--count", "40", "-w", str(inbound), "--direction", "in",
                                "--timeout", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: cd.call("capture.list"), what="the capture running")
    assert cd.call("port.list", {"name": "g1"})[0]["capturing"] is True
    g.send(1, g.macs[0], 16)  # out of g1's view in this direction
    g.send(0, g.macs[1], 48, size=100)
    out, err = capture.communicate(timeout=60)
    assert capture.returncode == 0, err
    assert "40 frames of 40" in out and "done" in out, out
    frames = tshark(inbound, ("eth.src", "eth.dst", "frame.len", "frame.interface_name",
                              "frame.packet_flags_direction"))
    assert frames == [(g.macs[0], g.macs[1], "100", "g1", IN)] * 40, frames[:3]

    # Out: what the switch delivers to g1, as JSON.
    outbound = rig.workdir / "g1-out.pcapng"
    capture = subprocess.Popen([str(rigmod.CONDUITCTL), "--socket", cd.socket, "--json",
                                "capture", "g1", "-c", "24", "-w", str(outbound), "--direction",
                                "out"], stdout=subprocess.PIPE, text=True)
    wait_for(lambda: any(not c["done"] for c in cd.call("capture.list")), what="capture 2")
    g.send(0, g.macs[1], 8)  # in, not out
    g.send(1, g.macs[0], 24, size=80)
    out, _ = capture.communicate(timeout=60)
    assert capture.returncode == 0
    assert '"written": 24' in out and '"direction": "out"' in out, out
    assert tshark(outbound, ("eth.src", "eth.dst", "frame.len", "frame.packet_flags_direction")) == \
        [(g.macs[1], g.macs[0], "80", OUT)] * 24

    # Both directions of g2, stopped by --timeout before the count: exit 8, the file
    # complete with what came.
    both = rig.workdir / "g2-both.pcapng"
    capture = subprocess.Popen([str(rigmod.CONDUITCTL), "--socket", cd.socket, "capture", "g2",
                                "-c", "1000", "-w", str(both), "--timeout", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(not c["done"] for c in cd.call("capture.list")), what="capture 3")
    g.send(0, g.macs[1], 16)
    g.send(1, g.macs[0], 8)
    out, err = capture.communicate(timeout=60)
    assert capture.returncode == 8, (out, err)
    frames = tshark(both, ("eth.src", "frame.packet_flags_direction"))
    assert sorted(frames) == sorted([(g.macs[0], OUT)] * 16 + [(g.macs[1], IN)] * 8), frames
    assert cd.ctl("show", "captures").stdout.count("done") == 3

    # Errors: no such port, relative file from the API, a file that cannot be created.
    assert cd.rpc("capture.start", {"port": "nope", "file": "/tmp/x"})["error"]["code"] == -32001
    assert cd.rpc("capture.start", {"port": "g1", "file": "x"})["error"]["code"] == -32602
    assert cd.ctl("capture", "g1", "-c", "1", "-w", "/proc/none/x.pcapng",
                  check=False).returncode == 1


def test_capture_the_uplink_with_dpdk_dumpcap(rig):
    if not rigmod.HUGEPAGES:
        raise AssertionError("dpdk-dumpcap attaches as a secondary process, which needs "
                             "hugepages (tools/setup.sh)")
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
    pcap = rig.workdir / "uplink.pcapng"
    dumpcap = subprocess.Popen(["dpdk-dumpcap", f"--file-prefix={cd.prefix}", "-i",
                                "net_af_packet0", "-c", "36", "-w", str(pcap), "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # dumpcap is ready once it has enabled capture on the port (its log says so or the
    # file exists with its header).
    wait_for(lambda: pcap.exists() and pcap.stat().st_size > 0 or dumpcap.poll() is not None,
             timeout=30, what="dpdk-dumpcap attached")
    assert dumpcap.poll() is None, dumpcap.communicate()[0]
    time.sleep(0.5)
    # 20 frames in from the host, 16 out to it: 36, which stops dumpcap.
    host.run(sys.executable, NETRAW, "send", host.ns_if, g.macs[0], host_mac, "20")
    wait_for(lambda: g.rx(0) == 20, what="host frames at the guest")
    g.send(0, host_mac, 8)
    g.send(0, host_mac, 8)
    out, _ = dumpcap.communicate(timeout=60)
    assert dumpcap.returncode == 0, out
    frames = tshark(pcap, ("eth.src", "eth.dst"))
    assert frames == [(host_mac, g.macs[0])] * 20 + [(g.macs[0], host_mac)] * 16, frames
