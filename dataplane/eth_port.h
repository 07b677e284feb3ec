// dataplane/eth_port: the uplink, any DPDK ethdev named by devargs: a PCI address for a
// real NIC, or a virtual device such as net_af_packet0,iface=eth1, net_af_xdp, net_memif,
// net_tap. The uplink of the startup config is handed to the EAL (see Eal); one added
// later is probed then (a virtual device, or a PCI device the EAL was allowed to use),
// and a removed one is detached, so it can be added again.
//
// MTU: the device is configured for it (receiving into chained mbufs when a frame
// outgrows one, if the device can) and frames longer than it allows are dropped on
// transmit. Offloads: the device's own TX checksum and TCP segmentation offloads
// (tx_offload_capa) are used when it has them; otherwise the switch completes frames
// itself before they reach the port (sw::TxFitter). Frames received carry no offload.
#pragma once

#include <rte_ethdev.h>
#include <rte_spinlock.h>

#include <atomic>

#include "dataplane/port.h"

struct rte_mempool;

namespace conduit::dp {

class EthPort final : public Port {
  public:
    struct Options {
        std::string devargs;
        uint16_t rx_queues = 1;
        uint16_t rx_descriptors = 1024;
        uint16_t tx_descriptors = 1024;
        unsigned workers = 1;
        uint32_t mtu = sw::kDefaultMtu;
        bool offloads = true;  // use the device's TX offloads when it has them
    };

    EthPort(std::string name, sw::PortIndex index, Options options, rte_mempool* pool);
    ~EthPort() override;

    void start() override;
    void stop() override;
    const char* type() const override { return "ethdev"; }
    std::string endpoint() const override { return options_.devargs; }
    uint16_t rx_queue_count() const override { return rx_queues_; }
    uint16_t port_id() const { return port_id_; }
    uint16_t tx_queue_count() const { return tx_queues_; }
    bool started() const { return started_; }

    // Control thread, periodically: the datapath reads the cached link state.
    void poll_link();

    bool is_up() const override { return link_up_.load(std::memory_order_relaxed); }
    sw::TxCaps tx_caps() const override { return caps_; }
    uint16_t receive(uint16_t queue, rte_mbuf** pkts, uint16_t max,
                     sw::PortCounters& counters) override;
    void transmit(unsigned worker, rte_mbuf** pkts, uint16_t count,
                  sw::PortCounters& counters) override;

    // The name EAL gives the device for these devargs ("net_af_packet0", "0000:01:00.0").
    static std::string device_name(const std::string& devargs);

  private:
    // Decides the device's TX offloads, receive mode and MTU-related settings into `conf`
    // and caps_; throws when the MTU is beyond what the device (or one mbuf) allows.
    void plan_offloads(const rte_eth_dev_info& info, rte_eth_conf& conf);
    // Frames whose offload the device completes: made private when shared (the PMD and
    // rte_eth_tx_prepare write into them) and checked by the device. Returns the frames kept.
    uint16_t prepare_offloads(uint16_t queue, rte_mbuf** pkts, uint16_t count,
                              sw::PortCounters& counters);

    Options options_;
    rte_mempool* pool_;
    uint16_t port_id_ = 0;
    uint16_t rx_queues_ = 1;
    uint16_t tx_queues_ = 1;
    bool started_ = false;
    // Set when the device has fewer transmit queues than there are workers.
    bool tx_shared_ = false;
    std::atomic<bool> link_up_{false};
    // Workers poll every port from the start; an ethdev answers only once it is started.
    std::atomic<bool> ready_{false};
    // Set by start() before ready_; workers read it only after ready_.
    sw::TxCaps caps_{};
    rte_spinlock_t tx_lock_[64];  // workers are at most 64 (config)
};

}  // namespace conduit::dp
