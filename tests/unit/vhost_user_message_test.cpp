// The vhost-user codec: requests are laid out as the spec says, and every malformed
// reply is rejected with a reason that names the request and the problem.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "vmm/vhost_user/message.h"

namespace vu = conduit::vmm::vhost_user;
using conduit::vmm::UniqueFd;

namespace {

template <typename T>
T at(const std::vector<uint8_t>& bytes, size_t off) {
    T v;
    std::memcpy(&v, bytes.data() + off, sizeof v);
    return v;
}

vu::ReceivedMessage reply(uint32_t request, uint32_t flags, std::vector<uint8_t> payload) {
    vu::ReceivedMessage m;
    m.header = {request, flags, static_cast<uint32_t>(payload.size())};
    m.payload = std::move(payload);
    return m;
}

std::vector<uint8_t> u64_bytes(uint64_t v) {
    std::vector<uint8_t> b(8);
    std::memcpy(b.data(), &v, 8);
    return b;
}

// The error text of `f`, which must throw vu::Error of `kind`.
template <typename F>
std::string error_of(F&& f, vu::Error::Kind kind = vu::Error::Kind::Protocol) {
    try {
        f();
    } catch (const vu::Error& e) {
        EXPECT_EQ(vu::kind_name(e.kind()), std::string(vu::kind_name(kind))) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

constexpr uint32_t kGetFeatures = 1;
constexpr uint32_t kOk = vu::kVersion | vu::kFlagReply;

}  // namespace

TEST(VhostUserCodec, RequestHeaderAndU64Payload) {
    const auto m = vu::encode_u64(vu::Request::SetFeatures, 0x1'4000'0000ull, vu::kFlagNeedReply);
    ASSERT_EQ(m.bytes.size(), 12u + 8u);
    EXPECT_EQ(at<uint32_t>(m.bytes, 0), 2u);    // SET_FEATURES
    EXPECT_EQ(at<uint32_t>(m.bytes, 4), 0x9u);  // version 1 | need_reply
    EXPECT_EQ(at<uint32_t>(m.bytes, 8), 8u);    // payload size
    EXPECT_EQ(at<uint64_t>(m.bytes, 12), 0x1'4000'0000ull);
    EXPECT_TRUE(m.fds.empty());

    const auto owner = vu::encode(vu::Request::SetOwner);
    ASSERT_EQ(owner.bytes.size(), 12u);
    EXPECT_EQ(at<uint32_t>(owner.bytes, 0), 3u);
    EXPECT_EQ(at<uint32_t>(owner.bytes, 4), 1u);
    EXPECT_EQ(at<uint32_t>(owner.bytes, 8), 0u);
}

TEST(VhostUserCodec, VringAddrLayoutIsDescUsedAvailLog) {
    vu::VringAddr a{};
    a.index = 1;
    a.desc_user_addr = 0x1000;
    a.used_user_addr = 0x2000;
    a.avail_user_addr = 0x3000;
    const auto m = vu::encode_vring_addr(a);
    ASSERT_EQ(m.bytes.size(), 12u + 40u);
    EXPECT_EQ(at<uint32_t>(m.bytes, 0), 9u);
    EXPECT_EQ(at<uint32_t>(m.bytes, 12), 1u);
    EXPECT_EQ(at<uint32_t>(m.bytes, 16), 0u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 20), 0x1000u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 28), 0x2000u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 36), 0x3000u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 44), 0u);
}

TEST(VhostUserCodec, MemTableCarriesAllSlotsAndOneFdPerRegion) {
    const vu::MemoryRegionDesc r[2] = {{0x0, 0x200000, 0x7f0000000000, 0},
                                       {0x100000000, 0x400000, 0x7f0000200000, 0x200000}};
    const int fds[2] = {7, 7};
    const auto m = vu::encode_mem_table(r, fds);
    ASSERT_EQ(m.bytes.size(), 12u + 264u);
    EXPECT_EQ(at<uint32_t>(m.bytes, 8), 264u);
    EXPECT_EQ(at<uint32_t>(m.bytes, 12), 2u);  // nregions
    EXPECT_EQ(at<uint64_t>(m.bytes, 20 + 32 + 0), 0x100000000u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 20 + 32 + 8), 0x400000u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 20 + 32 + 16), 0x7f0000200000u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 20 + 32 + 24), 0x200000u);
    EXPECT_EQ(at<uint64_t>(m.bytes, 20 + 64), 0u);  // unused slot
    EXPECT_EQ(m.fds.size(), 2u);

    EXPECT_THROW(vu::encode_mem_table(std::span(r, 2), std::span(fds, 1)), std::invalid_argument);
    EXPECT_THROW(vu::encode_mem_table({}, {}), std::invalid_argument);
    std::vector<vu::MemoryRegionDesc> nine(9);
    std::vector<int> nine_fds(9, 3);
    EXPECT_THROW(vu::encode_mem_table(nine, nine_fds), std::invalid_argument);
}

TEST(VhostUserCodec, VringFdUsesNoFdBitWithoutFd) {
    const auto kick = vu::encode_vring_fd(vu::Request::SetVringKick, 3, 9);
    EXPECT_EQ(at<uint64_t>(kick.bytes, 12), 3u);
    ASSERT_EQ(kick.fds.size(), 1u);
    EXPECT_EQ(kick.fds[0], 9);
    const auto poll = vu::encode_vring_fd(vu::Request::SetVringCall, 2, -1);
    EXPECT_EQ(at<uint64_t>(poll.bytes, 12), 0x102u);
    EXPECT_TRUE(poll.fds.empty());
    EXPECT_THROW(vu::encode_vring_fd(vu::Request::SetVringKick, 256, 9), std::invalid_argument);
    EXPECT_THROW(vu::encode_vring_fd(vu::Request::SetFeatures, 0, 9), std::invalid_argument);
}

TEST(VhostUserCodec, ValidU64Reply) {
    EXPECT_EQ(vu::decode_u64_reply(reply(kGetFeatures, kOk, u64_bytes(0x1'0000'0001ull)),
                                   vu::Request::GetFeatures),
              0x1'0000'0001ull);
}

TEST(VhostUserCodec, PayloadSizeMustBeExact) {
    EXPECT_EQ(
        error_of([] {
            vu::decode_u64_reply(reply(kGetFeatures, kOk, {1, 2, 3, 4}), vu::Request::GetFeatures);
        }),
        "GET_FEATURES reply: payload 4 bytes, expected 8");
    EXPECT_EQ(error_of([] {
                  vu::decode_state_reply(reply(11, kOk, std::vector<uint8_t>(12)),
                                         vu::Request::GetVringBase);
              }),
              "GET_VRING_BASE reply: payload 12 bytes, expected 8");
}

TEST(VhostUserCodec, HeaderSizeFieldMustMatchPayloadHeld) {
    auto m = reply(kGetFeatures, kOk, u64_bytes(1));
    m.header.size = 16;
    EXPECT_EQ(error_of([&] { vu::decode_u64_reply(m, vu::Request::GetFeatures); }),
              "GET_FEATURES reply: header announces 16 payload bytes but 8 arrived");
}

TEST(VhostUserCodec, WrongReplyCode) {
    EXPECT_EQ(error_of([] {
                  vu::decode_u64_reply(reply(15, kOk, u64_bytes(0)), vu::Request::GetFeatures);
              }),
              "GET_FEATURES reply: backend answered GET_PROTOCOL_FEATURES (code 15)");
    EXPECT_EQ(error_of([] {
                  vu::decode_u64_reply(reply(999, kOk, u64_bytes(0)), vu::Request::GetQueueNum);
              }),
              "GET_QUEUE_NUM reply: backend answered request 999 (code 999)");
}

TEST(VhostUserCodec, MissingReplyFlag) {
    EXPECT_EQ(error_of([] {
                  vu::decode_u64_reply(reply(kGetFeatures, vu::kVersion, u64_bytes(0)),
                                       vu::Request::GetFeatures);
              }),
              "GET_FEATURES reply: reply flag missing (flags 0x1)");
}

TEST(VhostUserCodec, WrongVersionAndStrayFlags) {
    EXPECT_EQ(error_of([] {
                  vu::decode_u64_reply(reply(kGetFeatures, 0x2 | vu::kFlagReply, u64_bytes(0)),
                                       vu::Request::GetFeatures);
              }),
              "GET_FEATURES reply: protocol version 2, expected 1");
    EXPECT_EQ(error_of([] {
                  vu::decode_u64_reply(reply(kGetFeatures, kOk | vu::kFlagNeedReply, u64_bytes(0)),
                                       vu::Request::GetFeatures);
              }),
              "GET_FEATURES reply: unexpected flag bits 0x8 (flags 0xd)");
    EXPECT_EQ(error_of([] {
                  vu::decode_u64_reply(reply(kGetFeatures, kOk | 0x100, u64_bytes(0)),
                                       vu::Request::GetFeatures);
              }),
              "GET_FEATURES reply: unexpected flag bits 0x100 (flags 0x105)");
}

TEST(VhostUserCodec, OversizedPayloadRejectedFromHeaderAlone) {
    const uint32_t header[3] = {kGetFeatures, kOk, 0x10000};
    EXPECT_EQ(error_of([&] {
                  vu::decode_header(std::span(reinterpret_cast<const uint8_t*>(header), 12),
                                    vu::Request::GetFeatures);
              }),
              "GET_FEATURES reply: payload of 65536 bytes exceeds the protocol maximum of 264");
    const uint32_t at_max[3] = {kGetFeatures, kOk, 264};
    EXPECT_NO_THROW(vu::decode_header(std::span(reinterpret_cast<const uint8_t*>(at_max), 12),
                                      vu::Request::GetFeatures));
}

TEST(VhostUserCodec, TruncatedHeader) {
    const uint8_t five[5] = {1, 0, 0, 0, 5};
    EXPECT_EQ(error_of([&] { vu::decode_header(five, vu::Request::GetFeatures); }),
              "GET_FEATURES reply: truncated header: 5 of 12 bytes");
}

TEST(VhostUserCodec, FdsInAReplyAreRejected) {
    auto m = reply(kGetFeatures, kOk, u64_bytes(0));
    m.fds.emplace_back(::dup(0));
    EXPECT_EQ(error_of([&] { vu::decode_u64_reply(m, vu::Request::GetFeatures); }),
              "GET_FEATURES reply: 1 file descriptors attached, expected none");
}

TEST(VhostUserCodec, Names) {
    EXPECT_EQ(vu::request_name(vu::Request::SetVringCall), "SET_VRING_CALL");
    EXPECT_EQ(vu::request_name(77), "request 77");
    EXPECT_EQ(vu::virtio_feature_names(vu::bit(32) | vu::bit(30) | vu::bit(50)),
              "VHOST_USER_F_PROTOCOL_FEATURES|VIRTIO_F_VERSION_1|bit 50");
    EXPECT_EQ(vu::protocol_feature_names(vu::bit(0) | vu::bit(3)), "MQ|REPLY_ACK");
    EXPECT_EQ(vu::virtio_feature_names(0), "none");
}
