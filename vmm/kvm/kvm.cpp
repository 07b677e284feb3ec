#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "vmm/kvm/kvm_abi.h"
#include "vmm/util/error.h"

namespace conduit::vmm::kvm {

Kvm Kvm::open(const char* path) {
    UniqueFd fd(::open(path, O_RDWR | O_CLOEXEC));
    if (!fd) {
        const int err = errno;
        if (err == ENOENT) {
            throw SystemError(std::string("this machine has no KVM (") + path +
                                  " does not exist: no hardware virtualization, or the kvm "
                                  "modules are not loaded)",
                              err);
        }
        if (err == EACCES || err == EPERM) {
            throw SystemError(std::string("no permission to use KVM (") + path +
                                  "): run as root or join the kvm group",
                              err);
        }
        throw SystemError(std::string("cannot open ") + path, err);
    }
    const int version = ioctl(fd.get(), KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        throw SystemError("KVM API version " + std::to_string(version) + " is not the stable " +
                              std::to_string(KVM_API_VERSION),
                          EINVAL);
    }
    Kvm kvm(std::move(fd));
    for (long cap : {KVM_CAP_IRQCHIP, KVM_CAP_USER_MEMORY, KVM_CAP_EXT_CPUID, KVM_CAP_PIT2,
                     KVM_CAP_IMMEDIATE_EXIT}) {
        if (kvm.check_extension(cap) <= 0) {
            throw SystemError("this KVM lacks capability " + std::to_string(cap), ENOTSUP);
        }
    }
    return kvm;
}

int Kvm::check_extension(long capability) const {
    return ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
}

size_t Kvm::vcpu_mmap_size() const {
    const int size = ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size <= 0) {
        throw_errno("KVM_GET_VCPU_MMAP_SIZE");
    }
    return static_cast<size_t>(size);
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
    // The kernel says E2BIG until the buffer is large enough.
    for (uint32_t capacity = 64; capacity <= 4096; capacity *= 2) {
        const size_t bytes = abi::kCpuidEntriesOffset + capacity * sizeof(kvm_cpuid_entry2);
        auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
        auto* header = reinterpret_cast<abi::CpuidHeader*>(buf.get());
        header->nent = capacity;
        if (ioctl(fd_.get(), abi::kGetSupportedCpuid, header) == 0) {
            const auto* entries = reinterpret_cast<const kvm_cpuid_entry2*>(
                reinterpret_cast<const uint8_t*>(buf.get()) + abi::kCpuidEntriesOffset);
            return {entries, entries + std::min(header->nent, capacity)};
        }
        if (errno != E2BIG) {
            throw_errno("KVM_GET_SUPPORTED_CPUID");
        }
    }
    throw SystemError("KVM_GET_SUPPORTED_CPUID", E2BIG);
}

Vm::Vm(const Kvm& kvm) {
    // Retry on EINTR: creating a VM can be interrupted on busy hosts.
    int fd = -1;
    do {
        fd = ioctl(kvm.fd(), KVM_CREATE_VM, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        throw_errno("cannot create a KVM VM");
    }
    fd_.reset(fd);
}

void Vm::create_irqchip() {
    if (ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) != 0) {
        throw_errno("KVM_CREATE_IRQCHIP");
    }
}

void Vm::create_pit() {
    kvm_pit_config config{};
    config.flags = KVM_PIT_SPEAKER_DUMMY;
    if (ioctl(fd_.get(), KVM_CREATE_PIT2, &config) != 0) {
        throw_errno("KVM_CREATE_PIT2");
    }
}

void Vm::set_tss_and_identity_map(uint64_t tss_addr, uint64_t identity_map_addr) {
    if (ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &identity_map_addr) != 0) {
        throw_errno("KVM_SET_IDENTITY_MAP_ADDR");
    }
    if (ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(tss_addr)) != 0) {
        throw_errno("KVM_SET_TSS_ADDR");
    }
}

void Vm::set_memory(uint32_t slot, uint64_t guest_phys_addr, uint64_t size, void* host) {
    kvm_userspace_memory_region region{};
    region.slot = slot;
    region.guest_phys_addr = guest_phys_addr;
    region.memory_size = size;
    region.userspace_addr = reinterpret_cast<uint64_t>(host);
    if (ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) != 0) {
        throw_errno("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot));
    }
}

void Vm::set_irq_line(uint32_t irq, bool level) const {
    kvm_irq_level line{};
    line.irq = irq;
    line.level = level ? 1 : 0;
    // Fails only for an invalid line, which would be a VMM bug; nothing to recover.
    (void)ioctl(fd_.get(), KVM_IRQ_LINE, &line);
}

}  // namespace conduit::vmm::kvm

namespace conduit::vmm::kvm {

void Vm::add_ioeventfd(uint64_t addr, uint32_t len, int eventfd) const {
    kvm_ioeventfd io{};
    io.addr = addr;
    io.len = len;
    io.fd = eventfd;
    if (ioctl(fd_.get(), KVM_IOEVENTFD, &io) != 0) {
        throw_errno("KVM_IOEVENTFD at " + std::to_string(addr));
    }
}

void Vm::remove_ioeventfd(uint64_t addr, uint32_t len, int eventfd) const {
    kvm_ioeventfd io{};
    io.addr = addr;
    io.len = len;
    io.fd = eventfd;
    io.flags = KVM_IOEVENTFD_FLAG_DEASSIGN;
    (void)ioctl(fd_.get(), KVM_IOEVENTFD, &io);  // ENOENT when it was never added
}

}  // namespace conduit::vmm::kvm
