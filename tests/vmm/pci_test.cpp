// PCI: configuration mechanism #1 through ports 0xCF8/0xCFC on a real port-I/O Bus,
// BAR sizing and moves (remapping the real MMIO Bus), the capability list, write masks,
// firmware BAR placement in the window, and the DSDT's PNP0A03 entry (parsed as AML).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "vmm/arch/x86/aml.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/pci/pci_device.h"
#include "vmm/devices/pci/pci_root.h"

using namespace conduit::vmm;
using conduit::vmm::pci::PciDevice;
using conduit::vmm::pci::PciRoot;

namespace {

constexpr uint64_t kWindow = 0xc000'0000;
constexpr uint64_t kWindowEnd = 0xe000'0000;
constexpr uint64_t kBar0Size = 16 << 10;
constexpr uint64_t kBar2Size = 1 << 20;
constexpr pci::PciIds kTestIds{0x1234, 0x5678, 0x02, 0x020000, 0xabcd, 0x0042};

// A BAR's registers: reads return a pattern with the offset in it, writes are recorded.
class Registers final : public BusDevice {
  public:
    void read(uint64_t offset, std::span<uint8_t> data) override {
        store_le(data, 0xa5a5'0000 | offset);
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        writes.emplace_back(offset, load_le(data));
    }
    std::vector<std::pair<uint64_t, uint64_t>> writes;
};

// A function with a 32-bit BAR 0 (16 KiB), a 64-bit BAR 2/3 (1 MiB) and two capabilities.
class TestFunction final : public PciDevice {
  public:
    explicit TestFunction(std::string name) : PciDevice(std::move(name), kTestIds) {
        add_memory_bar(0, kBar0Size, false, bar0);
        add_memory_bar(2, kBar2Size, true, bar2);
        const uint8_t vendor_body[] = {8, 0xaa, 0xbb, 0xcc, 0xdd, 0xee};
        vendor_cap = add_capability(0x09, vendor_body);
        const uint8_t pm_body[] = {0x03, 0x00, 0x00, 0x00, 0x00, 0x00};
        pm_cap = add_capability(0x01, pm_body);
    }
    uint8_t add_cap(uint8_t id, std::span<const uint8_t> body) { return add_capability(id, body); }

    struct Move {
        unsigned bar;
        uint64_t from, to;
        bool operator==(const Move&) const = default;
    };
    std::vector<Move> moves;

    std::shared_ptr<Registers> bar0 = std::make_shared<Registers>();
    std::shared_ptr<Registers> bar2 = std::make_shared<Registers>();
    uint8_t vendor_cap = 0;
    uint8_t pm_cap = 0;

  protected:
    void bar_relocated(unsigned bar, uint64_t from, uint64_t to) override {
        moves.push_back({bar, from, to});
    }
};

// A function that adds one BAR as told (to check the arguments are refused).
class OneBar final : public PciDevice {
  public:
    OneBar(unsigned index, uint64_t size, bool is64) : PciDevice("one bar", kTestIds) {
        add_memory_bar(index, size, is64, std::make_shared<Registers>());
    }
};

// The guest's side of configuration mechanism #1, as Linux's pci_conf1_read/write do it.
class Conf1 {
  public:
    explicit Conf1(Bus& pio) : pio_(pio) {}

    static uint32_t address(unsigned bus, unsigned device, unsigned function, unsigned reg) {
        return 0x8000'0000u | (bus << 16) | (device << 11) | (function << 8) | (reg & 0xfc);
    }
    void outl(uint16_t port, uint32_t v) { out(port, 4, v); }
    uint32_t inl(uint16_t port) { return in(port, 4); }
    void out(uint16_t port, unsigned size, uint32_t v) {
        std::array<uint8_t, 4> b{};
        store_le(std::span(b.data(), size), v);
        pio_.write(port, std::span<const uint8_t>(b.data(), size));
    }
    uint32_t in(uint16_t port, unsigned size) {
        std::array<uint8_t, 4> b{};
        pio_.read(port, std::span(b.data(), size));
        return static_cast<uint32_t>(load_le(std::span<const uint8_t>(b.data(), size)));
    }

    uint32_t read(unsigned device, unsigned reg, unsigned size, unsigned bus = 0,
                  unsigned function = 0) {
        outl(0xcf8, address(bus, device, function, reg));
        return in(static_cast<uint16_t>(0xcfc + (reg & (size == 4 ? 0 : size == 2 ? 2 : 3))), size);
    }
    void write(unsigned device, unsigned reg, unsigned size, uint32_t value, unsigned bus = 0,
               unsigned function = 0) {
        outl(0xcf8, address(bus, device, function, reg));
        out(static_cast<uint16_t>(0xcfc + (reg & (size == 4   ? 0
                                                  : size == 2 ? 2
                                                              : 3))),
            size, value);
    }

  private:
    Bus& pio_;
};

class PciRootTest : public ::testing::Test {
  protected:
    // Plugs a TestFunction in, as the device manager does with a virtio card.
    std::shared_ptr<TestFunction> plug(const std::string& name, unsigned* slot = nullptr) {
        auto dev = std::make_shared<TestFunction>(name);
        const unsigned s = root.add(dev);
        if (slot != nullptr) {
            *slot = s;
        }
        return dev;
    }
    uint64_t bar_address(unsigned slot, unsigned bar) {
        uint64_t a = cfg.read(slot, pci::kBar0 + 4 * bar, 4) & ~0xfull;
        if (cfg.read(slot, pci::kBar0 + 4 * bar, 4) & 0x4) {
            a |= uint64_t{cfg.read(slot, pci::kBar0 + 4 * (bar + 1), 4)} << 32;
        }
        return a;
    }
    // The MMIO bus ranges owned by `handler`.
    std::vector<std::pair<uint64_t, uint64_t>> mapped(const BusDevice* handler) const {
        std::vector<std::pair<uint64_t, uint64_t>> out;
        for (const Bus::Range& r : mmio.ranges()) {
            if (r.device.get() == handler) {
                out.emplace_back(r.base, r.size);
            }
        }
        return out;
    }
    // A guest read through the MMIO bus: whether someone owns it, and what it read.
    std::pair<bool, uint32_t> mmio_read(uint64_t addr) {
        std::array<uint8_t, 4> b{};
        const bool owned = mmio.read(addr, b);
        return {owned, static_cast<uint32_t>(load_le(b))};
    }
    void set_command(unsigned slot, uint16_t bits) { cfg.write(slot, pci::kCommand, 2, bits); }

    Bus pio{"port I/O"};
    Bus mmio{"MMIO"};
    PciRoot root{pio, mmio, kWindow, kWindowEnd};
    Conf1 cfg{pio};
};

// ---------------------------------------------------------------- AML reader for the DSDT

struct AmlValue {
    enum class Kind { kInteger, kString, kBuffer, kPackage } kind = Kind::kInteger;
    uint64_t integer = 0;
    std::string string;
    aml::Bytes buffer;
};

// Reads the subset of AML a DSDT fragment uses (Scope, Device, Name with data objects),
// checking that every PkgLength covers exactly what it encloses.
class AmlReader {
  public:
    explicit AmlReader(const aml::Bytes& bytes) : b_(bytes) {
        term_list(b_.size(), "\\");
        if (pos_ != b_.size()) {
            fail("trailing bytes");
        }
    }
    std::map<std::string, AmlValue> names;
    std::vector<std::string> devices;
    std::vector<std::string> scopes;

  private:
    [[noreturn]] void fail(const std::string& why) const {
        throw std::runtime_error("AML at byte " + std::to_string(pos_) + ": " + why);
    }
    uint8_t next() {
        if (pos_ >= b_.size()) {
            fail("truncated");
        }
        return b_[pos_++];
    }
    uint64_t le(unsigned n) {
        uint64_t v = 0;
        for (unsigned i = 0; i < n; ++i) {
            v |= uint64_t{next()} << (8 * i);
        }
        return v;
    }
    // PkgLength (ACPI 6.4, 20.2.4) counts from its own first byte: returns the end.
    size_t package_end() {
        const size_t start = pos_;
        const uint8_t lead = next();
        const unsigned follow = lead >> 6;
        size_t length = follow == 0 ? (lead & 0x3f) : (lead & 0x0f);
        if (follow != 0 && (lead & 0x30) != 0) {
            fail("bits 5:4 of a multi-byte PkgLength must be zero");
        }
        for (unsigned i = 0; i < follow; ++i) {
            length |= size_t{next()} << (4 + 8 * i);
        }
        if (start + length > b_.size()) {
            fail("package runs past the end");
        }
        return start + length;
    }
    std::string segment() {
        std::string s;
        for (int i = 0; i < 4; ++i) {
            const char c = static_cast<char>(next());
            const bool lead_ok = (c >= 'A' && c <= 'Z') || c == '_';
            if (!(lead_ok || (i > 0 && c >= '0' && c <= '9'))) {
                fail(std::string("bad name character '") + c + "'");
            }
            s += c;
        }
        return s;
    }
    std::string name_path(const std::string& scope) {
        bool absolute = false;
        if (b_.at(pos_) == '\\') {
            absolute = true;
            ++pos_;
        }
        std::vector<std::string> segs;
        const uint8_t p = b_.at(pos_);
        if (p == 0x2e) {
            ++pos_;
            segs = {segment(), segment()};
        } else if (p == 0x2f) {
            ++pos_;
            const unsigned count = next();
            for (unsigned i = 0; i < count; ++i) {
                segs.push_back(segment());
            }
        } else {
            segs = {segment()};
        }
        std::string path = absolute ? "\\" : (scope == "\\" ? "\\" : scope + ".");
        for (size_t i = 0; i < segs.size(); ++i) {
            path += (i ? "." : "") + segs[i];
        }
        return path;
    }
    AmlValue data_object() {
        AmlValue v;
        const uint8_t op = next();
        switch (op) {
            case 0x00:
                v.integer = 0;
                break;
            case 0x01:
                v.integer = 1;
                break;
            case 0xff:
                v.integer = ~uint64_t{0};
                break;
            case 0x0a:
                v.integer = le(1);
                break;
            case 0x0b:
                v.integer = le(2);
                break;
            case 0x0c:
                v.integer = le(4);
                break;
            case 0x0e:
                v.integer = le(8);
                break;
            case 0x0d:
                v.kind = AmlValue::Kind::kString;
                for (char c; (c = static_cast<char>(next())) != 0;) {
                    v.string += c;
                }
                break;
            case 0x11: {
                v.kind = AmlValue::Kind::kBuffer;
                const size_t end = package_end();
                const AmlValue size = data_object();
                if (size.kind != AmlValue::Kind::kInteger || pos_ + size.integer != end) {
                    fail("buffer size does not match its package");
                }
                v.buffer.assign(b_.begin() + static_cast<long>(pos_),
                                b_.begin() + static_cast<long>(end));
                pos_ = end;
                break;
            }
            case 0x12: {
                v.kind = AmlValue::Kind::kPackage;
                const size_t end = package_end();
                const unsigned count = next();
                for (unsigned i = 0; i < count; ++i) {
                    (void)data_object();
                }
                if (pos_ != end) {
                    fail("package elements do not fill the package");
                }
                break;
            }
            default:
                fail("unexpected data object opcode " + std::to_string(op));
        }
        return v;
    }
    void term_list(size_t end, const std::string& scope) {
        while (pos_ < end) {
            const uint8_t op = next();
            if (op == 0x10) {  // Scope
                const size_t body_end = package_end();
                const std::string path = name_path(scope);
                scopes.push_back(path);
                term_list(body_end, path);
            } else if (op == 0x5b && next() == 0x82) {  // Device
                const size_t body_end = package_end();
                const std::string path = name_path(scope);
                devices.push_back(path);
                term_list(body_end, path);
            } else if (op == 0x08) {  // Name
                const std::string path = name_path(scope);
                if (names.count(path)) {
                    fail(path + " defined twice");
                }
                names[path] = data_object();
            } else {
                fail("unexpected opcode " + std::to_string(op));
            }
        }
        if (pos_ != end) {
            fail("a term ran past its enclosing package");
        }
    }

    const aml::Bytes& b_;
    size_t pos_ = 0;
};

// ACPICA's AcpiExEisaIdToString: the DWordConst's bytes hold the compressed ID big-endian.
std::string eisa_id_string(uint64_t dword) {
    const uint32_t s = __builtin_bswap32(static_cast<uint32_t>(dword));
    std::string id;
    id += static_cast<char>('@' + ((s >> 26) & 0x1f));
    id += static_cast<char>('@' + ((s >> 21) & 0x1f));
    id += static_cast<char>('@' + ((s >> 16) & 0x1f));
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04X", s & 0xffff);
    return id + hex;
}

// Resource descriptors of a ResourceTemplate (ACPI 6.4, 6.4.2 and 6.4.3).
struct Resource {
    uint8_t tag = 0;   // 0x47 I/O port, 0x88 Word, 0x87 DWord, 0x8a QWord
    uint8_t type = 0;  // address space: 0 memory, 1 I/O, 2 bus number
    uint8_t general_flags = 0;
    uint8_t type_flags = 0;
    uint64_t granularity = 0, min = 0, max = 0, translation = 0, length = 0;
    uint8_t io_decode = 0, io_alignment = 0;
};

std::vector<Resource> parse_resources(const aml::Bytes& buf) {
    std::vector<Resource> out;
    size_t pos = 0;
    const auto le = [&](size_t at, unsigned n) {
        uint64_t v = 0;
        for (unsigned i = 0; i < n; ++i) {
            v |= uint64_t{buf.at(at + i)} << (8 * i);
        }
        return v;
    };
    bool ended = false;
    while (pos < buf.size() && !ended) {
        Resource r;
        r.tag = buf[pos];
        if (r.tag & 0x80) {  // large item: tag, 16-bit length, data
            const size_t len = le(pos + 1, 2);
            const size_t d = pos + 3;
            if (d + len > buf.size()) {
                throw std::runtime_error("descriptor runs past the buffer");
            }
            const unsigned w = r.tag == 0x88 ? 2 : r.tag == 0x87 ? 4 : r.tag == 0x8a ? 8 : 0;
            if (w == 0 || len < 3 + 5 * w) {
                throw std::runtime_error("unexpected large descriptor " + std::to_string(r.tag));
            }
            r.type = buf[d];
            r.general_flags = buf[d + 1];
            r.type_flags = buf[d + 2];
            r.granularity = le(d + 3, w);
            r.min = le(d + 3 + w, w);
            r.max = le(d + 3 + 2 * w, w);
            r.translation = le(d + 3 + 3 * w, w);
            r.length = le(d + 3 + 4 * w, w);
            pos = d + len;
        } else {  // small item: name in bits 6:3, length in 2:0
            const unsigned name = (r.tag >> 3) & 0xf;
            const unsigned len = r.tag & 7;
            if (name == 0xf) {  // End Tag: checksum follows, then nothing
                if (len != 1 || pos + 2 != buf.size()) {
                    throw std::runtime_error("End Tag is not the last two bytes");
                }
                ended = true;
            } else if (name == 0x8 && len == 7) {  // I/O port
                r.io_decode = buf.at(pos + 1);
                r.min = le(pos + 2, 2);
                r.max = le(pos + 4, 2);
                r.io_alignment = buf.at(pos + 6);
                r.length = buf.at(pos + 7);
            } else {
                throw std::runtime_error("unexpected small descriptor " + std::to_string(r.tag));
            }
            pos += 1 + len;
        }
        out.push_back(r);
    }
    if (!ended) {
        throw std::runtime_error("no End Tag");
    }
    return out;
}

}  // namespace

// ------------------------------------------------------------- configuration mechanism #1

TEST_F(PciRootTest, AddressRegisterReadsBackAsLinuxProbesIt) {
    // pci_check_type1: a byte to 0xCFB, then 0x80000000 to 0xCF8 must read back as is.
    cfg.out(0xcfb, 1, 0x01);
    cfg.outl(0xcf8, 0x8000'0000);
    EXPECT_EQ(cfg.inl(0xcf8), 0x8000'0000u);
    cfg.outl(0xcf8, Conf1::address(3, 7, 5, 0x44));
    EXPECT_EQ(cfg.inl(0xcf8), 0x8003'3d44u);
    cfg.outl(0xcf8, 0x8000'0803);
    EXPECT_EQ(cfg.inl(0xcf8), 0x8000'0800u) << "bits 1:0 are not part of the register number";
    cfg.out(0xcf8, 2, 0);
    cfg.out(0xcf9, 1, 0x06);  // a reset-control write on other chipsets
    EXPECT_EQ(cfg.inl(0xcf8), 0x8000'0800u) << "byte and word writes do not select";
    EXPECT_EQ(cfg.in(0xcf8, 2), 0xffffu);
    EXPECT_EQ(cfg.in(0xcf8, 1), 0xffu);
}

TEST_F(PciRootTest, WithoutTheEnableBitNothingIsSelected) {
    plug("dev");
    cfg.outl(0xcf8, Conf1::address(0, 1, 0, 0) & ~0x8000'0000u);
    EXPECT_EQ(cfg.inl(0xcfc), 0xffff'ffffu);
    cfg.outl(0xcf8, Conf1::address(0, 1, 0, pci::kInterruptLine) & ~0x8000'0000u);
    cfg.out(0xcfc, 1, 0x0b);
    EXPECT_EQ(cfg.read(1, pci::kInterruptLine, 1), 0u) << "the write went nowhere";
    EXPECT_EQ(cfg.read(1, 0x00, 4), 0x5678'1234u) << "with the bit it is there";
}

TEST_F(PciRootTest, DecodesBusDeviceFunctionAndRegister) {
    unsigned slot = 0;
    plug("dev", &slot);
    EXPECT_EQ(slot, 1u) << "the host bridge holds slot 0";

    EXPECT_EQ(cfg.read(0, 0x00, 2), 0x8086u) << "host bridge vendor";
    EXPECT_EQ(cfg.read(0, 0x08, 4) >> 8, 0x060000u) << "class: host bridge";
    EXPECT_EQ(cfg.read(0, 0x0e, 1), 0u) << "type 0 header, single function";

    EXPECT_EQ(cfg.read(1, 0x00, 4), 0x5678'1234u);
    EXPECT_EQ(cfg.read(1, 0x08, 4), 0x0200'0002u) << "class 02 00 00, revision 2";
    EXPECT_EQ(cfg.read(1, 0x2c, 4), 0x0042'abcdu) << "subsystem";
    EXPECT_EQ(cfg.read(1, 0x0e, 1) & 0x80, 0u) << "not multi-function: Linux skips fn 1-7";

    EXPECT_EQ(cfg.read(2, 0x00, 4), 0xffff'ffffu) << "empty slot";
    EXPECT_EQ(cfg.read(31, 0x00, 4), 0xffff'ffffu) << "last slot, empty";
    EXPECT_EQ(cfg.read(1, 0x00, 4, 0, 1), 0xffff'ffffu) << "function 1";
    EXPECT_EQ(cfg.read(1, 0x00, 4, 0, 7), 0xffff'ffffu) << "function 7";
    EXPECT_EQ(cfg.read(1, 0x00, 4, 1, 0), 0xffff'ffffu) << "bus 1";
    EXPECT_EQ(cfg.read(1, 0x00, 4, 255, 0), 0xffff'ffffu) << "bus 255";
    EXPECT_EQ(cfg.read(2, 0x00, 2), 0xffffu) << "absent devices read all ones at any width";
    EXPECT_EQ(cfg.read(2, 0x00, 1), 0xffu);

    cfg.write(2, pci::kInterruptLine, 1, 0x0b);  // to nobody: no effect anywhere
    cfg.write(1, pci::kInterruptLine, 1, 0x0a, 0, 3);
    EXPECT_EQ(cfg.read(1, pci::kInterruptLine, 1), 0u) << "function 3 is not function 0";
}

TEST_F(PciRootTest, ByteWordAndDwordAccessesAtEveryOffsetInTheDword) {
    plug("dev");
    EXPECT_EQ(cfg.read(1, 0x00, 2), 0x1234u) << "word at 0xCFC";
    EXPECT_EQ(cfg.read(1, 0x02, 2), 0x5678u) << "word at 0xCFE";
    EXPECT_EQ(cfg.read(1, 0x00, 1), 0x34u);
    EXPECT_EQ(cfg.read(1, 0x01, 1), 0x12u) << "byte at 0xCFD";
    EXPECT_EQ(cfg.read(1, 0x02, 1), 0x78u);
    EXPECT_EQ(cfg.read(1, 0x03, 1), 0x56u) << "byte at 0xCFF";
    EXPECT_EQ(cfg.read(1, 0x0b, 1), 0x02u) << "base class";

    cfg.write(1, pci::kInterruptLine, 1, 0x0b);
    EXPECT_EQ(cfg.read(1, pci::kInterruptLine, 4), 0x0000'000bu) << "line set, pin still 0";
    cfg.write(1, pci::kCommand, 2, pci::kCommandMemory | pci::kCommandBusMaster);
    EXPECT_EQ(cfg.read(1, pci::kCommand, 4) & 0xffff, 0x6u);
    cfg.write(1, pci::kCommand + 1, 1, pci::kCommandIntxDisable >> 8);
    EXPECT_EQ(cfg.read(1, pci::kCommand, 2), 0x406u) << "a byte write to the high half";

    // A word straddling 0xCFD-0xCFE is not something conf1 can express on a real bus.
    cfg.outl(0xcf8, Conf1::address(0, 1, 0, 0));
    EXPECT_EQ(cfg.in(0xcfd, 2), 0xffffu);
    EXPECT_EQ(cfg.in(0xcfd, 4), 0xffff'ffffu) << "past the data port";
}

TEST(PciDevice, ConfigAccessesOfOtherSizesOrMisalignedOrPastTheEndAreRefused) {
    TestFunction dev("dev");
    EXPECT_EQ(dev.config_read(0, 3), 0xffff'ffffu);
    EXPECT_EQ(dev.config_read(0, 8), 0xffff'ffffu);
    EXPECT_EQ(dev.config_read(2, 4), 0xffff'ffffu);
    EXPECT_EQ(dev.config_read(1, 2), 0xffff'ffffu);
    EXPECT_EQ(dev.config_read(256, 1), 0xffff'ffffu);
    EXPECT_EQ(dev.config_read(254, 2), 0u) << "the last word is there";
    dev.config_write(pci::kInterruptLine - 1, 2, 0xffff);  // misaligned word
    EXPECT_EQ(dev.config_read(pci::kInterruptLine, 1), 0u);
    dev.config_write(pci::kInterruptLine, 3, 0xffffff);
    EXPECT_EQ(dev.config_read(pci::kInterruptLine, 1), 0u);
}

// ---------------------------------------------------------------------------------- BARs

TEST_F(PciRootTest, BarSizingTheWayLinuxDoesIt) {
    unsigned slot = 0;
    auto dev = plug("dev", &slot);
    const auto ranges_before = mmio.ranges();
    const uint16_t command = static_cast<uint16_t>(cfg.read(slot, pci::kCommand, 2));

    // __pci_read_base: decoding off, all ones in, size mask out, original back.
    set_command(slot, command & ~pci::kCommandMemory);
    EXPECT_TRUE(mapped(dev->bar0.get()).empty());
    std::array<uint32_t, 6> size_mask{};
    std::array<uint32_t, 6> original{};
    for (unsigned i = 0; i < 6; ++i) {
        const uint16_t reg = static_cast<uint16_t>(pci::kBar0 + 4 * i);
        original[i] = cfg.read(slot, reg, 4);
        cfg.write(slot, reg, 4, 0xffff'ffff);
        size_mask[i] = cfg.read(slot, reg, 4);
        cfg.write(slot, reg, 4, original[i]);
    }
    EXPECT_EQ(size_mask[0], 0xffff'c000u) << "16 KiB, 32-bit, not prefetchable";
    EXPECT_EQ(size_mask[1], 0u) << "unused";
    EXPECT_EQ(size_mask[2], 0xfff0'0004u) << "1 MiB, 64-bit";
    EXPECT_EQ(size_mask[3], 0xffff'ffffu) << "upper half of a 64-bit BAR: all writable";
    EXPECT_EQ(size_mask[4], 0u);
    EXPECT_EQ(size_mask[5], 0u);
    EXPECT_EQ(~(size_mask[0] & ~0xfu) + 1, kBar0Size);
    const uint64_t mask64 = (uint64_t{size_mask[3]} << 32) | (size_mask[2] & ~0xfu);
    EXPECT_EQ(~mask64 + 1, kBar2Size);

    cfg.write(slot, 0x30, 4, 0xffff'f800);
    EXPECT_EQ(cfg.read(slot, 0x30, 4), 0u) << "no expansion ROM";

    for (unsigned i = 0; i < 6; ++i) {
        EXPECT_EQ(cfg.read(slot, pci::kBar0 + 4 * i, 4), original[i]) << "BAR " << i << " restored";
    }
    EXPECT_TRUE(mapped(dev->bar0.get()).empty()) << "still not decoding";
    set_command(slot, command);
    const auto ranges_after = mmio.ranges();
    ASSERT_EQ(ranges_after.size(), ranges_before.size());
    for (size_t i = 0; i < ranges_after.size(); ++i) {
        EXPECT_EQ(ranges_after[i].base, ranges_before[i].base);
        EXPECT_EQ(ranges_after[i].size, ranges_before[i].size);
    }
}

TEST_F(PciRootTest, SizingWithDecodingOnLeavesNoStrayMapping) {
    unsigned slot = 0;
    auto dev = plug("dev", &slot);
    const uint64_t home = bar_address(slot, 0);
    const uint32_t original = cfg.read(slot, pci::kBar0, 4);
    cfg.write(slot, pci::kBar0, 4, 0xffff'ffff);
    EXPECT_EQ(mapped(dev->bar0.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{0xffff'c000, kBar0Size}}))
        << "while it reads as its size mask it decodes there";
    cfg.write(slot, pci::kBar0, 4, original);
    EXPECT_EQ(mapped(dev->bar0.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{home, kBar0Size}}));
    EXPECT_FALSE(mmio_read(0xffff'c000).first);

    // The same for the 64-bit BAR, whose high half alone moves it above 4 GiB and beyond.
    const uint64_t home2 = bar_address(slot, 2);
    const uint32_t lo = cfg.read(slot, pci::kBar0 + 8, 4);
    const uint32_t hi = cfg.read(slot, pci::kBar0 + 12, 4);
    cfg.write(slot, pci::kBar0 + 8, 4, 0xffff'ffff);
    cfg.write(slot, pci::kBar0 + 12, 4, 0xffff'ffff);
    cfg.write(slot, pci::kBar0 + 8, 4, lo);
    cfg.write(slot, pci::kBar0 + 12, 4, hi);
    EXPECT_EQ(mapped(dev->bar2.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{home2, kBar2Size}}));
    EXPECT_EQ(mmio.ranges().size(), 2u);
}

TEST_F(PciRootTest, MovingABarRemapsTheMmioBus) {
    unsigned slot = 0;
    auto dev = plug("dev", &slot);
    EXPECT_EQ(dev->moves, (std::vector<TestFunction::Move>{{0, 0, bar_address(slot, 0)},
                                                           {2, 0, bar_address(slot, 2)}}))
        << "firmware's placement is the first mapping";
    dev->moves.clear();
    const uint64_t old0 = bar_address(slot, 0);
    EXPECT_EQ(mmio_read(old0 + 0x10), (std::pair<bool, uint32_t>{true, 0xa5a5'0010}));

    cfg.write(slot, pci::kBar0, 4, 0xd000'0000);
    EXPECT_EQ(bar_address(slot, 0), 0xd000'0000u);
    EXPECT_EQ(mmio_read(old0 + 0x10), (std::pair<bool, uint32_t>{false, 0xffff'ffff}))
        << "the old range is gone";
    EXPECT_EQ(mmio_read(0xd000'0010), (std::pair<bool, uint32_t>{true, 0xa5a5'0010}))
        << "the new one reaches the BAR at the same offset";
    std::array<uint8_t, 4> word{1, 2, 3, 4};
    EXPECT_TRUE(mmio.write(0xd000'3ffc, word));
    ASSERT_EQ(dev->bar0->writes.size(), 1u);
    EXPECT_EQ(dev->bar0->writes[0], (std::pair<uint64_t, uint64_t>{0x3ffc, 0x04030201}));
    EXPECT_FALSE(mmio.write(0xd000'4000, word)) << "past the 16 KiB BAR";

    // Address bits below the size are not writable.
    cfg.write(slot, pci::kBar0, 4, 0xd000'5678);
    EXPECT_EQ(cfg.read(slot, pci::kBar0, 4), 0xd000'4000u);

    // The 64-bit BAR above 4 GiB: low half, then high half, as Linux writes them.
    cfg.write(slot, pci::kBar0 + 8, 4, 0x0010'0000);
    cfg.write(slot, pci::kBar0 + 12, 4, 0x0000'0008);
    EXPECT_EQ(bar_address(slot, 2), 0x8'0010'0000u);
    EXPECT_EQ(mapped(dev->bar2.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{0x8'0010'0000, kBar2Size}}));
    EXPECT_EQ(mmio_read(0x8'0010'0040).second, 0xa5a5'0040u);
    EXPECT_EQ(dev->mapped_bar(2), 0x8'0010'0000u);
    EXPECT_EQ(dev->mapped_bar(3), 0u) << "the high half is no BAR of its own";

    ASSERT_GE(dev->moves.size(), 3u);
    EXPECT_EQ(dev->moves[0], (TestFunction::Move{0, old0, 0xd000'0000}));
    EXPECT_EQ(dev->moves.back().to, 0x8'0010'0000u);
    EXPECT_EQ(mmio.ranges().size(), 2u) << "nothing left behind by the intermediate moves";
}

TEST_F(PciRootTest, MemoryDecodingOffUnmapsAndOnMapsAgain) {
    unsigned slot = 0;
    auto dev = plug("dev", &slot);
    const uint64_t a0 = bar_address(slot, 0);
    const uint64_t a2 = bar_address(slot, 2);
    set_command(slot, pci::kCommandBusMaster);
    EXPECT_TRUE(mmio.ranges().empty());
    EXPECT_FALSE(mmio_read(a0).first);
    EXPECT_EQ(dev->mapped_bar(0), 0u);
    EXPECT_EQ(dev->mapped_bar(2), 0u);
    EXPECT_EQ(bar_address(slot, 0), a0) << "the BAR keeps its address";
    EXPECT_EQ(dev->moves.back(), (TestFunction::Move{2, a2, 0}));

    // Moved while not decoding: mapped only where it is when decoding comes back on.
    cfg.write(slot, pci::kBar0, 4, 0xd000'0000);
    EXPECT_TRUE(mmio.ranges().empty());
    set_command(slot, pci::kCommandMemory | pci::kCommandBusMaster);
    EXPECT_EQ(mapped(dev->bar0.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{0xd000'0000, kBar0Size}}));
    EXPECT_EQ(mapped(dev->bar2.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{a2, kBar2Size}}));
    EXPECT_FALSE(mmio_read(a0).first);

    // Bits that do not concern memory change nothing.
    const size_t moves = dev->moves.size();
    set_command(slot, pci::kCommandMemory);
    cfg.write(slot, pci::kInterruptLine, 1, 5);
    EXPECT_EQ(dev->moves.size(), moves);
    EXPECT_EQ(mmio.ranges().size(), 2u);
}

TEST_F(PciRootTest, ABarMovedOntoAnotherIsLeftUnmappedUntilMovedAway) {
    unsigned a = 0, b = 0;
    auto first = plug("first", &a);
    auto second = plug("second", &b);
    const uint64_t taken = bar_address(a, 0);
    cfg.write(b, pci::kBar0, 4, static_cast<uint32_t>(taken));
    EXPECT_TRUE(mapped(second->bar0.get()).empty());
    EXPECT_EQ(mapped(first->bar0.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{taken, kBar0Size}}))
        << "the first device keeps its range";
    cfg.write(b, pci::kBar0, 4, 0xd800'0000);
    EXPECT_EQ(mapped(second->bar0.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{0xd800'0000, kBar0Size}}));
    EXPECT_EQ(mapped(first->bar0.get()),
              (std::vector<std::pair<uint64_t, uint64_t>>{{taken, kBar0Size}}));
}

// ---------------------------------------------------------------------- capabilities

TEST_F(PciRootTest, CapabilityListWalksFrom0x34) {
    unsigned slot = 0;
    auto dev = plug("dev", &slot);
    EXPECT_TRUE(cfg.read(slot, pci::kStatus, 2) & pci::kStatusCapList);
    // pci_find_capability: pointer at 0x34, low two bits ignored, at most 48 hops.
    std::vector<std::pair<uint8_t, uint8_t>> found;  // (offset, id)
    uint8_t pos = static_cast<uint8_t>(cfg.read(slot, pci::kCapPointer, 1));
    for (int ttl = 48; ttl > 0 && pos >= 0x40; --ttl) {
        pos &= ~3;
        const uint32_t ent = cfg.read(slot, pos, 2);
        found.emplace_back(pos, static_cast<uint8_t>(ent));
        pos = static_cast<uint8_t>(ent >> 8);
    }
    EXPECT_EQ(pos, 0) << "the list ends with a zero pointer";
    ASSERT_EQ(found.size(), 2u);
    EXPECT_EQ(found[0], (std::pair<uint8_t, uint8_t>{dev->vendor_cap, 0x09}));
    EXPECT_EQ(found[1], (std::pair<uint8_t, uint8_t>{dev->pm_cap, 0x01}));
    EXPECT_EQ(dev->vendor_cap, 0x40) << "capabilities start after the header";
    EXPECT_EQ(dev->pm_cap % 4, 0) << "dword aligned";
    EXPECT_GE(dev->pm_cap, dev->vendor_cap + 8) << "no overlap with the 8-byte vendor cap";
    EXPECT_EQ(cfg.read(slot, dev->vendor_cap + 2, 2), 0xaa08u) << "the body follows";
    EXPECT_EQ(cfg.read(slot, dev->vendor_cap + 4, 4), 0xeedd'ccbbu);
}

TEST(PciDevice, CapabilitiesThatDoNotFitAreRefused) {
    TestFunction dev("dev");
    const std::vector<uint8_t> body(30, 0);
    int added = 0;
    EXPECT_THROW(
        {
            for (;; ++added) {
                dev.add_cap(0x09, body);
            }
        },
        std::logic_error);
    EXPECT_GT(added, 0);
    EXPECT_LT(added, 8) << "256 bytes hold few 32-byte capabilities";
}

TEST_F(PciRootTest, WriteMasksLeaveReadOnlyRegistersAlone) {
    unsigned slot = 0;
    plug("dev", &slot);
    std::array<uint32_t, 64> before{};
    for (unsigned d = 0; d < 64; ++d) {
        before[d] = cfg.read(slot, 4 * d, 4);
    }
    const auto is_bar = [](unsigned d) { return d >= 4 && d < 10; };
    for (uint32_t pattern : {0xffff'ffffu, 0u}) {
        for (unsigned d = 0; d < 64; ++d) {
            if (!is_bar(d)) {
                cfg.write(slot, 4 * d, 4, pattern);
            }
        }
        for (unsigned d = 0; d < 64; ++d) {
            if (is_bar(d)) {
                continue;
            }
            uint32_t writable = 0;
            if (d == pci::kCommand / 4) {
                writable = pci::kCommandIo | pci::kCommandMemory | pci::kCommandBusMaster |
                           pci::kCommandIntxDisable;  // status (high half) is read-only here
            } else if (d == pci::kInterruptLine / 4) {
                writable = 0xff;  // line; the pin says "none"
            }
            const uint32_t got = cfg.read(slot, 4 * d, 4);
            EXPECT_EQ(got & ~writable, before[d] & ~writable)
                << "read-only bits changed at " << 4 * d << " writing " << pattern;
            EXPECT_EQ(got & writable, pattern & writable) << "writable bits at " << 4 * d;
        }
    }
    EXPECT_EQ(cfg.read(slot, 0, 4), 0x5678'1234u) << "IDs stay";
}

// ------------------------------------------------------------------- firmware placement

TEST_F(PciRootTest, FirmwarePlacesBarsInTheWindowAlignedAndDisjoint) {
    std::vector<std::pair<uint64_t, uint64_t>> placed;
    for (int i = 0; i < 3; ++i) {
        unsigned slot = 0;
        auto dev = plug("dev" + std::to_string(i), &slot);
        EXPECT_EQ(slot, static_cast<unsigned>(i + 1));
        EXPECT_EQ(cfg.read(slot, pci::kCommand, 2) & 0x6, 0x6)
            << "memory decoding and bus mastering on, as firmware leaves them";
        for (auto [bar, size] : {std::pair{0u, kBar0Size}, std::pair{2u, kBar2Size}}) {
            const uint64_t a = bar_address(slot, bar);
            EXPECT_GE(a, kWindow);
            EXPECT_LE(a + size, kWindowEnd);
            EXPECT_EQ(a % size, 0u) << "naturally aligned";
            EXPECT_EQ(dev->mapped_bar(bar), a);
            const BusDevice* handler = bar == 0 ? dev->bar0.get() : dev->bar2.get();
            EXPECT_EQ(mapped(handler), (std::vector<std::pair<uint64_t, uint64_t>>{{a, size}}));
            placed.emplace_back(a, size);
        }
        EXPECT_EQ(cfg.read(slot, pci::kBar0 + 12, 4), 0u) << "below 4 GiB";
    }
    std::sort(placed.begin(), placed.end());
    for (size_t i = 1; i < placed.size(); ++i) {
        EXPECT_LE(placed[i - 1].first + placed[i - 1].second, placed[i].first) << "overlap";
    }
    bool named = false;
    for (const Bus::Range& r : mmio.ranges()) {
        named |= r.owner == "dev1 BAR2";
    }
    EXPECT_TRUE(named) << "ranges say whose BAR they are";
}

TEST(PciRoot, AFullWindowOrBusIsRefused) {
    Bus pio("pio"), mmio("mmio");
    // Room for exactly one TestFunction: 16 KiB at the start, 1 MiB at the next MiB.
    PciRoot root(pio, mmio, kWindow, kWindow + 2 * kBar2Size);
    EXPECT_NO_THROW(root.add(std::make_shared<TestFunction>("fits")));
    EXPECT_THROW(root.add(std::make_shared<TestFunction>("too many")), std::runtime_error);

    Bus pio2("pio"), mmio2("mmio");
    PciRoot full(pio2, mmio2, kWindow, kWindowEnd);
    for (unsigned slot = 1; slot < PciRoot::kSlots; ++slot) {
        EXPECT_EQ(full.add(std::make_shared<PciDevice>("bare", kTestIds)), slot);
    }
    EXPECT_THROW(full.add(std::make_shared<PciDevice>("one more", kTestIds)), std::runtime_error);
}

TEST(PciDevice, BarArgumentsAreChecked) {
    EXPECT_THROW(OneBar(0, 4096 + 1, false), std::logic_error) << "not a power of two";
    EXPECT_THROW(OneBar(0, 2048, false), std::logic_error) << "below 4 KiB";
    EXPECT_THROW(OneBar(5, 4096, true), std::logic_error) << "a 64-bit BAR needs two registers";
    EXPECT_THROW(OneBar(6, 4096, false), std::logic_error);
    EXPECT_NO_THROW(OneBar(4, 4096, true));

    TestFunction dev("dev");
    EXPECT_THROW(dev.assign_bar(0, kWindow + 0x1000), std::logic_error) << "misaligned";
    EXPECT_THROW(dev.assign_bar(1, kWindow), std::logic_error) << "unused";
    EXPECT_THROW(dev.assign_bar(3, kWindow), std::logic_error) << "upper half of BAR 2";
    dev.assign_bar(2, 0x1'0000'0000);
    EXPECT_EQ(dev.config_read(pci::kBar0 + 8, 4), 0x4u);
    EXPECT_EQ(dev.config_read(pci::kBar0 + 12, 4), 0x1u);
    EXPECT_EQ(dev.mapped_bar(2), 0u) << "assigned, but firmware has not enabled decoding";
    EXPECT_TRUE(dev.moves.empty());
    dev.enable_memory_decoding();
    EXPECT_EQ(dev.moves, (std::vector<TestFunction::Move>{{2, 0, 0x1'0000'0000}}));
}

// ----------------------------------------------------------------------------- the DSDT

TEST_F(PciRootTest, DsdtDescribesAPnp0a03RootBridgeWithItsResources) {
    unsigned slot = 0;
    plug("dev", &slot);
    const aml::Bytes bytes = root.dsdt_aml();
    std::unique_ptr<AmlReader> aml;
    ASSERT_NO_THROW(aml = std::make_unique<AmlReader>(bytes));

    EXPECT_EQ(aml->scopes, std::vector<std::string>{"\\_SB_"});
    EXPECT_EQ(aml->devices, std::vector<std::string>{"\\_SB_.PCI0"});
    const auto& n = aml->names;
    ASSERT_TRUE(n.count("\\_SB_.PCI0._HID"));
    EXPECT_EQ(eisa_id_string(n.at("\\_SB_.PCI0._HID").integer), "PNP0A03");
    for (const char* zero : {"_ADR", "_SEG", "_UID", "_BBN"}) {
        const std::string path = std::string("\\_SB_.PCI0.") + zero;
        ASSERT_TRUE(n.count(path)) << path;
        EXPECT_EQ(n.at(path).kind, AmlValue::Kind::kInteger);
        EXPECT_EQ(n.at(path).integer, 0u) << path;
    }
    ASSERT_TRUE(n.count("\\_SB_.PCI0._CRS"));
    ASSERT_EQ(n.at("\\_SB_.PCI0._CRS").kind, AmlValue::Kind::kBuffer);

    std::vector<Resource> crs;
    ASSERT_NO_THROW(crs = parse_resources(n.at("\\_SB_.PCI0._CRS").buffer));
    std::vector<Resource> bus, io_windows, memory, io_ports;
    for (const Resource& r : crs) {
        if (r.tag == 0x47) {
            io_ports.push_back(r);
        } else if (r.tag != 0x79) {
            EXPECT_EQ(r.length, r.max - r.min + 1) << "length agrees with min and max";
            EXPECT_EQ(r.general_flags & 0x1, 0) << "a window the bridge produces";
            EXPECT_EQ(r.general_flags & 0xc, 0xc) << "fixed minimum and maximum";
            EXPECT_EQ(r.translation, 0u);
            (r.type == 2 ? bus : r.type == 1 ? io_windows : memory).push_back(r);
        }
    }
    ASSERT_EQ(bus.size(), 1u);
    EXPECT_EQ(bus[0].min, 0u);
    EXPECT_EQ(bus[0].max, 0u) << "bus 0 only";
    ASSERT_EQ(io_ports.size(), 1u) << "the config ports, which Linux drops from the windows";
    EXPECT_EQ(io_ports[0].min, 0xcf8u);
    EXPECT_EQ(io_ports[0].max, 0xcf8u);
    EXPECT_EQ(io_ports[0].length, 8u);
    EXPECT_EQ(io_ports[0].io_decode & 1, 1) << "16-bit decode";
    ASSERT_EQ(io_windows.size(), 2u);
    for (const Resource& w : io_windows) {
        EXPECT_TRUE(w.max < 0xcf8 || w.min > 0xcff) << "I/O windows leave 0xCF8-0xCFF out";
    }
    EXPECT_EQ(io_windows[0].min, 0u);
    EXPECT_EQ(io_windows[0].max, 0xcf7u);
    EXPECT_EQ(io_windows[1].min, 0xd00u);
    EXPECT_EQ(io_windows[1].max, 0xffffu);
    ASSERT_EQ(memory.size(), 1u);
    EXPECT_EQ(memory[0].tag, 0x87) << "a DWord window below 4 GiB";
    EXPECT_EQ(memory[0].min, kWindow);
    EXPECT_EQ(memory[0].max, kWindowEnd - 1);

    // Every BAR firmware placed is inside the window the DSDT advertises.
    for (unsigned bar : {0u, 2u}) {
        const uint64_t a = bar_address(slot, bar);
        EXPECT_GE(a, memory[0].min);
        EXPECT_LE(a + (bar == 0 ? kBar0Size : kBar2Size) - 1, memory[0].max);
    }
}
