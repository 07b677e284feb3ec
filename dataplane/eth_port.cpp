#include "dataplane/eth_port.h"

#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
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
    plan_offloads(info, conf);
    int rc = rte_eth_dev_configure(port_id_, rx_queues_, tx_queues_, &conf);
    if (rc != 0) {
        throw std::runtime_error("port " + name() +
                                 ": configuring ethdev failed: " + rte_strerror(-rc));
    }
    // Also sets the kernel interface's MTU for devices that have one (af_packet, af_xdp,
    // tap), so the kernel drops longer frames rather than hand them over cut short.
    rc = rte_eth_dev_set_mtu(port_id_, static_cast<uint16_t>(options_.mtu));
    if (rc != 0 && rc != -ENOTSUP) {
        throw std::runtime_error("port " + name() + ": the device refused MTU " +
                                 std::to_string(options_.mtu) + ": " + rte_strerror(-rc));
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
    CLOG_INFO("ethdev",
              "port %s: %s started (%u rx, %u tx queues, MTU %u, TX offloads %s, link %s)",
              name().c_str(), options_.devargs.c_str(), rx_queues_, tx_queues_, options_.mtu,
              sw::describe_offloads(caps_.offloads).c_str(), is_up() ? "up" : "down");
}

void EthPort::plan_offloads(const rte_eth_dev_info& info, rte_eth_conf& conf) {
    const std::string where = "port " + name() + ": ";
    // The ethdev layer's own rule: frame = MTU + overhead, within max_rx_pktlen.
    const uint32_t overhead = (info.max_mtu != UINT16_MAX && info.max_rx_pktlen > info.max_mtu)
                                  ? info.max_rx_pktlen - info.max_mtu
                                  : RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
    const uint32_t device_max = std::min<uint32_t>(
        info.max_mtu, info.max_rx_pktlen > overhead ? info.max_rx_pktlen - overhead : 0);
    if (options_.mtu > device_max || options_.mtu < info.min_mtu) {
        throw std::runtime_error(
            where + "the device allows an MTU of " + std::to_string(info.min_mtu) + " to " +
            std::to_string(device_max) + ", not " + std::to_string(options_.mtu));
    }
    const uint64_t capa = info.tx_offload_capa;
    const bool multi_seg = (capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS) != 0;
    uint64_t tx = multi_seg ? RTE_ETH_TX_OFFLOAD_MULTI_SEGS : 0;
    const uint32_t max_frame = sw::max_frame_for_mtu(options_.mtu);
    const uint32_t mbuf_room = rte_pktmbuf_data_room_size(pool_) - RTE_PKTMBUF_HEADROOM;
    if (max_frame > mbuf_room) {
        // Such frames span several mbufs, both ways.
        const std::string limit = std::to_string(mbuf_room - (max_frame - options_.mtu));
        if (!multi_seg) {
            throw std::runtime_error(where + "MTU " + std::to_string(options_.mtu) +
                                     " needs frames longer than one mbuf holds, and the device "
                                     "cannot send chained mbufs: use an MTU of at most " +
                                     limit);
        }
        if ((info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER) == 0) {
            throw std::runtime_error(where + "MTU " + std::to_string(options_.mtu) +
                                     " needs frames longer than one mbuf holds, and the device "
                                     "cannot receive into chained mbufs: use an MTU of at most " +
                                     limit);
        }
        conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
    }
    conf.rxmode.mtu = options_.mtu;
    uint8_t offloads = 0;
    if (options_.offloads) {
        if (capa & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) {
            tx |= RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
            offloads |= sw::TxCaps::kTcpCsum;
        }
        if (capa & RTE_ETH_TX_OFFLOAD_UDP_CKSUM) {
            tx |= RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
            offloads |= sw::TxCaps::kUdpCsum;
        }
        // A GSO frame spans many mbufs and leaves its TCP checksum to the device. Over
        // IPv4 the device rebuilds each segment's header checksum (TX_IP_CKSUM). DPDK
        // 22.11's tap PMD claims TSO but cannot do it: it refuses a frame whose MSS plus
        // headers exceeds the MTU (every full-sized segment) and sends IPv6 ones unsegmented.
        const bool tso = (capa & RTE_ETH_TX_OFFLOAD_TCP_TSO) && multi_seg &&
                         (capa & RTE_ETH_TX_OFFLOAD_TCP_CKSUM) &&
                         std::string(info.driver_name) != "net_tap";
        if (tso && (capa & RTE_ETH_TX_OFFLOAD_IPV4_CKSUM)) {
            tx |= RTE_ETH_TX_OFFLOAD_TCP_TSO | RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
            offloads |= sw::TxCaps::kTso4;
        }
        if (tso) {
            tx |= RTE_ETH_TX_OFFLOAD_TCP_TSO;
            offloads |= sw::TxCaps::kTso6;
        }
    }
    conf.txmode.offloads = tx;
    caps_ = sw::TxCaps{max_frame, offloads};
}

uint16_t EthPort::prepare_offloads(uint16_t queue, rte_mbuf** pkts, uint16_t count,
                                   sw::PortCounters& counters) {
    uint16_t kept = 0;
    bool any = false;
    for (uint16_t i = 0; i < count; ++i) {
        rte_mbuf* m = pkts[i];
        if (sw::has_tx_offload(*m)) {
            if (!sw::exclusive(*m)) {
                rte_mbuf* copy = rte_pktmbuf_copy(m, pool_, 0, UINT32_MAX);
                rte_pktmbuf_free(m);
                if (copy == nullptr) {
                    counters.drop_tx_offload_failed.add(1);
                    continue;
                }
                m = copy;
            }
            if ((m->ol_flags & (RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IPV4)) ==
                (RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IPV4)) {
                m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
            }
            any = true;
        }
        pkts[kept++] = m;
    }
    if (!any) {
        return kept;
    }
    // The device's checks and fix-ups (pseudo-header sums as it wants them); a frame it
    // refuses is dropped and counted, the rest go on.
    uint16_t done = 0;
    while (done < kept) {
        done = static_cast<uint16_t>(done + rte_eth_tx_prepare(port_id_, queue, pkts + done,
                                                               static_cast<uint16_t>(kept - done)));
        if (done < kept) {
            counters.drop_tx_error.add(1);
            rte_pktmbuf_free(pkts[done]);
            std::memmove(pkts + done, pkts + done + 1, (kept - done - 1) * sizeof pkts[0]);
            --kept;
        }
    }
    return kept;
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
    if (caps_.offloads != 0) {
        count = prepare_offloads(queue, pkts, count, counters);
    }
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
