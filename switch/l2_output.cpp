// l2_output: queue each frame on its output port, replicating flooded frames by
// reference count, and hand full queues to the port's transmitter.
#include <rte_mbuf.h>

#include "switch/forwarding.h"

namespace conduit::sw {

void OutputQueues::add(PortIndex port, rte_mbuf* m, TxSink& sink) {
    Queue& q = queues_[port];
    if (q.count == 0) {
        pending_[pending_count_++] = port;
    }
    q.pkts[q.count++] = m;
    if (q.count == kBurstSize) {
        sink.transmit(port, q.pkts, q.count);
        q.count = 0;  // stays in pending_; flush skips empty queues
    }
}

void OutputQueues::flush(TxSink& sink) {
    for (uint16_t i = 0; i < pending_count_; ++i) {
        Queue& q = queues_[pending_[i]];
        if (q.count != 0) {
            sink.transmit(pending_[i], q.pkts, q.count);
            q.count = 0;
        }
    }
    pending_count_ = 0;
}

void l2_output(PacketVector& v, OutputQueues& queues, TxSink& sink,
               PortCounters& ingress_counters) {
    const std::vector<PortIndex>& members = v.bridge->ports;
    // Every member but the ingress port gets a copy of a flooded frame.
    const uint16_t flood_copies = static_cast<uint16_t>(members.size() - 1);
    for (uint16_t i = 0; i < v.count; ++i) {
        rte_mbuf* m = v.pkt[i];
        if (v.out[i] != kFlood) {
            queues.add(v.out[i], m, sink);
            continue;
        }
        if (flood_copies == 0) {
            ingress_counters.drop_no_destination.add(1);
            rte_pktmbuf_free(m);
            continue;
        }
        // Each output consumes one reference; the frame's data is shared, not copied.
        // Every segment of a chained (jumbo or GSO) frame takes the references: freeing
        // a chain drops one reference from each of its segments.
        if (flood_copies > 1) {
            rte_pktmbuf_refcnt_update(m, static_cast<int16_t>(flood_copies - 1));
        }
        for (const PortIndex port : members) {
            if (port != v.ingress) {
                queues.add(port, m, sink);
            }
        }
    }
}

void Forwarder::process(const ForwardingState& state, PortIndex ingress, rte_mbuf** pkts,
                        uint16_t count, uint64_t now_ms) {
    PortCounters& in = counters_.ports[ingress];
    const uint16_t bridge_id = state.bridge_of_port[ingress];
    if (bridge_id == ForwardingState::kNoBridge) {
        // A port being removed: its frames have nowhere to go.
        in.rx_packets.add(count);
        in.drop_no_destination.add(count);
        rte_pktmbuf_free_bulk(pkts, count);
        return;
    }
    vec_.ingress = ingress;
    vec_.bridge = &state.bridges[bridge_id];
    vec_.count = count;
    for (uint16_t i = 0; i < count; ++i) {
        vec_.pkt[i] = pkts[i];
    }
    BridgeCounters& bc = counters_.bridges[bridge_id];
    l2_input(vec_, in);
    l2_learn(vec_, now_ms, bc);
    l2_fwd(vec_, now_ms, in, bc);
    l2_output(vec_, queues_, sink_, in);
    queues_.flush(sink_);
}

}  // namespace conduit::sw
