// vmm/arch/x86/cpuid: the CPUID each vCPU shows, from what KVM supports with the
// topology fixed up: one socket of `vcpus` cores, one thread each, APIC ID = vCPU index,
// consistent across the Intel (leaves 1, 4, 0xB, 0x1F) and AMD (0x80000001, 0x80000008,
// 0x8000001E) topology leaves, and the hypervisor bit set.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace conduit::vmm::x86 {

struct CpuidOptions {
    // KVM_CAP_TSC_DEADLINE_TIMER: the in-kernel LAPIC emulates the TSC-deadline timer, but
    // KVM_GET_SUPPORTED_CPUID does not report it; the VMM must. Without it the kernel
    // calibrates the LAPIC timer against the PIT, which fails under nested virtualization
    // and leaves the guest without a working tick.
    bool tsc_deadline = false;
};

std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(const std::vector<kvm_cpuid_entry2>& supported,
                                             unsigned vcpu, unsigned vcpus,
                                             CpuidOptions options = {});

// Bits needed to number `count` items (0 for 1, 1 for 2, 2 for 3 or 4, ...).
unsigned id_bits(unsigned count);

}  // namespace conduit::vmm::x86
