"""Restarts on either side: guests that go away and come back, and a conduitd killed
outright and started again while its client-mode ports' guests wait."""
from rig import wait_for
from test_forwarding import BROADCAST, start_pair


def test_guest_disconnects_and_reconnects(rig):
    cd, g = start_pair(rig)
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="first traffic")
    assert set(cd.fdb("br0")) == {g.macs[0]}

    g.stop()  # both guest NICs go away
    cd.wait_port("g1", "down")
    cd.wait_port("g2", "down")
    assert cd.fdb("br0") == {}, "a disconnected guest's MACs are forgotten"
    cd.assert_mempool_at_baseline()

    g2 = rig.guests(g.sockets).start().wait_ready()  # the same guests come back
    cd.wait_port("g1", "up")
    cd.wait_port("g2", "up")
    g2.send(1, BROADCAST, 8)
    wait_for(lambda: g2.rx(0) == 8, what="broadcast after reconnect")
    g2.send(0, g2.macs[1], 16)
    wait_for(lambda: g2.rx(1) == 16, what="unicast after reconnect")
    assert cd.port("g2")["tx_packets"] == 8 + 16
    assert cd.port("g1")["tx_packets"] == 8


def test_conduitd_killed_and_restarted_while_guests_wait(rig):
    cd, g = start_pair(rig)
    guest_pid = g.proc.pid
    g.send(0, BROADCAST, 8)
    wait_for(lambda: g.rx(1) == 8, what="traffic before the kill")

    cd.kill()  # SIGKILL: no cleanup at all
    # The guests (listening, server=1) keep running and wait.
    assert g.proc.poll() is None

    cd.start(wait_up=("g1", "g2"))  # same config, same file prefix
    assert g.proc.pid == guest_pid and g.proc.poll() is None, "guest was restarted"
    cd.record_baseline()
    g.send(1, BROADCAST, 8)
    wait_for(lambda: g.rx(0) == 8, what="broadcast through the new conduitd")
    g.send(0, g.macs[1], 24)
    wait_for(lambda: g.rx(1) == 8 + 24, what="unicast through the new conduitd")
    # Counters start afresh in the new process.
    assert cd.port("g1")["rx_packets"] == 24 and cd.port("g2")["tx_packets"] == 24
