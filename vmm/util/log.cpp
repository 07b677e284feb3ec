#include "vmm/util/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace conduit::vmm::log {

namespace {
std::atomic<Level> g_level{Level::kInfo};
std::string g_prefix = "conduit-vmm";
const char* const kNames[] = {"error", "warning", "info", "debug"};
}  // namespace

void set_level(Level level) {
    g_level.store(level);
}

bool set_level(const char* name) {
    for (int i = 0; i < 4; ++i) {
        if (std::strcmp(name, kNames[i]) == 0) {
            set_level(static_cast<Level>(i));
            return true;
        }
    }
    return false;
}

void set_vm_name(const char* name) {
    g_prefix = std::string("conduit-vmm[") + name + "]";
}

void write(Level level, const char* module, const char* format, ...) {
    if (level > g_level.load(std::memory_order_relaxed)) {
        return;
    }
    // Wall-clock time of day, as conduitd prints it, so the two logs line up.
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm local{};
    localtime_r(&now.tv_sec, &local);
    char line[1024];
    int n = std::snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s %s: %s: ", local.tm_hour,
                          local.tm_min, local.tm_sec, now.tv_nsec / 1'000'000, g_prefix.c_str(),
                          kNames[static_cast<int>(level)], module);
    va_list args;
    va_start(args, format);
    n += std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n), format, args);
    va_end(args);
    if (n >= static_cast<int>(sizeof line) - 1) {
        n = sizeof line - 2;
    }
    line[n++] = '\n';
    // One write(2) per line so lines from vCPU threads and the guest console never interleave.
    (void)!::write(STDERR_FILENO, line, static_cast<size_t>(n));
}

}  // namespace conduit::vmm::log
