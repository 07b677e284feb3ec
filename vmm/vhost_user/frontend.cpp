#include "vmm/vhost_user/frontend.h"

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <set>
#include <stdexcept>

namespace conduit::vmm::vhost_user {

namespace {

constexpr uint64_t kVersion1 = bit(virtio_bit::kVersion1);
constexpr uint64_t kNetMtu = bit(virtio_bit::kNetMtu);
constexpr uint64_t kNetMq = bit(virtio_bit::kNetMq);
// virtio-net allows at most 0x8000 queue pairs; a larger GET_QUEUE_NUM is nonsense.
constexpr uint64_t kMaxQueuePairs = 0x8000;
constexpr uint16_t kMinMtu = 68;  // the smallest MTU virtio-net (and DPDK) accept
constexpr uint32_t kMaxVringSize = 32768;

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

[[noreturn]] void incompatible(const std::string& what) {
    throw Error(Error::Kind::Incompatible, what);
}

[[noreturn]] void bad_argument(const std::string& what) {
    throw std::invalid_argument(what);
}

void set_need_reply(OutgoingMessage& msg) {
    uint32_t flags;
    std::memcpy(&flags, msg.bytes.data() + offsetof(Header, flags), sizeof flags);
    flags |= kFlagNeedReply;
    std::memcpy(msg.bytes.data() + offsetof(Header, flags), &flags, sizeof flags);
}

bool overflows(uint64_t base, uint64_t size) {
    return base + size < base;
}

}  // namespace

Frontend::Frontend(UniqueFd connection, FrontendOptions options)
    : channel_(std::move(connection)), options_(std::move(options)) {
    // Each queue pair is two vrings whose indices must fit the 8-bit field of the
    // kick/call messages.
    if (options_.queue_pairs == 0 || options_.queue_pairs > (kMaxVringIndex + 1) / 2) {
        bad_argument(options_.name + ": " + std::to_string(options_.queue_pairs) +
                     " queue pairs; vhost-user carries 1 to " +
                     std::to_string((kMaxVringIndex + 1) / 2));
    }
    if (options_.reply_timeout.count() <= 0) {
        bad_argument(options_.name + ": the reply timeout must be positive");
    }
    if (options_.mtu != 0 && options_.mtu < kMinMtu) {
        bad_argument(options_.name + ": MTU " + std::to_string(options_.mtu) +
                     " is below the minimum of " + std::to_string(kMinMtu));
    }
}

template <typename Body>
auto Frontend::guarded(Body&& body) -> decltype(body()) {
    try {
        return body();
    } catch (const Error& e) {
        const std::string msg = options_.name + ": " + e.what();
        close(msg);
        throw Error(e.kind(), msg);
    } catch (const std::logic_error&) {
        // Caller bugs are detected before any message goes out: the session is intact.
        throw;
    } catch (...) {
        close(options_.name + ": session aborted by an unexpected exception");
        throw;
    }
}

void Frontend::require_state(State wanted, const char* call) const {
    static constexpr const char* kNames[] = {"connected", "negotiated", "running", "closed"};
    if (state_ != wanted) {
        throw std::logic_error(options_.name + ": " + call + "() on a " +
                               kNames[static_cast<int>(state_)] + " session (needs " +
                               kNames[static_cast<int>(wanted)] + ")" +
                               (state_ == State::Closed ? ": " + error_ : ""));
    }
}

void Frontend::close(const std::string& reason) {
    channel_.close();
    state_ = State::Closed;
    started_.clear();
    if (error_.empty()) {
        error_ = reason;
    }
}

uint64_t Frontend::query_u64(Request request) {
    channel_.send(encode(request), options_.reply_timeout);
    const ReceivedMessage reply = channel_.receive(request, options_.reply_timeout);
    return decode_u64_reply(reply, request);  // validates size, flags, code and fds
}

void Frontend::send_acked(OutgoingMessage msg) {
    const bool ack = reply_ack();
    if (ack) {
        set_need_reply(msg);
    }
    channel_.send(msg, options_.reply_timeout);
    if (!ack) {
        return;
    }
    const ReceivedMessage reply = channel_.receive(msg.request, options_.reply_timeout);
    // The ack is the backend's verdict: 0 is success, anything else a refusal.
    const uint64_t status = decode_u64_reply(reply, msg.request);
    if (status != 0) {
        throw Error(Error::Kind::Rejected, request_name(msg.request) +
                                               ": the backend refused it (REPLY_ACK " +
                                               std::to_string(status) + ")");
    }
}

BackendFeatures Frontend::negotiate(uint64_t wanted) {
    require_state(State::Connected, "negotiate");
    return guarded([&] {
        channel_.send(encode(Request::SetOwner), options_.reply_timeout);

        backend_ = BackendFeatures{};
        backend_.offered = query_u64(Request::GetFeatures);
        // Backend input: its feature word decides what can work at all.
        if ((backend_.offered & kVersion1) == 0) {
            incompatible("the backend does not offer VIRTIO_F_VERSION_1 (features " +
                         hex(backend_.offered) +
                         "); conduit-vmm drives modern virtio devices only");
        }

        if (protocol_features()) {
            const uint64_t offered_protocol = query_u64(Request::GetProtocolFeatures);
            uint64_t want = bit(protocol_bit::kReplyAck);
            if ((wanted & kNetMq) != 0 || options_.queue_pairs > 1) {
                want |= bit(protocol_bit::kMq);
            }
            if ((wanted & kNetMtu) != 0 && options_.mtu != 0) {
                want |= bit(protocol_bit::kNetMtu);
            }
            // Only bits both sides know: whatever else the backend offers is ignored.
            const uint64_t agreed = offered_protocol & want & kSupportedProtocolFeatures;
            // Sent without NEED_REPLY: REPLY_ACK is only in force once this is taken.
            channel_.send(encode_u64(Request::SetProtocolFeatures, agreed), options_.reply_timeout);
            backend_.protocol = agreed;

            if ((agreed & bit(protocol_bit::kMq)) != 0) {
                const uint64_t pairs = query_u64(Request::GetQueueNum);
                // Backend input: a count of queue pairs, bounded by what virtio allows.
                if (pairs == 0 || pairs > kMaxQueuePairs) {
                    throw Error(Error::Kind::Protocol,
                                "GET_QUEUE_NUM reply: " + std::to_string(pairs) +
                                    " queue pairs is not a valid count (1 to " +
                                    std::to_string(kMaxQueuePairs) + ")");
                }
                backend_.max_queue_pairs = static_cast<uint32_t>(pairs);
            }
        }
        if (options_.queue_pairs > backend_.max_queue_pairs) {
            incompatible("the card has " + std::to_string(options_.queue_pairs) +
                         " queue pairs but the backend serves " +
                         std::to_string(backend_.max_queue_pairs) +
                         ((backend_.protocol & bit(protocol_bit::kMq)) == 0
                              ? " (no VHOST_USER_PROTOCOL_F_MQ)"
                              : ""));
        }

        uint64_t usable = backend_.offered & wanted & ~kUnsupportedFeatures;
        if ((backend_.protocol & bit(protocol_bit::kNetMtu)) == 0) {
            usable &= ~kNetMtu;  // the guest would be promised a MTU the backend never hears
        }
        if ((backend_.protocol & bit(protocol_bit::kMq)) == 0) {
            usable &= ~kNetMq;
        }
        backend_.usable = usable;
        state_ = State::Negotiated;
        return backend_;
    });
}

void Frontend::start(uint64_t acked, std::span<const MemoryRegion> regions,
                     std::span<const VringSetup> vrings) {
    require_state(State::Negotiated, "start");
    const std::string& name = options_.name;

    // Caller input, checked before anything is sent so that a bug leaves the session
    // as it was.
    if ((acked & kVersion1) == 0) {
        bad_argument(name + ": the acked features lack VIRTIO_F_VERSION_1");
    }
    if ((acked & kUnsupportedFeatures) != 0) {
        bad_argument(name + ": acked features " +
                     virtio_feature_names(acked & kUnsupportedFeatures) +
                     " cannot pass through this frontend");
    }
    if ((acked & kNetMtu) != 0 && options_.mtu == 0) {
        bad_argument(name + ": VIRTIO_NET_F_MTU acked but no MTU configured");
    }
    if (regions.empty() || regions.size() > kMaxMemoryRegions) {
        bad_argument(name + ": " + std::to_string(regions.size()) +
                     " memory regions; vhost-user carries 1 to " +
                     std::to_string(kMaxMemoryRegions));
    }
    for (size_t i = 0; i < regions.size(); ++i) {
        const MemoryRegion& r = regions[i];
        if (r.fd < 0 || r.size == 0 || overflows(r.guest_phys_addr, r.size) ||
            overflows(r.user_addr, r.size) || overflows(r.fd_offset, r.size)) {
            bad_argument(name + ": memory region " + std::to_string(i) + " is invalid");
        }
        for (size_t j = 0; j < i; ++j) {
            const MemoryRegion& o = regions[j];
            if (r.guest_phys_addr < o.guest_phys_addr + o.size &&
                o.guest_phys_addr < r.guest_phys_addr + r.size) {
                bad_argument(name + ": memory regions " + std::to_string(j) + " and " +
                             std::to_string(i) + " overlap");
            }
        }
    }
    if (vrings.empty()) {
        bad_argument(name + ": no vrings to start");
    }
    std::set<uint16_t> seen;
    for (const VringSetup& v : vrings) {
        if (v.index >= 2 * options_.queue_pairs) {
            bad_argument(name + ": vring " + std::to_string(v.index) + " beyond the " +
                         std::to_string(2 * options_.queue_pairs) + " vrings of the card");
        }
        if (!seen.insert(v.index).second) {
            bad_argument(name + ": vring " + std::to_string(v.index) + " given twice");
        }
        if (v.size == 0 || v.size > kMaxVringSize || (v.size & (v.size - 1)) != 0) {
            bad_argument(name + ": vring " + std::to_string(v.index) + " size " +
                         std::to_string(v.size) + " is not a power of two up to 32768");
        }
        if (v.desc_user_addr == 0 || v.avail_user_addr == 0 || v.used_user_addr == 0) {
            bad_argument(name + ": vring " + std::to_string(v.index) + " has a null ring");
        }
    }

    guarded([&] {
        // Backend input from negotiate(): every acked bit must be one it offers. After a
        // reconnect the guest's acked set is fixed, and a backend that changed cannot
        // serve it.
        const uint64_t missing = acked & ~backend_.offered;
        if (missing != 0) {
            incompatible("the backend lacks " + virtio_feature_names(missing) +
                         ", which the guest acked");
        }
        if ((acked & kNetMq) != 0 && (backend_.protocol & bit(protocol_bit::kMq)) == 0) {
            incompatible(
                "the guest acked VIRTIO_NET_F_MQ but the backend lacks "
                "VHOST_USER_PROTOCOL_F_MQ");
        }
        const bool send_mtu = (acked & kNetMtu) != 0;
        if (send_mtu && (backend_.protocol & bit(protocol_bit::kNetMtu)) == 0) {
            incompatible(
                "the guest acked VIRTIO_NET_F_MTU but the backend lacks "
                "VHOST_USER_PROTOCOL_F_NET_MTU");
        }

        // The guest never acks the vhost-user transport bit; without it the backend
        // would treat rings as enabled on kick and ignore SET_VRING_ENABLE.
        const uint64_t features = acked | (backend_.offered & kProtocolFeaturesBit);
        send_acked(encode_u64(Request::SetFeatures, features));

        std::vector<MemoryRegionDesc> table;
        std::vector<int> fds;
        for (const MemoryRegion& r : regions) {
            table.push_back({r.guest_phys_addr, r.size, r.user_addr, r.fd_offset});
            fds.push_back(r.fd);
        }
        send_acked(encode_mem_table(table, fds));

        if (send_mtu) {
            send_acked(encode_u64(Request::NetSetMtu, options_.mtu));
        }

        for (const VringSetup& v : vrings) {
            send_acked(encode_state(Request::SetVringNum, {v.index, v.size}));
            VringAddr addr{};
            addr.index = v.index;
            addr.flags = 0;  // no dirty logging
            addr.desc_user_addr = v.desc_user_addr;
            addr.used_user_addr = v.used_user_addr;
            addr.avail_user_addr = v.avail_user_addr;
            addr.log_guest_addr = 0;
            send_acked(encode_vring_addr(addr));
            send_acked(encode_state(Request::SetVringBase, {v.index, v.base}));
            send_acked(encode_vring_fd(Request::SetVringKick, v.index, v.kick_fd));
            send_acked(encode_vring_fd(Request::SetVringCall, v.index, v.call_fd));
        }
        if (protocol_features()) {
            for (const VringSetup& v : vrings) {
                send_acked(encode_state(Request::SetVringEnable, {v.index, 1}));
            }
        }
        if (!reply_ack()) {
            // No acks: a round trip is the only proof the backend processed everything
            // before it (a backend that rejects a message closes the connection).
            const uint64_t again = query_u64(Request::GetFeatures);
            if (again != backend_.offered) {
                throw Error(Error::Kind::Protocol,
                            "GET_FEATURES reply: the backend's features changed from " +
                                hex(backend_.offered) + " to " + hex(again));
            }
        }
        started_.clear();
        for (const VringSetup& v : vrings) {
            started_.push_back(v.index);
        }
        state_ = State::Running;
    });
}

std::vector<VringBase> Frontend::stop() {
    require_state(State::Running, "stop");
    return guarded([&] {
        if (protocol_features()) {
            for (uint16_t index : started_) {
                send_acked(encode_state(Request::SetVringEnable, {index, 0}));
            }
        }
        std::vector<VringBase> bases;
        for (uint16_t index : started_) {
            channel_.send(encode_state(Request::GetVringBase, {index, 0}), options_.reply_timeout);
            const ReceivedMessage reply =
                channel_.receive(Request::GetVringBase, options_.reply_timeout);
            const VringState s = decode_state_reply(reply, Request::GetVringBase);
            // Backend input: the state must be about the vring we asked for, and a
            // split ring's index is 16 bits.
            if (s.index != index) {
                throw Error(Error::Kind::Protocol,
                            "GET_VRING_BASE reply: state of vring " + std::to_string(s.index) +
                                ", asked for vring " + std::to_string(index));
            }
            if (s.num > 0xffff) {
                throw Error(Error::Kind::Protocol, "GET_VRING_BASE reply: base " +
                                                       std::to_string(s.num) + " of vring " +
                                                       std::to_string(index) +
                                                       " does not fit a split ring's 16-bit index");
            }
            bases.push_back({index, static_cast<uint16_t>(s.num)});
        }
        started_.clear();
        state_ = State::Negotiated;
        return bases;
    });
}

bool Frontend::disconnected() {
    if (state_ == State::Closed) {
        return true;
    }
    // Backend input: with no request outstanding it has nothing to say; data or EOF
    // both end the session.
    switch (channel_.poll_idle()) {
        case Channel::IdleState::Quiet:
            return false;
        case Channel::IdleState::Closed:
            close(options_.name + ": the backend closed the connection");
            return true;
        case Channel::IdleState::Unsolicited:
            close(options_.name +
                  ": the backend sent a message nobody asked for; closing the session");
            return true;
    }
    return false;
}

}  // namespace conduit::vmm::vhost_user
