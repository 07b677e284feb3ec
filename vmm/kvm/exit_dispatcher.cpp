#include "vmm/kvm/exit_dispatcher.h"

#include <cstdio>
#include <span>

#include "vmm/util/log.h"

namespace conduit::vmm::kvm {

namespace {
std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}
ExitOutcome stop(StopReason reason, std::string detail) {
    return {true, reason, std::move(detail)};
}
}  // namespace

ExitOutcome ExitDispatcher::dispatch(kvm_run& run, unsigned vcpu) {
    const std::string who = "vCPU " + std::to_string(vcpu);
    switch (run.exit_reason) {
        case KVM_EXIT_IO:
            return port_io(run);
        case KVM_EXIT_MMIO:
            return mmio(run);
        case KVM_EXIT_INTR:
        case KVM_EXIT_HLT:  // with the in-kernel LAPIC, HLT waits in the kernel
            return {};
        case KVM_EXIT_SHUTDOWN:
            return stop(StopReason::kCrash, who + ": triple fault (KVM_EXIT_SHUTDOWN)");
        case KVM_EXIT_FAIL_ENTRY:
            return stop(StopReason::kCrash, who + ": VM entry failed, hardware reason " +
                                                hex(run.fail_entry.hardware_entry_failure_reason));
        case KVM_EXIT_INTERNAL_ERROR:
            return stop(StopReason::kCrash, who + ": KVM internal error, suberror " +
                                                std::to_string(run.internal.suberror));
        case KVM_EXIT_SYSTEM_EVENT:
            switch (run.system_event.type) {
                case KVM_SYSTEM_EVENT_SHUTDOWN:
                    return stop(StopReason::kPowerOff, who + ": system event shutdown");
                case KVM_SYSTEM_EVENT_RESET:
                    return stop(StopReason::kReset, who + ": system event reset");
                case KVM_SYSTEM_EVENT_CRASH:
                    return stop(StopReason::kCrash, who + ": system event crash");
                default:
                    return stop(StopReason::kCrash, who + ": unknown system event " +
                                                        std::to_string(run.system_event.type));
            }
        default:
            return stop(StopReason::kCrash,
                        who + ": unexpected exit reason " + std::to_string(run.exit_reason));
    }
}

ExitOutcome ExitDispatcher::port_io(kvm_run& run) {
    const auto size = run.io.size;
    if (size != 1 && size != 2 && size != 4) {
        return stop(StopReason::kCrash, "port I/O of impossible size " + std::to_string(size));
    }
    // KVM places the data (count items for string I/O) inside the vCPU's mapping, at
    // data_offset from the kvm_run page; it sized that area for exactly this.
    if (run.io.data_offset > run_size_ ||
        uint64_t{run.io.count} * size > run_size_ - run.io.data_offset) {
        return stop(StopReason::kCrash, "port I/O data outside the kvm_run mapping");
    }
    auto* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
    const bool write = run.io.direction == KVM_EXIT_IO_OUT;
    for (uint32_t i = 0; i < run.io.count; ++i) {
        std::span<uint8_t> item(data + uint64_t{i} * size, size);
        const bool handled = write ? pio_.write(run.io.port, item) : pio_.read(run.io.port, item);
        if (!handled) {
            note_unhandled("port", run.io.port, write);
        }
    }
    return {};
}

ExitOutcome ExitDispatcher::mmio(kvm_run& run) {
    const uint32_t len = run.mmio.len;
    if (len == 0 || len > sizeof(run.mmio.data)) {
        return stop(StopReason::kCrash, "MMIO of impossible length " + std::to_string(len));
    }
    std::span<uint8_t> data(run.mmio.data, len);
    const bool handled = run.mmio.is_write ? mmio_.write(run.mmio.phys_addr, data)
                                           : mmio_.read(run.mmio.phys_addr, data);
    if (!handled) {
        note_unhandled("MMIO", run.mmio.phys_addr, run.mmio.is_write);
    }
    return {};
}

void ExitDispatcher::note_unhandled(const char* kind, uint64_t addr, bool write) {
    std::lock_guard lock(mutex_);
    ++unhandled_;
    // Guests probe for hardware that is not there; say so once per address, at debug level.
    if (reported_.size() < 256 && reported_.insert(addr).second) {
        VLOG_DEBUG("exit", "%s %s %#llx: no device there", write ? "write to" : "read from", kind,
                   static_cast<unsigned long long>(addr));
    }
}

uint64_t ExitDispatcher::unhandled_accesses() const {
    std::lock_guard lock(mutex_);
    return unhandled_;
}

}  // namespace conduit::vmm::kvm
