#!/usr/bin/env bash
# The demo: conduitd on configs/default.yaml with two guests and a host on the uplink.
#
#  - guests vm1 and vm2: one dpdk-testpmd process holding two virtio-user NICs that
#    listen on /run/conduit/vm{1,2}.sock (server=1) and answer ARP and ping (icmpecho);
#  - the host: a network namespace at the end of the veth pair whose root end,
#    conduit-up0, is conduitd's uplink (net_af_packet);
#  - traffic: the guests send to each other (learning, known unicast), the host pings
#    through the switch; conduitctl shows the ports, the MAC table and the workers, and
#    adds and removes a port while the guests run.
# Everything it starts is stopped and removed on exit.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/build/conduit-env.sh"
conduitd=$top/build/release/control/conduitd
config=$top/configs/default.yaml
ctl="$top/build/release/control/conduitctl --socket /run/conduit/conduitd.sock"
work=$(mktemp -d /tmp/conduit-demo.XXXXXX)
ns=conduit-demo
guest_pid="" conduitd_pid=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
    set +e
    [ -n "$conduitd_pid" ] && kill -TERM "$conduitd_pid" 2>/dev/null && wait "$conduitd_pid" 2>/dev/null
    exec 3>&- 2>/dev/null
    [ -n "$guest_pid" ] && { kill -TERM "$guest_pid" 2>/dev/null; wait "$guest_pid" 2>/dev/null; }
    ip netns del "$ns" 2>/dev/null
    ip link del conduit-up0 2>/dev/null
    rm -f /dev/hugepages/demo-guestsmap_* /run/conduit/vm1.sock /run/conduit/vm2.sock
    rm -rf /var/run/dpdk/demo-guests "$work"
}
trap cleanup EXIT

# Leftovers of an interrupted run would make the new one fail in confusing ways.
pkill -f "file-prefix=demo-guests" 2>/dev/null || true
pkill -f "conduitd --config $config" 2>/dev/null || true
ip netns del "$ns" 2>/dev/null || true
ip link del conduit-up0 2>/dev/null || true
mkdir -p /run/conduit

say "host: namespace $ns, 10.0.0.100/24 on the wire end of veth conduit-up0"
ip netns add "$ns"
ip link add conduit-up0 type veth peer name eth0 netns "$ns"
for cmd in "sysctl -qw net.ipv6.conf.conduit-up0.disable_ipv6=1" "ip link set conduit-up0 up"; do $cmd; done
ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
ip netns exec "$ns" ip addr add 10.0.0.100/24 dev eth0
ip netns exec "$ns" ip link set eth0 up
ip netns exec "$ns" ip link set lo up

say "conduitd --config configs/default.yaml (connects to each guest, retrying until it listens)"
"$conduitd" --config "$config" >"$work/conduitd.log" 2>&1 &
conduitd_pid=$!
say "guests: vm1 52:54:00:00:00:01, vm2 52:54:00:00:00:02 (testpmd virtio-user, listening)"
mem=(--single-file-segments -m 256)
[ "${CONDUIT_HUGEPAGES:-1}" = 1 ] || mem=(--no-huge -m 256)
rm -f /run/conduit/vm1.sock /run/conduit/vm2.sock  # left by a killed run, bind() would fail
mkfifo "$work/guest.in"
# Guests poll on CPU 0; conduitd's worker owns CPU 1.
dpdk-testpmd --file-prefix=demo-guests --no-pci "${mem[@]}" --lcores 0@0,1@0 \
    --vdev net_virtio_user0,path=/run/conduit/vm1.sock,server=1,queues=1,mac=52:54:00:00:00:01 \
    --vdev net_virtio_user1,path=/run/conduit/vm2.sock,server=1,queues=1,mac=52:54:00:00:00:02 \
    -- -i --total-num-mbufs=2048 --forward-mode=icmpecho --port-topology=loop \
    <"$work/guest.in" >"$work/guests.log" 2>&1 &
guest_pid=$!
exec 3>"$work/guest.in"

up=0
for _ in $(seq 100); do
    if $ctl --json show ports 2>/dev/null | grep -c '"state": "up"' | grep -q '^3$'; then up=1; break; fi
    kill -0 "$conduitd_pid" 2>/dev/null || break
    sleep 0.2
done
cat "$work/conduitd.log"
[ "$up" = 1 ] || { cat "$work/guests.log"; echo "demo: ports did not come up" >&2; $ctl show ports || true; exit 1; }

say "guests send 128 frames to each other (4 bursts of 32)"
echo "set eth-peer 0 52:54:00:00:00:02" >&3
echo "set eth-peer 1 52:54:00:00:00:01" >&3
echo "start tx_first 4" >&3
sleep 2

say "host pings the guests through the uplink"
ip netns exec "$ns" busybox ping -c 5 -i 0.2 -W 2 10.0.0.1 || true

say "conduitctl show ports"
$ctl show ports
say "conduitctl show fdb br0"
$ctl show fdb br0
say "conduitctl show pmd (per worker: busy and idle cycles, cycles per packet)"
$ctl show pmd
say "a port added and removed while the guests run (conduitctl add-port, del-port)"
$ctl add-port br0 vm3 --socket /run/conduit/vm3.sock
$ctl show bridges
$ctl del-port vm3
$ctl show mempool

echo "stop" >&3
echo "quit" >&3
say "summary"
$ctl --json show stats | /usr/bin/python3 -c '
import json, sys
p = json.load(sys.stdin)["ports"]
total = sum(v["rx_packets"] for v in p.values())
drops = sum(v2 for v in p.values() for k, v2 in v.items() if k.startswith("drop_"))
print(f"conduitd forwarded {total} frames among {len(p)} ports; {drops} dropped (each reason counted)")
'
