// ACPI tables and the AML encoder: checksums, pointers, and contents for 1, 2 and 4 vCPUs.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/aml.h"
#include "vmm/arch/x86/layout.h"

using namespace conduit::vmm;
using namespace conduit::vmm::x86;

namespace {

struct Parsed {
    const AcpiTables* tables;
    std::map<std::string, uint64_t> addr;  // signature -> address

    const uint8_t* at(uint64_t a) const { return tables->bytes.data() + (a - tables->base); }
    uint32_t u32(uint64_t a) const {
        uint32_t v;
        std::memcpy(&v, at(a), 4);
        return v;
    }
    uint64_t u64(uint64_t a) const {
        uint64_t v;
        std::memcpy(&v, at(a), 8);
        return v;
    }
    uint32_t length(const std::string& sig) const { return u32(addr.at(sig) + 4); }
};

uint8_t sum(const uint8_t* p, size_t n) {
    uint8_t s = 0;
    for (size_t i = 0; i < n; ++i) {
        s = static_cast<uint8_t>(s + p[i]);
    }
    return s;
}

// Follows RSDP -> XSDT -> tables and FADT -> DSDT/FACS, checking each checksum on the way.
Parsed parse(const AcpiTables& t) {
    Parsed p{&t, {}};
    const uint8_t* rsdp = p.at(t.rsdp_addr);
    EXPECT_EQ(std::memcmp(rsdp, "RSD PTR ", 8), 0);
    EXPECT_EQ(sum(rsdp, 20), 0) << "RSDP checksum";
    EXPECT_EQ(sum(rsdp, 36), 0) << "RSDP extended checksum";
    EXPECT_EQ(rsdp[15], 2) << "RSDP revision";
    const uint64_t xsdt = p.u64(t.rsdp_addr + 24);
    const uint64_t rsdt = p.u32(t.rsdp_addr + 16);
    p.addr["XSDT"] = xsdt;
    p.addr["RSDT"] = rsdt;
    const uint32_t xlen = p.u32(xsdt + 4);
    EXPECT_EQ(sum(p.at(xsdt), xlen), 0) << "XSDT checksum";
    EXPECT_EQ(sum(p.at(rsdt), p.u32(rsdt + 4)), 0) << "RSDT checksum";
    const size_t entries = (xlen - kTableHeaderSize) / 8;
    EXPECT_EQ((p.u32(rsdt + 4) - kTableHeaderSize) / 4, entries) << "RSDT lists as many";
    for (size_t i = 0; i < entries; ++i) {
        const uint64_t a = p.u64(xsdt + kTableHeaderSize + 8 * i);
        EXPECT_EQ(p.u32(rsdt + kTableHeaderSize + 4 * i), a);
        const std::string sig(reinterpret_cast<const char*>(p.at(a)), 4);
        EXPECT_EQ(sum(p.at(a), p.u32(a + 4)), 0) << sig << " checksum";
        p.addr[sig] = a;
    }
    const uint64_t fadt = p.addr.at("FACP");
    p.addr["DSDT"] = p.u64(fadt + 140);
    p.addr["FACS"] = p.u64(fadt + 132);
    EXPECT_EQ(p.u32(fadt + 40), p.addr["DSDT"]) << "32-bit and 64-bit DSDT pointers agree";
    EXPECT_EQ(p.u32(fadt + 36), p.addr["FACS"]);
    EXPECT_EQ(sum(p.at(p.addr["DSDT"]), p.length("DSDT")), 0) << "DSDT checksum";
    EXPECT_EQ(std::memcmp(p.at(p.addr["FACS"]), "FACS", 4), 0);
    EXPECT_EQ(p.addr["FACS"] % 64, 0u) << "FACS must be 64-byte aligned";
    return p;
}

}  // namespace

class AcpiForCpus : public ::testing::TestWithParam<unsigned> {};

TEST_P(AcpiForCpus, TablesAreConsistentAndListEveryCpu) {
    const unsigned cpus = GetParam();
    AcpiConfig c;
    c.vcpus = cpus;
    const AcpiTables t = build_acpi_tables(c, kAcpiAddr);
    EXPECT_EQ(t.rsdp_addr, kAcpiAddr);
    EXPECT_LE(t.base + t.bytes.size(), kAcpiEnd);
    const Parsed p = parse(t);
    ASSERT_TRUE(p.addr.count("APIC"));
    ASSERT_TRUE(p.addr.count("FACP"));

    // MADT: one enabled local APIC per vCPU with APIC ID = index, one IOAPIC, overrides.
    const uint64_t madt = p.addr.at("APIC");
    EXPECT_EQ(p.u32(madt + 36), kLapicAddr);
    std::vector<unsigned> apic_ids;
    unsigned ioapics = 0, overrides = 0, nmis = 0;
    for (uint64_t off = 44; off < p.length("APIC");) {
        const uint8_t* e = p.at(madt + off);
        ASSERT_GE(e[1], 2);
        if (e[0] == kMadtTypeLocalApic) {
            EXPECT_EQ(e[1], 8);
            EXPECT_EQ(e[2], apic_ids.size()) << "processor UID";
            apic_ids.push_back(e[3]);
            EXPECT_EQ(p.u32(madt + off + 4) & 1, 1u) << "enabled";
        } else if (e[0] == kMadtTypeIoApic) {
            ++ioapics;
            EXPECT_EQ(p.u32(madt + off + 4), kIoApicAddr);
        } else if (e[0] == kMadtTypeIrqOverride) {
            ++overrides;
        } else if (e[0] == kMadtTypeLocalApicNmi) {
            ++nmis;
        }
        off += e[1];
    }
    ASSERT_EQ(apic_ids.size(), cpus);
    for (unsigned i = 0; i < cpus; ++i) {
        EXPECT_EQ(apic_ids[i], i);
    }
    EXPECT_EQ(ioapics, 1u);
    EXPECT_EQ(overrides, 2u);
    EXPECT_EQ(nmis, 1u);

    // FADT: PM1a event and control blocks where the ACPI PM device listens, no SMI port.
    const uint64_t fadt = p.addr.at("FACP");
    EXPECT_EQ(p.length("FACP"), 276u);
    EXPECT_EQ(p.at(fadt)[8], 6) << "FADT revision";
    EXPECT_EQ(p.u32(fadt + 48), 0u) << "SMI_CMD";
    EXPECT_EQ(p.u32(fadt + 56), kAcpiPm1aEvt);
    EXPECT_EQ(p.u32(fadt + 64), kAcpiPm1aCnt);
    EXPECT_EQ(p.at(fadt)[88], 4) << "PM1_EVT_LEN";
    EXPECT_EQ(p.at(fadt)[89], 2) << "PM1_CNT_LEN";
    EXPECT_EQ(p.u64(fadt + 172 + 4), kAcpiPm1aCnt) << "X_PM1a_CNT_BLK address";
    EXPECT_EQ(p.u32(fadt + 112) & (1u << 20), 0u) << "not hardware-reduced";
    uint16_t sci;
    std::memcpy(&sci, p.at(fadt + 46), 2);
    EXPECT_EQ(sci, kAcpiSciIrq);

    // DSDT: the \_S5 package with SLP_TYP 5.
    const uint8_t* dsdt = p.at(p.addr.at("DSDT"));
    const std::vector<uint8_t> body(dsdt + kTableHeaderSize, dsdt + p.length("DSDT"));
    const std::vector<uint8_t> s5 = {0x08, '\\', '_',  'S',  '5',  '_',  0x12, 0x08,
                                     0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};
    EXPECT_NE(std::search(body.begin(), body.end(), s5.begin(), s5.end()), body.end());
}

INSTANTIATE_TEST_SUITE_P(Cpus, AcpiForCpus, ::testing::Values(1u, 2u, 4u));

TEST(Acpi, ExtraTablesAndDsdtAmlAreIncludedAndChecksummed) {
    AcpiConfig c;
    c.vcpus = 2;
    c.dsdt_extra = aml::device("\\_SB_.PCI0", aml::name("_HID", aml::eisa_id("PNP0A03")));
    auto mcfg = table_header("MCFG", 1);
    mcfg.resize(mcfg.size() + 8 + 16, 0);
    c.extra_tables.push_back(mcfg);
    const AcpiTables t = build_acpi_tables(c, kAcpiAddr);
    const Parsed p = parse(t);
    ASSERT_TRUE(p.addr.count("MCFG"));
    EXPECT_EQ(p.length("MCFG"), 36u + 24u);
    const uint8_t* dsdt = p.at(p.addr.at("DSDT"));
    const std::string text(reinterpret_cast<const char*>(dsdt), p.length("DSDT"));
    EXPECT_NE(text.find("PCI0"), std::string::npos);
}

TEST(Acpi, RefusesImpossibleCpuCounts) {
    AcpiConfig c;
    c.vcpus = 0;
    EXPECT_THROW(build_acpi_tables(c, kAcpiAddr), std::invalid_argument);
}

TEST(Aml, PkgLengthEncodings) {
    EXPECT_EQ(aml::pkg_length(0), (aml::Bytes{0x01}));
    EXPECT_EQ(aml::pkg_length(62), (aml::Bytes{0x3f}));
    // 63 bytes of body: 65 with a 2-byte length: 0x41 = 0b01 << 6 | 1, then 65 >> 4 = 4.
    EXPECT_EQ(aml::pkg_length(63), (aml::Bytes{0x41, 0x04}));
    EXPECT_EQ(aml::pkg_length(4093), (aml::Bytes{0x4f, 0xff}));        // 4095 in all: two bytes
    EXPECT_EQ(aml::pkg_length(4094), (aml::Bytes{0x81, 0x00, 0x01}));  // 4097: three
}

TEST(Aml, NamesIntegersAndIds) {
    EXPECT_EQ(aml::name_string("_S5"), (aml::Bytes{'_', 'S', '5', '_'}));
    EXPECT_EQ(aml::name_string("\\_SB_.PCI0"),
              (aml::Bytes{'\\', 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'}));
    EXPECT_EQ(aml::name_string("A.B.C")[0], 0x2f);
    EXPECT_THROW(aml::name_string("TOOLONG"), std::invalid_argument);
    EXPECT_EQ(aml::integer(0), (aml::Bytes{0x00}));
    EXPECT_EQ(aml::integer(1), (aml::Bytes{0x01}));
    EXPECT_EQ(aml::integer(0x12), (aml::Bytes{0x0a, 0x12}));
    EXPECT_EQ(aml::integer(0x1234), (aml::Bytes{0x0b, 0x34, 0x12}));
    EXPECT_EQ(aml::integer(0x12345678), (aml::Bytes{0x0c, 0x78, 0x56, 0x34, 0x12}));
    EXPECT_EQ(aml::integer(0x100000000).size(), 9u);
    // PNP0A03 compresses to 0x030AD041 (little-endian in the DWord).
    EXPECT_EQ(aml::eisa_id("PNP0A03"), (aml::Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03}));
    EXPECT_EQ(aml::string("ab"), (aml::Bytes{0x0d, 'a', 'b', 0}));
}

TEST(Aml, ResourceTemplateEndsWithEndTag) {
    const aml::Bytes rt =
        aml::resource_template({aml::word_bus_number(0, 0xff), aml::io_port(0xcf8, 0xcf8, 1, 8)});
    ASSERT_GE(rt.size(), 4u);
    EXPECT_EQ(rt[0], 0x11);  // BufferOp
    EXPECT_EQ(rt[rt.size() - 2], 0x79);
    EXPECT_EQ(aml::word_bus_number(0, 0xff).size(), 16u);
    EXPECT_EQ(aml::dword_memory(0xc0000000, 0xdfffffff, false).size(), 26u);
    EXPECT_EQ(aml::qword_memory(0x100000000, 0x1ffffffff, false).size(), 46u);
}
