// switch/counters: per-port and per-bridge counters.
//
// Each worker owns its own copy of every counter and is its only writer, so an increment
// is a plain load and store (no locked instruction); readers on other threads (telemetry)
// sum the copies of all workers. Relaxed atomics make those concurrent reads well defined.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace conduit::sw {

class Counter {
  public:
    void add(uint64_t n) {
        value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    uint64_t get() const { return value_.load(std::memory_order_relaxed); }
    // Only while no worker can write it (the port or bridge is gone, after a grace period).
    void reset() { value_.store(0, std::memory_order_relaxed); }

  private:
    std::atomic<uint64_t> value_{0};
};

// Every reason a frame can be dropped is its own counter, counted at the port where the
// frame was dropped: receive-side reasons at the ingress port, transmit-side reasons at
// the port the frame could not be sent to.
#define CONDUIT_PORT_COUNTERS(X)                                                                  \
    X(rx_packets, "frames received")                                                              \
    X(rx_bytes, "bytes received")                                                                 \
    X(tx_packets, "frames transmitted")                                                           \
    X(tx_bytes, "bytes transmitted")                                                              \
    X(drop_rx_nombuf, "receive attempts that found frames waiting but no free mbuf")              \
    X(drop_runt, "frames shorter than an Ethernet header")                                        \
    X(drop_bad_src_mac, "frames whose source MAC is multicast, broadcast or zero")                \
    X(drop_hairpin, "frames whose destination was learned on the port they came from")            \
    X(drop_no_destination, "flooded frames with no other port in their bridge")                   \
    X(drop_tx_port_down, "frames for a port that is not connected or whose link is down")         \
    X(drop_tx_queue_full, "frames the port could not take: its ring was full (not draining)")     \
    X(drop_tx_error, "frames the port refused for another reason (its device rejected them)")     \
    X(drop_tx_too_big, "frames longer than the port's MTU allows (GSO frames: their segments)")   \
    X(drop_tx_offload_failed, "frames not segmented or checksummed for the port: no mbufs")       \
    X(drop_rx_bad_offload, "frames whose checksum or segmentation request cannot be carried out") \
    X(rx_gso, "GSO frames received (TCP frames up to 64 KiB for the switch to segment)")          \
    X(rx_csum_partial, "frames received with a partial checksum, not GSO")                        \
    X(tx_gso_passed, "GSO frames handed whole to the port (its guest or device segments them)")   \
    X(tx_csum_passed, "frames handed on with a partial checksum the port completes")              \
    X(tx_gso_software, "GSO frames segmented by conduitd for the port")                           \
    X(tx_gso_segments, "segments conduitd made of those")                                         \
    X(tx_csum_software, "frames whose checksum conduitd completed for the port")

#define CONDUIT_DECLARE_COUNTER(name, help) Counter name;
#define CONDUIT_COUNTER_MEMBER(name, help) &Self::name,
#define CONDUIT_COUNTER_NAME(name, help) #name,
#define CONDUIT_COUNTER_HELP(name, help) help,

// Each counter struct also lists its members, names and help texts, so readers (sums,
// baselines, metrics) can walk them by position.
struct PortCounters {
    using Self = PortCounters;
    CONDUIT_PORT_COUNTERS(CONDUIT_DECLARE_COUNTER)
    static constexpr Counter Self::*kMembers[] = {CONDUIT_PORT_COUNTERS(CONDUIT_COUNTER_MEMBER)};
    static constexpr const char* kNames[] = {CONDUIT_PORT_COUNTERS(CONDUIT_COUNTER_NAME)};
    static constexpr const char* kHelp[] = {CONDUIT_PORT_COUNTERS(CONDUIT_COUNTER_HELP)};
    static constexpr std::size_t kCount = sizeof kNames / sizeof kNames[0];
};

#define CONDUIT_BRIDGE_COUNTERS(X)                                                \
    X(mac_learned, "MAC entries created by learning")                             \
    X(mac_moved, "MAC entries moved to another port")                             \
    X(mac_learn_table_full, "source MACs not learned because the table was full") \
    X(mac_static_conflict, "frames whose source MAC is static on another port")   \
    X(flooded, "frames flooded (broadcast, multicast, unknown unicast)")          \
    X(unicast_known, "frames forwarded to a learned port")

struct BridgeCounters {
    using Self = BridgeCounters;
    CONDUIT_BRIDGE_COUNTERS(CONDUIT_DECLARE_COUNTER)
    static constexpr Counter Self::*kMembers[] = {CONDUIT_BRIDGE_COUNTERS(CONDUIT_COUNTER_MEMBER)};
    static constexpr const char* kNames[] = {CONDUIT_BRIDGE_COUNTERS(CONDUIT_COUNTER_NAME)};
    static constexpr const char* kHelp[] = {CONDUIT_BRIDGE_COUNTERS(CONDUIT_COUNTER_HELP)};
    static constexpr std::size_t kCount = sizeof kNames / sizeof kNames[0];
};

#undef CONDUIT_DECLARE_COUNTER
#undef CONDUIT_COUNTER_MEMBER
#undef CONDUIT_COUNTER_NAME
#undef CONDUIT_COUNTER_HELP

}  // namespace conduit::sw
