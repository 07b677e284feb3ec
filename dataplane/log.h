// dataplane/log: conduitd's log lines on stderr ("conduitd[LEVEL] module: message").
// Control path only; the datapath never logs per packet.
#pragma once

#include <cstdarg>

namespace conduit::log {

enum class Level { kError = 0, kWarning = 1, kNotice = 2, kInfo = 3, kDebug = 4 };

void set_level(Level level);
bool set_level(const char* name);
void write(Level level, const char* module, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace conduit::log

#define CLOG_ERR(mod, ...) ::conduit::log::write(::conduit::log::Level::kError, mod, __VA_ARGS__)
#define CLOG_WARN(mod, ...) ::conduit::log::write(::conduit::log::Level::kWarning, mod, __VA_ARGS__)
#define CLOG_NOTICE(mod, ...) \
    ::conduit::log::write(::conduit::log::Level::kNotice, mod, __VA_ARGS__)
#define CLOG_INFO(mod, ...) ::conduit::log::write(::conduit::log::Level::kInfo, mod, __VA_ARGS__)
#define CLOG_DEBUG(mod, ...) ::conduit::log::write(::conduit::log::Level::kDebug, mod, __VA_ARGS__)
