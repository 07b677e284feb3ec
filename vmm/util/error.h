// vmm/util/error: the exceptions conduit-vmm reports to its user.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace conduit::vmm {

// Bad input from the user (command line, config, kernel or initrd image): the VM never
// starts and the message says what to fix.
class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// The host refused something the VMM needs (KVM, memory, files).
class SystemError : public std::runtime_error {
  public:
    SystemError(const std::string& what, int err)
        : std::runtime_error(what + ": " + std::strerror(err)), err_(err) {}
    int code() const { return err_; }

  private:
    int err_;
};

[[noreturn]] inline void throw_errno(const std::string& what) {
    throw SystemError(what, errno);
}

}  // namespace conduit::vmm
