// vmm/kvm/vcpu: one KVM vCPU: its fd, its shared kvm_run page, and the register state
// the VMM sets before the first entry. The thread that calls run() is the vCPU's thread.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <vector>

#include "vmm/kvm/kvm.h"
#include "vmm/util/mapping.h"
#include "vmm/util/unique_fd.h"

namespace conduit::vmm::kvm {

class Vcpu {
  public:
    Vcpu(const Vm& vm, unsigned index, size_t run_mmap_size);

    unsigned index() const { return index_; }
    int fd() const { return fd_.get(); }
    kvm_run& run_data() const { return *reinterpret_cast<kvm_run*>(run_.data()); }

    void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    kvm_sregs sregs() const;
    void set_sregs(const kvm_sregs& sregs);
    kvm_regs regs() const;
    void set_regs(const kvm_regs& regs);
    void set_fpu(const kvm_fpu& fpu);
    // LINT0 as ExtINT (the 8259's output) and LINT1 as NMI, as firmware leaves them.
    void set_lapic_lints();

    // Enters the guest until the next exit. False when interrupted by a kick (EINTR) or
    // asked to retry (EAGAIN); throws on any other failure.
    bool run();
    // Makes the current or next run() return at once; safe from any thread together with
    // a signal to the vCPU's thread.
    void request_exit() { run_data().immediate_exit = 1; }

  private:
    unsigned index_;
    UniqueFd fd_;
    Mapping run_;
};

}  // namespace conduit::vmm::kvm
