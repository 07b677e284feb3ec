#include "dataplane/vhost_port.h"

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_vhost.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>

#include "dataplane/log.h"
#include "dataplane/rcu.h"

namespace conduit::dp {

namespace {

// The vhost library calls back with a vid; we find the port by its socket path.
std::mutex g_registry_mutex;
std::map<std::string, VhostUserPort*> g_registry;

VhostUserPort* port_of(int vid) {
    char path[PATH_MAX];
    if (rte_vhost_get_ifname(vid, path, sizeof path) != 0) {
        return nullptr;
    }
    std::lock_guard lock(g_registry_mutex);
    auto it = g_registry.find(path);
    return it == g_registry.end() ? nullptr : it->second;
}

int on_new_device(int vid) {
    VhostUserPort* port = port_of(vid);
    if (port == nullptr) {
        return -1;
    }
    port->attach(vid);
    return 0;
}

void on_destroy_device(int vid) {
    if (VhostUserPort* port = port_of(vid)) {
        port->detach();
    }
}

int on_vring_state_changed(int vid, uint16_t vring, int enable) {
    if (VhostUserPort* port = port_of(vid)) {
        port->vring_changed(vring, enable != 0);
    }
    return 0;
}

const rte_vhost_device_ops kDeviceOps = {
    .new_device = on_new_device,
    .destroy_device = on_destroy_device,
    .vring_state_changed = on_vring_state_changed,
    .features_changed = nullptr,
    .new_connection = nullptr,
    .destroy_connection = nullptr,
    .guest_notified = nullptr,
    .reserved = {nullptr},
};

// virtio-net feature bits (virtio 1.2, 5.1.3); linux/virtio_net.h clashes with DPDK's headers.
enum : unsigned {
    VIRTIO_NET_F_CSUM = 0,
    VIRTIO_NET_F_GUEST_CSUM = 1,
    VIRTIO_NET_F_GSO = 6,
    VIRTIO_NET_F_GUEST_TSO4 = 7,
    VIRTIO_NET_F_GUEST_TSO6 = 8,
    VIRTIO_NET_F_GUEST_ECN = 9,
    VIRTIO_NET_F_GUEST_UFO = 10,
    VIRTIO_NET_F_HOST_TSO4 = 11,
    VIRTIO_NET_F_HOST_TSO6 = 12,
    VIRTIO_NET_F_HOST_ECN = 13,
    VIRTIO_NET_F_HOST_UFO = 14,
    VIRTIO_NET_F_MRG_RXBUF = 15,
};
constexpr uint64_t bit(unsigned feature) {
    return uint64_t{1} << feature;
}

// Never offered. UFO: Linux no longer sends it and segmenting UDP is not done here. ECN:
// DPDK 22.11's enqueue never sets VIRTIO_NET_HDR_GSO_ECN, so a GSO frame carrying CWR could
// not be described to a receiving guest as the spec requires; without HOST_ECN a guest
// segments its few CWR-marked frames itself. GSO (the legacy "any GSO type") likewise.
constexpr uint64_t kNeverOffered = bit(VIRTIO_NET_F_GSO) | bit(VIRTIO_NET_F_GUEST_ECN) |
                                   bit(VIRTIO_NET_F_GUEST_UFO) | bit(VIRTIO_NET_F_HOST_ECN) |
                                   bit(VIRTIO_NET_F_HOST_UFO);
// The checksum and TCP segmentation offloads a port with `offloads: true` offers.
constexpr uint64_t kOffloadFeatures = bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_GUEST_CSUM) |
                                      bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6) |
                                      bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6);

// What a guest that negotiated `features` takes (GUEST_*) and sends (CSUM, HOST_*).
uint8_t guest_takes(uint64_t features) {
    if ((features & bit(VIRTIO_NET_F_GUEST_CSUM)) == 0) {
        return 0;  // the TSO features depend on it (virtio 1.2, 5.1.3.1)
    }
    uint8_t caps = sw::TxCaps::kTcpCsum | sw::TxCaps::kUdpCsum;
    caps |= (features & bit(VIRTIO_NET_F_GUEST_TSO4)) ? sw::TxCaps::kTso4 : 0;
    caps |= (features & bit(VIRTIO_NET_F_GUEST_TSO6)) ? sw::TxCaps::kTso6 : 0;
    return caps;
}

uint8_t guest_sends(uint64_t features) {
    if ((features & bit(VIRTIO_NET_F_CSUM)) == 0) {
        return 0;
    }
    uint8_t caps = sw::TxCaps::kTcpCsum | sw::TxCaps::kUdpCsum;
    caps |= (features & bit(VIRTIO_NET_F_HOST_TSO4)) ? sw::TxCaps::kTso4 : 0;
    caps |= (features & bit(VIRTIO_NET_F_HOST_TSO6)) ? sw::TxCaps::kTso6 : 0;
    return caps;
}

}  // namespace

uint64_t burst_bytes(rte_mbuf* const* pkts, uint16_t count) {
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < count; ++i) {
        bytes += rte_pktmbuf_pkt_len(pkts[i]);
    }
    return bytes;
}

VhostUserPort::VhostUserPort(std::string name, sw::PortIndex index, Options options,
                             rte_mempool* pool, Rcu& rcu, OnDown on_down)
    : Port(std::move(name), index),
      options_(std::move(options)),
      pool_(pool),
      rcu_(rcu),
      on_down_(std::move(on_down)),
      tx_caps_(sw::TxCaps{sw::max_frame_for_mtu(options_.mtu), 0}.pack()) {
    if (options_.queue_pairs == 0 || options_.queue_pairs > kMaxQueuePairs) {
        throw std::invalid_argument("port " + this->name() + ": queues must be 1.." +
                                    std::to_string(kMaxQueuePairs));
    }
}

VhostUserPort::~VhostUserPort() {
    stop();
}

void VhostUserPort::start() {
    const std::string& path = options_.socket;
    // Compliant offload flags: a partial checksum the library cannot describe to us
    // (a tunnel's inner header, say) it completes itself, where the legacy mode would
    // drop the request and leave the checksum wrong.
    uint64_t flags = RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS;
    if (options_.client) {
        flags |= RTE_VHOST_USER_CLIENT;  // and reconnect, which is the library's default
    } else {
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
        if (ec) {
            throw std::runtime_error("port " + name() + ": cannot create the directory of " + path +
                                     ": " + ec.message());
        }
        // A socket left by a conduitd that was killed would make bind() fail.
        struct stat st {};
        if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
            unlink(path.c_str());
        }
    }
    {
        std::lock_guard lock(g_registry_mutex);
        g_registry[path] = this;
    }
    if (rte_vhost_driver_register(path.c_str(), flags) != 0) {
        std::lock_guard lock(g_registry_mutex);
        g_registry.erase(path);
        throw std::runtime_error("port " + name() + ": cannot register vhost-user socket " + path);
    }
    registered_ = true;
    const uint64_t disabled = kNeverOffered | (options_.offloads ? 0 : kOffloadFeatures);
    if (rte_vhost_driver_disable_features(path.c_str(), disabled) != 0 ||
        rte_vhost_driver_callback_register(path.c_str(), &kDeviceOps) != 0 ||
        rte_vhost_driver_start(path.c_str()) != 0) {
        stop();
        throw std::runtime_error("port " + name() + ": cannot start vhost-user socket " + path +
                                 (options_.client ? "" : " (is the directory writable?)"));
    }
    CLOG_INFO("vhost", "port %s: %s %s (MTU %u, offloads %s)", name().c_str(),
              options_.client ? "client mode, connecting to" : "server mode, listening on",
              path.c_str(), options_.mtu, options_.offloads ? "offered" : "off");
}

void VhostUserPort::stop() {
    if (!registered_) {
        return;
    }
    // Unregistering closes the connection; the library then calls destroy_device, which
    // waits for the workers to let go of the guest's rings.
    if (rte_vhost_driver_unregister(options_.socket.c_str()) != 0) {
        CLOG_WARN("vhost", "port %s: unregistering %s failed", name().c_str(),
                  options_.socket.c_str());
    }
    registered_ = false;
    std::lock_guard lock(g_registry_mutex);
    g_registry.erase(options_.socket);
}

void VhostUserPort::attach(int vid) {
    const uint16_t vrings = rte_vhost_get_vring_num(vid);
    for (uint16_t v = 0; v < vrings && v < kMaxVrings; ++v) {
        // The switch polls; the guest need not kick us, which saves it a VM exit per burst.
        rte_vhost_enable_guest_notification(vid, v, 0);
    }
    refresh_tx_vrings();
    uint64_t features = 0;
    rte_vhost_get_negotiated_features(vid, &features);
    const uint8_t takes = guest_takes(features);
    const uint8_t sends = guest_sends(features);
    // Published before vid_: a worker that sees this connection sees its caps.
    tx_caps_.store(sw::TxCaps{sw::max_frame_for_mtu(options_.mtu), takes}.pack(),
                   std::memory_order_relaxed);
    rx_offloads_.store(sends, std::memory_order_relaxed);
    vid_.store(vid, std::memory_order_release);
    connects_.fetch_add(1);
    CLOG_NOTICE("vhost",
                "port %s: guest connected (%u vrings; offloads from the guest: %s, to it: %s; "
                "%s receive buffers)",
                name().c_str(), vrings, sw::describe_offloads(sends).c_str(),
                sw::describe_offloads(takes).c_str(),
                (features & bit(VIRTIO_NET_F_MRG_RXBUF)) ? "mergeable" : "single");
    uint16_t card_mtu = 0;
    if (rte_vhost_get_mtu(vid, &card_mtu) == 0 && card_mtu > options_.mtu) {
        CLOG_WARN("vhost",
                  "port %s: the guest's card says MTU %u but the port's mtu is %u: frames "
                  "longer than %u bytes to it are dropped (drop_tx_too_big); set the port's mtu",
                  name().c_str(), card_mtu, options_.mtu, sw::max_frame_for_mtu(options_.mtu));
    }
}

sw::TxCaps VhostUserPort::tx_caps() const {
    // The acquire load of vid_ orders this after the attach that stored the caps.
    (void)vid_.load(std::memory_order_acquire);
    return sw::TxCaps::unpack(tx_caps_.load(std::memory_order_relaxed));
}

void VhostUserPort::detach() {
    vid_.store(-1, std::memory_order_release);
    // After this no worker is inside a burst that saw the old vid.
    rcu_.synchronize();
    for (auto& enabled : vring_enabled_) {
        enabled.store(false, std::memory_order_relaxed);
    }
    tx_vring_count_.store(0, std::memory_order_release);
    CLOG_NOTICE("vhost", "port %s: guest disconnected", name().c_str());
    if (on_down_) {
        on_down_(*this);
    }
}

void VhostUserPort::vring_changed(uint16_t vring, bool enabled) {
    if (vring >= kMaxVrings) {
        return;
    }
    vring_enabled_[vring].store(enabled, std::memory_order_release);
    refresh_tx_vrings();
}

void VhostUserPort::refresh_tx_vrings() {
    uint16_t count = 0;
    for (uint16_t q = 0; q < options_.queue_pairs; ++q) {
        if (vring_enabled_[2 * q].load(std::memory_order_acquire)) {
            tx_vrings_[count++].store(2 * q, std::memory_order_relaxed);
        }
    }
    tx_vring_count_.store(count, std::memory_order_release);
}

uint16_t VhostUserPort::receive(uint16_t queue, rte_mbuf** pkts, uint16_t max,
                                sw::PortCounters& counters) {
    const int vid = vid_.load(std::memory_order_acquire);
    const uint16_t vring = static_cast<uint16_t>(2 * queue + 1);
    if (vid < 0 || !vring_enabled_[vring].load(std::memory_order_relaxed)) {
        return 0;
    }
    const uint16_t got = rte_vhost_dequeue_burst(vid, vring, pool_, pkts, max);
    // The library returns nothing, and leaves the frames in the guest's ring, when it
    // cannot allocate mbufs for them (it also returns nothing while the vhost thread
    // holds the ring, so the pool itself is asked). Only an empty poll pays for this.
    if (got == 0) {
        const uint32_t waiting = rte_vhost_rx_queue_count(vid, vring);
        if (waiting != 0 && rte_mempool_avail_count(pool_) < std::min<uint32_t>(waiting, max)) {
            counters.drop_rx_nombuf.add(1);
        }
        return 0;
    }
    // A guest without checksum or segmentation offload never sends offload requests.
    if (rx_offloads_.load(std::memory_order_relaxed) != 0) {
        return take_offloads(pkts, got, counters);
    }
    return got;
}

uint16_t VhostUserPort::take_offloads(rte_mbuf** pkts, uint16_t count, sw::PortCounters& counters) {
    uint16_t kept = 0;
    uint64_t gso = 0, partial = 0, invalid = 0, invalid_bytes = 0;
    for (uint16_t i = 0; i < count; ++i) {
        rte_mbuf* m = pkts[i];
        switch (sw::take_guest_offload(m)) {
            case sw::GuestOffload::kNone:
                break;
            case sw::GuestOffload::kChecksum:
                ++partial;
                break;
            case sw::GuestOffload::kGso:
                ++gso;
                break;
            case sw::GuestOffload::kInvalid:
                ++invalid;
                invalid_bytes += rte_pktmbuf_pkt_len(m);
                rte_pktmbuf_free(m);
                continue;
        }
        pkts[kept++] = m;
    }
    counters.rx_gso.add(gso);
    counters.rx_csum_partial.add(partial);
    if (invalid != 0) {
        // Received, so counted as received like any other frame dropped on input.
        counters.rx_packets.add(invalid);
        counters.rx_bytes.add(invalid_bytes);
        counters.drop_rx_bad_offload.add(invalid);
    }
    return kept;
}

void VhostUserPort::transmit(unsigned worker, rte_mbuf** pkts, uint16_t count,
                             sw::PortCounters& counters) {
    const int vid = vid_.load(std::memory_order_acquire);
    const uint16_t vrings = tx_vring_count_.load(std::memory_order_acquire);
    if (vid < 0 || vrings == 0) {
        counters.drop_tx_port_down.add(count);
        rte_pktmbuf_free_bulk(pkts, count);
        return;
    }
    const uint16_t vring = tx_vrings_[worker % vrings].load(std::memory_order_relaxed);
    // The library copies into the guest's buffers; concurrent workers on one vring are
    // serialised by the library's per-vring lock. Unsent frames: the guest's ring is full.
    const uint16_t sent = rte_vhost_enqueue_burst(vid, vring, pkts, count);
    counters.tx_packets.add(sent);
    counters.tx_bytes.add(burst_bytes(pkts, sent));
    if (sent < count) {
        counters.drop_tx_queue_full.add(count - sent);
    }
    rte_pktmbuf_free_bulk(pkts, count);
}

}  // namespace conduit::dp
