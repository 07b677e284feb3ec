#include "vmm/run_state.h"

namespace conduit::vmm {

int exit_status(StopReason reason) {
    switch (reason) {
        case StopReason::kPowerOff:
            return kExitPowerOff;
        case StopReason::kReset:
            return kExitReset;
        case StopReason::kCrash:
            return kExitCrash;
        case StopReason::kSignal:
            return kExitSignal;
        case StopReason::kRunning:
        case StopReason::kError:
            break;
    }
    return kExitRunError;
}

const char* to_string(StopReason reason) {
    switch (reason) {
        case StopReason::kRunning:
            return "running";
        case StopReason::kPowerOff:
            return "guest powered off";
        case StopReason::kReset:
            return "guest rebooted";
        case StopReason::kCrash:
            return "guest crashed";
        case StopReason::kSignal:
            return "stopped by signal";
        case StopReason::kError:
            return "VMM error";
    }
    return "?";
}

void RunState::request_stop(StopReason reason, std::string detail) {
    std::function<void()> kick;
    {
        std::lock_guard lock(mutex_);
        if (reason_ != StopReason::kRunning) {
            return;
        }
        reason_ = reason;
        detail_ = std::move(detail);
        kick = kick_;
    }
    changed_.notify_all();
    if (kick) {
        kick();
    }
}

StopReason RunState::wait() const {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return reason_ != StopReason::kRunning; });
    return reason_;
}

}  // namespace conduit::vmm
