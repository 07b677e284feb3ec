// switch/forwarding: the L2 bridge applied to one received burst.
//
// A burst moves through small stages, each over the whole vector, in the manner of
// VPP's L2 path: l2_input (parse, validate), l2_learn (source MACs), l2_fwd (destination
// lookup), then l2_output, which floods or queues each frame per output port and hands
// full or finished queues to the TxSink. Nothing here allocates, locks or calls the kernel.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "switch/counters.h"
#include "switch/mac_table.h"
#include "switch/types.h"

struct rte_mbuf;

namespace conduit::sw {

// One bridge as the datapath sees it: its table and its flood list.
struct BridgeView {
    uint16_t id = 0;
    MacTable* fdb = nullptr;
    std::vector<PortIndex> ports;
};

// The forwarding configuration, published as a whole and read by workers without locks
// (the dataplane swaps it under RCU). Immutable once published.
struct ForwardingState {
    static constexpr uint16_t kNoBridge = 0xffff;
    std::vector<BridgeView> bridges;
    std::array<uint16_t, kMaxPorts> bridge_of_port;

    ForwardingState() { bridge_of_port.fill(kNoBridge); }
};

// Sends frames out of a port. Takes one reference to each mbuf whether it sends it or
// not, and counts what it sent and why it dropped the rest.
class TxSink {
  public:
    virtual void transmit(PortIndex port, rte_mbuf** pkts, uint16_t count) = 0;

  protected:
    ~TxSink() = default;
};

// Per-worker counter storage: one PortCounters per port index, one BridgeCounters per bridge.
struct WorkerCounters {
    std::array<PortCounters, kMaxPorts> ports;
    std::array<BridgeCounters, 256> bridges;
};

// Marks in PacketVector::out besides a port index.
inline constexpr PortIndex kFlood = 0xfffe;

// A burst on its way through the stages. Dropped frames are freed and removed from the
// vector by the stage that drops them, so later stages see only live frames.
struct PacketVector {
    PortIndex ingress = kInvalidPort;
    const BridgeView* bridge = nullptr;
    uint16_t count = 0;
    rte_mbuf* pkt[kBurstSize];
    Mac dst[kBurstSize];
    Mac src[kBurstSize];
    PortIndex out[kBurstSize];
};

void l2_input(PacketVector& v, PortCounters& ingress_counters);
void l2_learn(PacketVector& v, uint64_t now_ms, BridgeCounters& counters);
void l2_fwd(PacketVector& v, uint64_t now_ms, PortCounters& ingress_counters,
            BridgeCounters& bridge_counters);

// Per-port transmit queues of one worker, filled by l2_output and flushed to the sink.
class OutputQueues {
  public:
    void add(PortIndex port, rte_mbuf* m, TxSink& sink);
    void flush(TxSink& sink);

  private:
    struct Queue {
        uint16_t count = 0;
        rte_mbuf* pkts[kBurstSize];
    };
    std::array<Queue, kMaxPorts> queues_{};
    std::array<PortIndex, kMaxPorts> pending_{};
    uint16_t pending_count_ = 0;
};

void l2_output(PacketVector& v, OutputQueues& queues, TxSink& sink, PortCounters& ingress_counters);

// Runs the stages for one burst received on `ingress`. Owns nothing but its queues;
// one per worker.
class Forwarder {
  public:
    Forwarder(TxSink& sink, WorkerCounters& counters) : sink_(sink), counters_(counters) {}

    // Takes ownership of the mbufs: each is sent, queued or freed.
    void process(const ForwardingState& state, PortIndex ingress, rte_mbuf** pkts, uint16_t count,
                 uint64_t now_ms);

  private:
    TxSink& sink_;
    WorkerCounters& counters_;
    OutputQueues queues_;
    PacketVector vec_;
};

}  // namespace conduit::sw
