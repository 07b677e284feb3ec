#!/usr/bin/env python3
"""Writes the seed corpus of the vhost_user fuzz target (tests/fuzz/corpus/vhost_user/):
complete, valid backend reply streams for the sessions vhost_user_fuzz.cpp runs, plus a
few well-known failures. Format: see the header of vhost_user_fuzz.cpp.

Usage: tests/fuzz/vhost_user_corpus.py  (rewrites the directory)
"""
import pathlib
import struct

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "vhost_user"

GET_FEATURES, GET_VRING_BASE, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM = 1, 11, 15, 17
SET_FEATURES, SET_MEM_TABLE, SET_VRING_NUM, SET_VRING_ADDR = 2, 5, 8, 9
SET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ENABLE, NET_SET_MTU = 10, 12, 13, 18, 20
REPLY = 0x1 | 0x4

VERSION_1, PROTOCOL_FEATURES, MRG_RXBUF, MTU, MQ, STATUS = 1 << 32, 1 << 30, 1 << 15, 1 << 3, 1 << 22, 1 << 16
P_MQ, P_REPLY_ACK, P_NET_MTU = 1 << 0, 1 << 3, 1 << 4
DPDK_FEATURES = VERSION_1 | PROTOCOL_FEATURES | MRG_RXBUF | MTU | MQ | (1 << 29) | (1 << 34)
DPDK_PROTOCOL = P_MQ | (1 << 1) | (1 << 2) | P_REPLY_ACK | P_NET_MTU | (1 << 5) | (1 << 16)


def msg(request, payload=b"", flags=REPLY):
    return struct.pack("<III", request, flags, len(payload)) + payload


def u64(request, value):
    return msg(request, struct.pack("<Q", value))


def state(request, index, num):
    return msg(request, struct.pack("<II", index, num))


def chunk(data, fds=0):
    return struct.pack("<BH", fds, len(data)) + data


def session(mode, features, protocol, queues=1, acks=True, nack=None, base=5):
    """The replies of a whole session, one chunk each, for the card `mode` selects."""
    pairs = 2 if mode & 1 else 1
    out = [u64(GET_FEATURES, features)]
    if features & PROTOCOL_FEATURES:
        out.append(u64(GET_PROTOCOL_FEATURES, protocol))
        agreed = protocol & (P_REPLY_ACK | (P_MQ if (mode & 4 or pairs > 1) else 0) |
                             (P_NET_MTU if mode & 2 else 0))
        if agreed & P_MQ:
            out.append(u64(GET_QUEUE_NUM, queues))
    else:
        agreed = 0
    acked_requests = [SET_FEATURES, SET_MEM_TABLE]
    if mode & 2 and agreed & P_NET_MTU:
        acked_requests.append(NET_SET_MTU)
    for _ in range(2 * pairs):
        acked_requests += [SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, SET_VRING_KICK,
                           SET_VRING_CALL]
    if features & PROTOCOL_FEATURES:
        acked_requests += [SET_VRING_ENABLE] * (2 * pairs)
    if agreed & P_REPLY_ACK and acks:
        for r in acked_requests:
            out.append(u64(r, 1 if r == nack else 0))
            if r == nack:
                return out
    else:
        out.append(u64(GET_FEATURES, features))  # the barrier without REPLY_ACK
    if features & PROTOCOL_FEATURES and agreed & P_REPLY_ACK:
        out += [u64(SET_VRING_ENABLE, 0)] * (2 * pairs)
    for i in range(2 * pairs):
        out.append(state(GET_VRING_BASE, i, base + i))
    return out


def seed(name, mode, replies, fds=None):
    fds = fds or {}
    data = bytes([mode]) + b"".join(chunk(r, fds.get(i, 0)) for i, r in enumerate(replies))
    (OUT / name).write_bytes(data)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    seed("dpdk-mtu-mq", 0x6, session(0x6, DPDK_FEATURES, DPDK_PROTOCOL))
    seed("dpdk-plain", 0x0, session(0x0, DPDK_FEATURES, DPDK_PROTOCOL))
    seed("dpdk-two-pairs", 0x5, session(0x5, DPDK_FEATURES, DPDK_PROTOCOL, queues=2))
    seed("legacy-no-protocol", 0x2, session(0x2, VERSION_1 | MRG_RXBUF, 0))
    seed("no-reply-ack", 0x0, session(0x0, DPDK_FEATURES, P_MQ))
    seed("nack-mem-table", 0x0, session(0x0, DPDK_FEATURES, DPDK_PROTOCOL, nack=SET_MEM_TABLE))
    seed("acked-missing", 0x8, session(0x8, DPDK_FEATURES & ~MRG_RXBUF, DPDK_PROTOCOL))
    seed("fds-on-reply", 0x0, session(0x0, DPDK_FEATURES, DPDK_PROTOCOL), fds={1: 2})
    seed("no-version-1", 0x0, [u64(GET_FEATURES, PROTOCOL_FEATURES | MRG_RXBUF)])
    # The replies of one session, each split across two writes.
    split = []
    for r in session(0x0, DPDK_FEATURES, DPDK_PROTOCOL):
        split += [r[:5], r[5:]]
    seed("split-writes", 0x0, split)
    print(f"wrote {len(list(OUT.iterdir()))} seeds to {OUT}")


if __name__ == "__main__":
    main()
