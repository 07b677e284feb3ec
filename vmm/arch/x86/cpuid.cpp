#include "vmm/arch/x86/cpuid.h"

#include <algorithm>

namespace conduit::vmm::x86 {

namespace {
constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafCacheParams = 0x4;
constexpr uint32_t kLeafTopology = 0xb;
constexpr uint32_t kLeafTopologyV2 = 0x1f;
constexpr uint32_t kLeafExtFeatures = 0x80000001;
constexpr uint32_t kLeafAddressSizes = 0x80000008;
constexpr uint32_t kLeafAmdTopology = 0x8000001e;

constexpr uint32_t kEdxHtt = 1u << 28;
constexpr uint32_t kEcxHypervisor = 1u << 31;
constexpr uint32_t kEcxTscDeadline = 1u << 24;
constexpr uint32_t kEcxCmpLegacy = 1u << 1;
constexpr uint32_t kLevelSmt = 1, kLevelCore = 2;

// Leaves 0xB and 0x1F: thread level, core level, then the terminating invalid level.
void add_topology_leaf(std::vector<kvm_cpuid_entry2>& out, uint32_t leaf, unsigned vcpu,
                       unsigned vcpus) {
    for (uint32_t sub = 0; sub < 3; ++sub) {
        kvm_cpuid_entry2 e{};
        e.function = leaf;
        e.index = sub;
        e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        e.edx = vcpu;  // x2APIC ID
        if (sub == 0) {
            e.eax = 0;  // no bits for threads: one per core
            e.ebx = 1;
            e.ecx = (kLevelSmt << 8) | sub;
        } else if (sub == 1) {
            e.eax = id_bits(vcpus);
            e.ebx = vcpus;
            e.ecx = (kLevelCore << 8) | sub;
        } else {
            e.ecx = sub;  // level type 0: no more levels
        }
        out.push_back(e);
    }
}
}  // namespace

unsigned id_bits(unsigned count) {
    unsigned bits = 0;
    while ((1u << bits) < count) {
        ++bits;
    }
    return bits;
}

std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(const std::vector<kvm_cpuid_entry2>& supported,
                                             unsigned vcpu, unsigned vcpus, CpuidOptions options) {
    std::vector<kvm_cpuid_entry2> out;
    bool have_topology = false, have_topology_v2 = false;
    for (kvm_cpuid_entry2 e : supported) {
        switch (e.function) {
            case kLeafFeatures:
                e.ebx = (e.ebx & 0x0000ffff) | (vcpu << 24) | (std::min(vcpus, 255u) << 16);
                e.edx = vcpus > 1 ? (e.edx | kEdxHtt) : (e.edx & ~kEdxHtt);
                e.ecx |= kEcxHypervisor;
                if (options.tsc_deadline) {
                    e.ecx |= kEcxTscDeadline;
                }
                break;
            case kLeafCacheParams: {
                // Cores per package, and which caches the cores share: the last level.
                const uint32_t level = (e.eax >> 5) & 0x7;
                const uint32_t sharing = level >= 3 ? vcpus - 1 : 0;
                e.eax = (e.eax & 0x3fff) | ((vcpus - 1) << 26) | (sharing << 14);
                break;
            }
            case kLeafTopology:
                have_topology = true;
                continue;  // rebuilt below
            case kLeafTopologyV2:
                have_topology_v2 = true;
                continue;
            case kLeafExtFeatures:
                e.ecx = vcpus > 1 ? (e.ecx | kEcxCmpLegacy) : (e.ecx & ~kEcxCmpLegacy);
                break;
            case kLeafAddressSizes:
                // NC (cores - 1) and ApicIdCoreIdSize.
                e.ecx = (e.ecx & ~0xf0ffu) | (id_bits(vcpus) << 12) | (vcpus - 1);
                break;
            case kLeafAmdTopology:
                e.eax = vcpu;  // extended APIC ID
                e.ebx = vcpu;  // core ID; threads per core - 1 = 0
                e.ecx = 0;     // node 0, one node per processor
                break;
            default:
                break;
        }
        out.push_back(e);
    }
    if (have_topology) {
        add_topology_leaf(out, kLeafTopology, vcpu, vcpus);
    }
    if (have_topology_v2) {
        add_topology_leaf(out, kLeafTopologyV2, vcpu, vcpus);
    }
    return out;
}

}  // namespace conduit::vmm::x86
