// vmm/kvm/kvm: /dev/kvm (the KVM subsystem itself) and a VM created from it.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/util/unique_fd.h"

namespace conduit::vmm::kvm {

class Kvm {
  public:
    // Opens /dev/kvm and checks the API version. Throws SystemError with a sentence a user
    // understands ("this machine has no KVM ...") rather than a bare errno.
    static Kvm open(const char* path = "/dev/kvm");

    int fd() const { return fd_.get(); }
    int check_extension(long capability) const;
    size_t vcpu_mmap_size() const;
    std::vector<kvm_cpuid_entry2> supported_cpuid() const;

  private:
    explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

class Vm {
  public:
    explicit Vm(const Kvm& kvm);

    int fd() const { return fd_.get(); }
    // The in-kernel PIC, IOAPIC and local APICs, and the PIT (port 0x61 handled in-kernel).
    void create_irqchip();
    void create_pit();
    // Intel VMX needs these pages reserved in the guest-physical map; harmless on AMD.
    void set_tss_and_identity_map(uint64_t tss_addr, uint64_t identity_map_addr);
    void set_memory(uint32_t slot, uint64_t guest_phys_addr, uint64_t size, void* host);
    // Drives an interrupt line of the in-kernel PIC and IOAPIC.
    void set_irq_line(uint32_t irq, bool level) const;
    // Writes of `len` bytes (0: any length) to `addr` signal `eventfd` inside KVM, without
    // an exit to the VMM: how a guest's queue notification reaches a vhost-user backend.
    void add_ioeventfd(uint64_t addr, uint32_t len, int eventfd) const;
    void remove_ioeventfd(uint64_t addr, uint32_t len, int eventfd) const;
    // Edge-triggered: a pulse on the line.
    void pulse_irq(uint32_t irq) const {
        set_irq_line(irq, true);
        set_irq_line(irq, false);
    }

  private:
    UniqueFd fd_;
};

}  // namespace conduit::vmm::kvm
