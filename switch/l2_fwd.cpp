// l2_fwd: choose each frame's output: a learned port, or the bridge's flood list.
#include <rte_mbuf.h>

#include "switch/forwarding.h"

namespace conduit::sw {

void l2_fwd(PacketVector& v, uint64_t now_ms, PortCounters& ingress_counters,
            BridgeCounters& bridge_counters) {
    const MacTable& fdb = *v.bridge->fdb;
    uint16_t kept = 0;
    uint64_t known = 0;
    rte_mbuf* hairpin[kBurstSize];
    uint16_t hairpin_count = 0;
    Mac previous_dst = 0;
    PortIndex previous_out = kFlood;
    for (uint16_t i = 0; i < v.count; ++i) {
        const Mac dst = v.dst[i];
        PortIndex out;
        if (mac_is_group(dst)) {
            out = kFlood;  // broadcast and multicast
        } else if (dst == previous_dst) {
            out = previous_out;
        } else {
            const PortIndex learned = fdb.lookup(dst, now_ms);
            out = learned == kInvalidPort ? kFlood : learned;
            previous_dst = dst;
            previous_out = out;
        }
        if (out == v.ingress) {
            // The destination sits behind the port the frame came in on: the segment
            // there already delivered it, and sending it back would duplicate it.
            hairpin[hairpin_count++] = v.pkt[i];
            continue;
        }
        known += out != kFlood;
        v.pkt[kept] = v.pkt[i];
        v.dst[kept] = dst;
        v.src[kept] = v.src[i];
        v.out[kept] = out;
        ++kept;
    }
    if (hairpin_count != 0) {
        ingress_counters.drop_hairpin.add(hairpin_count);
        rte_pktmbuf_free_bulk(hairpin, hairpin_count);
    }
    bridge_counters.unicast_known.add(known);
    bridge_counters.flooded.add(kept - known);
    v.count = kept;
}

}  // namespace conduit::sw
