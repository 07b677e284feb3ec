#include "vmm/vhost_user/message.h"

#include <cstdio>
#include <cstring>
#include <iterator>
#include <stdexcept>

namespace conduit::vmm::vhost_user {

namespace {

const char* known_request_name(uint32_t code) {
    switch (static_cast<Request>(code)) {
        case Request::None:
            return "NONE";
        case Request::GetFeatures:
            return "GET_FEATURES";
        case Request::SetFeatures:
            return "SET_FEATURES";
        case Request::SetOwner:
            return "SET_OWNER";
        case Request::ResetOwner:
            return "RESET_OWNER";
        case Request::SetMemTable:
            return "SET_MEM_TABLE";
        case Request::SetLogBase:
            return "SET_LOG_BASE";
        case Request::SetLogFd:
            return "SET_LOG_FD";
        case Request::SetVringNum:
            return "SET_VRING_NUM";
        case Request::SetVringAddr:
            return "SET_VRING_ADDR";
        case Request::SetVringBase:
            return "SET_VRING_BASE";
        case Request::GetVringBase:
            return "GET_VRING_BASE";
        case Request::SetVringKick:
            return "SET_VRING_KICK";
        case Request::SetVringCall:
            return "SET_VRING_CALL";
        case Request::SetVringErr:
            return "SET_VRING_ERR";
        case Request::GetProtocolFeatures:
            return "GET_PROTOCOL_FEATURES";
        case Request::SetProtocolFeatures:
            return "SET_PROTOCOL_FEATURES";
        case Request::GetQueueNum:
            return "GET_QUEUE_NUM";
        case Request::SetVringEnable:
            return "SET_VRING_ENABLE";
        case Request::SendRarp:
            return "SEND_RARP";
        case Request::NetSetMtu:
            return "NET_SET_MTU";
        case Request::SetBackendReqFd:
            return "SET_BACKEND_REQ_FD";
        case Request::IotlbMsg:
            return "IOTLB_MSG";
        case Request::SetVringEndian:
            return "SET_VRING_ENDIAN";
        case Request::GetConfig:
            return "GET_CONFIG";
        case Request::SetConfig:
            return "SET_CONFIG";
        case Request::GetInflightFd:
            return "GET_INFLIGHT_FD";
        case Request::SetInflightFd:
            return "SET_INFLIGHT_FD";
        case Request::GetMaxMemSlots:
            return "GET_MAX_MEM_SLOTS";
        case Request::AddMemReg:
            return "ADD_MEM_REG";
        case Request::RemMemReg:
            return "REM_MEM_REG";
        case Request::SetStatus:
            return "SET_STATUS";
        case Request::GetStatus:
            return "GET_STATUS";
    }
    return nullptr;
}

const char* virtio_bit_name(unsigned b) {
    switch (b) {
        case 0:
            return "VIRTIO_NET_F_CSUM";
        case 1:
            return "VIRTIO_NET_F_GUEST_CSUM";
        case 2:
            return "VIRTIO_NET_F_CTRL_GUEST_OFFLOADS";
        case virtio_bit::kNetMtu:
            return "VIRTIO_NET_F_MTU";
        case 5:
            return "VIRTIO_NET_F_MAC";
        case 6:
            return "VIRTIO_NET_F_GSO";
        case 7:
            return "VIRTIO_NET_F_GUEST_TSO4";
        case 8:
            return "VIRTIO_NET_F_GUEST_TSO6";
        case 9:
            return "VIRTIO_NET_F_GUEST_ECN";
        case 10:
            return "VIRTIO_NET_F_GUEST_UFO";
        case 11:
            return "VIRTIO_NET_F_HOST_TSO4";
        case 12:
            return "VIRTIO_NET_F_HOST_TSO6";
        case 13:
            return "VIRTIO_NET_F_HOST_ECN";
        case 14:
            return "VIRTIO_NET_F_HOST_UFO";
        case virtio_bit::kNetMrgRxbuf:
            return "VIRTIO_NET_F_MRG_RXBUF";
        case virtio_bit::kNetStatus:
            return "VIRTIO_NET_F_STATUS";
        case 17:
            return "VIRTIO_NET_F_CTRL_VQ";
        case 18:
            return "VIRTIO_NET_F_CTRL_RX";
        case 19:
            return "VIRTIO_NET_F_CTRL_VLAN";
        case 21:
            return "VIRTIO_NET_F_GUEST_ANNOUNCE";
        case virtio_bit::kNetMq:
            return "VIRTIO_NET_F_MQ";
        case 24:
            return "VIRTIO_F_NOTIFY_ON_EMPTY";
        case virtio_bit::kLogAll:
            return "VHOST_F_LOG_ALL";
        case 27:
            return "VIRTIO_F_ANY_LAYOUT";
        case virtio_bit::kIndirectDesc:
            return "VIRTIO_RING_F_INDIRECT_DESC";
        case virtio_bit::kEventIdx:
            return "VIRTIO_RING_F_EVENT_IDX";
        case virtio_bit::kProtocolFeatures:
            return "VHOST_USER_F_PROTOCOL_FEATURES";
        case virtio_bit::kVersion1:
            return "VIRTIO_F_VERSION_1";
        case virtio_bit::kIommuPlatform:
            return "VIRTIO_F_ACCESS_PLATFORM";
        case virtio_bit::kRingPacked:
            return "VIRTIO_F_RING_PACKED";
        case 35:
            return "VIRTIO_F_IN_ORDER";
        default:
            return nullptr;
    }
}

const char* protocol_bit_name(unsigned b) {
    static constexpr const char* kNames[] = {"MQ",
                                             "LOG_SHMFD",
                                             "RARP",
                                             "REPLY_ACK",
                                             "NET_MTU",
                                             "BACKEND_REQ",
                                             "CROSS_ENDIAN",
                                             "CRYPTO_SESSION",
                                             "PAGEFAULT",
                                             "CONFIG",
                                             "BACKEND_SEND_FD",
                                             "HOST_NOTIFIER",
                                             "INFLIGHT_SHMFD",
                                             "RESET_DEVICE",
                                             "INBAND_NOTIFICATIONS",
                                             "CONFIGURE_MEM_SLOTS",
                                             "STATUS"};
    return b < std::size(kNames) ? kNames[b] : nullptr;
}

std::string names_of(uint64_t bits, const char* (*name)(unsigned)) {
    if (bits == 0) {
        return "none";
    }
    std::string out;
    for (unsigned b = 0; b < 64; ++b) {
        if ((bits & bit(b)) == 0) {
            continue;
        }
        if (!out.empty()) {
            out += '|';
        }
        const char* n = name(b);
        out += n != nullptr ? std::string(n) : "bit " + std::to_string(b);
    }
    return out;
}

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

[[noreturn]] void reject(Request expected, const std::string& reason) {
    throw Error(Error::Kind::Protocol, request_name(expected) + " reply: " + reason);
}

OutgoingMessage with_payload(Request request, uint32_t flags, const void* payload, uint32_t size) {
    OutgoingMessage m;
    m.request = request;
    const Header h{static_cast<uint32_t>(request), kVersion | flags, size};
    m.bytes.resize(kHeaderSize + size);
    std::memcpy(m.bytes.data(), &h, kHeaderSize);
    if (size != 0) {
        std::memcpy(m.bytes.data() + kHeaderSize, payload, size);
    }
    return m;
}

}  // namespace

std::string request_name(uint32_t code) {
    const char* n = known_request_name(code);
    return n != nullptr ? std::string(n) : "request " + std::to_string(code);
}

std::string virtio_feature_names(uint64_t features) {
    return names_of(features, virtio_bit_name);
}

std::string protocol_feature_names(uint64_t features) {
    return names_of(features, protocol_bit_name);
}

OutgoingMessage encode(Request request, uint32_t flags) {
    return with_payload(request, flags, nullptr, 0);
}

OutgoingMessage encode_u64(Request request, uint64_t value, uint32_t flags) {
    return with_payload(request, flags, &value, sizeof value);
}

OutgoingMessage encode_state(Request request, VringState state, uint32_t flags) {
    return with_payload(request, flags, &state, sizeof state);
}

OutgoingMessage encode_vring_addr(const VringAddr& addr, uint32_t flags) {
    return with_payload(Request::SetVringAddr, flags, &addr, sizeof addr);
}

OutgoingMessage encode_mem_table(std::span<const MemoryRegionDesc> regions,
                                 std::span<const int> fds, uint32_t flags) {
    if (regions.empty() || regions.size() > kMaxMemoryRegions) {
        throw std::invalid_argument("SET_MEM_TABLE: " + std::to_string(regions.size()) +
                                    " regions; the protocol carries 1 to " +
                                    std::to_string(kMaxMemoryRegions));
    }
    if (fds.size() != regions.size()) {
        throw std::invalid_argument("SET_MEM_TABLE: " + std::to_string(regions.size()) +
                                    " regions but " + std::to_string(fds.size()) + " fds");
    }
    // The payload is always the full table (nregions, padding, 8 slots), as QEMU and
    // DPDK lay it out; unused slots are zero.
    struct {
        uint32_t nregions;
        uint32_t padding;
        MemoryRegionDesc regions[kMaxMemoryRegions];
    } table{};
    static_assert(sizeof(table) == kMaxPayloadSize);
    table.nregions = static_cast<uint32_t>(regions.size());
    for (size_t i = 0; i < regions.size(); ++i) {
        table.regions[i] = regions[i];
    }
    OutgoingMessage m = with_payload(Request::SetMemTable, flags, &table, sizeof table);
    m.fds.assign(fds.begin(), fds.end());
    return m;
}

OutgoingMessage encode_vring_fd(Request request, uint32_t index, int fd, uint32_t flags) {
    if (request != Request::SetVringKick && request != Request::SetVringCall &&
        request != Request::SetVringErr) {
        throw std::invalid_argument(request_name(request) + " does not carry a vring fd");
    }
    if (index > kMaxVringIndex) {
        throw std::invalid_argument(request_name(request) + ": vring index " +
                                    std::to_string(index) + " does not fit in 8 bits");
    }
    uint64_t value = index;
    if (fd < 0) {
        value |= kVringNoFd;
    }
    OutgoingMessage m = encode_u64(request, value, flags);
    if (fd >= 0) {
        m.fds.push_back(fd);
    }
    return m;
}

// --- decoding: everything below handles bytes the backend chose -------------------

void validate_reply_header(const Header& header, Request expected) {
    // The request code first: a reply to something else means the two sides are out
    // of step, which explains any other oddity better than the other checks would.
    if (header.request != static_cast<uint32_t>(expected)) {
        reject(expected, "backend answered " + request_name(header.request) + " (code " +
                             std::to_string(header.request) + ")");
    }
    const uint32_t version = header.flags & kFlagVersionMask;
    if (version != kVersion) {
        reject(expected, "protocol version " + std::to_string(version) + ", expected " +
                             std::to_string(kVersion));
    }
    if ((header.flags & kFlagReply) == 0) {
        reject(expected, "reply flag missing (flags " + hex(header.flags) + ")");
    }
    // A reply never asks for a reply; bits above 3 are undefined. QEMU accepts exactly
    // version|reply as well.
    const uint32_t stray = header.flags & ~(kFlagVersionMask | kFlagReply);
    if (stray != 0) {
        reject(expected,
               "unexpected flag bits " + hex(stray) + " (flags " + hex(header.flags) + ")");
    }
    if (header.size > kMaxPayloadSize) {
        reject(expected, "payload of " + std::to_string(header.size) +
                             " bytes exceeds the protocol maximum of " +
                             std::to_string(kMaxPayloadSize));
    }
}

Header decode_header(std::span<const uint8_t> bytes, Request expected) {
    if (bytes.size() != kHeaderSize) {
        reject(expected, "truncated header: " + std::to_string(bytes.size()) + " of " +
                             std::to_string(kHeaderSize) + " bytes");
    }
    Header h;
    std::memcpy(&h, bytes.data(), kHeaderSize);
    validate_reply_header(h, expected);
    return h;
}

namespace {

// The checks every fixed-size reply shares: header, exact payload size, the header's
// size field agreeing with the bytes actually held, and no file descriptors.
void check_fixed_reply(const ReceivedMessage& msg, Request expected, size_t size) {
    validate_reply_header(msg.header, expected);
    if (msg.header.size != msg.payload.size()) {
        reject(expected, "header announces " + std::to_string(msg.header.size) +
                             " payload bytes but " + std::to_string(msg.payload.size()) +
                             " arrived");
    }
    if (msg.payload.size() != size) {
        reject(expected, "payload " + std::to_string(msg.payload.size()) + " bytes, expected " +
                             std::to_string(size));
    }
    if (!msg.fds.empty()) {
        reject(expected,
               std::to_string(msg.fds.size()) + " file descriptors attached, expected none");
    }
}

}  // namespace

uint64_t decode_u64_reply(const ReceivedMessage& msg, Request expected) {
    check_fixed_reply(msg, expected, sizeof(uint64_t));
    uint64_t v;
    std::memcpy(&v, msg.payload.data(), sizeof v);
    return v;
}

VringState decode_state_reply(const ReceivedMessage& msg, Request expected) {
    check_fixed_reply(msg, expected, sizeof(VringState));
    VringState s;
    std::memcpy(&s, msg.payload.data(), sizeof s);
    return s;
}

}  // namespace conduit::vmm::vhost_user
