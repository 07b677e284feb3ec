// vmm/vhost_user/frontend: one session with a vhost-user backend for one virtio device,
// driven synchronously from the VMM's control thread. Every call waits for each reply
// at most FrontendOptions::reply_timeout.
//
// Life of a session (one connection):
//   Frontend fe(std::move(conn), opts);
//   BackendFeatures b = fe.negotiate(device_features);   // offer b.usable to the guest
//   ... guest acks features, sets up rings, DRIVER_OK ...
//   fe.start(guest_acked, regions, vrings);              // the backend now owns the rings
//   ... poll fe.poll_fd(); when readable: if (fe.disconnected()) -> link down ...
//   std::vector<VringBase> bases = fe.stop();            // device reset: rings back
// On reconnect the VMM makes a new Frontend on the new connection, negotiates, and calls
// start() with the features the guest acked earlier and, as each vring's base, the used
// index it reads from guest memory (the backend resumes from there).
//
// Failure: any misbehaviour of the backend (garbage, a wrong or missing reply, EOF, a
// nack, impossible features) throws Error, whose text starts with the session's name,
// and leaves the session Closed (socket closed, every fd it received closed). A closed
// session is not reused: the VMM logs error(), marks the link down and waits for the
// next connection. Invalid arguments (caller bugs) throw std::invalid_argument and a
// call in the wrong state std::logic_error; neither closes the session.
//
// Ownership: the Frontend owns the connection. All fds in MemoryRegion and VringSetup
// are borrowed: they are sent (the kernel duplicates them into the backend) and never
// closed here; the caller keeps them open for the duration of the call only.
//
// Thread-safety: none. One thread drives a Frontend. poll_fd() may sit in an epoll set
// watched by another thread, but disconnected() is called by the driving thread (or
// under the caller's lock). The socket closes when the session closes, which removes it
// from any epoll set (the library never dups it).
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/util/unique_fd.h"
#include "vmm/vhost_user/channel.h"
#include "vmm/vhost_user/error.h"
#include "vmm/vhost_user/message.h"

namespace conduit::vmm::vhost_user {

// A window of guest RAM the backend maps: `size` bytes at guest-physical
// `guest_phys_addr`, mapped in the VMM at `user_addr`, found at `fd_offset` in `fd`
// (a memfd, borrowed).
struct MemoryRegion {
    uint64_t guest_phys_addr;
    uint64_t size;
    uint64_t user_addr;
    uint64_t fd_offset;
    int fd;
};

// One split virtqueue as the guest set it up. Addresses are the VMM's userspace
// addresses of the descriptor table, avail and used rings (vhost-user ring addresses
// are user addresses). `base` is the next avail index the backend processes: 0 for a
// fresh ring, the used index read from guest memory on reconnect. `kick_fd`: eventfd the
// guest's notifications arrive on (KVM ioeventfd); `call_fd`: eventfd that interrupts
// the guest (KVM irqfd). -1 sends the protocol's "no fd" (polling) flag instead.
struct VringSetup {
    uint16_t index;
    uint16_t size;
    uint64_t desc_user_addr;
    uint64_t avail_user_addr;
    uint64_t used_user_addr;
    uint16_t base;
    int kick_fd;
    int call_fd;
};

struct FrontendOptions {
    std::string name = "vhost-user";  // prefixes every error ("net0")
    std::chrono::milliseconds reply_timeout{2000};
    uint32_t queue_pairs = 1;  // virtio-net queue pairs the card has (vrings = 2 x this)
    uint16_t mtu = 0;          // sent with NET_SET_MTU when the guest acks VIRTIO_NET_F_MTU
};

struct BackendFeatures {
    // What GET_FEATURES returned, verbatim.
    uint64_t offered = 0;
    // What the device may offer the guest: wanted & offered, without the vhost-user
    // transport bit and without what this frontend cannot pass through (dirty logging,
    // ACCESS_PLATFORM/IOTLB, packed rings; VIRTIO_NET_F_MTU when the backend cannot be
    // told the MTU).
    uint64_t usable = 0;
    // Protocol features both sides agreed on (0 without VHOST_USER_F_PROTOCOL_FEATURES).
    uint64_t protocol = 0;
    // Queue pairs the backend serves: GET_QUEUE_NUM when MQ was negotiated, else 1.
    uint32_t max_queue_pairs = 1;
};

struct VringBase {
    uint16_t index;
    uint16_t next_avail;  // the backend's last avail index (GET_VRING_BASE)
};

class Frontend {
  public:
    // Protocol features this frontend implements.
    static constexpr uint64_t kSupportedProtocolFeatures =
        bit(protocol_bit::kMq) | bit(protocol_bit::kReplyAck) | bit(protocol_bit::kNetMtu);
    // Virtio features this frontend never passes through (see BackendFeatures::usable).
    static constexpr uint64_t kUnsupportedFeatures =
        bit(virtio_bit::kLogAll) | bit(virtio_bit::kIommuPlatform) | bit(virtio_bit::kRingPacked) |
        kProtocolFeaturesBit;

    enum class State { Connected, Negotiated, Running, Closed };

    Frontend(UniqueFd connection, FrontendOptions options);
    Frontend(Frontend&&) = default;
    Frontend& operator=(Frontend&&) = default;

    // SET_OWNER, GET_FEATURES, and when offered GET_PROTOCOL_FEATURES,
    // SET_PROTOCOL_FEATURES (REPLY_ACK; MQ when `wanted` has VIRTIO_NET_F_MQ or the card
    // has several queue pairs; NET_MTU when `wanted` has VIRTIO_NET_F_MTU and a MTU is
    // set) and GET_QUEUE_NUM when MQ was agreed. Error(Incompatible) when the backend
    // lacks VIRTIO_F_VERSION_1 or serves fewer queue pairs than the card has.
    // Connected -> Negotiated.
    BackendFeatures negotiate(uint64_t wanted_virtio_features);

    // SET_FEATURES (acked, plus VHOST_USER_F_PROTOCOL_FEATURES when the backend offered
    // it), SET_MEM_TABLE, NET_SET_MTU when agreed and acked, then per vring
    // SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL, and
    // SET_VRING_ENABLE(1) for each when protocol features are in use. Every message is
    // acknowledged under REPLY_ACK; without it a final GET_FEATURES round trip proves the
    // backend took them all. Error(Incompatible) when the backend lacks a feature the
    // guest acked (a backend that changed across a reconnect). Negotiated -> Running.
    void start(uint64_t acked_features, std::span<const MemoryRegion> regions,
               std::span<const VringSetup> vrings);

    // SET_VRING_ENABLE(0) for every started vring (when protocol features are in use),
    // then GET_VRING_BASE for each: the backend stops processing them. Returns each
    // vring's next avail index. Running -> Negotiated (start() may be called again).
    std::vector<VringBase> stop();

    // The socket, for the VMM's epoll (EPOLLIN): readable while idle means the backend
    // closed the connection, failed, or sent something unsolicited. -1 once closed.
    int poll_fd() const { return channel_.fd(); }

    // Non-blocking check of an idle session. True when the backend is gone or broke the
    // protocol; the session is then Closed and error() says why. Call it when poll_fd()
    // is readable.
    bool disconnected();

    // Ends the session (closes the socket) recording `reason` as error().
    void close(const std::string& reason);

    State state() const { return state_; }
    bool is_open() const { return state_ != State::Closed; }
    const std::string& error() const { return error_; }
    const BackendFeatures& backend() const { return backend_; }
    const FrontendOptions& options() const { return options_; }

  private:
    template <typename Body>
    auto guarded(Body&& body) -> decltype(body());

    void require_state(State wanted, const char* call) const;
    bool reply_ack() const { return (backend_.protocol & bit(protocol_bit::kReplyAck)) != 0; }
    bool protocol_features() const { return (backend_.offered & kProtocolFeaturesBit) != 0; }
    // Sends a request that has no reply of its own; under REPLY_ACK waits for the ack.
    void send_acked(OutgoingMessage msg);
    uint64_t query_u64(Request request);

    Channel channel_;
    FrontendOptions options_;
    State state_ = State::Connected;
    BackendFeatures backend_;
    std::vector<uint16_t> started_;  // vring indices start() set up
    std::string error_;
};

}  // namespace conduit::vmm::vhost_user
