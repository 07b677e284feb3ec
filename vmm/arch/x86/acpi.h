// vmm/arch/x86/acpi: the ACPI tables that let the stock kernel see every vCPU and power
// the VM off: RSDP, XSDT and RSDT, FADT (with PM1a event and control blocks and a FACS),
// a DSDT with _S5 (and whatever else the device manager adds, e.g. the PCI root bridge),
// a MADT listing every local APIC and the IOAPIC, and any extra tables (e.g. MCFG).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace conduit::vmm::x86 {

struct AcpiConfig {
    unsigned vcpus = 1;
    std::vector<uint8_t> dsdt_extra;                 // AML appended to the DSDT
    std::vector<std::vector<uint8_t>> extra_tables;  // complete tables (checksummed here)
};

struct AcpiTables {
    uint64_t base;               // guest-physical address of bytes[0]
    std::vector<uint8_t> bytes;  // everything, to be copied to `base`
    uint64_t rsdp_addr;
};

// Lays the tables out from `base` (16-byte aligned, within the reserved BIOS area).
AcpiTables build_acpi_tables(const AcpiConfig& config, uint64_t base);

// A table header with signature, revision and length (36 bytes), for builders of extra
// tables; finish_table() fixes the length and checksum once the body is appended.
std::vector<uint8_t> table_header(const char signature[4], uint8_t revision);
void finish_table(std::vector<uint8_t>& table);
uint8_t checksum(const uint8_t* data, size_t size);

// Offsets and values tests and builders share.
inline constexpr size_t kTableHeaderSize = 36;
inline constexpr char kOemId[] = "CNDUIT";
inline constexpr uint8_t kMadtTypeLocalApic = 0;
inline constexpr uint8_t kMadtTypeIoApic = 1;
inline constexpr uint8_t kMadtTypeIrqOverride = 2;
inline constexpr uint8_t kMadtTypeLocalApicNmi = 4;

}  // namespace conduit::vmm::x86
