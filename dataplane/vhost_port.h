// dataplane/vhost_port: a guest NIC over vhost-user, through DPDK's vhost library used
// directly (no ethdev, so a conduitd is not bound by the 32-ethdev limit).
//
// Client mode (the default) connects to the socket the guest listens on and keeps
// reconnecting, so conduitd can restart while the guest waits. Server mode listens.
//
// Offloads (on by default): the guest may negotiate checksum and TCP segmentation offload
// in both directions (VIRTIO_NET_F_CSUM, GUEST_CSUM, HOST_TSO4/6, GUEST_TSO4/6). Frames it
// sends get transmit metadata on receive (sw::take_guest_offload); what it negotiated for
// its own receive side becomes the port's TxCaps. ECN and UFO are never offered (see
// vhost_port.cpp). Frames longer than the port's MTU allows are dropped on transmit.
#pragma once

#include <array>
#include <atomic>
#include <functional>

#include "dataplane/port.h"

struct rte_mempool;

namespace conduit::dp {

class Rcu;

class VhostUserPort final : public Port {
  public:
    static constexpr uint16_t kMaxQueuePairs = 16;

    struct Options {
        std::string socket;
        bool client = true;
        uint16_t queue_pairs = 1;
        uint32_t mtu = sw::kDefaultMtu;
        bool offloads = true;
    };
    // Called on the vhost thread after the guest went away and no worker uses it any more.
    using OnDown = std::function<void(VhostUserPort&)>;

    VhostUserPort(std::string name, sw::PortIndex index, Options options, rte_mempool* pool,
                  Rcu& rcu, OnDown on_down);
    ~VhostUserPort() override;

    void start() override;
    void stop() override;
    const char* type() const override { return "vhost-user"; }
    std::string endpoint() const override { return options_.socket; }
    uint16_t rx_queue_count() const override { return options_.queue_pairs; }
    bool client() const { return options_.client; }

    bool is_up() const override { return vid_.load(std::memory_order_acquire) >= 0; }
    sw::TxCaps tx_caps() const override;
    uint8_t rx_offloads() const override { return rx_offloads_.load(std::memory_order_relaxed); }
    uint16_t receive(uint16_t queue, rte_mbuf** pkts, uint16_t max,
                     sw::PortCounters& counters) override;
    void transmit(unsigned worker, rte_mbuf** pkts, uint16_t count,
                  sw::PortCounters& counters) override;

    // Connection events, from the vhost library's thread.
    void attach(int vid);
    void detach();
    void vring_changed(uint16_t vring, bool enabled);
    uint64_t connects() const { return connects_.load(); }

  private:
    // Guest RX rings (where we transmit) are the even vrings, guest TX rings the odd ones.
    static constexpr uint16_t kMaxVrings = 2 * kMaxQueuePairs;

    void refresh_tx_vrings();
    // Turns the offload requests of received frames into transmit metadata; drops (and
    // counts) those that cannot be carried out. Returns the frames kept.
    uint16_t take_offloads(rte_mbuf** pkts, uint16_t count, sw::PortCounters& counters);

    Options options_;
    rte_mempool* pool_;
    Rcu& rcu_;
    OnDown on_down_;
    bool registered_ = false;
    std::atomic<int> vid_{-1};
    std::array<std::atomic<bool>, kMaxVrings> vring_enabled_{};
    // The enabled guest RX vrings, so each worker can use one of its own when it can.
    std::array<std::atomic<uint16_t>, kMaxQueuePairs> tx_vrings_{};
    std::atomic<uint16_t> tx_vring_count_{0};
    std::atomic<uint64_t> connects_{0};
    // Set on attach, before vid_: what the connected guest negotiated.
    std::atomic<uint64_t> tx_caps_;
    std::atomic<uint8_t> rx_offloads_{0};
};

}  // namespace conduit::dp
