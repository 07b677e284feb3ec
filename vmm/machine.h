// vmm/machine: one VM, assembled from its config: inputs checked first (kernel, initrd,
// command line, memory plan), then KVM, guest memory, devices, firmware tables, boot
// state and vCPUs. Nothing half-built survives an error: every part is RAII, and the
// constructor either finishes or throws. run() starts the vCPU threads and returns the
// process exit status when the VM ends.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "vmm/arch/x86/boot_params.h"
#include "vmm/arch/x86/bzimage.h"
#include "vmm/kvm/exit_dispatcher.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/run_state.h"
#include "vmm/vm_config.h"

namespace conduit::vmm {

class Console;
class DeviceManager;

// The checked inputs of a boot: what can be validated without KVM.
struct BootInputs {
    x86::KernelImage kernel;
    std::vector<uint8_t> initrd;
    x86::BootPlan plan;

    // Frees the kernel and initrd copies once they are in guest memory (about 9 MiB for a
    // distribution kernel). Assigning `{}` would not: that is the initializer_list
    // assignment, which empties a vector but keeps its storage.
    void release_images();
};
BootInputs prepare_boot(const VmConfig& config);

class Machine {
  public:
    explicit Machine(const VmConfig& config);
    ~Machine();

    // Runs until the guest powers off or reboots, a vCPU crashes, or one of `stop_signals`
    // arrives (they must be blocked in every thread). Returns the exit status.
    int run(const sigset_t& stop_signals);

    RunState& run_state() { return run_state_; }

  private:
    void vcpu_loop(kvm::Vcpu& vcpu);
    void kick_vcpus();
    void join_vcpus();

    VmConfig config_;
    BootInputs boot_;
    RunState run_state_;
    std::unique_ptr<Console> console_;
    std::optional<kvm::Kvm> kvm_;
    std::optional<kvm::Vm> vm_;
    std::optional<GuestMemory> memory_;
    std::unique_ptr<DeviceManager> devices_;
    std::unique_ptr<kvm::ExitDispatcher> dispatcher_;
    std::vector<std::unique_ptr<kvm::Vcpu>> vcpus_;
    // The kick may come from a vCPU thread (the one that powered the guest off) at any
    // time: while others still start, or while the main thread joins them. So a thread's
    // handle is signalled only while vcpu_in_loop_ says it has not left vcpu_loop (it
    // clears its flag under the mutex as its last step, so it cannot have been joined
    // while a kick holds the mutex and sees the flag set).
    std::mutex threads_mutex_;
    std::vector<std::thread> threads_;
    std::vector<char> vcpu_in_loop_;  // per vCPU index; char, not vector<bool>: no packing
};

}  // namespace conduit::vmm
