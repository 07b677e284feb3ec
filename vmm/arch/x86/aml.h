// vmm/arch/x86/aml: a small encoder for ACPI Machine Language (ACPI 6.4, chapter 20), just
// what conduit-vmm's DSDT needs: names, integers, strings, packages, buffers, scopes,
// devices, methods that return a value, EISA IDs, and the resource descriptors of a PCI
// root bridge's _CRS. Each function returns the encoded bytes of one term.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace conduit::vmm::aml {

using Bytes = std::vector<uint8_t>;

Bytes concat(std::initializer_list<Bytes> parts);

// PkgLength for a body of `body_size` bytes (the encoding counts its own bytes).
Bytes pkg_length(size_t body_size);
// "_S5_", "PCI0", "\\_SB_.PCI0": segments shorter than 4 characters are padded with '_'.
Bytes name_string(const std::string& path);

Bytes integer(uint64_t value);  // the shortest encoding: Zero, One, Byte, Word, DWord, QWord
Bytes string(const std::string& text);
Bytes eisa_id(const std::string& id);  // "PNP0A03" as a DWord integer

Bytes name(const std::string& path, const Bytes& value);
Bytes package(std::initializer_list<Bytes> elements);
Bytes buffer(const Bytes& data);
Bytes scope(const std::string& path, const Bytes& body);
Bytes device(const std::string& path, const Bytes& body);
Bytes method_return(const std::string& path, uint8_t args, const Bytes& value);

// Resource descriptors (ACPI 6.4, 6.4) for a ResourceTemplate, and the template itself
// (a Buffer ending with an End Tag).
Bytes word_bus_number(uint16_t min, uint16_t max);
Bytes io_port(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
Bytes word_io(uint16_t min, uint16_t max);
Bytes dword_memory(uint32_t min, uint32_t max, bool cacheable);
Bytes qword_memory(uint64_t min, uint64_t max, bool cacheable);
Bytes resource_template(std::initializer_list<Bytes> descriptors);

}  // namespace conduit::vmm::aml
