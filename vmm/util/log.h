// vmm/util/log: conduit-vmm's log lines on stderr ("conduit-vmm[vm-name] module: message").
// The guest's console may share the terminal, so every line is written whole.
#pragma once

namespace conduit::vmm::log {

enum class Level { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

void set_level(Level level);
bool set_level(const char* name);
void set_vm_name(const char* name);
void write(Level level, const char* module, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace conduit::vmm::log

#define VLOG_ERR(mod, ...) \
    ::conduit::vmm::log::write(::conduit::vmm::log::Level::kError, mod, __VA_ARGS__)
#define VLOG_WARN(mod, ...) \
    ::conduit::vmm::log::write(::conduit::vmm::log::Level::kWarning, mod, __VA_ARGS__)
#define VLOG_INFO(mod, ...) \
    ::conduit::vmm::log::write(::conduit::vmm::log::Level::kInfo, mod, __VA_ARGS__)
#define VLOG_DEBUG(mod, ...) \
    ::conduit::vmm::log::write(::conduit::vmm::log::Level::kDebug, mod, __VA_ARGS__)
