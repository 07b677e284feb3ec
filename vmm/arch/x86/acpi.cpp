#include "vmm/arch/x86/acpi.h"

#include <cstring>
#include <stdexcept>

#include "vmm/arch/x86/aml.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/devices/acpi_pm.h"

namespace conduit::vmm::x86 {

namespace {

using Bytes = std::vector<uint8_t>;

void put8(Bytes& b, uint8_t v) {
    b.push_back(v);
}
void put16(Bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v));
    b.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(Bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v));
    put16(b, static_cast<uint16_t>(v >> 16));
}
void put64(Bytes& b, uint64_t v) {
    put32(b, static_cast<uint32_t>(v));
    put32(b, static_cast<uint32_t>(v >> 32));
}
void put_chars(Bytes& b, const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        b.push_back(static_cast<uint8_t>(s[i]));
    }
}
void patch32(Bytes& b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) {
        b[at + i] = static_cast<uint8_t>(v >> (8 * i));
    }
}

// Generic Address Structure for a register block in system I/O space.
void put_gas_io(Bytes& b, uint16_t port, uint8_t bytes) {
    put8(b, port == 0 ? 0 : 1);  // address space: system I/O
    put8(b, static_cast<uint8_t>(port == 0 ? 0 : bytes * 8));
    put8(b, 0);                                                      // bit offset
    put8(b, port == 0 ? 0 : (bytes == 2 ? 2 : bytes == 4 ? 3 : 1));  // access size
    put64(b, port);
}

constexpr uint32_t kFacsSize = 64;

Bytes build_facs() {
    Bytes b;
    put_chars(b, "FACS", 4);
    put32(b, kFacsSize);
    put32(b, 0);  // hardware signature
    put32(b, 0);  // firmware waking vector: no S3 offered
    put32(b, 0);  // global lock
    put32(b, 0);  // flags
    put64(b, 0);  // X firmware waking vector
    put8(b, 2);   // version
    b.resize(kFacsSize, 0);
    return b;
}

Bytes build_dsdt(const AcpiConfig& config) {
    Bytes t = table_header("DSDT", 2);
    // \_S5: SLP_TYP for PM1a and PM1b; the kernel writes it with SLP_EN to power off.
    const Bytes s5 = aml::name(
        "\\_S5_", aml::package({aml::integer(AcpiPm::kSlpTypS5), aml::integer(AcpiPm::kSlpTypS5),
                                aml::integer(0), aml::integer(0)}));
    t.insert(t.end(), s5.begin(), s5.end());
    t.insert(t.end(), config.dsdt_extra.begin(), config.dsdt_extra.end());
    finish_table(t);
    return t;
}

Bytes build_fadt(uint64_t facs, uint64_t dsdt) {
    Bytes t = table_header("FACP", 6);
    put32(t, static_cast<uint32_t>(facs));  // FIRMWARE_CTRL
    put32(t, static_cast<uint32_t>(dsdt));  // DSDT
    put8(t, 0);                             // reserved
    put8(t, 0);                             // preferred PM profile: unspecified
    put16(t, kAcpiSciIrq);                  // SCI_INT
    put32(t, 0);                            // SMI_CMD: none, so the machine is always in ACPI mode
    put8(t, 0);                             // ACPI_ENABLE
    put8(t, 0);                             // ACPI_DISABLE
    put8(t, 0);                             // S4BIOS_REQ
    put8(t, 0);                             // PSTATE_CNT
    put32(t, kAcpiPm1aEvt);                 // PM1a_EVT_BLK
    put32(t, 0);                            // PM1b_EVT_BLK
    put32(t, kAcpiPm1aCnt);                 // PM1a_CNT_BLK
    put32(t, 0);                            // PM1b_CNT_BLK
    put32(t, 0);                            // PM2_CNT_BLK
    put32(t, 0);       // PM_TMR_BLK: none (the kernel uses the TSC and kvm-clock)
    put32(t, 0);       // GPE0_BLK
    put32(t, 0);       // GPE1_BLK
    put8(t, 4);        // PM1_EVT_LEN
    put8(t, 2);        // PM1_CNT_LEN
    put8(t, 0);        // PM2_CNT_LEN
    put8(t, 0);        // PM_TMR_LEN
    put8(t, 0);        // GPE0_BLK_LEN
    put8(t, 0);        // GPE1_BLK_LEN
    put8(t, 0);        // GPE1_BASE
    put8(t, 0);        // CST_CNT
    put16(t, 0x0fff);  // P_LVL2_LAT: > 100, C2 not supported
    put16(t, 0x0fff);  // P_LVL3_LAT: > 1000, C3 not supported
    put16(t, 0);       // FLUSH_SIZE
    put16(t, 0);       // FLUSH_STRIDE
    put8(t, 0);        // DUTY_OFFSET
    put8(t, 0);        // DUTY_WIDTH
    put8(t, 0);        // DAY_ALRM
    put8(t, 0);        // MON_ALRM
    put8(t, 0x32);     // CENTURY: the CMOS index of the century
    // IAPC_BOOT_ARCH: legacy devices (UART, RTC) present, no VGA. The 8042 flag stays off:
    // there is no keyboard, only the reset line.
    put16(t, 0x0001 | 0x0004);
    put8(t, 0);  // reserved
    // Flags: WBINVD works, C1 supported, no fixed power or sleep button.
    put32(t, (1u << 0) | (1u << 2) | (1u << 4) | (1u << 5));
    put_gas_io(t, 0, 0);             // RESET_REG: none; reset goes through the i8042
    put8(t, 0);                      // RESET_VALUE
    put16(t, 0);                     // ARM_BOOT_ARCH
    put8(t, 4);                      // FADT minor version (6.4)
    put64(t, facs);                  // X_FIRMWARE_CTRL
    put64(t, dsdt);                  // X_DSDT
    put_gas_io(t, kAcpiPm1aEvt, 4);  // X_PM1a_EVT_BLK
    put_gas_io(t, 0, 0);             // X_PM1b_EVT_BLK
    put_gas_io(t, kAcpiPm1aCnt, 2);  // X_PM1a_CNT_BLK
    put_gas_io(t, 0, 0);             // X_PM1b_CNT_BLK
    put_gas_io(t, 0, 0);             // X_PM2_CNT_BLK
    put_gas_io(t, 0, 0);             // X_PM_TMR_BLK
    put_gas_io(t, 0, 0);             // X_GPE0_BLK
    put_gas_io(t, 0, 0);             // X_GPE1_BLK
    put_gas_io(t, 0, 0);             // SLEEP_CONTROL_REG
    put_gas_io(t, 0, 0);             // SLEEP_STATUS_REG
    put_chars(t, "CONDUIT\0", 8);    // hypervisor vendor identity
    finish_table(t);
    if (t.size() != 276) {
        throw std::logic_error("FADT layout: " + std::to_string(t.size()) + " bytes, not 276");
    }
    return t;
}

Bytes build_madt(unsigned vcpus) {
    Bytes t = table_header("APIC", 5);
    put32(t, static_cast<uint32_t>(kLapicAddr));
    put32(t, 1);  // PCAT_COMPAT: the 8259s exist (KVM's in-kernel PIC)
    for (unsigned i = 0; i < vcpus; ++i) {
        put8(t, kMadtTypeLocalApic);
        put8(t, 8);
        put8(t, static_cast<uint8_t>(i));  // ACPI processor UID
        put8(t, static_cast<uint8_t>(i));  // APIC ID, as CPUID reports it
        put32(t, 1);                       // enabled
    }
    put8(t, kMadtTypeIoApic);
    put8(t, 12);
    put8(t, 0);  // IOAPIC ID
    put8(t, 0);
    put32(t, static_cast<uint32_t>(kIoApicAddr));
    put32(t, 0);  // GSI base
    // The PIT's IRQ 0 is wired to IOAPIC pin 2 (as KVM's in-kernel IOAPIC routes it).
    put8(t, kMadtTypeIrqOverride);
    put8(t, 10);
    put8(t, 0);  // ISA
    put8(t, 0);  // IRQ 0
    put32(t, 2);
    put16(t, 0);  // bus defaults: edge, active high
    // The SCI is level-triggered, active high.
    put8(t, kMadtTypeIrqOverride);
    put8(t, 10);
    put8(t, 0);
    put8(t, kAcpiSciIrq);
    put32(t, kAcpiSciIrq);
    put16(t, 0x000d);
    // LINT1 of every local APIC is the NMI input.
    put8(t, kMadtTypeLocalApicNmi);
    put8(t, 6);
    put8(t, 0xff);     // all processors
    put16(t, 0x0005);  // edge, active high
    put8(t, 1);        // LINT1
    finish_table(t);
    return t;
}

Bytes build_xsdt(const std::vector<uint64_t>& tables) {
    Bytes t = table_header("XSDT", 1);
    for (uint64_t a : tables) {
        put64(t, a);
    }
    finish_table(t);
    return t;
}

Bytes build_rsdt(const std::vector<uint64_t>& tables) {
    Bytes t = table_header("RSDT", 1);
    for (uint64_t a : tables) {
        put32(t, static_cast<uint32_t>(a));
    }
    finish_table(t);
    return t;
}

Bytes build_rsdp(uint64_t rsdt, uint64_t xsdt) {
    Bytes b;
    put_chars(b, "RSD PTR ", 8);
    put8(b, 0);  // checksum of the first 20 bytes
    put_chars(b, kOemId, 6);
    put8(b, 2);  // revision: ACPI 2.0+
    put32(b, static_cast<uint32_t>(rsdt));
    put32(b, 36);
    put64(b, xsdt);
    put8(b, 0);  // extended checksum
    put8(b, 0);
    put8(b, 0);
    put8(b, 0);
    b[8] = checksum(b.data(), 20);
    b[32] = checksum(b.data(), 36);
    return b;
}

}  // namespace

uint8_t checksum(const uint8_t* data, size_t size) {
    uint8_t sum = 0;
    for (size_t i = 0; i < size; ++i) {
        sum = static_cast<uint8_t>(sum + data[i]);
    }
    return static_cast<uint8_t>(-sum);
}

std::vector<uint8_t> table_header(const char signature[4], uint8_t revision) {
    Bytes b;
    put_chars(b, signature, 4);
    put32(b, 0);  // length, set by finish_table
    put8(b, revision);
    put8(b, 0);  // checksum, set by finish_table
    put_chars(b, kOemId, 6);
    put_chars(b, "CONDUITV", 8);  // OEM table ID
    put32(b, 1);                  // OEM revision
    put_chars(b, "CNDT", 4);      // creator ID
    put32(b, 1);                  // creator revision
    return b;
}

void finish_table(std::vector<uint8_t>& table) {
    patch32(table, 4, static_cast<uint32_t>(table.size()));
    table[9] = 0;
    table[9] = checksum(table.data(), table.size());
}

AcpiTables build_acpi_tables(const AcpiConfig& config, uint64_t base) {
    if (config.vcpus == 0 || config.vcpus > 255) {
        throw std::invalid_argument("ACPI: 1 to 255 vCPUs");
    }
    AcpiTables out{base, {}, base};
    Bytes& blob = out.bytes;
    const auto append = [&](const Bytes& table, size_t align) {
        blob.resize((blob.size() + align - 1) / align * align, 0);
        const uint64_t addr = base + blob.size();
        blob.insert(blob.end(), table.begin(), table.end());
        return addr;
    };
    // The RSDP goes first and is written last, once the addresses are known.
    blob.resize(36, 0);
    const uint64_t facs = append(build_facs(), 64);
    const uint64_t dsdt = append(build_dsdt(config), 16);
    std::vector<uint64_t> tables;
    tables.push_back(append(build_fadt(facs, dsdt), 16));
    tables.push_back(append(build_madt(config.vcpus), 16));
    for (Bytes extra : config.extra_tables) {
        finish_table(extra);
        tables.push_back(append(extra, 16));
    }
    const uint64_t xsdt = append(build_xsdt(tables), 16);
    const uint64_t rsdt = append(build_rsdt(tables), 16);
    const Bytes rsdp = build_rsdp(rsdt, xsdt);
    std::memcpy(blob.data(), rsdp.data(), rsdp.size());
    if (base + blob.size() > kAcpiEnd) {
        throw std::length_error("ACPI tables do not fit below " + std::to_string(kAcpiEnd));
    }
    return out;
}

}  // namespace conduit::vmm::x86
