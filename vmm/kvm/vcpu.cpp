#include "vmm/kvm/vcpu.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "vmm/kvm/kvm_abi.h"
#include "vmm/util/error.h"

namespace conduit::vmm::kvm {

namespace {
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kDeliveryExtInt = 7;
constexpr uint32_t kDeliveryNmi = 4;

uint32_t get_reg(const kvm_lapic_state& s, size_t offset) {
    uint32_t v;
    std::memcpy(&v, s.regs + offset, sizeof v);
    return v;
}
void set_reg(kvm_lapic_state& s, size_t offset, uint32_t v) {
    std::memcpy(s.regs + offset, &v, sizeof v);
}
uint32_t with_delivery_mode(uint32_t lvt, uint32_t mode) {
    return (lvt & ~0x700u) | (mode << 8);
}
}  // namespace

Vcpu::Vcpu(const Vm& vm, unsigned index, size_t run_mmap_size) : index_(index) {
    fd_.reset(ioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(index)));
    if (!fd_) {
        throw_errno("cannot create vCPU " + std::to_string(index));
    }
    void* run = mmap(nullptr, run_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (run == MAP_FAILED) {
        throw_errno("cannot map the kvm_run page of vCPU " + std::to_string(index));
    }
    run_ = Mapping(run, run_mmap_size);
}

void Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
    const size_t bytes = abi::kCpuidEntriesOffset + entries.size() * sizeof(kvm_cpuid_entry2);
    auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
    auto* header = reinterpret_cast<abi::CpuidHeader*>(buf.get());
    header->nent = static_cast<uint32_t>(entries.size());
    std::memcpy(reinterpret_cast<uint8_t*>(buf.get()) + abi::kCpuidEntriesOffset, entries.data(),
                entries.size() * sizeof(kvm_cpuid_entry2));
    if (ioctl(fd_.get(), abi::kSetCpuid2, header) != 0) {
        throw_errno("KVM_SET_CPUID2 on vCPU " + std::to_string(index_));
    }
}

kvm_sregs Vcpu::sregs() const {
    kvm_sregs s{};
    if (ioctl(fd_.get(), KVM_GET_SREGS, &s) != 0) {
        throw_errno("KVM_GET_SREGS");
    }
    return s;
}

void Vcpu::set_sregs(const kvm_sregs& s) {
    if (ioctl(fd_.get(), KVM_SET_SREGS, &s) != 0) {
        throw_errno("KVM_SET_SREGS");
    }
}

kvm_regs Vcpu::regs() const {
    kvm_regs r{};
    if (ioctl(fd_.get(), KVM_GET_REGS, &r) != 0) {
        throw_errno("KVM_GET_REGS");
    }
    return r;
}

void Vcpu::set_regs(const kvm_regs& r) {
    if (ioctl(fd_.get(), KVM_SET_REGS, &r) != 0) {
        throw_errno("KVM_SET_REGS");
    }
}

void Vcpu::set_fpu(const kvm_fpu& f) {
    if (ioctl(fd_.get(), KVM_SET_FPU, &f) != 0) {
        throw_errno("KVM_SET_FPU");
    }
}

void Vcpu::set_lapic_lints() {
    kvm_lapic_state lapic{};
    if (ioctl(fd_.get(), KVM_GET_LAPIC, &lapic) != 0) {
        throw_errno("KVM_GET_LAPIC");
    }
    set_reg(lapic, kApicLvtLint0,
            with_delivery_mode(get_reg(lapic, kApicLvtLint0), kDeliveryExtInt));
    set_reg(lapic, kApicLvtLint1, with_delivery_mode(get_reg(lapic, kApicLvtLint1), kDeliveryNmi));
    if (ioctl(fd_.get(), KVM_SET_LAPIC, &lapic) != 0) {
        throw_errno("KVM_SET_LAPIC");
    }
}

bool Vcpu::run() {
    if (ioctl(fd_.get(), KVM_RUN, 0) == 0) {
        return true;
    }
    if (errno == EINTR || errno == EAGAIN) {
        return false;
    }
    throw_errno("KVM_RUN on vCPU " + std::to_string(index_));
}

}  // namespace conduit::vmm::kvm
