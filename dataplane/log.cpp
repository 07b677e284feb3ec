#include "dataplane/log.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace conduit::log {

namespace {
std::atomic<Level> g_level{Level::kInfo};
const char* const kNames[] = {"error", "warning", "notice", "info", "debug"};
}  // namespace

void set_level(Level level) {
    g_level.store(level);
}

bool set_level(const char* name) {
    for (int i = 0; i < 5; ++i) {
        if (std::strcmp(name, kNames[i]) == 0) {
            set_level(static_cast<Level>(i));
            return true;
        }
    }
    return false;
}

void write(Level level, const char* module, const char* format, ...) {
    if (level > g_level.load(std::memory_order_relaxed)) {
        return;
    }
    char message[1024];
    va_list args;
    va_start(args, format);
    std::vsnprintf(message, sizeof message, format, args);
    va_end(args);
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm local{};
    localtime_r(&ts.tv_sec, &local);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%H:%M:%S", &local);
    // One fprintf per line so lines from different threads do not interleave.
    std::fprintf(stderr, "%s.%03ld conduitd[%s] %s: %s\n", stamp, ts.tv_nsec / 1'000'000,
                 kNames[static_cast<int>(level)], module, message);
}

}  // namespace conduit::log
