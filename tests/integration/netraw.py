#!/usr/bin/env python3
"""Raw Ethernet frames on an interface, for the host in a network namespace:

    netraw.py send IFACE DST SRC COUNT      send COUNT 64-byte frames DST <- SRC
    netraw.py count IFACE SRC EXPECT SECS   print how many frames from SRC arrived,
                                            returning once EXPECT arrived or SECS passed
"""
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETHERTYPE = 0x88B5  # IEEE local experimental: nothing in the kernel answers it


def mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def count_from(s, src, limit, deadline):
    """Counts frames from `src` arriving on the wire (not our own transmissions) until
    `limit` of them arrived or `deadline` passed."""
    got = 0
    while (limit is None or got < limit) and time.monotonic() < deadline:
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            continue
        if addr[2] != socket.PACKET_OUTGOING and data[6:12] == src:
            got += 1
    return got


def main():
    cmd, iface = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    if cmd == "send":
        dst, src, count = mac(sys.argv[3]), mac(sys.argv[4]), int(sys.argv[5])
        frame = dst + src + struct.pack("!H", ETHERTYPE)
        for i in range(count):
            s.send((frame + struct.pack("!I", i)).ljust(64, b"\0"))
        return 0
    if cmd == "count":
        src, expect, secs = mac(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        s.settimeout(0.1)
        print("ready", flush=True)
        got = count_from(s, src, expect, time.monotonic() + secs)
        # Linger briefly: a frame beyond the expected count is a failure too.
        got += count_from(s, src, None, time.monotonic() + 0.3)
        print(got, flush=True)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
