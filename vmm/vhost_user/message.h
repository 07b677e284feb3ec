// vmm/vhost_user/message: the vhost-user wire format (QEMU docs/interop/vhost-user.rst):
// request codes, flags, feature bits, payload layouts, an encoder for the requests the
// frontend sends and a decoder that validates every reply a backend sends.
//
// Trust boundary: everything decoded here comes from the backend, another process that
// may be buggy or hostile. The decoder checks the header (version, reply bit, no other
// flag bits, the request code it answers, a payload size bounded before anything is
// read), then the exact payload size for that request and the number of file
// descriptors; any violation is an Error(Protocol) naming the request and the problem.
//
// All numbers are in the host's byte order (the protocol is host-local).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/util/unique_fd.h"
#include "vmm/vhost_user/error.h"

namespace conduit::vmm::vhost_user {

// Frontend-to-backend request codes (the "front-end message types" of the spec).
enum class Request : uint32_t {
    None = 0,
    GetFeatures = 1,
    SetFeatures = 2,
    SetOwner = 3,
    ResetOwner = 4,
    SetMemTable = 5,
    SetLogBase = 6,
    SetLogFd = 7,
    SetVringNum = 8,
    SetVringAddr = 9,
    SetVringBase = 10,
    GetVringBase = 11,
    SetVringKick = 12,
    SetVringCall = 13,
    SetVringErr = 14,
    GetProtocolFeatures = 15,
    SetProtocolFeatures = 16,
    GetQueueNum = 17,
    SetVringEnable = 18,
    SendRarp = 19,
    NetSetMtu = 20,
    SetBackendReqFd = 21,
    IotlbMsg = 22,
    SetVringEndian = 23,
    GetConfig = 24,
    SetConfig = 25,
    GetInflightFd = 31,
    SetInflightFd = 32,
    GetMaxMemSlots = 36,
    AddMemReg = 37,
    RemMemReg = 38,
    SetStatus = 39,
    GetStatus = 40,
};

// "GET_FEATURES"; "request 77" for a code this library does not know.
std::string request_name(uint32_t code);
inline std::string request_name(Request r) {
    return request_name(static_cast<uint32_t>(r));
}

// Header flags.
inline constexpr uint32_t kFlagVersionMask = 0x3;
inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kFlagReply = 1u << 2;
inline constexpr uint32_t kFlagNeedReply = 1u << 3;

constexpr uint64_t bit(unsigned n) {
    return uint64_t{1} << n;
}

// Virtio feature bits the frontend itself has to reason about (the device model owns
// the full virtio-net list). Values are bit numbers.
namespace virtio_bit {
inline constexpr unsigned kNetMtu = 3;             // VIRTIO_NET_F_MTU
inline constexpr unsigned kNetMrgRxbuf = 15;       // VIRTIO_NET_F_MRG_RXBUF
inline constexpr unsigned kNetStatus = 16;         // VIRTIO_NET_F_STATUS
inline constexpr unsigned kNetMq = 22;             // VIRTIO_NET_F_MQ
inline constexpr unsigned kLogAll = 26;            // VHOST_F_LOG_ALL (dirty logging)
inline constexpr unsigned kIndirectDesc = 28;      // VIRTIO_RING_F_INDIRECT_DESC
inline constexpr unsigned kEventIdx = 29;          // VIRTIO_RING_F_EVENT_IDX
inline constexpr unsigned kProtocolFeatures = 30;  // VHOST_USER_F_PROTOCOL_FEATURES
inline constexpr unsigned kVersion1 = 32;          // VIRTIO_F_VERSION_1
inline constexpr unsigned kIommuPlatform = 33;     // VIRTIO_F_ACCESS_PLATFORM
inline constexpr unsigned kRingPacked = 34;        // VIRTIO_F_RING_PACKED
}  // namespace virtio_bit

// VHOST_USER_F_PROTOCOL_FEATURES: a vhost-user transport bit in the virtio feature word.
// Backends offer it; guests never see or ack it; the frontend re-adds it to
// SET_FEATURES when the backend offered it.
inline constexpr uint64_t kProtocolFeaturesBit = bit(virtio_bit::kProtocolFeatures);

// Protocol feature bits (GET/SET_PROTOCOL_FEATURES).
namespace protocol_bit {
inline constexpr unsigned kMq = 0;
inline constexpr unsigned kLogShmfd = 1;
inline constexpr unsigned kRarp = 2;
inline constexpr unsigned kReplyAck = 3;
inline constexpr unsigned kNetMtu = 4;
inline constexpr unsigned kBackendReq = 5;
inline constexpr unsigned kCrossEndian = 6;
inline constexpr unsigned kCryptoSession = 7;
inline constexpr unsigned kPagefault = 8;
inline constexpr unsigned kConfig = 9;
inline constexpr unsigned kBackendSendFd = 10;
inline constexpr unsigned kHostNotifier = 11;
inline constexpr unsigned kInflightShmfd = 12;
inline constexpr unsigned kResetDevice = 13;
inline constexpr unsigned kInbandNotifications = 14;
inline constexpr unsigned kConfigureMemSlots = 15;
inline constexpr unsigned kStatus = 16;
}  // namespace protocol_bit

// Names of the set bits, e.g. "VIRTIO_F_VERSION_1|bit 40": for error messages.
std::string virtio_feature_names(uint64_t features);
std::string protocol_feature_names(uint64_t features);

// Payload layouts. All are packed in the protocol; these have no padding anyway.
struct Header {
    uint32_t request;
    uint32_t flags;
    uint32_t size;  // payload bytes that follow
};
static_assert(sizeof(Header) == 12);
inline constexpr size_t kHeaderSize = sizeof(Header);

struct VringState {
    uint32_t index;
    uint32_t num;
};
static_assert(sizeof(VringState) == 8);

struct VringAddr {
    uint32_t index;
    uint32_t flags;  // bit 0: VHOST_VRING_F_LOG (dirty logging of the used ring)
    uint64_t desc_user_addr;
    uint64_t used_user_addr;
    uint64_t avail_user_addr;
    uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);

struct MemoryRegionDesc {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
};
static_assert(sizeof(MemoryRegionDesc) == 32);

// SET_MEM_TABLE carries at most this many regions (and as many fds).
inline constexpr uint32_t kMaxMemoryRegions = 8;
// The most fds any message may carry; a backend that sends more is truncated by the
// kernel (MSG_CTRUNC) and rejected.
inline constexpr size_t kMaxFds = kMaxMemoryRegions;
// The largest payload of any message this library sends or accepts (a full memory
// table). A header announcing more is rejected before a byte of the payload is read.
inline constexpr uint32_t kMaxPayloadSize = 8 + kMaxMemoryRegions * sizeof(MemoryRegionDesc);

// SET_VRING_KICK / CALL / ERR payload: vring index in bits 0-7, bit 8 = no fd attached.
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFd = uint64_t{1} << 8;

// The largest vring index the u64 kick/call payload can name.
inline constexpr uint32_t kMaxVringIndex = 0xff;

// One encoded request, ready for Channel::send. The fds are borrowed: they must stay
// open until the message has been sent (the kernel duplicates them into the backend).
struct OutgoingMessage {
    Request request = Request::None;
    std::vector<uint8_t> bytes;  // header + payload
    std::vector<int> fds;
};

// Encoders. `flags` is added to the version bits (kFlagNeedReply when REPLY_ACK applies).
OutgoingMessage encode(Request request, uint32_t flags = 0);
OutgoingMessage encode_u64(Request request, uint64_t value, uint32_t flags = 0);
OutgoingMessage encode_state(Request request, VringState state, uint32_t flags = 0);
OutgoingMessage encode_vring_addr(const VringAddr& addr, uint32_t flags = 0);
// 1..kMaxMemoryRegions regions and exactly one fd per region (std::invalid_argument else).
OutgoingMessage encode_mem_table(std::span<const MemoryRegionDesc> regions,
                                 std::span<const int> fds, uint32_t flags = 0);
// SET_VRING_KICK / SET_VRING_CALL / SET_VRING_ERR: fd < 0 sends the "no fd" bit.
OutgoingMessage encode_vring_fd(Request request, uint32_t index, int fd, uint32_t flags = 0);

// One message as read from the backend: header, payload, and every fd that arrived
// with its bytes (owned: closed when this is destroyed unless taken).
struct ReceivedMessage {
    Header header{};
    std::vector<uint8_t> payload;
    std::vector<UniqueFd> fds;
};

// Decoders: each validates `bytes`/`msg` as the reply to `expected` and throws
// Error(Protocol) with "<REQUEST> reply: <reason>" on any violation.

// A header as read off the wire: exactly kHeaderSize bytes (fewer is a truncated
// message), then validate_reply_header.
Header decode_header(std::span<const uint8_t> bytes, Request expected);
// Version 1, the reply flag and no other flag, the code of `expected`, and a size no
// larger than kMaxPayloadSize. Called before reading the payload.
void validate_reply_header(const Header& header, Request expected);
// The reply payload of GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM and a
// REPLY_ACK: exactly 8 bytes, no fds.
uint64_t decode_u64_reply(const ReceivedMessage& msg, Request expected);
// GET_VRING_BASE: exactly 8 bytes, no fds.
VringState decode_state_reply(const ReceivedMessage& msg, Request expected);

}  // namespace conduit::vmm::vhost_user
