#include "tools/gen/nic.h"

#include <sys/eventfd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace conduit::gen {

vmm::UniqueFd make_eventfd(const std::string& port) {
    vmm::UniqueFd fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd) {
        throw std::runtime_error("port " + port + ": eventfd: " + std::strerror(errno));
    }
    return fd;
}

std::string seconds_text(std::chrono::milliseconds t) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", static_cast<double>(t.count()) / 1000.0);
    return text;
}

}  // namespace conduit::gen
