// vmm/kvm/exit_dispatcher: what a vCPU exit means. Port I/O and MMIO go to the buses;
// a triple fault, failed entry or internal error ends the VM as a crash with the reason;
// system events (poweroff, reset) end it accordingly. Works on the kvm_run structure
// alone, so tests feed it synthetic exits.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <mutex>
#include <set>
#include <string>

#include "vmm/devices/bus.h"
#include "vmm/run_state.h"

namespace conduit::vmm::kvm {

struct ExitOutcome {
    bool stop = false;
    StopReason reason = StopReason::kRunning;
    std::string detail;
};

class ExitDispatcher {
  public:
    // `run_size` is the size of each vCPU's kvm_run mapping: port I/O data must lie in it.
    ExitDispatcher(const Bus& pio, const Bus& mmio, size_t run_size)
        : pio_(pio), mmio_(mmio), run_size_(run_size) {}

    // `run` is the vCPU's kvm_run page, followed (for port I/O) by its data area.
    ExitOutcome dispatch(kvm_run& run, unsigned vcpu);

    uint64_t unhandled_accesses() const;

  private:
    ExitOutcome port_io(kvm_run& run);
    ExitOutcome mmio(kvm_run& run);
    void note_unhandled(const char* kind, uint64_t addr, bool write);

    const Bus& pio_;
    const Bus& mmio_;
    size_t run_size_;
    mutable std::mutex mutex_;
    std::set<uint64_t> reported_;
    uint64_t unhandled_ = 0;
};

}  // namespace conduit::vmm::kvm
