#include "tools/gen/frame.h"

#include <rte_byteorder.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <stdexcept>

namespace conduit::gen {

namespace {

void put16(uint8_t* p, uint16_t host_value) {
    const uint16_t be = rte_cpu_to_be_16(host_value);
    std::memcpy(p, &be, 2);
}

}  // namespace

std::string mac_text(Mac mac) {
    char text[18];
    std::snprintf(
        text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x",
        static_cast<unsigned>((mac >> 40) & 0xff), static_cast<unsigned>((mac >> 32) & 0xff),
        static_cast<unsigned>((mac >> 24) & 0xff), static_cast<unsigned>((mac >> 16) & 0xff),
        static_cast<unsigned>((mac >> 8) & 0xff), static_cast<unsigned>(mac & 0xff));
    return text;
}

SizeMix SizeMix::fixed(uint16_t size) {
    if (size < kMinFrame || size > kMaxFrame) {
        throw std::invalid_argument("frame size " + std::to_string(size) + " is outside " +
                                    std::to_string(kMinFrame) + ".." + std::to_string(kMaxFrame));
    }
    SizeMix mix;
    mix.name_ = std::to_string(size);
    mix.pattern_ = {size};
    return mix;
}

SizeMix SizeMix::parse(const std::string& text) {
    if (text == "imix" || text == "IMIX") {
        // The simple IMIX: 7 x 64, 4 x 570, 1 x 1518 bytes, spread over the period so
        // that no burst is all large frames.
        SizeMix mix;
        mix.name_ = "imix";
        mix.pattern_ = {64, 570, 64, 1518, 64, 570, 64, 64, 570, 64, 570, 64};
        return mix;
    }
    std::size_t used = 0;
    long value = -1;
    try {
        value = std::stol(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != text.size()) {
        throw std::invalid_argument("frame size '" + text + "' is not a number or 'imix'");
    }
    if (value < kMinFrame || value > kMaxFrame) {
        throw std::invalid_argument("frame size " + text + " is outside " +
                                    std::to_string(kMinFrame) + ".." + std::to_string(kMaxFrame));
    }
    return fixed(static_cast<uint16_t>(value));
}

double SizeMix::mean() const {
    return std::accumulate(pattern_.begin(), pattern_.end(), 0.0) /
           static_cast<double>(pattern_.size());
}

uint16_t SizeMix::largest() const {
    return *std::max_element(pattern_.begin(), pattern_.end());
}

FrameTemplate::FrameTemplate(uint32_t ip_src, uint32_t ip_dst, uint16_t udp_dst, int vlan) {
    uint8_t* p = bytes_;
    // Addresses are written per frame.
    p += 12;
    if (vlan >= 0) {
        put16(p, 0x8100);
        put16(p + 2, static_cast<uint16_t>(vlan & 0x0fff));
        p += kVlanLen;
    }
    put16(p, 0x0800);
    p += 2;
    ip_off_ = static_cast<uint16_t>(p - bytes_);
    p[0] = 0x45;  // IPv4, 20-byte header
    p[1] = 0;
    // p[2..3] total length: per frame
    put16(p + 4, 0);       // id
    put16(p + 6, 0x4000);  // don't fragment
    p[8] = 64;             // TTL
    p[9] = 17;             // UDP
    // p[10..11] checksum: per frame
    const uint32_t src_be = rte_cpu_to_be_32(ip_src);
    const uint32_t dst_be = rte_cpu_to_be_32(ip_dst);
    std::memcpy(p + 12, &src_be, 4);
    std::memcpy(p + 16, &dst_be, 4);
    uint32_t sum = 0;
    for (int i = 0; i < kIpLen; i += 2) {
        if (i == 2 || i == 10) {
            continue;
        }
        uint16_t word;
        std::memcpy(&word, p + i, 2);
        sum += word;
    }
    ip_partial_sum_ = sum;
    p += kIpLen;
    // UDP: source port per frame (the flow), length per frame, no checksum (IPv4 allows it).
    put16(p + 2, udp_dst);
    put16(p + 6, 0);
    p += kUdpLen;
    header_len_ = static_cast<uint16_t>(p - bytes_);
}

}  // namespace conduit::gen
