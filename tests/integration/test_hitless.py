"""Hitless reconfiguration: two guests exchange numbered frames at a fixed rate of more
than 100,000 frames per second each way while 100 ports are added to and removed from
their bridge (8 of them with a guest connected and sending) and a config is applied.
The pair loses no frame: the pacer counts every numbered frame back, in order, and
conduitd's counters for the pair show every frame received and delivered, no drop."""
import time

import rig as rigmod
from rig import wait_for

RATE = 110_000  # frames per second, each direction
PAIR_MACS = ["02:00:00:00:01:01", "02:00:00:00:01:02"]
CHURN_GUESTS = 8
CHURN_MACS = [f"02:00:00:00:02:{i + 1:02x}" for i in range(CHURN_GUESTS)]


def vport(name, sock):
    return {"name": name, "type": "vhost-user", "socket": str(sock)}


def test_pair_loses_nothing_while_100_ports_come_and_go_and_a_config_is_applied(rig):
    # Everything the test starts (conduitctl, guests, conduitd's control thread) runs on
    # CPU 0; CPU 1 is conduitd's worker's, as a deployment would dedicate it.
    with rigmod.only_cpus({0}):
        run_hitless(rig)


def run_hitless(rig):
    pair_socks = [rig.sock("g1"), rig.sock("g2")]
    cd = rig.conduitd([{"name": "br0", "ports": [vport("g1", pair_socks[0]),
                                                 vport("g2", pair_socks[1])]}],
                      mbufs=16383, extra={"memory_mb": 256}).start()
    # The pair: each guest sends to the other at RATE, numbered; woken on time (SCHED_FIFO,
    # asleep between bursts) on the CPU it shares with conduitd's control thread. Rings of
    # 8192 frames (74 ms at RATE) absorb what this shared virtual machine does to the
    # guests' or the worker's CPU time (its kernel does not preempt; its vCPUs are
    # themselves scheduled); frames lost for any other reason still show.
    pair = rig.pacer(pair_socks, PAIR_MACS,
                     [(0, PAIR_MACS[1], RATE), (1, PAIR_MACS[0], RATE)],
                     prefix="itest-pair", realtime=True, wait_for_go=True, ring=8192).start()
    pair.wait_running()
    cd.wait_port("g1", "up")
    cd.wait_port("g2", "up")
    pair.go()  # both ends are up: from the first frame on, every frame counts
    # Both MACs learned: from here on the pair's frames are known unicast.
    wait_for(lambda: set(cd.fdb("br0")) == set(PAIR_MACS), what="the pair learned")
    cd.record_baseline()

    # Guests on 8 of the 100 ports: they listen, and connect once their port exists.
    churn_socks = [rig.sock(f"c{i}") for i in range(CHURN_GUESTS)]
    churn_flows = [(i, CHURN_MACS[i ^ 1], 2000) for i in range(CHURN_GUESTS)]
    churn = rig.pacer(churn_socks, CHURN_MACS, churn_flows, prefix="itest-churn",
                      flow_base=100, best_effort=True).start()
    names = [f"p{i}" for i in range(100)]
    socket_of = {n: (churn_socks[i] if i < CHURN_GUESTS else rig.sock(f"x{i}"))
                 for i, n in enumerate(names)}
    started = time.monotonic()

    # 1. Add the 100 ports, one command each; the guests on the first 8 connect and send.
    for n in names:
        cd.ctl("add-port", "br0", n, "--socket", socket_of[n])
    churn.wait_running()
    wait_for(lambda: all(f["received"] > 0 for f in churn.status()["flows"]), timeout=30,
             what="the churn guests sending through the switch")
    assert len(cd.call("port.list")) == 102

    # 2. Apply a config: br0 ages faster and loses half of the 100 ports, a new bridge
    #    with two ports appears; g1 and g2 are listed unchanged.
    kept = names[:50]
    config = dict(cd.config)
    config["bridges"] = [
        {"name": "br0", "mac_aging": 120,
         "ports": [vport("g1", pair_socks[0]), vport("g2", pair_socks[1])] +
                  [vport(n, socket_of[n]) for n in kept]},
        {"name": "br1", "ports": [vport("q1", rig.sock("q1")), vport("q2", rig.sock("q2"))]},
    ]
    new_config = rig.workdir / "applied.yaml"
    new_config.write_text(rigmod.yaml_of(config) + "\n")
    dry = cd.ctl("apply", "--dry-run", new_config).stdout
    assert dry.count("- port br0/p") == 50 and "+ bridge br1" in dry and "g1" not in dry, dry
    out = cd.ctl("apply", new_config).stdout
    assert "~ bridge br0: mac_aging 300s" in out, out
    assert {p["name"] for p in cd.call("port.list")} == {"g1", "g2", "q1", "q2", *kept}

    # 3. Remove the other 50, 8 of them with their guests still sending.
    for n in kept:
        cd.ctl("del-port", n)
    assert churn.status()["flows"][0]["sent"] > 0
    cd.ctl("del-bridge", "br1")
    churn_time = time.monotonic() - started
    time.sleep(0.5)  # the pair keeps going after the last change

    final = pair.finish()
    churn.stop()
    f0, f1 = final["flows"]
    elapsed = time.monotonic() - started
    print(f"pair: {f0['sent']} + {f1['sent']} frames in ~{elapsed:.1f}s "
          f"(changes took {churn_time:.1f}s); foreign frames at the pair: {final['foreign']}")
    print("pacer:", final)
    # Zero loss, in order, counted by the receiving guests.
    for f in (f0, f1):
        assert f["received"] == f["sent"] and f["out_of_order"] == 0 and f["tx_dropped"] == 0, final
    # The rate held: the pacer sends what is due (late frames go out later, never dropped),
    # so the average over the whole run is the configured rate.
    for f in (f0, f1):
        assert f["sent"] >= 100_000 * churn_time, (f, churn_time)
    # conduitd's own counters say the same: every frame of the pair in and out, no drop.
    g1, g2 = cd.port("g1"), cd.port("g2")
    assert g1["rx_packets"] == f0["sent"] and g2["rx_packets"] == f1["sent"], (g1, g2)
    assert g2["tx_packets"] == final["ports"][1]["rx"], (g2, final)
    assert g1["tx_packets"] == final["ports"][0]["rx"], (g1, final)
    for p in (g1, g2):
        assert all(v == 0 for k, v in p.items() if k.startswith("drop_")), p
    # The mempool returns to its baseline (checked by the fixture) once the pair is gone.
    wait_for(lambda: cd.port("g1")["state"] == "down", what="the pair disconnected")
