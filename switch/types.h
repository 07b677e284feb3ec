// Basic types shared by the forwarding stages: port indices, MAC addresses packed into
// integers, and the burst size the whole datapath works in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace conduit::sw {

// A port's index in the switch. Indices are dense and stable while the port exists.
using PortIndex = uint16_t;
inline constexpr PortIndex kInvalidPort = 0xffff;

// Ports a conduitd can hold; per-worker arrays are sized by it.
inline constexpr std::size_t kMaxPorts = 1024;

// Frames moved per receive call and per stage invocation.
inline constexpr uint16_t kBurstSize = 32;

// A MAC address in the low 48 bits, first octet most significant, so that the
// group (multicast) bit of the first octet is bit 40.
using Mac = uint64_t;

inline constexpr Mac kMacGroupBit = Mac{1} << 40;
inline constexpr Mac kBroadcastMac = 0xffff'ffff'ffffULL;

inline Mac mac_from_bytes(const uint8_t* b) {
    return (Mac{b[0]} << 40) | (Mac{b[1]} << 32) | (Mac{b[2]} << 24) | (Mac{b[3]} << 16) |
           (Mac{b[4]} << 8) | Mac{b[5]};
}

inline void mac_to_bytes(Mac mac, uint8_t* b) {
    for (int i = 5; i >= 0; --i) {
        b[i] = static_cast<uint8_t>(mac & 0xff);
        mac >>= 8;
    }
}

inline bool mac_is_group(Mac mac) {
    return (mac & kMacGroupBit) != 0;
}

std::string mac_to_string(Mac mac);
// Parses "aa:bb:cc:dd:ee:ff"; returns false on anything else.
bool mac_from_string(const std::string& text, Mac& out);

}  // namespace conduit::sw
