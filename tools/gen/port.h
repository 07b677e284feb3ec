// tools/gen/port: conduit-gen's ports. Each is one DPDK ethdev: a guest NIC
// (virtio-user, listening or connecting), the wire (net_memif, net_af_packet,
// net_af_xdp), an in-process loopback ring, or any devargs. They are probed after the
// EAL is up, one at a time, on a helper thread so that a port that never comes up (a
// listening virtio-user port that no switch connects to blocks inside DPDK's probe) is
// reported by name instead of hanging the generator.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tools/gen/frame.h"

struct rte_mempool;

namespace conduit::gen {

// kGuest: a guest NIC of conduit-gen's own (tools/gen/vnic, virtio driver=native);
// kVirtio: DPDK's virtio-user PMD (driver=dpdk). kNativeMemif: a memif NIC of its own
// (tools/gen/memif, memif driver=native); kMemif: DPDK's net_memif (driver=dpdk).
enum class PortKind { kGuest, kVirtio, kNativeMemif, kMemif, kAfPacket, kAfXdp, kRing, kDevargs };

// A port whose NIC is conduit-gen's own (tools/gen/nic.h), not a DPDK ethdev.
inline bool is_native(PortKind kind) {
    return kind == PortKind::kGuest || kind == PortKind::kNativeMemif;
}

// Queues a port may open each way (each receive queue is polled on every round).
inline constexpr uint16_t kMaxPortQueues = 8;

struct PortSpec {
    std::string name;
    PortKind kind = PortKind::kRing;
    std::string devargs;      // what DPDK probes
    std::string description;  // for messages: "virtio-user listening on /run/g1.sock"
    std::string socket;       // virtio-user path or memif socket
    bool listens = false;     // virtio-user server=1 / memif role=server
    int vlan = -1;            // 802.1Q tag on every frame this port sends, or none
    uint16_t rx_descriptors = 1024;
    uint16_t tx_descriptors = 1024;
    // Receive queues, all polled in turn, and transmit queues, of which only the first is
    // sent on (so that a stream's frames never overtake each other inside the peer).
    // A peer may send on a queue other than 0: OVS-DPDK's PMD thread sends to a DPDK
    // port on queue 1 (queue 0 is its main thread's), a multi-worker conduitd on one
    // queue per worker. A memif client sets its link's ring counts, and its server
    // refuses more client transmit queues than it has receive queues: rxq=N asks for N
    // receive queues and keeps one transmit queue.
    uint16_t rx_queues = 1;
    uint16_t tx_queues = 1;
    // virtio: the ring's size (queue_size=, 256 unless given).
    uint16_t virtio_ring = 256;
    // A native port's buffer room for one frame: set from the run's largest frame.
    uint32_t frame_room = 2048;
    // memif driver=native: the interface id (id=), and log2 of its rings' size (rsize=).
    uint32_t memif_id = 0;
    uint8_t memif_log2_ring = 10;
    bool memif_abstract = true;  // socket-abstract=: no file, as DPDK's net_memif
    Mac mac = 0;
};

// "NAME=KIND[:key=value,...]"; index makes the DPDK device name unique.
// KIND: virtio (path=, server=1|0, driver=native|dpdk, ...), memif (socket=,
// role=client|server, driver=native|dpdk, id=, ...),
// af_packet (iface=, ...), af_xdp (iface=, ...), ring, dev (the rest is raw devargs).
// vlan=, rxd=, txd=, queues= (queue pairs), rxq= (receive queues, one transmit queue) are
// the generator's own; other keys go to the PMD unchanged.
PortSpec parse_port_spec(const std::string& text, unsigned index, Mac mac);

// A port that did not come up; the message names it and says what to check.
class PortError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Thrown when a probe is stuck inside DPDK past the timeout: the process can only exit
// (see main), after removing what it created.
class StuckProbe : public PortError {
  public:
    using PortError::PortError;
};

class InterruptThreadCaller;
class NativeNic;

class PortSet {
  public:
    explicit PortSet(std::vector<PortSpec> specs);
    ~PortSet();
    PortSet(const PortSet&) = delete;
    PortSet& operator=(const PortSet&) = delete;

    // Probes, configures and starts every port, and waits for each link; throws
    // PortError (or StuckProbe) naming the first port not up within timeout_s.
    void bring_up(rte_mempool* pool, double timeout_s);
    // Waits until every port's link is up (at once when they are), starting a memif
    // client again whose server refused or dropped it; throws PortError as bring_up.
    void wait_links(double timeout_s);
    // Listening sockets this generator created; removed even on a hurried exit.
    void remove_sockets() const;

    std::size_t size() const { return specs_.size(); }
    const PortSpec& spec(std::size_t i) const { return specs_[i]; }
    uint16_t id(std::size_t i) const { return ids_[i]; }
    // The NIC of a native port (null for an ethdev).
    NativeNic* nic(std::size_t i) const { return nics_[i].get(); }
    int find(const std::string& name) const;

  private:
    void probe(const std::vector<std::size_t>& order, double timeout_s);
    void start_port(std::size_t i, rte_mempool* pool, double timeout_s);
    void wait_link(std::size_t i, double timeout_s);
    // Native NICs: connected now, or (again, after their peer went away) within the
    // time; all at once, since one may wait for another (a memif pair in this process).
    void connect_native(const std::vector<std::size_t>& ports, double timeout_s);
    // A memif port's start, stop and close run on DPDK's interrupt thread (port.cpp says
    // why); other ports' on the calling thread.
    int on_control_thread(PortKind kind, const std::function<int()>& call);

    std::vector<PortSpec> specs_;
    std::vector<uint16_t> ids_;
    std::vector<bool> probed_;
    std::vector<bool> started_;
    std::vector<std::unique_ptr<NativeNic>> nics_;
    std::unique_ptr<InterruptThreadCaller> interrupt_thread_;  // made on first use
};

}  // namespace conduit::gen
