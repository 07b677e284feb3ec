#include "switch/types.h"

#include <cctype>
#include <cstdio>

namespace conduit::sw {

std::string mac_to_string(Mac mac) {
    uint8_t b[6];
    mac_to_bytes(mac, b);
    char text[18];
    std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                  b[5]);
    return text;
}

bool mac_from_string(const std::string& text, Mac& out) {
    if (text.size() != 17) {
        return false;
    }
    Mac mac = 0;
    for (std::size_t i = 0; i < 17; ++i) {
        const char c = text[i];
        if (i % 3 == 2) {
            if (c != ':' && c != '-') {
                return false;
            }
            continue;
        }
        if (!std::isxdigit(static_cast<unsigned char>(c))) {
            return false;
        }
        const int digit = std::isdigit(static_cast<unsigned char>(c))
                              ? c - '0'
                              : std::tolower(static_cast<unsigned char>(c)) - 'a' + 10;
        mac = (mac << 4) | static_cast<Mac>(digit);
    }
    out = mac;
    return true;
}

}  // namespace conduit::sw
