// vmm/arch/x86/layout: where conduit-vmm puts things in the guest's physical address space.
//
//   0x0000_0500  GDT (boot segments)          0x0000_0520  IDT (empty; the kernel loads its own)
//   0x0000_7000  zero page (boot_params)      0x0000_8ff0  initial stack pointer
//   0x0000_9000  PML4, 0xa000 PDPT, 0xb000.. 4 page directories: identity map of 4 GiB
//   0x0002_0000  kernel command line
//   0x0009_fc00 - 0x000f_ffff  reserved (EBDA and BIOS area; ACPI tables at 0xe0000)
//   0x0100_0000  the kernel (its preferred load address, 16 MiB)
//   top of RAM below the MMIO hole: the initrd
//   0xc000_0000 - 0xffff_ffff  MMIO hole: PCI windows, IOAPIC, LAPIC; RAM resumes at 4 GiB
#pragma once

#include <cstdint>

namespace conduit::vmm::x86 {

inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kIdtAddr = 0x520;
inline constexpr uint64_t kZeroPageAddr = 0x7000;
inline constexpr uint64_t kBootStackTop = 0x8ff0;
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;  // four 4 KiB directories, up to 0xeffff
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;  // room reserved for the command line

inline constexpr uint64_t kEbdaStart = 0x9fc00;
inline constexpr uint64_t kAcpiAddr = 0xe0000;  // RSDP first: where a legacy scan finds it
inline constexpr uint64_t kAcpiEnd = 0xf0000;
inline constexpr uint64_t kBiosEnd = 0x100000;
inline constexpr uint64_t kHighMemory = 0x100000;  // 1 MiB

inline constexpr uint64_t kMmioHoleStart = 0xc000'0000;
inline constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000;
inline constexpr uint64_t kRamAbove4G = 0x1'0000'0000;

// Inside the MMIO hole.
inline constexpr uint64_t kPciMmioStart = 0xc000'0000;  // 32-bit BARs, up to the ECAM window
inline constexpr uint64_t kPciMmioEnd = 0xe000'0000;
inline constexpr uint64_t kPciEcamStart = 0xe000'0000;  // 256 MiB: buses 0..255
inline constexpr uint64_t kPciEcamSize = 0x1000'0000;
inline constexpr uint64_t kIoApicAddr = 0xfec0'0000;
inline constexpr uint64_t kKvmIdentityMapAddr = 0xfeff'c000;  // one page, Intel VMX only
inline constexpr uint64_t kKvmTssAddr = 0xfeff'd000;          // three pages, Intel VMX only
inline constexpr uint64_t kLapicAddr = 0xfee0'0000;

// Legacy I/O ports.
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint8_t kCom1Irq = 4;
inline constexpr uint16_t kI8042DataPort = 0x60;
inline constexpr uint16_t kI8042CommandPort = 0x64;
inline constexpr uint16_t kCmosPort = 0x70;
inline constexpr uint16_t kAcpiPmPort = 0x600;  // PM1a event block (4), PM1a control (2)
inline constexpr uint16_t kAcpiPm1aEvt = kAcpiPmPort;
inline constexpr uint16_t kAcpiPm1aCnt = kAcpiPmPort + 4;
inline constexpr uint8_t kAcpiSciIrq = 9;

}  // namespace conduit::vmm::x86
