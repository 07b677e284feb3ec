#include "vmm/device_manager.h"

#include "vmm/arch/x86/layout.h"
#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/cmos.h"
#include "vmm/devices/console.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"

namespace conduit::vmm {

DeviceManager::DeviceManager(const kvm::Vm& vm, RunState& run_state, Console& console,
                             const GuestMemory& memory) {
    serial_ = std::make_shared<Serial8250>([&console](uint8_t byte) { console.output(byte); },
                                           [&vm] { vm.pulse_irq(x86::kCom1Irq); });
    pio_.add(x86::kCom1Port, 8, serial_, "COM1");
    pio_.add(x86::kI8042DataPort, 5, std::make_shared<I8042>([&run_state] {
                 run_state.request_stop(StopReason::kReset, "the guest reset the machine (i8042)");
             }),
             "i8042");
    const uint64_t high = memory.size() - memory.low_end();
    pio_.add(x86::kCmosPort, 2, std::make_shared<Cmos>(memory.low_end(), high), "CMOS RTC");
    pio_.add(x86::kAcpiPmPort, AcpiPm::kSize, std::make_shared<AcpiPm>([&run_state] {
                 run_state.request_stop(StopReason::kPowerOff, "the guest powered off (ACPI S5)");
             }),
             "ACPI PM1");
}

std::vector<uint8_t> DeviceManager::dsdt_aml() const {
    return {};
}

std::vector<std::vector<uint8_t>> DeviceManager::acpi_tables() const {
    return {};
}

std::vector<x86::AddressRange> DeviceManager::reserved_ranges() const {
    return {};
}

}  // namespace conduit::vmm
