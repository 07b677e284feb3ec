"""Real Linux guests: two QEMU VMs (stock Debian kernel, virtio-net over vhost-user)
and a kernel host in a network namespace ping each other through conduitd."""
import rig as rigmod
from rig import wait_for

VM_IPS = {"vm1": "10.9.0.1", "vm2": "10.9.0.2"}
HOST_IP = "10.9.0.100"


def test_two_linux_guests_and_a_host_ping_each_other(rig):
    kernel, initrd = rigmod.guest_initramfs(rig.workdir)
    host = rig.host(ip=f"{HOST_IP}/24").start()
    socks = {name: rig.sock(name) for name in VM_IPS}
    cd = rig.conduitd([{"name": "br0", "ports": [
        {"name": "vm1", "type": "vhost-user", "socket": socks["vm1"]},
        {"name": "vm2", "type": "vhost-user", "socket": socks["vm2"]},
        {"name": "uplink", "type": "ethdev", "devargs": f"net_af_packet0,iface={host.root_if}"},
    ]}]).start()
    vms = {}
    for i, (name, ip) in enumerate(VM_IPS.items()):
        peers = [p for n, p in VM_IPS.items() if n != name] + [HOST_IP]
        vm = rigmod.LinuxGuest(rig.workdir, name, socks[name], f"52:54:00:00:09:0{i + 1}",
                               f"{ip}/24", peers, kernel, initrd)
        rig.started.append(vm)
        vms[name] = vm.start()
    cd.wait_port("vm1", "up", timeout=60)
    cd.wait_port("vm2", "up", timeout=60)
    cd.record_baseline()

    for name, vm in vms.items():
        wait_for(lambda vm=vm: vm._alive() and "GUEST-DONE" in vm.output(), timeout=240,
                 interval=1, what=f"{name} to finish pinging ({vm.output()[-300:]!r})")
    for name, vm in vms.items():
        out = vm.output()
        for peer in [p for n, p in VM_IPS.items() if n != name] + [HOST_IP]:
            assert f"PING-OK {peer}" in out, f"{name} could not ping {peer}:\n{out}"

    for ip in VM_IPS.values():
        r = host.run("busybox", "ping", "-c", "3", "-W", "3", ip, check=False)
        assert r.returncode == 0, f"host could not ping {ip}:\n{r.stdout}{r.stderr}"

    ports = cd.all_ports()
    for name in ("vm1", "vm2", "uplink"):
        assert ports[name]["rx_packets"] > 0 and ports[name]["tx_packets"] > 0, ports[name]
    assert set(cd.fdb("br0").values()) == {"vm1", "vm2", "uplink"}
