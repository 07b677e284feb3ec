"""Checksum and segmentation offload, and jumbo frames, with real Linux guests.

Three QEMU guests (stock Debian kernel, virtio-net over vhost-user) and a kernel host in
a network namespace behind the af_packet uplink, all on one conduitd bridge, booted once
for the whole module:

- vm1, vm2: cards with every offload on (QEMU's defaults); they negotiate checksum and
  TSO offload with conduitd and send it GSO frames of up to 64 KiB.
- vm3: a card with every offload off (csum=off, guest_tso4=off, ...): it must receive only
  complete frames no longer than its MTU, so conduitd segments and checksums for it.
- host: the uplink is net_af_packet, which has no TX offloads: software segmentation again,
  and the host's kernel verifies every checksum itself (its TX checksum offload is off, so
  what it sends through the veth is complete too).

conduitd runs in a network namespace of its own, where its uplink devices live: the last
test swaps the uplink for a net_tap device, which offers TX checksum offload, and the
namespace's own kernel stack on that tap is the host.

Files of a few MiB cross over TCP (busybox nc) and their SHA-256 sums are compared; the
counters show which path each crossed. Then MTU 9000: jumbo pings that must arrive as one
frame, files again, and a frame too long for the uplink dropped and counted. After every
test the mbuf pool is back at its baseline.
"""
import subprocess

import pytest

import rig as rigmod
from rig import wait_for

HOST_IP = "10.9.0.100"
TAP_HOST_IP = "10.9.0.200"
SWITCH_NS = "itest-offsw"
VMS = {
    "vm1": {"ip": "10.9.0.1", "mac": "52:54:00:00:0a:01", "opts": ""},
    "vm2": {"ip": "10.9.0.2", "mac": "52:54:00:00:0a:02", "opts": ""},
    "vm3": {"ip": "10.9.0.3", "mac": "52:54:00:00:0a:03",
            "opts": "csum=off,guest_csum=off,gso=off,host_tso4=off,host_tso6=off,host_ecn=off,"
                    "host_ufo=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off"},
}
FILE_MB = 4
# virtio-net feature bits (virtio 1.2, 5.1.3).
CSUM, GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, GUEST_ECN, GUEST_UFO = 0, 1, 7, 8, 9, 10
HOST_TSO4, HOST_TSO6, HOST_ECN, HOST_UFO, MRG_RXBUF = 11, 12, 13, 14, 15
OFFLOAD_BITS = (CSUM, GUEST_CSUM, GUEST_TSO4, GUEST_TSO6, HOST_TSO4, HOST_TSO6)
NEVER_BITS = (GUEST_ECN, GUEST_UFO, HOST_ECN, HOST_UFO)


class Lab:
    def __init__(self, workdir):
        self.workdir = workdir
        self.started = []
        self.cd = None
        self.host = None
        self.vms = {}

    def sh(self, vm, command, timeout=120, check=True):
        return self.vms[vm].shell.run(command, timeout=timeout, check=check)[1]

    def host_run(self, *args, check=True, timeout=120):
        return self.host.run(*args, check=check, timeout=timeout)

    def switch_run(self, *args, check=True, timeout=120):
        return subprocess.run(["ip", "netns", "exec", SWITCH_NS, *args], check=check,
                              capture_output=True, text=True, timeout=timeout)

    def counters(self):
        return self.cd.ctl("show", "stats", json_out=True)["ports"]

    def tcp_csum_errors(self, where):
        """Tcp InCsumErrors from /proc/net/snmp of a guest or the host namespace."""
        if where in ("host", "switch"):
            run = self.host_run if where == "host" else self.switch_run
            text = run("cat", "/proc/net/snmp").stdout
        else:
            text = self.sh(where, "cat /proc/net/snmp")
        rows = [line.split() for line in text.splitlines() if line.startswith("Tcp:")]
        return int(rows[1][rows[0].index("InCsumErrors")])


def start_listener(lab, where, path, port=5001):
    """A receiver that writes what one TCP connection brings to `path`, then its exit
    code to `path`.rc. Its stdin never ends: busybox nc would stop on it otherwise."""
    command = (f"rm -f {path} {path}.rc; sleep 900 | (busybox nc -l -p {port} > {path}; "
               f"echo $? > {path}.rc) >/dev/null 2>&1 &")
    if where in ("host", "switch"):
        ns = lab.host.ns if where == "host" else SWITCH_NS
        subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c", command],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL).wait(timeout=10)
    else:
        lab.sh(where, command)


def read_at(lab, where, command):
    if where == "host":
        return lab.host_run("sh", "-c", command, check=False).stdout
    if where == "switch":
        return lab.switch_run("sh", "-c", command, check=False).stdout
    return lab.sh(where, command, check=False)


def transfer(lab, src, dst, dst_ip, name):
    """Sends a fresh random file of FILE_MB MiB from guest `src` to `dst` (a guest or
    "host") over TCP; asserts it arrived whole. Returns its SHA-256."""
    path = f"/tmp/{name}"
    lab.sh(src, f"dd if=/dev/urandom of={path} bs=65536 count={FILE_MB * 16} 2>/dev/null")
    sent = lab.sh(src, f"sha256sum {path}").split()[0]
    start_listener(lab, dst, path)
    # The listener may need a moment (TCG); the sender retries until it connects.
    lab.sh(src, f"for i in $(seq 30); do busybox nc {dst_ip} 5001 < {path} && exit 0; "
                f"sleep 1; done; exit 1", timeout=300)
    wait_for(lambda: read_at(lab, dst, f"cat {path}.rc 2>/dev/null").strip() != "", timeout=120,
             interval=1, what=f"{dst} to receive {name}")
    got = read_at(lab, dst, f"sha256sum {path}").split()[0]
    size = read_at(lab, dst, f"wc -c < {path}").strip()
    assert got == sent, f"{name}: {src} sent sha256 {sent}, {dst} got {got} ({size} bytes)"
    assert int(size) == FILE_MB << 20
    read_at(lab, dst, f"rm -f {path} {path}.rc")
    lab.sh(src, f"rm -f {path}")
    return sent


def features(lab, vm):
    """The virtio-net feature bits the guest's driver negotiated, as a string of 0/1."""
    return lab.sh(vm, "cat /sys/bus/virtio/devices/virtio*/features").strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("offloads")
    lab = Lab(workdir)
    try:
        kernel, initrd = rigmod.guest_initramfs(workdir, rigmod.SHELL_GUEST_INIT, "shell-guest")
        subprocess.run(["ip", "netns", "del", SWITCH_NS], capture_output=True)
        subprocess.run(["ip", "netns", "add", SWITCH_NS], check=True)
        lab.started.append(SWITCH_NS)
        lab.switch_run("ip", "link", "set", "lo", "up")
        for key in ("all", "default"):
            lab.switch_run("sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        lab.host = rigmod.NetnsHost(ns="itest-offl", root_if="itest-offl0",
                                    ip=f"{HOST_IP}/24", switch_ns=SWITCH_NS).start()
        lab.started.append(lab.host)
        # The host sends complete frames: a packet socket on the veth would otherwise see
        # its partial checksums and GSO frames.
        lab.host_run("ethtool", "-K", lab.host.ns_if, "tx", "off", "tso", "off", "gso", "off")
        socks = {name: str(workdir / f"{name}.sock") for name in VMS}
        ports = [{"name": name, "type": "vhost-user", "socket": socks[name], "mtu": 9000}
                 for name in VMS]
        ports.append({"name": "uplink", "type": "ethdev",
                      "devargs": f"net_af_packet0,iface={lab.host.root_if}"})
        lab.cd = rigmod.Conduitd(workdir, [{"name": "br0", "ports": ports}],
                                 prefix="itest-offl", mbufs=16383, netns=SWITCH_NS)
        lab.started.append(lab.cd)
        lab.cd.start()
        for name, vm in VMS.items():
            guest = rigmod.LinuxGuest(workdir, name, socks[name], vm["mac"], f"{vm['ip']}/24",
                                      [], kernel, initrd, device_opts=vm["opts"], shell=True)
            lab.started.append(guest)
            lab.vms[name] = guest.start()
        for name in VMS:
            lab.cd.wait_port(name, "up", timeout=120)
        for guest in lab.vms.values():
            guest.shell.wait_ready()
        lab.cd.record_baseline()
        yield lab
    finally:
        problems = []
        for thing in reversed(lab.started):
            try:
                if thing == SWITCH_NS:
                    subprocess.run(["ip", "netns", "del", SWITCH_NS], check=True)
                elif isinstance(thing, rigmod.Conduitd):
                    try:
                        thing.stop()
                    finally:
                        thing.cleanup()
                else:
                    thing.stop()
            except Exception as err:  # noqa: BLE001 - report every cleanup failure
                problems.append(f"{type(thing).__name__}: {err}")
        if problems:
            pytest.fail("\n".join(problems))


@pytest.fixture(autouse=True)
def pool_at_baseline(lab):
    """As conftest does for every rig: after each test, no mbuf leaked."""
    yield
    lab.cd.assert_mempool_at_baseline(timeout=30)


def test_guests_negotiate_what_their_cards_and_ports_offer(lab):
    for vm in ("vm1", "vm2"):
        bits = features(lab, vm)
        for b in OFFLOAD_BITS:
            assert bits[b] == "1", f"{vm} did not negotiate feature {b}: {bits}"
    bits = features(lab, "vm3")
    for b in OFFLOAD_BITS:
        assert bits[b] == "0", f"vm3's card has offloads off, yet feature {b} is on: {bits}"
    for vm in VMS:
        bits = features(lab, vm)
        assert bits[MRG_RXBUF] == "1", bits
        for b in NEVER_BITS:
            assert bits[b] == "0", f"{vm} negotiated feature {b}, which conduitd never offers"
    ports = {p["name"]: p for p in lab.cd.ctl("show", "ports", json_out=True)}
    both_ways = ["tcp_csum", "udp_csum", "tso4", "tso6"]
    assert ports["vm1"]["offloads_to_port"] == both_ways, ports["vm1"]
    assert ports["vm1"]["offloads_from_port"] == both_ways, ports["vm1"]
    assert ports["vm3"]["offloads_to_port"] == [] and ports["vm3"]["offloads_from_port"] == []
    assert ports["uplink"]["offloads_to_port"] == [], "net_af_packet has no TX offloads"
    assert ports["vm1"]["mtu"] == 9000 and ports["uplink"]["mtu"] == 1500


def test_vm_to_vm_gso_frames_pass_through_whole(lab):
    lab.cd.ctl("clear", "stats")
    transfer(lab, "vm1", "vm2", VMS["vm2"]["ip"], "to-vm2")
    c = lab.counters()
    assert c["vm1"]["rx_gso"] > 0, c["vm1"]
    # GSO frames reach vm2 as they are: frames longer than the MTU crossed the switch.
    assert c["vm2"]["tx_gso_passed"] > 0, c["vm2"]
    assert c["vm2"]["tx_bytes"] > 3 * (FILE_MB << 20) // 4
    assert c["vm2"]["tx_gso_software"] == 0 and c["vm2"]["tx_csum_software"] == 0, c["vm2"]
    for port in ("vm1", "vm2"):
        drops = {k: v for k, v in c[port].items() if k.startswith("drop_") and v}
        # A guest under TCG sometimes leaves its receive ring full for a moment while a
        # bulk TCP transfer fills it: that is backpressure, counted as such, and TCP
        # resends. Every other reason means a frame the switch mishandled.
        full = drops.pop("drop_tx_queue_full", 0)
        assert not drops, f"{port}: {drops}"
        sent = c[port]["tx_packets"]
        assert full <= max(2, sent // 50), f"{port}: {full} of {sent} frames met a full ring"


def test_guest_without_offloads_gets_segmented_checksummed_frames(lab):
    errors_before = lab.tcp_csum_errors("vm3")
    lab.cd.ctl("clear", "stats")
    transfer(lab, "vm1", "vm3", VMS["vm3"]["ip"], "to-vm3")
    c = lab.counters()
    assert c["vm1"]["rx_gso"] > 0, c["vm1"]
    assert c["vm3"]["tx_gso_software"] > 0, c["vm3"]
    assert c["vm3"]["tx_gso_segments"] > c["vm3"]["tx_gso_software"], c["vm3"]
    assert c["vm3"]["tx_gso_passed"] == 0 and c["vm3"]["tx_csum_passed"] == 0, c["vm3"]
    assert c["vm3"]["drop_tx_too_big"] == 0 and c["vm3"]["drop_tx_offload_failed"] == 0
    # vm3 has no GUEST_CSUM: its own kernel verified every segment's checksum.
    assert lab.tcp_csum_errors("vm3") == errors_before
    # And the other way: vm3 sends complete frames only.
    lab.cd.ctl("clear", "stats")
    transfer(lab, "vm3", "vm1", VMS["vm1"]["ip"], "from-vm3")
    c = lab.counters()
    assert c["vm3"]["rx_gso"] == 0 and c["vm3"]["rx_csum_partial"] == 0, c["vm3"]


def test_vm_to_host_through_af_packet_is_segmented_in_software(lab):
    errors_before = lab.tcp_csum_errors("host")
    lab.cd.ctl("clear", "stats")
    transfer(lab, "vm2", "host", HOST_IP, "to-host")
    c = lab.counters()
    assert c["vm2"]["rx_gso"] > 0, c["vm2"]
    assert c["uplink"]["tx_gso_software"] > 0, c["uplink"]
    assert c["uplink"]["tx_gso_segments"] > c["uplink"]["tx_gso_software"], c["uplink"]
    assert c["uplink"]["tx_gso_passed"] == 0, c["uplink"]
    assert c["uplink"]["drop_tx_too_big"] == 0, c["uplink"]
    # The host's kernel checked the checksums conduitd computed.
    assert lab.tcp_csum_errors("host") == errors_before


def capture_lengths(lab, port, run, count, filter_expr):
    """Frame lengths (and captured lengths) of what `port` was given while `run` ran."""
    path = lab.workdir / f"{port}-{count}.pcapng"
    cap = subprocess.Popen([str(rigmod.CONDUITCTL), "--socket", lab.cd.socket, "capture", port,
                            "--count", str(count), "--direction", "out", "--snaplen", "9216",
                            "--timeout", "60", "-w", str(path)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: any(c["port"] == port and not c["done"]
                         for c in lab.cd.call("capture.list")), what="capture running")
    run()
    out, _ = cap.communicate(timeout=90)
    r = subprocess.run(["tshark", "-r", str(path), "-Y", filter_expr, "-T", "fields",
                        "-e", "frame.len", "-e", "frame.cap_len"],
                       capture_output=True, text=True, check=True)
    return [tuple(int(x) for x in line.split()) for line in r.stdout.splitlines() if line], out


def test_jumbo_frames(lab):
    for vm in VMS:
        lab.sh(vm, "ip link set eth0 mtu 9000")
    # An 8000-byte ping is one 8042-byte frame each way, in chained mbufs: it must arrive
    # whole, never cut short or fragmented. Neighbours are confirmed first, and more
    # requests are sent than frames captured: other frames flooded to vm2 (ARP, IPv6
    # neighbour and multicast reports after the MTU change) take places too.
    lab.sh("vm1", f"ping -c 1 -W 5 {VMS['vm2']['ip']}")
    lab.sh("vm2", f"ping -c 1 -W 5 {VMS['vm1']['ip']}")
    lab.cd.ctl("clear", "stats")
    lengths, out = capture_lengths(
        lab, "vm2",
        lambda: lab.sh("vm1", f"ping -c 12 -s 8000 -W 5 {VMS['vm2']['ip']}"),
        10, "icmp.type == 8")
    assert len(lengths) >= 3 and set(lengths) == {(8042, 8042)}, (lengths, out)
    lab.sh("vm3", f"ping -c 3 -s 8000 -W 5 {VMS['vm1']['ip']}")
    # Files at MTU 9000: GSO frames with an 8948-byte MSS pass to vm2 whole, and are cut
    # into 9014-byte segments (each spanning several mbufs) for vm3.
    lab.cd.ctl("clear", "stats")
    transfer(lab, "vm1", "vm2", VMS["vm2"]["ip"], "jumbo-to-vm2")
    transfer(lab, "vm1", "vm3", VMS["vm3"]["ip"], "jumbo-to-vm3")
    c = lab.counters()
    assert c["vm2"]["tx_gso_passed"] > 0, c["vm2"]
    assert c["vm3"]["tx_gso_software"] > 0, c["vm3"]
    assert c["vm3"]["tx_bytes"] / c["vm3"]["tx_packets"] > 4000, c["vm3"]
    # Too long for the uplink (MTU 1500): dropped and counted, not cut short. The host
    # never sees it, so the ping fails.
    lab.cd.ctl("clear", "stats")
    rc, _ = lab.vms["vm1"].shell.run(f"ping -c 2 -s 8000 -W 3 {HOST_IP}", check=False)
    assert rc != 0
    assert lab.counters()["uplink"]["drop_tx_too_big"] >= 2
    # A jumbo frame flooded (its destination forgotten) reaches every port by reference:
    # vm2 still answers, the uplink drops its copy, the pool stays whole (checked after).
    lab.cd.ctl("flush-fdb", "br0")
    lab.cd.ctl("clear", "stats")
    lab.sh("vm1", f"ping -c 2 -s 8000 -W 5 {VMS['vm2']['ip']}")
    c = lab.counters()
    assert c["uplink"]["drop_tx_too_big"] >= 1, c["uplink"]
    stats = lab.cd.ctl("show", "stats", json_out=True)
    assert stats["bridges"]["br0"]["flooded"] >= 1, stats["bridges"]


def test_uplink_with_checksum_offload_gets_partial_checksums(lab):
    """net_tap offers TX checksum offload (its TSO is not used: see docs/operating.md):
    GSO frames are segmented here with their checksums left to the device, which the
    namespace's kernel then verifies."""
    for vm in VMS:
        lab.sh(vm, "ip link set eth0 mtu 1500")
    lab.cd.ctl("del-port", "uplink")
    lab.cd.ctl("add-port", "br0", "uplink", "--devargs", "net_tap0,iface=itest-offtap")
    lab.switch_run("ip", "addr", "add", f"{TAP_HOST_IP}/24", "dev", "itest-offtap")
    lab.switch_run("ip", "link", "set", "itest-offtap", "up")
    lab.cd.wait_port("uplink", "up")
    port = lab.cd.ctl("show", "ports", "uplink", json_out=True)[0]
    assert port["offloads_to_port"] == ["tcp_csum", "udp_csum"], port
    # net_tap's receive ring holds mbufs of the pool (net_af_packet's held none): the pool's
    # baseline, checked after this test, moves by that ring.
    lab.cd.record_baseline()
    errors_before = lab.tcp_csum_errors("switch")
    lab.cd.ctl("clear", "stats")
    transfer(lab, "vm2", "switch", TAP_HOST_IP, "to-tap")
    c = lab.counters()["uplink"]
    assert c["tx_gso_software"] > 0 and c["tx_gso_segments"] > c["tx_gso_software"], c
    # The segments went with their checksums left to the device.
    assert c["tx_csum_software"] == 0 and c["tx_gso_passed"] == 0, c
    assert c["drop_tx_error"] == 0 and c["drop_tx_queue_full"] == 0, c
    assert lab.tcp_csum_errors("switch") == errors_before
