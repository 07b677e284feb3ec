# Init of the conduit-vmm network test guests (busybox). Settings come from the kernel
# command line:
#   conduit.role=server|client   conduit.if0=IP/LEN[,PEER]   conduit.if1=...
#   conduit.mtu1500=1            (client: also transfer over eth0 at MTU 1500)
#   conduit.restart=1            (client: a long ping for the switch-restart window)
# Every result is one line starting with a keyword the test parses.
arg() { sed -n "s/.*conduit\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
role=$(arg role)
echo "BOOT-ID $(cat /proc/sys/kernel/random/boot_id)"
n=0
for iface in $(ls /sys/class/net | grep eth | sort); do
    spec=$(arg if$n); addr=${spec%%,*}
    ip link set "$iface" up
    ip addr add "$addr" dev "$iface"
    echo "IFACE $iface $(cat /sys/class/net/$iface/address) mtu=$(cat /sys/class/net/$iface/mtu) addr=$addr"
    n=$((n + 1))
done
# Carrier transitions with the guest's monotonic time, for the restart test.
(
    last=""
    while :; do
        state=""
        for c in /sys/class/net/eth*/carrier; do state="$state$(cat $c 2>/dev/null || echo x)"; done
        if [ "$state" != "$last" ]; then echo "CARRIER $state $(cut -d' ' -f1 /proc/uptime)"; last=$state; fi
        sleep 0.1
    done
) &

if [ "$role" = server ]; then
    dd if=/dev/urandom of=/tmp/payload bs=1M count=4 2>/dev/null
    echo "SERVE-SHA $(sha256sum /tmp/payload | cut -d' ' -f1)"
    nc -ll -p 5001 -e cat /tmp/payload &
    # nc -e gives the program the socket as stdout: the line goes to the console itself.
    printf '#!/bin/sh\necho "BOOT-ID-END $(cat /proc/sys/kernel/random/boot_id)" >/dev/console\npoweroff -f\n' > /bin/bye
    chmod +x /bin/bye
    echo "SERVER-READY"
    nc -l -p 5999 -e /bin/bye
    sleep 1000
fi

# Client: reach the peer on every card, then the transfers, then the restart window.
peer() { arg if$1 | cut -d, -f2; }
for i in 0 1; do
    p=$(peer $i); [ -n "$p" ] || continue
    ok=0
    for t in $(seq 1 60); do
        if ping -c 1 -W 1 "$p" >/dev/null 2>&1; then ok=1; break; fi
    done
    echo "REACH if$i $p $ok"
    eval "reached$i=$ok"
done
fetch() {  # NAME PEER
    start=$(cut -d' ' -f1 /proc/uptime)
    for t in 1 2; do
        if timeout 120 nc "$2" 5001 > /tmp/got; then break; fi
        sleep 1
    done
    end=$(cut -d' ' -f1 /proc/uptime)
    echo "XFER $1 $(sha256sum /tmp/got | cut -d' ' -f1) $(wc -c < /tmp/got) $start $end"
}
p0=$(peer 0); p1=$(peer 1)
# A card that did not reach its peer is not tried again: the result is already known
# and the test should fail in minutes, not after every timeout.
[ "${reached0:-0}" = 1 ] || p0=""
[ "${reached1:-0}" = 1 ] || p1=""
if [ -n "$p0" ]; then
    ping -c 3 -s 8000 "$p0" > /tmp/big 2>&1 && echo "BIG-PING ok" || echo "BIG-PING failed $(tail -1 /tmp/big)"
    fetch if0-mtu$(cat /sys/class/net/eth0/mtu) "$p0"
    if [ "$(arg mtu1500)" = 1 ]; then
        ip link set eth0 mtu 1500
        fetch if0-mtu1500 "$p0"
    fi
fi
[ -n "$p1" ] && fetch if1-mtu$(cat /sys/class/net/eth1/mtu) "$p1"
if [ "$(arg restart)" = 1 ] && [ -n "$p0" ]; then
    echo "RESTART-WINDOW-OPEN"
    ping -i 0.2 -c 200 -W 1 "$p0" > /tmp/longping 2>&1
    echo "LONG-PING $(grep transmitted /tmp/longping)"
    # After the window: the peer is reachable again on every card.
    for i in 0 1; do
        p=$(peer $i); [ -n "$p" ] || continue
        ping -c 2 -W 2 "$p" >/dev/null 2>&1 && echo "REACH-AFTER if$i 1" || echo "REACH-AFTER if$i 0"
    done
fi
echo "BOOT-ID-END $(cat /proc/sys/kernel/random/boot_id)"
# Tell the server to power off (it cannot close the connection first: it is gone).
[ -n "$p0" ] && timeout 5 nc -w 5 "$p0" 5999 </dev/null >/dev/null 2>&1
echo "CLIENT-DONE"
poweroff -f
