// vmm/kvm/kvm_abi: the KVM ioctls whose argument structs <linux/kvm.h> gets wrong in C++.
//
// The kernel's uapi headers declare flexible arrays with __DECLARE_FLEX_ARRAY, which in
// C++ wraps an empty struct (size 1, not 0) before the array: both the struct's size -
// encoded into the ioctl number - and the array's offset come out 4 bytes too large, and
// the kernel rejects the ioctl (EINVAL) or reads the wrong bytes. These are the C layouts.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace conduit::vmm::kvm::abi {

// struct kvm_cpuid2: a count, then `nent` kvm_cpuid_entry2.
struct CpuidHeader {
    uint32_t nent;
    uint32_t padding;
};
inline constexpr size_t kCpuidEntriesOffset = sizeof(CpuidHeader);

// struct kvm_irq_routing: a count, then `nr` kvm_irq_routing_entry.
struct IrqRoutingHeader {
    uint32_t nr;
    uint32_t flags;
};
inline constexpr size_t kIrqRoutingEntriesOffset = sizeof(IrqRoutingHeader);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, IrqRoutingHeader);

static_assert(sizeof(kvm_cpuid_entry2) == 40, "kvm_cpuid_entry2 is 40 bytes in the C ABI");
static_assert(sizeof(kvm_irq_routing_entry) == 48, "kvm_irq_routing_entry is 48 bytes");

}  // namespace conduit::vmm::kvm::abi
