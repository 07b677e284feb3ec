// vmm/run_state: whether the VM keeps running, and if not, why - set by whoever ends it
// (a device the guest wrote to, a vCPU exit, a signal to the VMM) and read by the vCPU
// threads and the main thread. The first reason wins.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

namespace conduit::vmm {

enum class StopReason {
    kRunning,
    kPowerOff,  // ACPI S5 from the guest
    kReset,     // the guest rebooted (i8042 reset, panic with panic=-1, ...)
    kCrash,     // triple fault, KVM internal error, failed entry
    kSignal,    // the VMM was told to stop (SIGTERM, SIGINT)
    kError,     // the VMM itself failed while running
};

// Process exit statuses, documented in README.md and docs/vmm.md.
inline constexpr int kExitPowerOff = 0;
inline constexpr int kExitStartFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitReset = 3;
inline constexpr int kExitCrash = 4;
inline constexpr int kExitSignal = 5;
inline constexpr int kExitRunError = 6;

int exit_status(StopReason reason);
const char* to_string(StopReason reason);

class RunState {
  public:
    // Called once, with the lock released, when the first stop is requested: it kicks
    // the vCPUs out of KVM_RUN.
    void on_stop(std::function<void()> kick) { kick_ = std::move(kick); }

    void request_stop(StopReason reason, std::string detail = {});
    bool running() const {
        std::lock_guard lock(mutex_);
        return reason_ == StopReason::kRunning;
    }
    StopReason wait() const;
    StopReason reason() const {
        std::lock_guard lock(mutex_);
        return reason_;
    }
    std::string detail() const {
        std::lock_guard lock(mutex_);
        return detail_;
    }

  private:
    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    StopReason reason_ = StopReason::kRunning;
    std::string detail_;
    std::function<void()> kick_;
};

}  // namespace conduit::vmm
