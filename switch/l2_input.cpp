// l2_input: count what arrived, parse the Ethernet addresses, drop what no bridge may forward.
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "switch/forwarding.h"

namespace conduit::sw {

namespace {
constexpr uint16_t kEthHeaderLen = 14;
}

void l2_input(PacketVector& v, PortCounters& ingress_counters) {
    uint64_t bytes = 0;
    uint16_t kept = 0;
    uint16_t runts = 0;
    uint16_t bad_src = 0;
    rte_mbuf* dropped[kBurstSize];
    uint16_t dropped_count = 0;

    for (uint16_t i = 0; i < v.count; ++i) {
        if (i + 1 < v.count) {
            rte_prefetch0(rte_pktmbuf_mtod(v.pkt[i + 1], void*));
        }
        rte_mbuf* m = v.pkt[i];
        bytes += rte_pktmbuf_pkt_len(m);
        if (rte_pktmbuf_data_len(m) < kEthHeaderLen) {
            ++runts;
            dropped[dropped_count++] = m;
            continue;
        }
        const auto* eth = rte_pktmbuf_mtod(m, const uint8_t*);
        const Mac dst = mac_from_bytes(eth);
        const Mac src = mac_from_bytes(eth + 6);
        // A source address must name one station: group and all-zero sources are
        // invalid (IEEE 802.3 4.2.3.1.2) and would poison the MAC table.
        if (mac_is_group(src) || src == 0) {
            ++bad_src;
            dropped[dropped_count++] = m;
            continue;
        }
        v.pkt[kept] = m;
        v.dst[kept] = dst;
        v.src[kept] = src;
        ++kept;
    }
    ingress_counters.rx_packets.add(v.count);
    ingress_counters.rx_bytes.add(bytes);
    if (dropped_count != 0) {
        ingress_counters.drop_runt.add(runts);
        ingress_counters.drop_bad_src_mac.add(bad_src);
        rte_pktmbuf_free_bulk(dropped, dropped_count);
    }
    v.count = kept;
}

}  // namespace conduit::sw
