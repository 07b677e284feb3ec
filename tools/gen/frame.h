// tools/gen/frame: the frames conduit-gen sends. Each is Ethernet (optionally with one
// 802.1Q tag) / IPv4 / UDP, followed by a 16-byte stamp naming the stream, its sequence
// number and the TSC when it left, so the receiver can measure loss, order, duplicates
// and latency without any state outside the stream it belongs to.
#pragma once

#include <rte_byteorder.h>
#include <rte_mbuf.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace conduit::gen {

// A MAC address in the low 48 bits, first octet most significant.
using Mac = uint64_t;
inline constexpr Mac kBroadcast = 0xffff'ffff'ffffULL;

std::string mac_text(Mac mac);

inline constexpr uint16_t kEthLen = 14;
inline constexpr uint16_t kVlanLen = 4;
inline constexpr uint16_t kIpLen = 20;
inline constexpr uint16_t kUdpLen = 8;
inline constexpr uint16_t kMinFrame = 64;
inline constexpr uint16_t kMaxFrame = 9000;

// The stamp at the start of the UDP payload, in host byte order (both ends are this
// process). 16 bytes, so a 64-byte frame holds it even with a VLAN tag.
struct Stamp {
    uint16_t magic;   // kMagicHigh in the high byte, the phase tag in the low byte
    uint16_t stream;  // index of the stream in the running phase
    uint32_t seq;     // per stream; the receiver extends it to 64 bits
    uint64_t tsc;     // when the frame was built
};
static_assert(sizeof(Stamp) == 16);

inline constexpr uint16_t kMagicHigh = 0xC600;
inline constexpr uint16_t kMagicMask = 0xff00;

inline uint16_t stamp_offset(bool vlan) {
    return static_cast<uint16_t>(kEthLen + (vlan ? kVlanLen : 0) + kIpLen + kUdpLen);
}

// Reads the stamp of a received frame; false when the frame is too short or its
// ethertype/protocol show it cannot be one of ours.
inline bool read_stamp(const uint8_t* data, uint32_t len, Stamp& out) {
    uint16_t off = kEthLen;
    if (len < kEthLen + kIpLen + kUdpLen + sizeof(Stamp)) {
        return false;
    }
    if (data[12] == 0x81 && data[13] == 0x00) {
        off += kVlanLen;
        if (len < off + kIpLen + kUdpLen + sizeof(Stamp)) {
            return false;
        }
    }
    if (data[off - 2] != 0x08 || data[off - 1] != 0x00 || data[off + 9] != 17) {
        return false;
    }
    std::memcpy(&out, data + off + kIpLen + kUdpLen, sizeof out);
    return (out.magic & kMagicMask) == kMagicHigh;
}

// Frame sizes: one size, or a repeating pattern (IMIX).
class SizeMix {
  public:
    // "64", "1518", "imix" (7 x 64, 4 x 570, 1 x 1518, interleaved). Throws on anything else.
    static SizeMix parse(const std::string& text);
    static SizeMix fixed(uint16_t size);

    const std::string& name() const { return name_; }
    uint16_t at(uint64_t index) const { return pattern_[index % pattern_.size()]; }
    std::size_t period() const { return pattern_.size(); }
    double mean() const;
    uint16_t largest() const;

  private:
    std::string name_;
    std::vector<uint16_t> pattern_;
};

// The headers of one stream, prepared once; write() fills a frame in an mbuf with the
// per-frame fields (addresses, flow, length, stamp) patched in.
class FrameTemplate {
  public:
    FrameTemplate() = default;
    FrameTemplate(uint32_t ip_src, uint32_t ip_dst, uint16_t udp_dst, int vlan);

    // The prepared header (addresses and per-frame fields as complete() left them), in
    // kBytes bytes whatever its own length: the fast path copies it whole.
    static constexpr std::size_t kBytes = kEthLen + kVlanLen + kIpLen + kUdpLen;
    const uint8_t* bytes() const { return bytes_; }
    uint16_t header_len() const { return header_len_; }
    // `len` is the whole frame (no FCS on virtual links); the buffer must have room.
    // Inline: it runs once per frame sent. Only the headers and the stamp are written:
    // the rest of the frame is whatever the buffer held.
    void write(uint8_t* data, Mac dst, Mac src, uint16_t udp_src, uint16_t len,
               const Stamp& stamp) const {
        std::memcpy(data, bytes_, sizeof bytes_);  // fixed size: a few vector stores
        patch(data, dst, src, udp_src, len);
        std::memcpy(data + header_len_, &stamp, sizeof stamp);
    }

    // A stream whose frames differ only in their stamp (one source and destination
    // host, one flow, one size) keeps its whole header here, complete.
    void complete(Mac dst, Mac src, uint16_t udp_src, uint16_t len) {
        patch(bytes_, dst, src, udp_src, len);
        complete_len_ = len;
    }
    uint16_t complete_len() const { return complete_len_; }
    void write_complete(uint8_t* data, const Stamp& stamp) const {
        std::memcpy(data, bytes_, sizeof bytes_);
        std::memcpy(data + header_len_, &stamp, sizeof stamp);
    }

    // The header of this stream's frames of `len` bytes with the addresses and the UDP
    // source port still zero, in 48 bytes (the last two are zero): see CyclingHeader.
    void sized_header(uint16_t len, uint8_t (&out)[48]) const {
        std::memset(out, 0, sizeof out);
        std::memcpy(out, bytes_, sizeof bytes_);
        patch(out, 0, 0, 0, len);
    }
    uint16_t udp_src_offset() const { return static_cast<uint16_t>(ip_off_ + kIpLen); }

  private:
    void patch(uint8_t* data, Mac dst, Mac src, uint16_t udp_src, uint16_t len) const {
        const uint64_t dst_be = rte_cpu_to_be_64(dst << 16);
        const uint64_t src_be = rte_cpu_to_be_64(src << 16);
        std::memcpy(data, &dst_be, 6);
        std::memcpy(data + 6, &src_be, 6);
        uint8_t* ip = data + ip_off_;
        const uint16_t ip_len = static_cast<uint16_t>(len - ip_off_);
        const uint16_t ip_len_be = rte_cpu_to_be_16(ip_len);
        std::memcpy(ip + 2, &ip_len_be, 2);
        uint32_t sum = ip_partial_sum_ + ip_len_be;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        const auto csum = static_cast<uint16_t>(~sum);
        std::memcpy(ip + 10, &csum, 2);
        const uint16_t udp_src_be = rte_cpu_to_be_16(udp_src);
        const uint16_t udp_len_be = rte_cpu_to_be_16(static_cast<uint16_t>(ip_len - kIpLen));
        std::memcpy(ip + kIpLen, &udp_src_be, 2);
        std::memcpy(ip + kIpLen + 4, &udp_len_be, 2);
    }

    uint8_t bytes_[kBytes] = {};
    uint16_t complete_len_ = 0;  // 0: not complete
    uint16_t header_len_ = 0;
    uint16_t ip_off_ = 0;
    uint32_t ip_partial_sum_ = 0;  // all header words but total length and checksum
};

// A stream of one frame size whose frames cycle through addresses or flows (--macs,
// --flows): its header is composed in registers from the sized template and written in
// three 16-byte stores, then the stamp in one. Nothing in the frame is read back and
// no stream field is reloaded after a store into the frame, so a burst's stores into
// memory the switch reads (and owns until they land) are not waited on frame by frame,
// as FrameTemplate::write()'s byte-sized patches were (10,000 MACs, two guests: about 100
// cycles a frame of the generator's, against some 10).
class CyclingHeader {
  public:
    CyclingHeader(const FrameTemplate& tmpl, uint16_t len)
        : stamp_off_(tmpl.header_len()),
          udp_shift_(static_cast<unsigned>(tmpl.udp_src_offset() - 32) * 8) {
        uint8_t h[48];
        tmpl.sized_header(len, h);
        uint32_t after_macs;
        std::memcpy(&after_macs, h + 12, 4);
        after_macs_ = after_macs;
        std::memcpy(&middle_lo_, h + 16, 8);
        std::memcpy(&middle_hi_, h + 24, 8);
        std::memcpy(&tail_lo_, h + 32, 8);
        std::memcpy(&tail_hi_, h + 40, 8);
        // The UDP source port lies in the tail's first eight bytes (offset 34, or 38
        // with a VLAN tag).
        tail_lo_ &= ~(uint64_t{0xffff} << udp_shift_);
    }

    // Little-endian hosts only (as DPDK's x86 builds): the words are stored as they are.
    [[gnu::always_inline]] void write(uint8_t* data, Mac dst, Mac src, uint16_t udp_src,
                                      uint64_t stamp_head, uint64_t stamp_tsc) const {
        static_assert(std::endian::native == std::endian::little);
        // A MAC in wire order in the low six bytes of a word.
        const uint64_t d = __builtin_bswap64(dst << 16);
        const uint64_t s = __builtin_bswap64(src << 16);
        const uint64_t head[2] = {d | s << 48, s >> 16 | after_macs_ << 32};
        const uint64_t middle[2] = {middle_lo_, middle_hi_};
        const uint64_t tail[2] = {tail_lo_ | uint64_t{__builtin_bswap16(udp_src)} << udp_shift_,
                                  tail_hi_};
        const uint64_t stamp[2] = {stamp_head, stamp_tsc};
        std::memcpy(data, head, 16);
        std::memcpy(data + 16, middle, 16);
        std::memcpy(data + 32, tail, 16);
        std::memcpy(data + stamp_off_, stamp, 16);
    }

  private:
    uint16_t stamp_off_;
    unsigned udp_shift_;
    uint64_t after_macs_ = 0;  // bytes 12..15 (ethertype or VLAN tag) in the high half
    uint64_t middle_lo_ = 0, middle_hi_ = 0, tail_lo_ = 0, tail_hi_ = 0;
};

}  // namespace conduit::gen
