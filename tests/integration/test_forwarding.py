"""conduitd with real virtio-user guests (dpdk-testpmd): learning, known unicast,
flooding within a bridge and never across bridges, aging, two workers."""
import re
import time

from rig import take_cpu, wait_for

BROADCAST = "ff:ff:ff:ff:ff:ff"


def vport(name, sock, **extra):
    return {"name": name, "type": "vhost-user", "socket": sock, **extra}


def start_pair(rig, daemon=None, **bridge_extra):
    """conduitd with one bridge of two guest ports, and the two guests, all up."""
    socks = [rig.sock("g1"), rig.sock("g2")]
    cd = rig.conduitd([{"name": "br0", **bridge_extra,
                        "ports": [vport("g1", socks[0]), vport("g2", socks[1])]}],
                      **(daemon or {})).start()
    g = rig.guests(socks).start().wait_ready()
    cd.wait_port("g1", "up")
    cd.wait_port("g2", "up")
    cd.record_baseline()
    return cd, g


def test_two_guests_learn_and_forward_known_unicast(rig):
    cd, g = start_pair(rig)
    # Each guest announces itself with broadcasts: both are learned.
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="broadcast from g1 at g2")
    g.send(1, BROADCAST, 8)
    wait_for(lambda: g.rx(0) == 8, what="broadcast from g2 at g1")
    fdb = cd.fdb("br0")
    assert fdb == {g.macs[0]: "g1", g.macs[1]: "g2"}
    # Known unicast: exact counts at the guest and in conduitd's counters.
    g.send(0, g.macs[1], 96)
    wait_for(lambda: g.rx(1) == 8 + 96, what="unicast at g2")
    time.sleep(0.3)
    assert g.rx(1) == 8 + 96 and g.rx(0) == 8
    p1, p2 = cd.port("g1"), cd.port("g2")
    assert (p1["rx_packets"], p1["tx_packets"]) == (8 + 96, 8)
    assert (p2["rx_packets"], p2["tx_packets"]) == (8, 8 + 96)
    assert p2["tx_bytes"] == 64 * (8 + 96)
    br = cd.bridges()["br0"]
    assert br["mac_learned"] == 2 and br["unicast_known"] == 96 and br["flooded"] == 16
    assert all(v == 0 for k, v in p1.items() if k.startswith("drop_"))


def test_eight_guests_flood_within_bridge_only(rig):
    # br0: eight guests; br1: two guests. Floods stay inside their bridge.
    socks = [rig.sock(f"g{i}") for i in range(10)]
    br0 = [vport(f"g{i}", socks[i]) for i in range(8)]
    br1 = [vport(f"g{i}", socks[i]) for i in range(8, 10)]
    cd = rig.conduitd([{"name": "br0", "ports": br0}, {"name": "br1", "ports": br1}]).start()
    g = rig.guests(socks).start().wait_ready(timeout=90)
    for i in range(10):
        cd.wait_port(f"g{i}", "up")
    cd.record_baseline()

    g.send(0, BROADCAST, 24)
    wait_for(lambda: all(g.rx(i) == 24 for i in range(1, 8)), what="broadcast at g1..g7")
    time.sleep(0.3)
    assert [g.rx(i) for i in range(10)] == [0] + [24] * 7 + [0, 0]

    # Unknown unicast floods the same way; once learned it goes to one port only.
    g.send(3, g.macs[0], 8)  # g3 -> g0 (learned by the broadcast): only g0
    wait_for(lambda: g.rx(0) == 8, what="unicast g3->g0")
    g.send(0, g.macs[3], 16)  # g0 -> g3 (learned just now): only g3
    wait_for(lambda: g.rx(3) == 24 + 16, what="unicast g0->g3")
    time.sleep(0.3)
    assert [g.rx(i) for i in range(10)] == [8, 24, 24, 40, 24, 24, 24, 24, 0, 0]

    # A broadcast in br1 reaches its other port and nothing in br0.
    g.send(8, BROADCAST, 8)
    wait_for(lambda: g.rx(9) == 8, what="broadcast in br1")
    time.sleep(0.3)
    assert [g.rx(i) for i in range(10)] == [8, 24, 24, 40, 24, 24, 24, 24, 0, 8]
    assert g.macs[8] not in cd.fdb("br0") and set(cd.fdb("br1")) == {g.macs[8]}


def test_mac_entries_age_out(rig):
    cd, g = start_pair(rig, mac_aging=2)
    g.send(1, BROADCAST, 8)
    wait_for(lambda: g.rx(0) == 8, what="broadcast")
    assert cd.fdb("br0") == {g.macs[1]: "g2"}
    # Aged out after 2 s: the table empties and a frame to g2 is unknown again.
    wait_for(lambda: cd.fdb("br0") == {}, timeout=10, what="entry aged out")
    # The ager (once a second) then frees the entry itself.
    wait_for(lambda: cd.bridges()["br0"]["mac_entries"] == 0, timeout=5, what="entry freed")
    before = cd.bridges()["br0"]["flooded"]
    g.send(0, g.macs[1], 8)
    wait_for(lambda: g.rx(1) == 8, what="frame to the aged MAC")
    assert cd.bridges()["br0"]["flooded"] == before + 8


def test_two_workers_each_forward(rig):
    socks = [rig.sock("g1"), rig.sock("g2")]
    cd = rig.conduitd([{"name": "br0", "ports": [vport("g1", socks[0]), vport("g2", socks[1])]}],
                      workers=(0, 1)).start()
    g = rig.guests(socks).start().wait_ready()
    cd.wait_port("g1", "up")
    cd.wait_port("g2", "up")
    cd.record_baseline()
    workers = cd.workers()
    assert {w["queues"] for w in workers.values()} == {"g1:0", "g2:0"}
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="g1 -> g2")
    g.send(1, g.macs[0], 16)
    wait_for(lambda: g.rx(0) == 16, what="g2 -> g1")
    g.send(0, g.macs[1], 32)
    wait_for(lambda: g.rx(1) == 40, what="g1 -> g2 unicast")
    workers = cd.workers()
    by_queue = {w["queues"]: w["rx_packets"] for w in workers.values()}
    assert by_queue == {"g1:0": 40, "g2:0": 16}, workers


def worker_cpu_seconds(pid):
    """CPU time of conduitd's worker thread (named rte-worker-N by DPDK)."""
    import os
    import pathlib
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip().startswith("rte-worker"):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    raise AssertionError("no worker thread found")


def test_idle_worker_backs_off_and_returns_to_polling(rig):
    cd, g = start_pair(rig)
    time.sleep(1)  # idle: the worker is in its back-off
    c0, s0 = worker_cpu_seconds(cd.proc.pid), cd.workers()["worker0"]["idle_sleeps"]
    time.sleep(2)
    used = (worker_cpu_seconds(cd.proc.pid) - c0) / 2
    w = cd.workers()["worker0"]
    # A polling worker would use a whole CPU; backing off it uses a fraction.
    assert used < 0.5, f"idle worker used {used:.0%} of a CPU"
    assert w["idle_sleeps"] > s0
    # Traffic after a long idle period still goes through, every frame.
    g.send(0, BROADCAST, 64)
    wait_for(lambda: g.rx(1) == 64, what="frames after idling")
    assert cd.port("g1")["drop_rx_nombuf"] == 0 and cd.port("g2")["drop_tx_queue_full"] == 0
    print(f"idle worker CPU {used:.1%}, longest sleep {w['longest_sleep_us']} us")


def test_a_worker_held_up_counts_a_stall(rig):
    """A worker whose CPU is taken away counts a stall and reports the longest (frames a
    guest could not post meanwhile never reach the switch, so no drop counter can show
    it). A real-time task on the worker's CPU for 50 ms takes the CPU: the worker
    (normal scheduling) cannot run until it ends."""
    cd, g = start_pair(rig, daemon={"extra": {"idle_backoff": False}})
    w0 = cd.workers()["worker0"]
    assert w0["longest_stall_us"] < 40_000, w0  # nothing as long before the task runs
    take_cpu(1, 0.05)
    w = cd.workers()["worker0"]
    assert w["stalls"] >= w0["stalls"] + 1, (w0, w)
    assert w["longest_stall_us"] >= 40_000, w
    pmd = cd.ctl("show", "pmd").stdout
    shown = re.search(r"stalls: +(\d+) times held up over 500 us \(CPU taken away\), "
                      r"longest (\d+) us", pmd)
    assert shown and int(shown[1]) >= w["stalls"] and int(shown[2]) >= 40_000, pmd
    # Forwarding goes on after it, every frame.
    g.send(0, BROADCAST, 16)
    wait_for(lambda: g.rx(1) == 16, what="frames after the stall")
