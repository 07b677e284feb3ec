#include "vmm/virtio/net.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "vmm/util/error.h"
#include "vmm/util/log.h"
#include "vmm/vhost_user/endpoint.h"
#include "vmm/vhost_user/frontend.h"
#include "vmm/vhost_user/message.h"

namespace conduit::vmm::virtio {

namespace {

// Checksum and TCP segmentation offloads. ECN is left out: neither conduitd nor OVS-DPDK
// offers it, and a guest that acks a feature while no backend is connected (the offer is
// then the card's own set) would keep the card down when a backend without it arrives:
// virtio has no renegotiation short of a device reset.
constexpr uint64_t kOffloadFeatures = bit(net_bit::kCsum) | bit(net_bit::kGuestCsum) |
                                      bit(net_bit::kHostTso4) | bit(net_bit::kHostTso6) |
                                      bit(net_bit::kGuestTso4) | bit(net_bit::kGuestTso6);

// What the backend implements (and so must offer and be told): ring layout and event
// features, receive buffer merging, the MTU and every offload. The rest - MAC and link
// status - is the VMM's own device model, never sent to the backend.
constexpr uint64_t kBackendFeatures = bit(kFeatureVersion1) | bit(kFeatureIndirectDesc) |
                                      bit(kFeatureEventIdx) | bit(net_bit::kMrgRxbuf) |
                                      bit(net_bit::kMtu) | kOffloadFeatures;

// virtio_net_config (virtio 1.2, 5.1.4): mac[6], status, max_virtqueue_pairs, mtu.
constexpr uint64_t kConfigMac = 0, kConfigStatus = 6, kConfigMaxPairs = 8, kConfigMtu = 10;
constexpr uint64_t kConfigSize = 12;

const char* mode_name(const NetCardConfig& c) {
    return c.client ? "client" : "server";
}

}  // namespace

uint64_t net_model_features(const NetCardConfig& card) {
    uint64_t f = bit(kFeatureVersion1) | bit(net_bit::kMac) | bit(net_bit::kStatus) |
                 bit(net_bit::kMrgRxbuf) | bit(kFeatureIndirectDesc) | bit(kFeatureEventIdx);
    if (card.mtu != 0) {
        f |= bit(net_bit::kMtu);
    }
    if (card.offloads) {
        f |= kOffloadFeatures;
    }
    return f;
}

VhostUserNet::VhostUserNet(NetCardConfig card, const GuestMemory& memory)
    : card_(std::move(card)), memory_(memory) {
    try {
        endpoint_ = std::make_unique<vhost_user::Endpoint>(
            card_.client ? vhost_user::Endpoint::connect_to(card_.socket)
                         : vhost_user::Endpoint::listen(card_.socket));
    } catch (const vhost_user::Error& e) {
        throw ConfigError(card_.name + ": " + e.what());
    }
    wakeup_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wakeup_) {
        throw_errno("eventfd");
    }
}

VhostUserNet::~VhostUserNet() {
    stop();
}

void VhostUserNet::stop() {
    if (thread_.joinable()) {
        post(Command::kQuit, false);
        thread_.join();
    }
}

void VhostUserNet::start() {
    VLOG_INFO("net", "%s: %s mode on %s, MAC %02x:%02x:%02x:%02x:%02x:%02x%s", card_.name.c_str(),
              mode_name(card_), card_.socket.c_str(), card_.mac[0], card_.mac[1], card_.mac[2],
              card_.mac[3], card_.mac[4], card_.mac[5], card_.offloads ? ", offloads" : "");
    thread_ = std::thread([this] { run(); });
}

uint64_t VhostUserNet::offered_features() const {
    const uint64_t model = net_model_features(card_);
    std::lock_guard lock(mutex_);
    // A backend that already showed what it can do narrows the offer; before any backend
    // the model's own set is offered, and a later backend lacking some of what the guest
    // then acked keeps the card down (and says so).
    if (!backend_usable_) {
        return model;
    }
    return (model & ~kBackendFeatures) | (model & kBackendFeatures & *backend_usable_);
}

bool VhostUserNet::accept_features(uint64_t acked) {
    // Receive checksum offload without transmit is allowed; TSO needs checksum offload.
    const bool tso = acked & (bit(net_bit::kHostTso4) | bit(net_bit::kHostTso6));
    if (tso && !(acked & bit(net_bit::kCsum))) {
        return false;
    }
    const bool gtso = acked & (bit(net_bit::kGuestTso4) | bit(net_bit::kGuestTso6));
    return !(gtso && !(acked & bit(net_bit::kGuestCsum)));
}

void VhostUserNet::read_config(uint64_t offset, std::span<uint8_t> data) {
    std::array<uint8_t, kConfigSize> cfg{};
    std::memcpy(cfg.data() + kConfigMac, card_.mac.data(), 6);
    const uint16_t status = link_up_.load() ? kNetLinkUp : 0;
    cfg[kConfigStatus] = static_cast<uint8_t>(status);
    cfg[kConfigMaxPairs] = 1;
    cfg[kConfigMtu] = static_cast<uint8_t>(card_.mtu);
    cfg[kConfigMtu + 1] = static_cast<uint8_t>(card_.mtu >> 8);
    for (size_t i = 0; i < data.size(); ++i) {
        data[i] = offset + i < cfg.size() ? cfg[offset + i] : 0;
    }
}

void VhostUserNet::write_config(uint64_t, std::span<const uint8_t>) {
    // The MAC is the VMM's (VIRTIO_NET_F_MAC): the guest may not change it here.
}

void VhostUserNet::activate(uint64_t acked_features, const std::vector<QueueSetup>& queues) {
    VLOG_INFO("net", "%s: driver ready, features %s", card_.name.c_str(),
              vhost_user::virtio_feature_names(acked_features).c_str());
    {
        std::lock_guard lock(mutex_);
        active_ = true;
        acked_ = acked_features;
        queues_ = queues;
    }
    post(Command::kStart, false);
}

void VhostUserNet::reset() {
    {
        std::lock_guard lock(mutex_);
        if (!active_) {
            return;
        }
        active_ = false;
    }
    // The backend must let go of the rings before the driver sees the reset complete.
    post(Command::kReset, true);
}

void VhostUserNet::post(Command command, bool wait) {
    uint64_t ticket;
    {
        std::lock_guard lock(mutex_);
        commands_.push_back(command);
        ticket = ++commands_posted_;
    }
    const uint64_t one = 1;
    (void)!::write(wakeup_.get(), &one, sizeof one);
    if (wait && thread_.joinable()) {
        std::unique_lock lock(mutex_);
        done_.wait(lock, [&] { return commands_done_ >= ticket; });
    }
}

void VhostUserNet::set_link(bool up) {
    if (link_up_.exchange(up) != up) {
        VLOG_INFO("net", "%s: link %s", card_.name.c_str(), up ? "up" : "down");
        notify_config_change();
    }
}

void VhostUserNet::end_session(const std::string& why) {
    if (session_) {
        VLOG_WARN("net", "%s: backend session ended: %s", card_.name.c_str(), why.c_str());
        session_.reset();
    }
    set_link(false);
    endpoint_->session_ended();
}

void VhostUserNet::handle_connection(UniqueFd connection) {
    vhost_user::FrontendOptions options;
    options.name = card_.name;
    options.mtu = card_.mtu;
    auto session = std::make_unique<vhost_user::Frontend>(std::move(connection), options);
    try {
        const vhost_user::BackendFeatures b =
            session->negotiate(net_model_features(card_) & kBackendFeatures);
        std::lock_guard lock(mutex_);
        if (!backend_usable_) {
            backend_usable_ = b.usable;
        }
    } catch (const vhost_user::Error& e) {
        VLOG_WARN("net", "%s: backend refused: %s", card_.name.c_str(), e.what());
        endpoint_->session_ended();
        return;
    }
    VLOG_INFO("net", "%s: backend connected", card_.name.c_str());
    session_ = std::move(session);
    ++session_serial_;
    start_rings();
}

void VhostUserNet::start_rings() {
    uint64_t acked;
    std::vector<QueueSetup> queues;
    {
        std::lock_guard lock(mutex_);
        if (!active_ || !session_ || session_->state() != vhost_user::Frontend::State::Negotiated) {
            return;  // the driver is not ready yet, or the rings already run
        }
        acked = acked_ & kBackendFeatures;
        queues = queues_;
    }
    std::vector<vhost_user::MemoryRegion> regions;
    for (const MemoryRegion& r : memory_.regions()) {
        regions.push_back({r.guest_phys_addr, r.size, reinterpret_cast<uint64_t>(r.host),
                           r.fd_offset, memory_.fd()});
    }
    std::vector<vhost_user::VringSetup> vrings;
    for (const QueueSetup& q : queues) {
        if (!q.enabled) {
            continue;
        }
        // The transport checked that each ring lies in RAM. The used index in guest memory
        // is where a backend resumes: 0 for fresh rings, the last completed entry after a
        // backend restart.
        const uint16_t used_idx = memory_.read_obj<uint16_t>(q.used_gpa + 2).value_or(0);
        vrings.push_back(
            {q.index, q.size,
             reinterpret_cast<uint64_t>(memory_.host_range(q.desc_gpa, 16u * q.size)),
             reinterpret_cast<uint64_t>(memory_.host_range(q.avail_gpa, 6u + 2 * q.size)),
             reinterpret_cast<uint64_t>(memory_.host_range(q.used_gpa, 6u + 8 * q.size)), used_idx,
             q.kick_fd, q.call_fd});
    }
    try {
        session_->start(acked, regions, vrings);
    } catch (const vhost_user::Error& e) {
        end_session(e.what());
        return;
    }
    set_link(true);
    // Kick once: frames the guest queued while no backend was there must not wait for its
    // next notification.
    const uint64_t one = 1;
    for (const QueueSetup& q : queues) {
        if (q.enabled) {
            (void)!::write(q.kick_fd, &one, sizeof one);
        }
    }
}

void VhostUserNet::run() {
    UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) {
        VLOG_ERR("net", "%s: epoll: %s", card_.name.c_str(), std::strerror(errno));
        return;
    }
    enum : uint64_t { kWakeup, kEndpoint, kSession };
    const auto watch = [&](int fd, uint64_t tag, bool on) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = tag;
        epoll_ctl(epoll.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
    };
    watch(wakeup_.get(), kWakeup, true);
    bool endpoint_watched = false;
    uint64_t watched_serial = 0;  // which session's socket is in the epoll set
    for (;;) {
        // Wait for a backend only while there is none. A second backend that connects
        // meanwhile waits in the listen backlog: after a restart the new one is often there
        // before the old connection's end has been read, and is taken right after.
        if (endpoint_watched != !session_) {
            watch(endpoint_->wait_fd(), kEndpoint, !session_);
            endpoint_watched = !session_;
        }
        // A session's socket leaves the epoll set by itself when the session closes it.
        if (session_ && session_serial_ != watched_serial) {
            watch(session_->poll_fd(), kSession, true);
            watched_serial = session_serial_;
        }
        epoll_event events[4];
        const int n = epoll_wait(epoll.get(), events, 4, card_.client && !session_ ? 1000 : -1);
        if (n < 0 && errno != EINTR) {
            VLOG_ERR("net", "%s: epoll_wait: %s", card_.name.c_str(), std::strerror(errno));
            return;
        }
        for (int i = 0; i < n; ++i) {
            switch (events[i].data.u64) {
                case kEndpoint:
                    if (!session_) {
                        try {
                            if (auto conn = endpoint_->take_connection()) {
                                handle_connection(std::move(*conn));
                            }
                        } catch (const vhost_user::Error& e) {
                            VLOG_WARN("net", "%s: %s", card_.name.c_str(), e.what());
                        }
                    }
                    break;
                case kSession:
                    if (session_ && session_->disconnected()) {
                        end_session(session_->error());
                    }
                    break;
                case kWakeup: {
                    uint64_t count;
                    (void)!::read(wakeup_.get(), &count, sizeof count);
                    for (;;) {
                        Command c;
                        {
                            std::lock_guard lock(mutex_);
                            if (commands_.empty()) {
                                break;
                            }
                            c = commands_.front();
                            commands_.pop_front();
                        }
                        if (c == Command::kQuit) {
                            session_.reset();
                            return;
                        }
                        if (c == Command::kStart && session_) {
                            start_rings();
                        }
                        if (c == Command::kReset && session_ &&
                            session_->state() == vhost_user::Frontend::State::Running) {
                            try {
                                session_->stop();
                            } catch (const vhost_user::Error& e) {
                                end_session(e.what());
                            }
                        }
                        {
                            std::lock_guard lock(mutex_);
                            ++commands_done_;
                        }
                        done_.notify_all();
                    }
                    break;
                }
            }
        }
    }
}

}  // namespace conduit::vmm::virtio
