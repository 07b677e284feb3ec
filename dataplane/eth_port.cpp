#include "dataplane/eth_port.h"

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <stdexcept>

#include "dataplane/log.h"

namespace conduit::dp {

std::string EthPort::device_name(const std::string& devargs) {
    return devargs.substr(0, devargs.find(','));
}

EthPort::EthPort(std::string name, sw::PortIndex index, Options options, rte_mempool* pool)
    : Port(std::move(name), index), options_(std::move(options)), pool_(pool) {
    for (auto& lock : tx_lock_) {
        rte_spinlock_init(&lock);
    }
}

EthPort::~EthPort() {
    stop();
}

void EthPort::start() {
    const std::string dev = device_name(options_.devargs);
    if (rte_eth_dev_get_port_by_name(dev.c_str(), &port_id_) != 0) {
        // Not probed at start-up (added at run time, or removed and added again).
        const int rc = rte_dev_probe(options_.devargs.c_str());
        if (rc != 0) {
            CLOG_WARN("ethdev", "port %s: probing %s failed: %s", name().c_str(),
                      options_.devargs.c_str(), rte_strerror(-rc));
        }
    }
    if (rte_eth_dev_get_port_by_name(dev.c_str(), &port_id_) != 0) {
        throw std::runtime_error("port " + name() + ": no ethdev '" + dev + "' (devargs '" +
                                 options_.devargs +
                                 "'): check the interface or PCI address and the driver");
    }
    rte_eth_dev_info info{};
    if (rte_eth_dev_info_get(port_id_, &info) != 0) {
        throw std::runtime_error("port " + name() + ": cannot query ethdev " + dev);
    }
    rx_queues_ = std::min<uint16_t>(options_.rx_queues, info.max_rx_queues);
    tx_queues_ = static_cast<uint16_t>(std::min<unsigned>(options_.workers, info.max_tx_queues));
    tx_shared_ = tx_queues_ < options_.workers;
    if (rx_queues_ < options_.rx_queues) {
        CLOG_WARN("ethdev", "port %s: device has %u receive queues, not %u", name().c_str(),
                  rx_queues_, options_.rx_queues);
    }
    if (tx_shared_) {
        CLOG_WARN("ethdev",
                  "port %s: device has %u transmit queues for %u workers; workers share them "
                  "under a per-queue lock",
                  name().c_str(), tx_queues_, options_.workers);
    }
    rte_eth_conf conf{};
    if (rx_queues_ > 1) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf =
            info.flow_type_rss_offloads & (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP);
    }
    int rc = rte_eth_dev_configure(port_id_, rx_queues_, tx_queues_, &conf);
    if (rc != 0) {
        throw std::runtime_error("port " + name() +
                                 ": configuring ethdev failed: " + rte_strerror(-rc));
    }
    uint16_t rxd = options_.rx_descriptors, txd = options_.tx_descriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(port_id_, &rxd, &txd);
    const int socket = rte_eth_dev_socket_id(port_id_);
    for (uint16_t q = 0; q < rx_queues_; ++q) {
        rc = rte_eth_rx_queue_setup(port_id_, q, rxd, socket, nullptr, pool_);
        if (rc != 0) {
            throw std::runtime_error("port " + name() +
                                     ": receive queue setup failed: " + rte_strerror(-rc));
        }
    }
    for (uint16_t q = 0; q < tx_queues_; ++q) {
        rc = rte_eth_tx_queue_setup(port_id_, q, txd, socket, nullptr);
        if (rc != 0) {
            throw std::runtime_error("port " + name() +
                                     ": transmit queue setup failed: " + rte_strerror(-rc));
        }
    }
    rc = rte_eth_dev_start(port_id_);
    if (rc != 0) {
        throw std::runtime_error("port " + name() +
                                 ": starting ethdev failed: " + rte_strerror(-rc));
    }
    started_ = true;
    ready_.store(true, std::memory_order_release);
    // A switch port must see every frame on the wire, not only those for its own MAC.
    if (rte_eth_promiscuous_enable(port_id_) != 0) {
        CLOG_WARN("ethdev", "port %s: cannot enable promiscuous mode", name().c_str());
    }
    rte_eth_allmulticast_enable(port_id_);
    poll_link();
    CLOG_INFO("ethdev", "port %s: %s started (%u rx, %u tx queues, link %s)", name().c_str(),
              options_.devargs.c_str(), rx_queues_, tx_queues_, is_up() ? "up" : "down");
}

void EthPort::stop() {
    if (!started_) {
        return;
    }
    ready_.store(false, std::memory_order_release);
    rte_eth_dev_stop(port_id_);
    rte_eth_dev_info info{};
    rte_device* device = rte_eth_dev_info_get(port_id_, &info) == 0 ? info.device : nullptr;
    rte_eth_dev_close(port_id_);
    // Detach the device as well, so the same devargs can be probed again later.
    if (device != nullptr && rte_dev_remove(device) != 0) {
        CLOG_WARN("ethdev", "port %s: detaching %s failed", name().c_str(),
                  options_.devargs.c_str());
    }
    started_ = false;
    link_up_.store(false);
}

void EthPort::poll_link() {
    rte_eth_link link{};
    if (started_ && rte_eth_link_get_nowait(port_id_, &link) == 0) {
        link_up_.store(link.link_status == RTE_ETH_LINK_UP, std::memory_order_relaxed);
    }
}

uint16_t EthPort::receive(uint16_t queue, rte_mbuf** pkts, uint16_t max, sw::PortCounters&) {
    if (!ready_.load(std::memory_order_acquire)) {
        return 0;
    }
    // Allocation failures are counted by the PMD (rx_nombuf) and reported with its stats.
    return rte_eth_rx_burst(port_id_, queue, pkts, max);
}

void EthPort::transmit(unsigned worker, rte_mbuf** pkts, uint16_t count,
                       sw::PortCounters& counters) {
    if (!link_up_.load(std::memory_order_relaxed) || !ready_.load(std::memory_order_acquire)) {
        counters.drop_tx_port_down.add(count);
        rte_pktmbuf_free_bulk(pkts, count);
        return;
    }
    const uint16_t queue = static_cast<uint16_t>(worker % tx_queues_);
    // Count bytes first: once handed to the PMD the mbufs may already be freed.
    const uint64_t bytes = burst_bytes(pkts, count);
    uint16_t sent;
    if (tx_shared_) {
        rte_spinlock_lock(&tx_lock_[queue]);
        sent = rte_eth_tx_burst(port_id_, queue, pkts, count);
        rte_spinlock_unlock(&tx_lock_[queue]);
    } else {
        sent = rte_eth_tx_burst(port_id_, queue, pkts, count);
    }
    uint64_t unsent_bytes = 0;
    if (sent < count) {
        unsent_bytes = burst_bytes(pkts + sent, static_cast<uint16_t>(count - sent));
        counters.drop_tx_queue_full.add(count - sent);
        rte_pktmbuf_free_bulk(pkts + sent, count - sent);
    }
    counters.tx_packets.add(sent);
    counters.tx_bytes.add(bytes - unsent_bytes);
}

}  // namespace conduit::dp
