// The x86-64 boot protocol pieces: bzImage checks, boot plan, e820, zero page, memory.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "vmm/arch/x86/boot_params.h"
#include "vmm/arch/x86/bzimage.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/util/error.h"

using namespace conduit::vmm;
using namespace conduit::vmm::x86;

namespace {

// A minimal image with a valid 2.15 header: setup sectors, then `payload` bytes.
std::vector<uint8_t> fake_bzimage(size_t payload = 4096, uint16_t version = 0x020f) {
    const size_t setup_sects = 4;
    std::vector<uint8_t> img((setup_sects + 1) * 512 + payload, 0);
    setup_header h{};
    h.setup_sects = setup_sects;
    h.boot_flag = 0xaa55;
    h.header = 0x53726448;
    h.version = version;
    h.loadflags = 0x01;
    h.xloadflags = 0x01;
    h.syssize = static_cast<uint32_t>(payload / 16);
    h.pref_address = 0x1000000;
    h.init_size = 0x200000;
    h.cmdline_size = 2047;
    h.initrd_addr_max = 0x7fffffff;
    h.kernel_alignment = 0x200000;
    h.relocatable_kernel = 1;
    std::memcpy(img.data() + 0x1f1, &h, sizeof h);
    for (size_t i = 0; i < payload; ++i) {
        img[(setup_sects + 1) * 512 + i] = static_cast<uint8_t>(i * 7);
    }
    return img;
}

setup_header& header_of(std::vector<uint8_t>& img) {
    return *reinterpret_cast<setup_header*>(img.data() + 0x1f1);
}

std::string error_of(std::vector<uint8_t> img) {
    try {
        parse_bzimage(std::move(img), "k");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(BzImage, ParsesAValidHeader) {
    const KernelImage k = parse_bzimage(fake_bzimage(), "k");
    EXPECT_EQ(k.protected_offset, 5u * 512);
    EXPECT_EQ(k.protected_size, 4096u);
    EXPECT_EQ(k.load_addr, 0x1000000u);
    EXPECT_EQ(k.init_size, 0x200000u);
    EXPECT_EQ(k.cmdline_max, 2047u);
}

TEST(BzImage, ParsesTheStockKernelWhenInstalled) {
    // tools/setup.sh installs linux-image-amd64; the integration suites boot it.
    std::string path;
    for (const auto& e : std::filesystem::directory_iterator("/boot")) {
        if (e.path().filename().string().rfind("vmlinuz-", 0) == 0) {
            path = e.path();
        }
    }
    ASSERT_FALSE(path.empty()) << "no /boot/vmlinuz-*: install linux-image-amd64";
    const KernelImage k = parse_bzimage(read_file(path, "kernel"), path);
    EXPECT_GE(k.header.version, kMinBootProtocol);
    EXPECT_GE(k.load_addr, 0x100000u);
    EXPECT_GT(k.init_size, k.protected_size);
}

TEST(BzImage, RejectsWhatIsNotABootableBzImage) {
    EXPECT_NE(error_of(std::vector<uint8_t>(100, 0)).find("too small"), std::string::npos);
    auto img = fake_bzimage();
    header_of(img).header = 0;
    EXPECT_NE(error_of(img).find("not a bzImage"), std::string::npos);
    EXPECT_NE(error_of(fake_bzimage(4096, 0x020a)).find("boot protocol 2.10"), std::string::npos);
    img = fake_bzimage();
    header_of(img).xloadflags = 0;
    EXPECT_NE(error_of(img).find("64-bit"), std::string::npos);
    img = fake_bzimage();
    header_of(img).loadflags = 0;
    EXPECT_NE(error_of(img).find("zImage"), std::string::npos);
    img = fake_bzimage();
    img.resize(img.size() - 100);  // payload shorter than syssize says
    EXPECT_NE(error_of(img).find("truncated"), std::string::npos);
    img = fake_bzimage();
    header_of(img).setup_sects = 200;  // setup larger than the file
    EXPECT_NE(error_of(img).find("truncated"), std::string::npos);
}

TEST(BzImage, MissingFileNamesIt) {
    try {
        read_file("/nonexistent/vmlinuz", "kernel");
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("kernel '/nonexistent/vmlinuz'"), std::string::npos);
    }
}

TEST(BootPlan, PutsTheInitrdHighAndPageAligned) {
    const KernelImage k = parse_bzimage(fake_bzimage(), "k");
    const BootPlan p = plan_boot(k, 1000001, "console=ttyS0", 512ull << 20);
    EXPECT_EQ(p.kernel_addr, 0x1000000u);
    EXPECT_EQ(p.initrd_size, 1000001u);
    EXPECT_EQ(p.initrd_addr % 4096, 0u);
    EXPECT_LE(p.initrd_addr + p.initrd_size, 512ull << 20);
    EXPECT_GT(p.initrd_addr + 4096 + p.initrd_size, 512ull << 20);  // as high as it goes
    EXPECT_EQ(p.cmdline_addr, kCmdlineAddr);
    EXPECT_EQ(p.cmdline_size, 14u);
}

TEST(BootPlan, HonoursInitrdAddrMax) {
    auto img = fake_bzimage();
    header_of(img).initrd_addr_max = 0x0fffffff;  // 256 MiB
    const KernelImage k = parse_bzimage(img, "k");
    const BootPlan p = plan_boot(k, 4096, "", 1ull << 30);
    EXPECT_LE(p.initrd_addr + p.initrd_size, 0x10000000u);
}

TEST(BootPlan, RefusesWhatDoesNotFit) {
    const KernelImage k = parse_bzimage(fake_bzimage(), "k");
    EXPECT_THROW(plan_boot(k, 600ull << 20, "", 512ull << 20), ConfigError);  // initrd too large
    EXPECT_THROW(plan_boot(k, 0, "", 16ull << 20), ConfigError);              // kernel does not fit
    try {
        plan_boot(k, 0, std::string(2048, 'x'), 512ull << 20);
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("2048 bytes, this kernel accepts at most 2047"),
                  std::string::npos);
    }
    EXPECT_NO_THROW(plan_boot(k, 0, std::string(2047, 'x'), 512ull << 20));
    EXPECT_THROW(plan_boot(k, 0, std::string("a\0b", 3), 512ull << 20), ConfigError);
}

TEST(E820, LowMemoryOnly) {
    const auto regions = GuestMemory::plan(512ull << 20, kMmioHoleStart, kMmioHoleEnd);
    const auto map = build_e820(regions);
    ASSERT_EQ(map.size(), 3u);
    EXPECT_EQ(map[0].addr, 0u);
    EXPECT_EQ(map[0].size, kEbdaStart);
    EXPECT_EQ(map[0].type, kE820Ram);
    EXPECT_EQ(map[1].addr, kEbdaStart);
    EXPECT_EQ(map[1].addr + map[1].size, kBiosEnd);
    EXPECT_EQ(map[1].type, kE820Reserved);
    EXPECT_EQ(map[2].addr, kHighMemory);
    EXPECT_EQ(map[2].addr + map[2].size, 512ull << 20);
}

TEST(E820, MemoryAboveTheHoleAndReservedRanges) {
    const auto regions = GuestMemory::plan(4ull << 30, kMmioHoleStart, kMmioHoleEnd);
    ASSERT_EQ(regions.size(), 2u);
    EXPECT_EQ(regions[1].guest_phys_addr, kRamAbove4G);
    EXPECT_EQ(regions[1].size, (4ull << 30) - kMmioHoleStart);
    EXPECT_EQ(regions[1].fd_offset, kMmioHoleStart);
    const auto map = build_e820(regions, {{kPciEcamStart, kPciEcamSize}});
    ASSERT_EQ(map.size(), 5u);
    EXPECT_EQ(map[2].addr + map[2].size, kMmioHoleStart);
    EXPECT_EQ(map[3].addr, kPciEcamStart);
    EXPECT_EQ(map[3].type, kE820Reserved);
    EXPECT_EQ(map[4].addr, kRamAbove4G);
    uint64_t ram = 0;
    for (const auto& e : map) {
        ram += e.type == kE820Ram ? e.size : 0;
    }
    EXPECT_EQ(ram, (4ull << 30) - (kHighMemory - kEbdaStart));
}

TEST(ZeroPage, CarriesThePlanTheMapAndTheRsdp) {
    const KernelImage k = parse_bzimage(fake_bzimage(), "k");
    const BootPlan p = plan_boot(k, 8192, "console=ttyS0", 256ull << 20);
    const auto e820 = build_e820(GuestMemory::plan(256ull << 20, kMmioHoleStart, kMmioHoleEnd));
    const boot_params zp = build_zero_page(k, p, e820, kAcpiAddr);
    EXPECT_EQ(zp.hdr.boot_flag, 0xaa55);
    EXPECT_EQ(zp.hdr.header, 0x53726448u);
    EXPECT_EQ(zp.hdr.type_of_loader, 0xff);
    EXPECT_EQ(zp.hdr.cmd_line_ptr, kCmdlineAddr);
    EXPECT_EQ(zp.ext_cmd_line_ptr, 0u);
    EXPECT_EQ(zp.hdr.ramdisk_image, p.initrd_addr);
    EXPECT_EQ(zp.hdr.ramdisk_size, 8192u);
    EXPECT_EQ(zp.acpi_rsdp_addr, kAcpiAddr);
    ASSERT_EQ(zp.e820_entries, e820.size());
    for (size_t i = 0; i < e820.size(); ++i) {
        EXPECT_EQ(zp.e820_table[i].addr, e820[i].addr);
        EXPECT_EQ(zp.e820_table[i].size, e820[i].size);
        EXPECT_EQ(zp.e820_table[i].type, e820[i].type);
    }
}

TEST(LoadLinux, WritesKernelInitrdCommandLineAndZeroPage) {
    auto mem = GuestMemory::create(64ull << 20, false, kMmioHoleStart, kMmioHoleEnd);
    const KernelImage k = parse_bzimage(fake_bzimage(), "k");
    const std::vector<uint8_t> initrd(5000, 0xab);
    const BootPlan p = plan_boot(k, initrd.size(), "quiet", mem.low_end());
    const auto e820 = build_e820(mem.regions());
    const boot_params zp = build_zero_page(k, p, e820, kAcpiAddr);
    load_linux(mem, k, initrd, "quiet", p, zp);
    EXPECT_EQ(
        std::memcmp(mem.host_range(p.kernel_addr, 4096), k.bytes.data() + k.protected_offset, 4096),
        0);
    EXPECT_EQ(*mem.read_obj<uint8_t>(p.initrd_addr + 4999), 0xab);
    EXPECT_STREQ(reinterpret_cast<const char*>(mem.host_range(kCmdlineAddr, 6)), "quiet");
    EXPECT_EQ(mem.read_obj<boot_params>(kZeroPageAddr)->hdr.ramdisk_image, p.initrd_addr);
}

TEST(GuestMemory, RangesAreCheckedWithoutOverflow) {
    auto mem = GuestMemory::create(64ull << 20, false, kMmioHoleStart, kMmioHoleEnd);
    EXPECT_NE(mem.host_range(0, 64ull << 20), nullptr);
    EXPECT_EQ(mem.host_range(1, 64ull << 20), nullptr);
    EXPECT_EQ(mem.host_range((64ull << 20) - 1, 2), nullptr);
    EXPECT_EQ(mem.host_range(~0ull - 10, 20), nullptr);
    EXPECT_EQ(mem.host_range(16, ~0ull), nullptr);
    EXPECT_EQ(mem.host_range(kMmioHoleStart, 1), nullptr);
    EXPECT_FALSE(mem.write_obj<uint32_t>((64ull << 20) - 2, 1));
    EXPECT_TRUE(mem.write_obj<uint32_t>(100, 0xdeadbeef));
    EXPECT_EQ(*mem.read_obj<uint32_t>(100), 0xdeadbeefu);
    EXPECT_FALSE(mem.read_obj<uint32_t>(64ull << 20).has_value());
}

TEST(GuestMemory, HugepageSizeMustBeWholePages) {
    EXPECT_THROW(GuestMemory::create((64ull << 20) + 4096, true, kMmioHoleStart, kMmioHoleEnd),
                 ConfigError);
}

TEST(GuestMemory, SharedMappingSeesTheSamePagesThroughTheFd) {
    // A vhost-user backend maps the fd; it must see what the VMM wrote.
    auto mem = GuestMemory::create(8ull << 20, false, kMmioHoleStart, kMmioHoleEnd);
    ASSERT_TRUE(mem.write_obj<uint64_t>(0x1000, 0x1122334455667788));
    void* other = mmap(nullptr, 8ull << 20, PROT_READ, MAP_SHARED, mem.fd(), 0);
    ASSERT_NE(other, MAP_FAILED);
    uint64_t seen;
    std::memcpy(&seen, static_cast<uint8_t*>(other) + 0x1000, sizeof seen);
    EXPECT_EQ(seen, 0x1122334455667788u);
    munmap(other, 8ull << 20);
}

TEST(ParseSize, UnitsAndErrors) {
    EXPECT_EQ(parse_size("512M", "m"), 512ull << 20);
    EXPECT_EQ(parse_size("2G", "m"), 2ull << 30);
    EXPECT_EQ(parse_size("64K", "m"), 64ull << 10);
    EXPECT_EQ(parse_size("4096", "m"), 4096u);
    EXPECT_THROW(parse_size("", "m"), ConfigError);
    EXPECT_THROW(parse_size("-1G", "m"), ConfigError);
    EXPECT_THROW(parse_size("12X", "m"), ConfigError);
    EXPECT_THROW(parse_size("99999999999999999G", "m"), ConfigError);
}
