#include "vmm/machine.h"

#include <pthread.h>
#include <signal.h>

#include <cstring>

#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/cpu_setup.h"
#include "vmm/arch/x86/cpuid.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/device_manager.h"
#include "vmm/devices/console.h"
#include "vmm/devices/serial.h"
#include "vmm/util/error.h"
#include "vmm/util/log.h"

namespace conduit::vmm {

namespace {

// The signal that kicks a vCPU thread out of KVM_RUN. Its handler does nothing: the
// interruption (EINTR, with immediate_exit set) is the point.
constexpr int kKickSignal = SIGUSR1;

void install_kick_handler() {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kKickSignal, &sa, nullptr);
}

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}

}  // namespace

BootInputs prepare_boot(const VmConfig& config) {
    validate_vm_config(config);
    BootInputs in{
        x86::parse_bzimage(x86::read_file(config.kernel, "kernel"), config.kernel), {}, {}};
    if (!config.initrd.empty()) {
        in.initrd = x86::read_file(config.initrd, "initrd");
        if (in.initrd.empty()) {
            throw ConfigError("initrd '" + config.initrd + "' is empty");
        }
    }
    const auto regions = GuestMemory::plan(config.memory, x86::kMmioHoleStart, x86::kMmioHoleEnd);
    const uint64_t low_end = regions.front().size;
    in.plan = x86::plan_boot(in.kernel, in.initrd.size(), config.cmdline, low_end);
    return in;
}

void BootInputs::release_images() {
    std::vector<uint8_t>().swap(kernel.bytes);
    std::vector<uint8_t>().swap(initrd);
}

Machine::Machine(const VmConfig& config) : config_(config), boot_(prepare_boot(config_)) {
    // Host resources in the order a user can fix them: guest memory (hugepages) and the
    // console before KVM, so each problem is reported even on a machine without KVM.
    memory_.emplace(GuestMemory::create(config_.memory, config_.hugepages, x86::kMmioHoleStart,
                                        x86::kMmioHoleEnd));
    console_ = std::make_unique<Console>(config_.serial);
    kvm_.emplace(kvm::Kvm::open());
    vm_.emplace(*kvm_);
    uint32_t slot = 0;
    for (const MemoryRegion& r : memory_->regions()) {
        vm_->set_memory(slot++, r.guest_phys_addr, r.size, r.host);
    }
    vm_->set_tss_and_identity_map(x86::kKvmTssAddr, x86::kKvmIdentityMapAddr);
    vm_->create_irqchip();
    vm_->create_pit();

    devices_ = std::make_unique<DeviceManager>(*vm_, run_state_, *console_, *memory_, config_.nets);

    // Firmware tables, then the kernel and what it reads at entry.
    x86::AcpiConfig acpi;
    acpi.vcpus = config_.cpus;
    acpi.dsdt_extra = devices_->dsdt_aml();
    acpi.extra_tables = devices_->acpi_tables();
    const x86::AcpiTables tables = x86::build_acpi_tables(acpi, x86::kAcpiAddr);
    memory_->write(tables.base, tables.bytes);
    const auto e820 = x86::build_e820(memory_->regions(), devices_->reserved_ranges());
    const boot_params zero_page =
        x86::build_zero_page(boot_.kernel, boot_.plan, e820, tables.rsdp_addr);
    x86::load_linux(*memory_, boot_.kernel, boot_.initrd, config_.cmdline, boot_.plan, zero_page);
    memory_->write(x86::kPml4Addr, x86::identity_page_tables());
    const auto gdt = x86::boot_gdt();
    memory_->write(x86::kGdtAddr,
                   std::span(reinterpret_cast<const uint8_t*>(gdt.data()), sizeof gdt));
    memory_->write_obj<uint64_t>(x86::kIdtAddr, 0);
    // The kernel image and initrd now live in guest memory; the copies are not needed.
    boot_.release_images();

    const size_t run_size = kvm_->vcpu_mmap_size();
    dispatcher_ =
        std::make_unique<kvm::ExitDispatcher>(devices_->pio(), devices_->mmio(), run_size);
    const auto supported = kvm_->supported_cpuid();
    x86::CpuidOptions cpuid_options;
    cpuid_options.tsc_deadline = kvm_->check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    for (unsigned i = 0; i < config_.cpus; ++i) {
        auto vcpu = std::make_unique<kvm::Vcpu>(*vm_, i, run_size);
        vcpu->set_cpuid(x86::cpuid_for_vcpu(supported, i, config_.cpus, cpuid_options));
        vcpu->set_lapic_lints();
        if (i == 0) {
            // The boot vCPU starts in the kernel's 64-bit entry; the others wait in the
            // in-kernel LAPIC for the INIT/SIPI the kernel sends them.
            kvm_sregs sregs = vcpu->sregs();
            x86::set_boot_sregs(sregs);
            vcpu->set_sregs(sregs);
            vcpu->set_regs(x86::boot_regs(boot_.plan.kernel_addr + 0x200, x86::kZeroPageAddr));
            vcpu->set_fpu(x86::boot_fpu());
        }
        vcpus_.push_back(std::move(vcpu));
    }
    VLOG_INFO("vm", "%u vCPU(s), %llu MiB%s, kernel at %s, initrd %llu bytes at %s", config_.cpus,
              static_cast<unsigned long long>(config_.memory >> 20),
              config_.hugepages ? " (hugepages)" : "", hex(boot_.plan.kernel_addr).c_str(),
              static_cast<unsigned long long>(boot_.plan.initrd_size),
              hex(boot_.plan.initrd_addr).c_str());
}

Machine::~Machine() {
    if (!threads_.empty()) {
        run_state_.request_stop(StopReason::kError, "VMM shutting down");
        join_vcpus();
    }
    if (console_) {
        console_->stop_input();
    }
}

void Machine::kick_vcpus() {
    std::lock_guard lock(threads_mutex_);
    for (size_t i = 0; i < vcpus_.size(); ++i) {
        // Set first: a thread between its running() check and KVM_RUN, which the signal
        // would reach too early, returns from KVM_RUN at once instead.
        vcpus_[i]->request_exit();
        if (i < vcpu_in_loop_.size() && vcpu_in_loop_[i] != 0) {
            // Still inside vcpu_loop, so not joined: its handle is valid.
            pthread_kill(threads_[i].native_handle(), kKickSignal);
        }
    }
}

// Once the run has stopped. The kick is made again here, from this thread: the one
// made by whoever stopped the run may have come before a thread was started.
void Machine::join_vcpus() {
    kick_vcpus();
    for (auto& t : threads_) {
        t.join();
    }
    std::lock_guard lock(threads_mutex_);
    threads_.clear();
}

void Machine::vcpu_loop(kvm::Vcpu& vcpu) {
    struct LeaveLoop {
        Machine& m;
        unsigned index;
        ~LeaveLoop() {
            std::lock_guard lock(m.threads_mutex_);
            m.vcpu_in_loop_[index] = 0;
        }
    } leave{*this, vcpu.index()};
    try {
        while (run_state_.running()) {
            if (!vcpu.run()) {
                continue;
            }
            kvm::ExitOutcome outcome = dispatcher_->dispatch(vcpu.run_data(), vcpu.index());
            if (outcome.stop) {
                if (outcome.reason == StopReason::kCrash) {
                    const kvm_regs r = vcpu.regs();
                    outcome.detail += " at rip " + hex(r.rip) + " rsp " + hex(r.rsp);
                }
                run_state_.request_stop(outcome.reason, outcome.detail);
            }
        }
    } catch (const std::exception& e) {
        run_state_.request_stop(StopReason::kError, e.what());
    }
}

int Machine::run(const sigset_t& stop_signals) {
    install_kick_handler();
    run_state_.on_stop([this] { kick_vcpus(); });
    console_->start_input(devices_->serial(), [this] {
        run_state_.request_stop(StopReason::kSignal, "Ctrl-A x on the console");
    });
    devices_->start();
    {
        std::lock_guard lock(threads_mutex_);
        vcpu_in_loop_.assign(vcpus_.size(), 0);
    }
    for (auto& vcpu : vcpus_) {
        std::lock_guard lock(threads_mutex_);
        // Set before the thread starts: it clears the flag under this mutex as it leaves.
        vcpu_in_loop_[vcpu->index()] = 1;
        threads_.emplace_back([this, v = vcpu.get()] { vcpu_loop(*v); });
    }
    // The stop signals stay blocked everywhere; this thread collects them.
    while (run_state_.running()) {
        const timespec wait{0, 100'000'000};
        const int sig = sigtimedwait(&stop_signals, nullptr, &wait);
        if (sig > 0) {
            run_state_.request_stop(StopReason::kSignal, std::string("received ") + strsignal(sig));
        }
    }
    // Not swapped out of threads_ before the join (as this once did): a kick from the vCPU
    // that stopped the run, made after the swap, found no thread to signal, and a vCPU
    // halted in the guest (Linux stops the other CPUs before powering off) stayed in
    // KVM_RUN for good: the VMM hung after the guest's power-off.
    join_vcpus();
    console_->stop_input();
    for (const auto& vcpu : vcpus_) {
        const kvm_regs r = vcpu->regs();
        const kvm_sregs sr = vcpu->sregs();
        VLOG_DEBUG("vm", "vCPU %u stopped at rip %s rsp %s cr0 %s cr3 %s cr4 %s efer %s",
                   vcpu->index(), hex(r.rip).c_str(), hex(r.rsp).c_str(), hex(sr.cr0).c_str(),
                   hex(sr.cr3).c_str(), hex(sr.cr4).c_str(), hex(sr.efer).c_str());
    }
    const StopReason reason = run_state_.reason();
    const std::string detail = run_state_.detail();
    if (reason == StopReason::kPowerOff) {
        VLOG_INFO("vm", "%s", detail.c_str());
    } else {
        VLOG_WARN("vm", "%s: %s", to_string(reason), detail.c_str());
    }
    return exit_status(reason);
}

}  // namespace conduit::vmm
