// The virtio 1.x modern PCI transport, driven the way Linux's virtio_pci_modern driver
// drives it: enumeration through 0xCF8/0xCFC, the vendor capabilities found by walking
// the list, the common configuration through BAR0 on the MMIO bus, MSI-X set up as
// pci_alloc_irq_vectors does, queues as setup_vq/vp_active_vq do, DRIVER_OK last.
//
// Real parts: the PCI root and buses, the transport, MSI-X, guest RAM (a memfd). KVM
// cannot run in unit tests, so its two roles are modelled: FakeKvmIrq (GSI routes and
// irqfds) and IoEventFds below (ioeventfds: a guest write matching one never exits to
// the VMM). The device model is a small fake that records what the transport hands it.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <array>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "tests/vmm/fake_kvm_irq.h"
#include "vmm/devices/bus.h"
#include "vmm/devices/pci/pci_root.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/util/error.h"
#include "vmm/virtio/pci_transport.h"

using namespace conduit::vmm;
using namespace conduit::vmm::virtio;
using conduit::vmm::testing::FakeKvmIrq;
using conduit::vmm::testing::signal_eventfd;
using conduit::vmm::testing::take_eventfd;

namespace {

constexpr uint64_t kRam = 16 << 20;
constexpr uint64_t kHole = 0xc000'0000;
constexpr uint64_t kHoleEnd = 0x1'0000'0000;
constexpr uint64_t kWindow = 0xc000'0000;
constexpr uint64_t kWindowEnd = 0xe000'0000;
constexpr uint16_t kQueues = 3;  // receive, transmit, control (which gets no vector)
constexpr uint16_t kMaxQueueSize = 256;
constexpr uint64_t kMsiAddress = 0xfee0'0000;

// virtio_pci_common_cfg offsets (virtio 1.2, 4.1.4.3).
enum : unsigned {
    kDeviceFeatureSelect = 0x00,
    kDeviceFeature = 0x04,
    kDriverFeatureSelect = 0x08,
    kDriverFeature = 0x0c,
    kConfigMsixVector = 0x10,
    kNumQueues = 0x12,
    kDeviceStatus = 0x14,
    kConfigGeneration = 0x15,
    kQueueSelect = 0x16,
    kQueueSize = 0x18,
    kQueueMsixVector = 0x1a,
    kQueueEnable = 0x1c,
    kQueueNotifyOff = 0x1e,
    kQueueDesc = 0x20,
    kQueueDriver = 0x28,
    kQueueDevice = 0x30,
};

constexpr uint64_t kNetMac = uint64_t{1} << 5;
constexpr uint64_t kNetStatus = uint64_t{1} << 16;
constexpr uint64_t kNetMrgRxbuf = uint64_t{1} << 15;
constexpr uint64_t kOffered = bit(kFeatureVersion1) | bit(kFeatureEventIdx) |
                              bit(kFeatureIndirectDesc) | kNetMac | kNetStatus | kNetMrgRxbuf;

// A network device model that records what the transport tells it.
class FakeNet final : public VirtioDevice {
  public:
    uint16_t device_type() const override { return 1; }
    uint16_t queue_count() const override { return kQueues; }
    uint16_t queue_max_size() const override { return kMaxQueueSize; }
    uint64_t offered_features() const override { return kOffered; }
    bool accept_features(uint64_t acked) override {
        accept_calls.push_back(acked);
        return accept;
    }
    void read_config(uint64_t offset, std::span<uint8_t> data) override {
        for (size_t i = 0; i < data.size(); ++i) {
            data[i] = offset + i < config.size() ? config[offset + i] : 0;
        }
    }
    void write_config(uint64_t offset, std::span<const uint8_t> data) override {
        config_writes.emplace_back(offset, std::vector<uint8_t>(data.begin(), data.end()));
    }
    void activate(uint64_t acked, const std::vector<QueueSetup>& queues) override {
        activations.push_back({acked, queues});
    }
    void reset() override { ++resets; }

    void set_link(bool up) {
        config[6] = up ? 1 : 0;
        notify_config_change();
    }

    struct Activation {
        uint64_t features;
        std::vector<QueueSetup> queues;
    };
    bool accept = true;
    std::vector<uint64_t> accept_calls;
    std::vector<Activation> activations;
    int resets = 0;
    std::array<uint8_t, 8> config = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 1, 0};  // MAC, status
    std::vector<std::pair<uint64_t, std::vector<uint8_t>>> config_writes;
};

// KVM's ioeventfds as kvm::Vm registers them; a guest MMIO write whose address and length
// match one is signalled by KVM and never reaches the VMM (as KVM's ioeventfd_in_range).
class IoEventFds {
  public:
    IoEventWiring wiring() {
        return {[this](uint64_t a, uint32_t l, int fd) { add(a, l, fd); },
                [this](uint64_t a, uint32_t l, int fd) { remove(a, l, fd); }};
    }
    bool kvm_takes_write(uint64_t addr, uint32_t len) {
        auto it = fds.find({addr, len});
        if (it == fds.end()) {
            return false;
        }
        signal_eventfd(it->second);
        return true;
    }
    std::map<std::pair<uint64_t, uint32_t>, int> fds;  // (address, length) -> eventfd
    unsigned adds = 0, removes = 0, refused = 0;

  private:
    // KVM refuses a second ioeventfd on the same address and length (EEXIST, from
    // ioeventfd_check_collision); kvm::Vm::add_ioeventfd turns that into a SystemError.
    void add(uint64_t addr, uint32_t len, int fd) {
        if (!fds.emplace(std::pair{addr, len}, fd).second) {
            ++refused;
            throw SystemError("KVM_IOEVENTFD at " + std::to_string(addr), EEXIST);
        }
        ++adds;
    }
    // KVM's deassign matches the eventfd too: removing what one did not add is a bug.
    void remove(uint64_t addr, uint32_t len, int fd) {
        auto it = fds.find({addr, len});
        if (it == fds.end() || it->second != fd) {
            ADD_FAILURE() << "KVM_IOEVENTFD deassign: ENOENT at " << std::hex << addr;
            return;
        }
        fds.erase(it);
        ++removes;
    }
};

// One vCPU's view: port I/O exits to the VMM; MMIO goes to an ioeventfd if one matches,
// else exits to the VMM's MMIO bus.
class Vcpu {
  public:
    Vcpu(Bus& pio, Bus& mmio, IoEventFds& kvm) : pio_(pio), mmio_(mmio), kvm_(kvm) {}

    void outl(uint16_t port, uint32_t v) { out(port, 4, v); }
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
    uint64_t mmio_read(uint64_t addr, unsigned size) {
        std::array<uint8_t, 8> b{};
        mmio_.read(addr, std::span(b.data(), size));
        return load_le(std::span<const uint8_t>(b.data(), size));
    }
    void mmio_write(uint64_t addr, unsigned size, uint64_t v) {
        if (kvm_.kvm_takes_write(addr, size)) {
            return;
        }
        std::array<uint8_t, 8> b{};
        store_le(std::span(b.data(), size), v);
        mmio_.write(addr, std::span<const uint8_t>(b.data(), size));
    }

  private:
    Bus& pio_;
    Bus& mmio_;
    IoEventFds& kvm_;
};

// What drivers/virtio/virtio_pci_modern{,_dev}.c and drivers/pci do, step by step.
class LinuxDriver {
  public:
    LinuxDriver(Vcpu& cpu, unsigned slot) : cpu_(cpu), slot_(slot) {}

    // --- configuration space (pci_conf1_read/write)
    uint32_t cfg_read(unsigned reg, unsigned size) {
        cpu_.outl(0xcf8, 0x8000'0000u | (slot_ << 11) | (reg & 0xfc));
        return cpu_.in(static_cast<uint16_t>(0xcfc + (reg & (4 - size))), size);
    }
    void cfg_write(unsigned reg, unsigned size, uint32_t v) {
        cpu_.outl(0xcf8, 0x8000'0000u | (slot_ << 11) | (reg & 0xfc));
        cpu_.out(static_cast<uint16_t>(0xcfc + (reg & (4 - size))), size, v);
    }

    // --- enumeration: __pci_read_base sizes BAR0 with decoding off, then restores it.
    void enumerate() {
        const uint16_t command = static_cast<uint16_t>(cfg_read(0x04, 2));
        cfg_write(0x04, 2, command & ~0x2u);
        const uint32_t lo = cfg_read(0x10, 4);
        cfg_write(0x10, 4, 0xffff'ffff);
        const uint32_t size_lo = cfg_read(0x10, 4);
        cfg_write(0x10, 4, lo);
        ASSERT_EQ(lo & 0x7, 0x4u) << "BAR0 is a 64-bit memory BAR";
        const uint32_t hi = cfg_read(0x14, 4);
        cfg_write(0x14, 4, 0xffff'ffff);
        const uint32_t size_hi = cfg_read(0x14, 4);
        cfg_write(0x14, 4, hi);
        cfg_write(0x04, 2, command);
        bar0_size = ~((uint64_t{size_hi} << 32) | (size_lo & ~0xfu)) + 1;
        bar0 = (uint64_t{hi} << 32) | (lo & ~0xfu);
    }

    // --- vp_modern_probe: find and map the structures.
    struct Cap {
        uint8_t pos = 0, cap_len = 0, bar = 0;
        uint32_t offset = 0, length = 0;
    };
    void probe() {
        ASSERT_EQ(cfg_read(0x00, 2), 0x1af4u);
        const uint32_t device = cfg_read(0x02, 2);
        ASSERT_GE(device, 0x1040u) << "a modern-only device ID";
        ASSERT_LE(device, 0x107fu);
        ASSERT_TRUE(cfg_read(0x06, 2) & 0x10) << "capability list";
        uint8_t pos = static_cast<uint8_t>(cfg_read(0x34, 1));
        for (int ttl = 48; ttl > 0 && pos >= 0x40; --ttl) {
            pos &= ~3;
            const uint32_t ent = cfg_read(pos, 2);
            const uint8_t id = static_cast<uint8_t>(ent);
            if (id == 0x09) {  // PCI_CAP_ID_VNDR
                const uint8_t type = static_cast<uint8_t>(cfg_read(pos + 3, 1));
                Cap c{pos, static_cast<uint8_t>(cfg_read(pos + 2, 1)),
                      static_cast<uint8_t>(cfg_read(pos + 4, 1)), cfg_read(pos + 8, 4),
                      cfg_read(pos + 12, 4)};
                // virtio_pci_find_capability: the first of each type with a valid BAR.
                if (c.bar < 6 && caps.count(type) == 0) {
                    caps[type] = c;
                }
            } else if (id == 0x11) {  // PCI_CAP_ID_MSIX
                msix_cap = pos;
            }
            pos = static_cast<uint8_t>(ent >> 8);
        }
        for (uint8_t type :
             {PciTransport::kCapCommon, PciTransport::kCapNotify, PciTransport::kCapIsr}) {
            ASSERT_EQ(caps.count(type), 1u) << "virtio_pci: missing capability " << int{type};
        }
        common = map(caps[PciTransport::kCapCommon], 0x38, 4);
        isr = map(caps[PciTransport::kCapIsr], 1, 1);
        notify_multiplier = cfg_read(caps[PciTransport::kCapNotify].pos + 16, 4);
        notify = map(caps[PciTransport::kCapNotify], 2, 2);
        if (caps.count(PciTransport::kCapDevice)) {
            device_cfg = map(caps[PciTransport::kCapDevice], 0, 4);
        }
        ASSERT_NE(msix_cap, 0) << "MSI-X capability";
        const uint32_t table = cfg_read(msix_cap + 4, 4);
        const uint32_t pba_reg = cfg_read(msix_cap + 8, 4);
        ASSERT_EQ(table & 7, 0u) << "table in BAR0";
        ASSERT_EQ(pba_reg & 7, 0u) << "PBA in BAR0";
        msix_table = bar0 + (table & ~7u);
        pba = bar0 + (pba_reg & ~7u);
        msix_vectors = (cfg_read(msix_cap + 2, 2) & 0x7ff) + 1;
    }
    // vp_modern_map_capability's checks; returns the guest-physical address.
    uint64_t map(const Cap& c, uint32_t minlen, uint32_t align) {
        EXPECT_EQ(c.bar, 0);
        EXPECT_GE(c.length, minlen) << "capability at " << int{c.pos};
        EXPECT_EQ(c.offset % align, 0u) << "capability at " << int{c.pos};
        EXPECT_LE(uint64_t{c.offset} + minlen, bar0_size) << "capability at " << int{c.pos};
        return bar0 + c.offset;
    }

    // --- common configuration (vp_modern_*).
    uint64_t common_rd(unsigned off, unsigned size) { return cpu_.mmio_read(common + off, size); }
    void common_wr(unsigned off, unsigned size, uint64_t v) {
        cpu_.mmio_write(common + off, size, v);
    }
    void wr64_twopart(unsigned off, uint64_t v) {  // vp_iowrite64_twopart
        common_wr(off, 4, static_cast<uint32_t>(v));
        common_wr(off + 4, 4, v >> 32);
    }
    uint8_t status() { return static_cast<uint8_t>(common_rd(kDeviceStatus, 1)); }
    void add_status(uint8_t s) { common_wr(kDeviceStatus, 1, status() | s); }
    void reset() {
        common_wr(kDeviceStatus, 1, 0);
        EXPECT_EQ(status(), 0) << "vp_reset waits for 0";
    }
    uint64_t device_features() {
        common_wr(kDeviceFeatureSelect, 4, 0);
        uint64_t f = common_rd(kDeviceFeature, 4);
        common_wr(kDeviceFeatureSelect, 4, 1);
        return f | (common_rd(kDeviceFeature, 4) << 32);
    }
    void set_driver_features(uint64_t f) {
        common_wr(kDriverFeatureSelect, 4, 0);
        common_wr(kDriverFeature, 4, static_cast<uint32_t>(f));
        common_wr(kDriverFeatureSelect, 4, 1);
        common_wr(kDriverFeature, 4, f >> 32);
    }
    uint64_t driver_features() {
        common_wr(kDriverFeatureSelect, 4, 0);
        uint64_t f = common_rd(kDriverFeature, 4);
        common_wr(kDriverFeatureSelect, 4, 1);
        return f | (common_rd(kDriverFeature, 4) << 32);
    }
    // virtio_features_ok: FEATURES_OK, then read it back.
    bool features_ok() {
        add_status(kStatusFeaturesOk);
        return status() & kStatusFeaturesOk;
    }
    // register_virtio_device + virtio_dev_probe up to the features.
    bool negotiate(uint64_t wanted) {
        reset();
        add_status(kStatusAcknowledge);
        add_status(kStatusDriver);
        set_driver_features(device_features() & wanted);
        return features_ok();
    }

    // --- MSI-X: msix_capability_init, then request_irq per vector.
    void enable_msix() {
        const uint16_t ctrl = static_cast<uint16_t>(cfg_read(msix_cap + 2, 2));
        cfg_write(msix_cap + 2, 2, ctrl | 0xc000);  // ENABLE | MASKALL
        for (unsigned v = 0; v < msix_vectors; ++v) {
            cpu_.mmio_write(msix_table + 16 * v + 12, 4, 1);
        }
        cfg_write(msix_cap + 2, 2, (ctrl | 0x8000) & ~0x4000u);
    }
    static uint32_t msi_data(unsigned v) { return 0x4020 + v; }
    // __pci_write_msi_msg (the entry is masked), then unmask (irq startup).
    void request_vector(unsigned v) {
        cpu_.mmio_write(msix_table + 16 * v + 0, 4, static_cast<uint32_t>(kMsiAddress));
        cpu_.mmio_write(msix_table + 16 * v + 4, 4, kMsiAddress >> 32);
        cpu_.mmio_write(msix_table + 16 * v + 8, 4, msi_data(v));
        (void)cpu_.mmio_read(msix_table + 16 * v + 8, 4);
        set_vector_masked(v, false);
    }
    void set_vector_masked(unsigned v, bool masked) {
        cpu_.mmio_write(msix_table + 16 * v + 12, 4, masked ? 1 : 0);
    }
    uint64_t pending() { return cpu_.mmio_read(pba, 8); }
    // vp_modern_config_vector: returns what the device read back.
    uint16_t config_vector(uint16_t v) {
        common_wr(kConfigMsixVector, 2, v);
        return static_cast<uint16_t>(common_rd(kConfigMsixVector, 2));
    }

    // --- queues: setup_vq and vp_active_vq, with a split ring laid out as vring_init does.
    struct Ring {
        uint16_t size = 0;
        uint64_t desc = 0, avail = 0, used = 0;
        uint64_t notify_addr = 0;
    };
    static Ring layout(uint64_t base, uint16_t size) {
        Ring r;
        r.size = size;
        r.desc = base;
        r.avail = base + 16ull * size;
        r.used = (r.avail + 6 + 2ull * size + 63) & ~63ull;  // SMP_CACHE_BYTES
        return r;
    }
    uint16_t select(uint16_t index) {
        common_wr(kQueueSelect, 2, index);
        return index;
    }
    Ring setup_vq(uint16_t index, uint16_t vector, uint64_t base) {
        select(index);
        const uint16_t num = static_cast<uint16_t>(common_rd(kQueueSize, 2));
        EXPECT_NE(num, 0) << "queue " << index << " available";
        EXPECT_EQ(common_rd(kQueueEnable, 2), 0u) << "queue " << index << " not active yet";
        return program_vq(index, vector, layout(base, num));
    }
    Ring program_vq(uint16_t index, uint16_t vector, Ring r) {
        select(index);
        common_wr(kQueueSize, 2, r.size);
        select(index);
        wr64_twopart(kQueueDesc, r.desc);
        wr64_twopart(kQueueDriver, r.avail);
        wr64_twopart(kQueueDevice, r.used);
        if (vector != kNoVector) {
            select(index);
            common_wr(kQueueMsixVector, 2, vector);
            EXPECT_EQ(common_rd(kQueueMsixVector, 2), vector) << "-EBUSY in setup_vq";
        }
        select(index);
        r.notify_addr = notify + common_rd(kQueueNotifyOff, 2) * notify_multiplier;
        rings[index] = r;
        return r;
    }
    void enable_vq(uint16_t index) {
        select(index);
        common_wr(kQueueEnable, 2, 1);
    }
    void kick(uint16_t index) { cpu_.mmio_write(rings.at(index).notify_addr, 2, index); }

    // The whole of virtio-net's probe: vectors 0 (config), 1 and 2 (rx, tx); the control
    // queue has no callback, so no vector; DRIVER_OK last.
    void bring_up(uint64_t wanted = kOffered) {
        ASSERT_TRUE(negotiate(wanted));
        enable_msix();
        for (unsigned v = 0; v < 3; ++v) {
            request_vector(v);
        }
        ASSERT_EQ(config_vector(0), 0);
        setup_vq(0, 1, 0x10'0000);
        setup_vq(1, 2, 0x20'0000);
        setup_vq(2, kNoVector, 0x30'0000);
        for (uint16_t q = 0; q < kQueues; ++q) {
            enable_vq(q);
        }
        add_status(kStatusDriverOk);
    }

    uint64_t bar0 = 0, bar0_size = 0;
    std::map<uint8_t, Cap> caps;
    uint8_t msix_cap = 0;
    unsigned msix_vectors = 0;
    uint64_t common = 0, isr = 0, notify = 0, device_cfg = 0, msix_table = 0, pba = 0;
    uint32_t notify_multiplier = 0;
    std::map<uint16_t, Ring> rings;

  private:
    Vcpu& cpu_;
    unsigned slot_;
};

class VirtioPciTest : public ::testing::Test {
  protected:
    void SetUp() override {
        transport = std::make_shared<PciTransport>("net0", net, irq, memory, kvm.wiring());
        slot = root.add(transport);
        driver = std::make_unique<LinuxDriver>(cpu, slot);
        driver->enumerate();
        driver->probe();
    }

    int vector_fd(unsigned v) { return transport->msix().eventfd(v); }
    uint32_t gsi(unsigned v) { return FakeKvmIrq::kFirstMsiGsi + v; }
    FakeKvmIrq::Interrupt interrupt(unsigned v) {
        return {gsi(v), {kMsiAddress, LinuxDriver::msi_data(v)}};
    }
    // The backend's view of the last DRIVER_OK.
    const FakeNet::Activation& activation() {
        EXPECT_FALSE(net->activations.empty());
        return net->activations.back();
    }
    void expect_needs_reset_and_no_activation() {
        EXPECT_TRUE(driver->status() & kStatusNeedsReset);
        EXPECT_TRUE(net->activations.empty()) << "nothing may reach the backend";
    }

    // Declared so that the transport goes before what it uses.
    FakeKvmIrq irq;
    IoEventFds kvm;
    GuestMemory memory = GuestMemory::create(kRam, false, kHole, kHoleEnd);
    Bus pio{"port I/O"};
    Bus mmio{"MMIO"};
    pci::PciRoot root{pio, mmio, kWindow, kWindowEnd};
    std::shared_ptr<FakeNet> net = std::make_shared<FakeNet>();
    std::shared_ptr<PciTransport> transport;
    unsigned slot = 0;
    Vcpu cpu{pio, mmio, kvm};
    std::unique_ptr<LinuxDriver> driver;
};

}  // namespace

// ------------------------------------------------------------------ identity and layout

TEST_F(VirtioPciTest, IdentifiesAsAModernNetworkDevice) {
    EXPECT_EQ(driver->cfg_read(0x00, 4), 0x1041'1af4u) << "0x1040 + device type 1";
    EXPECT_GE(driver->cfg_read(0x08, 1), 1u) << "non-transitional: revision 1 or higher";
    EXPECT_EQ(driver->cfg_read(0x08, 4) >> 8, 0x020000u) << "network controller";
    EXPECT_EQ(driver->cfg_read(0x2c, 2), 0x1af4u);
    EXPECT_GE(driver->cfg_read(0x2e, 2), 0x40u) << "subsystem ID of a modern device";
    EXPECT_EQ(driver->cfg_read(0x3d, 1), 0u) << "no INTx pin: MSI-X only";
    EXPECT_EQ(driver->bar0_size, PciTransport::kBarSize);
    EXPECT_GE(driver->bar0, kWindow);
    EXPECT_LT(driver->bar0, kWindowEnd);
}

TEST_F(VirtioPciTest, CapabilitiesDescribeEveryStructureInsideBar0) {
    const auto& caps = driver->caps;
    ASSERT_EQ(caps.size(), 5u) << "common, notify, ISR, device, PCI configuration access";
    EXPECT_EQ(caps.at(PciTransport::kCapCommon).cap_len, 16);
    EXPECT_EQ(caps.at(PciTransport::kCapNotify).cap_len, 20) << "with notify_off_multiplier";
    EXPECT_EQ(caps.at(PciTransport::kCapIsr).cap_len, 16);
    EXPECT_EQ(caps.at(PciTransport::kCapDevice).cap_len, 16);
    EXPECT_EQ(caps.at(PciTransport::kCapPciCfg).cap_len, 20) << "with pci_cfg_data";

    // notify_off_multiplier: an even power of 2, or 0 (virtio 1.2, 4.1.4.4).
    const uint32_t m = driver->notify_multiplier;
    EXPECT_TRUE(m == 0 || ((m & (m - 1)) == 0 && m % 2 == 0)) << m;
    EXPECT_GE(caps.at(PciTransport::kCapNotify).length, (kQueues - 1) * m + 2)
        << "every queue's notify address inside the structure";

    // No two structures overlap, and MSI-X's table and PBA fit too.
    std::vector<std::pair<uint64_t, uint64_t>> regions;
    for (const auto& [type, c] : caps) {
        if (type != PciTransport::kCapPciCfg) {
            regions.emplace_back(c.offset, c.length);
            EXPECT_LE(uint64_t{c.offset} + c.length, driver->bar0_size);
        }
    }
    EXPECT_EQ(driver->msix_vectors, kQueues + 1u) << "one per queue and one for config";
    regions.emplace_back(driver->msix_table - driver->bar0, 16 * driver->msix_vectors);
    regions.emplace_back(driver->pba - driver->bar0, 8);
    std::sort(regions.begin(), regions.end());
    for (size_t i = 1; i < regions.size(); ++i) {
        EXPECT_LE(regions[i - 1].first + regions[i - 1].second, regions[i].first);
    }
    EXPECT_LE(driver->pba - driver->bar0 + 8, driver->bar0_size);
    EXPECT_EQ(driver->common_rd(kNumQueues, 2), kQueues);
}

TEST_F(VirtioPciTest, GuestWritesChangeOnlyWritableConfigBits) {
    std::array<uint32_t, 64> before{};
    for (unsigned d = 0; d < 64; ++d) {
        before[d] = driver->cfg_read(4 * d, 4);
    }
    const uint8_t cfg_cap = driver->caps.at(PciTransport::kCapPciCfg).pos;
    const uint8_t msix = driver->msix_cap;
    std::map<unsigned, uint32_t> writable = {
        {0x04, 0x0000'0407},           // command: I/O, memory, master, INTx disable
        {0x3c, 0x0000'00ff},           // interrupt line
        {cfg_cap + 4u, 0x0000'00ff},   // PCI_CFG: bar (id and padding read-only)
        {cfg_cap + 8u, 0xffff'ffff},   // offset
        {cfg_cap + 12u, 0xffff'ffff},  // length
        {cfg_cap + 16u, 0xffff'ffff},  // data
        {msix + 0u, 0xc000'0000},      // MSI-X enable and function mask only
    };
    for (uint32_t pattern : {0xffff'ffffu, 0u}) {
        for (unsigned d = 0; d < 64; ++d) {
            if (d < 4 || d >= 10) {  // BARs have their own rules
                driver->cfg_write(4 * d, 4, pattern);
            }
        }
        for (unsigned d = 0; d < 64; ++d) {
            if (d >= 4 && d < 10) {
                continue;
            }
            const uint32_t w = writable.count(4 * d) ? writable.at(4 * d) : 0;
            const uint32_t got = driver->cfg_read(4 * d, 4);
            EXPECT_EQ(got & ~w, before[d] & ~w) << "read-only bits at " << 4 * d;
            EXPECT_EQ(got & w, pattern & w) << "writable bits at " << 4 * d;
        }
    }
    EXPECT_EQ(driver->cfg_read(msix + 2, 2) & 0x7ff, kQueues) << "table size stays";
    EXPECT_EQ(transport->status(), 0) << "no stray BAR access through the window";
}

// ---------------------------------------------------------------------- bring-up

TEST_F(VirtioPciTest, LinuxBringUpActivatesTheDeviceWithTheRingsItProgrammed) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    EXPECT_EQ(net->resets, 1) << "register_virtio_device resets first";
    EXPECT_EQ(driver->status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    EXPECT_EQ(net->accept_calls, std::vector<uint64_t>{kOffered});
    EXPECT_EQ(transport->acked_features(), kOffered);

    driver->enable_msix();
    for (unsigned v = 0; v < 3; ++v) {
        driver->request_vector(v);
    }
    ASSERT_EQ(driver->config_vector(0), 0);
    const auto rx = driver->setup_vq(0, 1, 0x10'0000);
    const auto tx = driver->setup_vq(1, 2, 0x20'0000);
    const auto ctrl = driver->setup_vq(2, kNoVector, 0x30'0000);
    for (uint16_t q = 0; q < kQueues; ++q) {
        driver->enable_vq(q);
    }
    EXPECT_TRUE(net->activations.empty()) << "nothing before DRIVER_OK";
    driver->add_status(kStatusDriverOk);
    EXPECT_EQ(driver->status(),
              kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);

    ASSERT_EQ(net->activations.size(), 1u);
    const auto& a = activation();
    EXPECT_EQ(a.features, kOffered);
    ASSERT_EQ(a.queues.size(), kQueues);
    const LinuxDriver::Ring rings[] = {rx, tx, ctrl};
    std::set<int> kicks;
    for (uint16_t q = 0; q < kQueues; ++q) {
        SCOPED_TRACE("queue " + std::to_string(q));
        const QueueSetup& s = a.queues[q];
        EXPECT_EQ(s.index, q);
        EXPECT_TRUE(s.enabled);
        EXPECT_EQ(s.size, kMaxQueueSize);
        EXPECT_EQ(s.desc_gpa, rings[q].desc);
        EXPECT_EQ(s.avail_gpa, rings[q].avail);
        EXPECT_EQ(s.used_gpa, rings[q].used);
        EXPECT_GE(fcntl(s.kick_fd, F_GETFD), 0) << "a live kick eventfd";
        kicks.insert(s.kick_fd);
    }
    EXPECT_EQ(kicks.size(), 3u);
    EXPECT_EQ(a.queues[0].call_fd, vector_fd(1)) << "rx calls through MSI-X vector 1";
    EXPECT_EQ(a.queues[1].call_fd, vector_fd(2)) << "tx calls through MSI-X vector 2";
    const int ctrl_call = a.queues[2].call_fd;
    EXPECT_GE(fcntl(ctrl_call, F_GETFD), 0) << "a queue without a vector still gets a call fd";
    for (unsigned v = 0; v < driver->msix_vectors; ++v) {
        EXPECT_NE(ctrl_call, vector_fd(v));
    }
    EXPECT_NE(ctrl_call, a.queues[0].kick_fd);

    // A backend's interrupts arrive at the vectors' routes, through KVM alone.
    signal_eventfd(a.queues[1].call_fd);
    EXPECT_EQ(irq.deliver(), std::vector<FakeKvmIrq::Interrupt>{interrupt(2)});
    signal_eventfd(ctrl_call);
    EXPECT_TRUE(irq.deliver().empty()) << "no vector: no interrupt";
    EXPECT_EQ(cpu.mmio_read(driver->isr, 1), 0u) << "MSI-X in use: the ISR stays clear";
}

TEST_F(VirtioPciTest, KicksReachTheQueuesKickEventfd) {
    driver->bring_up();
    const auto& a = activation();
    driver->kick(1);
    EXPECT_EQ(take_eventfd(a.queues[1].kick_fd), 1u);
    EXPECT_EQ(take_eventfd(a.queues[0].kick_fd), 0u);
    EXPECT_EQ(take_eventfd(a.queues[2].kick_fd), 0u);
    driver->kick(0);
    driver->kick(0);
    EXPECT_EQ(take_eventfd(a.queues[0].kick_fd), 2u);
}

TEST_F(VirtioPciTest, MaskedVectorsHoldTheBackendsInterruptsPending) {
    driver->bring_up();
    const auto& a = activation();
    driver->set_vector_masked(1, true);
    signal_eventfd(a.queues[0].call_fd);
    EXPECT_TRUE(irq.deliver().empty());
    EXPECT_EQ(driver->pending(), 1u << 1) << "the PBA, read through BAR0";
    driver->set_vector_masked(1, false);
    EXPECT_EQ(irq.deliver(), std::vector<FakeKvmIrq::Interrupt>{interrupt(1)});
    EXPECT_EQ(driver->pending(), 0u);

    // MASKALL through the capability's message control in config space.
    const uint16_t ctrl = static_cast<uint16_t>(driver->cfg_read(driver->msix_cap + 2, 2));
    driver->cfg_write(driver->msix_cap + 2, 2, ctrl | 0x4000);
    signal_eventfd(a.queues[1].call_fd);
    EXPECT_TRUE(irq.deliver().empty());
    EXPECT_EQ(driver->pending(), 1u << 2);
    driver->cfg_write(driver->msix_cap + 2, 2, ctrl);
    EXPECT_EQ(irq.deliver(), std::vector<FakeKvmIrq::Interrupt>{interrupt(2)});
}

// --------------------------------------------------------------------- features

TEST_F(VirtioPciTest, DeviceFeaturesReadThroughTheSelector) {
    EXPECT_EQ(driver->device_features(), kOffered);
    driver->common_wr(kDeviceFeatureSelect, 4, 2);
    EXPECT_EQ(driver->common_rd(kDeviceFeature, 4), 0u) << "no bits past 63";
    EXPECT_EQ(driver->common_rd(kDeviceFeatureSelect, 4), 2u);
}

struct RefusedFeatures {
    const char* why;
    uint64_t acked;
    bool device_accepts;
};

class VirtioPciRefusal : public VirtioPciTest,
                         public ::testing::WithParamInterface<RefusedFeatures> {};

TEST_P(VirtioPciRefusal, FeaturesOkIsNotSetAndTheDeviceNeverStarts) {
    const RefusedFeatures& p = GetParam();
    net->accept = p.device_accepts;
    driver->reset();
    driver->add_status(kStatusAcknowledge);
    driver->add_status(kStatusDriver);
    driver->set_driver_features(p.acked);
    EXPECT_FALSE(driver->features_ok()) << p.why;
    EXPECT_EQ(driver->status(), kStatusAcknowledge | kStatusDriver);
    // Linux gives up with FAILED; a careless driver might go on to DRIVER_OK anyway.
    driver->add_status(kStatusDriverOk);
    expect_needs_reset_and_no_activation();
}

INSTANTIATE_TEST_SUITE_P(
    Features, VirtioPciRefusal,
    ::testing::Values(RefusedFeatures{"not offered: CSUM", kOffered | 1, true},
                      RefusedFeatures{"not offered: RING_PACKED",
                                      kOffered | bit(kFeatureRingPacked), true},
                      RefusedFeatures{"not offered: bit 63", kOffered | bit(63), true},
                      RefusedFeatures{"no VERSION_1", kOffered & ~bit(kFeatureVersion1), true},
                      RefusedFeatures{"nothing at all", 0, true},
                      RefusedFeatures{"the device model says no", kOffered, false}));

TEST_F(VirtioPciTest, AcceptedFeaturesAreFrozenAndReadBack) {
    const uint64_t subset = bit(kFeatureVersion1) | kNetMac;
    ASSERT_TRUE(driver->negotiate(subset));
    EXPECT_EQ(driver->driver_features(), subset);
    driver->set_driver_features(kOffered);  // too late
    EXPECT_EQ(driver->driver_features(), subset);
    EXPECT_EQ(transport->acked_features(), subset);
    driver->bring_up(subset);
    EXPECT_EQ(activation().features, subset);
}

TEST_F(VirtioPciTest, RetryAfterARefusalWorks) {
    driver->reset();
    driver->add_status(kStatusAcknowledge | kStatusDriver);
    driver->set_driver_features(kOffered | 1);
    ASSERT_FALSE(driver->features_ok());
    driver->set_driver_features(kOffered);
    EXPECT_TRUE(driver->features_ok()) << "the driver may try another set";
}

TEST_F(VirtioPciTest, DriverOkWithoutFeaturesOkNeedsReset) {
    driver->reset();
    driver->add_status(kStatusAcknowledge | kStatusDriver);
    driver->set_driver_features(kOffered);
    driver->add_status(kStatusDriverOk);
    expect_needs_reset_and_no_activation();
}

// ------------------------------------------------------------------------ queues

TEST_F(VirtioPciTest, QueueFieldsAreFrozenOnceEnabled) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    driver->enable_msix();
    driver->request_vector(1);
    const auto r = driver->setup_vq(0, 1, 0x10'0000);
    driver->enable_vq(0);
    driver->program_vq(0, kNoVector, LinuxDriver::layout(0x50'0000, 64));
    driver->select(0);
    EXPECT_EQ(driver->common_rd(kQueueSize, 2), kMaxQueueSize);
    EXPECT_EQ(driver->common_rd(kQueueDesc, 8), r.desc);
    EXPECT_EQ(driver->common_rd(kQueueDriver, 8), r.avail);
    EXPECT_EQ(driver->common_rd(kQueueDevice, 8), r.used);
    driver->common_wr(kQueueEnable, 2, 0);  // drivers MUST NOT; it changes nothing
    EXPECT_EQ(driver->common_rd(kQueueEnable, 2), 1u);
    driver->add_status(kStatusDriverOk);
    ASSERT_EQ(net->activations.size(), 1u);
    EXPECT_EQ(activation().queues[0].desc_gpa, r.desc);
    EXPECT_EQ(activation().queues[0].size, kMaxQueueSize);
}

TEST_F(VirtioPciTest, QueueRegistersOutOfReset) {
    for (uint16_t q = 0; q < kQueues; ++q) {
        driver->select(q);
        EXPECT_EQ(driver->common_rd(kQueueSize, 2), kMaxQueueSize) << "the maximum";
        EXPECT_EQ(driver->common_rd(kQueueEnable, 2), 0u);
        EXPECT_EQ(driver->common_rd(kQueueMsixVector, 2), kNoVector);
        EXPECT_EQ(driver->common_rd(kQueueNotifyOff, 2), q);
        EXPECT_EQ(driver->common_rd(kQueueDesc, 8), 0u);
    }
    driver->select(kQueues);
    EXPECT_EQ(driver->common_rd(kQueueSize, 2), 0u) << "no such queue: size 0";
    driver->common_wr(kQueueSize, 2, 16);
    driver->common_wr(kQueueEnable, 2, 1);
    EXPECT_EQ(driver->common_rd(kQueueSize, 2), 0u);
    EXPECT_EQ(driver->common_rd(kQueueEnable, 2), 0u);
    EXPECT_EQ(driver->common_rd(kConfigMsixVector, 2), kNoVector);
}

TEST_F(VirtioPciTest, VectorsBeyondTheTableReadBackAsNoVector) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    driver->enable_msix();
    EXPECT_EQ(driver->config_vector(kQueues + 1), kNoVector) << "the table has 4 entries";
    EXPECT_EQ(driver->config_vector(kQueues), kQueues);
    driver->select(0);
    driver->common_wr(kQueueMsixVector, 2, 0x7ff);
    EXPECT_EQ(driver->common_rd(kQueueMsixVector, 2), kNoVector);
    driver->common_wr(kQueueMsixVector, 2, 3);
    EXPECT_EQ(driver->common_rd(kQueueMsixVector, 2), 3u);
    driver->common_wr(kQueueMsixVector, 2, kNoVector);
    EXPECT_EQ(driver->common_rd(kQueueMsixVector, 2), kNoVector) << "unmapping";
}

class VirtioPciBadSize : public VirtioPciTest, public ::testing::WithParamInterface<uint16_t> {};

TEST_P(VirtioPciBadSize, NeedsResetAndNoActivation) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    driver->enable_msix();
    driver->request_vector(0);
    ASSERT_EQ(driver->config_vector(0), 0);
    driver->setup_vq(0, kNoVector, 0x10'0000);
    driver->program_vq(1, kNoVector, LinuxDriver::layout(0x20'0000, GetParam()));
    driver->enable_vq(0);
    driver->enable_vq(1);
    driver->add_status(kStatusDriverOk);
    expect_needs_reset_and_no_activation();
    // DEVICE_NEEDS_RESET after DRIVER_OK comes with a configuration change notification.
    EXPECT_EQ(irq.deliver(), std::vector<FakeKvmIrq::Interrupt>{interrupt(0)});
    EXPECT_EQ(cpu.mmio_read(driver->isr, 1), 2u);
}

INSTANTIATE_TEST_SUITE_P(Sizes, VirtioPciBadSize,
                         ::testing::Values(uint16_t{0}, uint16_t{3}, uint16_t{100}, uint16_t{255},
                                           uint16_t{512}, uint16_t{32768}));

struct BadRing {
    const char* why;
    uint64_t desc, avail, used;
};

class VirtioPciBadRing : public VirtioPciTest, public ::testing::WithParamInterface<BadRing> {};

TEST_P(VirtioPciBadRing, NeedsResetAndNoActivation) {
    const BadRing& p = GetParam();
    ASSERT_TRUE(driver->negotiate(kOffered));
    LinuxDriver::Ring r = LinuxDriver::layout(0x10'0000, kMaxQueueSize);
    r.desc = p.desc ? p.desc : r.desc;
    r.avail = p.avail ? p.avail : r.avail;
    r.used = p.used ? p.used : r.used;
    driver->program_vq(0, kNoVector, r);
    driver->enable_vq(0);
    driver->add_status(kStatusDriverOk);
    expect_needs_reset_and_no_activation();
}

constexpr uint64_t kDescBytes = 16 * kMaxQueueSize;
INSTANTIATE_TEST_SUITE_P(
    Rings, VirtioPciBadRing,
    ::testing::Values(
        BadRing{"desc runs past RAM", kRam - kDescBytes + 16, 0, 0},
        BadRing{"desc in the MMIO hole", kHole, 0, 0}, BadRing{"desc above RAM", 2 * kRam, 0, 0},
        BadRing{"avail past RAM", 0, kRam - 2, 0}, BadRing{"used past RAM", 0, 0, kRam - 4},
        BadRing{"used wrapping the address space", 0, 0, ~uint64_t{0} - 3},
        BadRing{"desc not 16-byte aligned", 0x10'0008, 0, 0}, BadRing{"avail odd", 0, 0x10'1001, 0},
        BadRing{"used not 4-byte aligned", 0, 0, 0x10'2002}));

TEST_F(VirtioPciTest, RingsEndingAtTheEndOfRamAreFine) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    constexpr uint64_t n = kMaxQueueSize;
    // Each ring as close to the end of RAM as its alignment allows, one per queue.
    LinuxDriver::Ring r0 = LinuxDriver::layout(0x10'0000, n);
    r0.desc = kRam - 16 * n;
    LinuxDriver::Ring r1 = LinuxDriver::layout(0x20'0000, n);
    r1.avail = kRam - (6 + 2 * n);
    LinuxDriver::Ring r2 = LinuxDriver::layout(0x30'0000, n);
    r2.used = (kRam - (6 + 8 * n)) & ~3ull;
    driver->program_vq(0, kNoVector, r0);
    driver->program_vq(1, kNoVector, r1);
    driver->program_vq(2, kNoVector, r2);
    for (uint16_t q = 0; q < kQueues; ++q) {
        driver->enable_vq(q);
    }
    driver->add_status(kStatusDriverOk);
    EXPECT_FALSE(driver->status() & kStatusNeedsReset);
    ASSERT_EQ(net->activations.size(), 1u);
    EXPECT_EQ(activation().queues[0].desc_gpa, r0.desc);
    EXPECT_EQ(activation().queues[1].avail_gpa, r1.avail);
    EXPECT_EQ(activation().queues[2].used_gpa, r2.used);
}

TEST_F(VirtioPciTest, QueuesTheDriverLeavesDisabledAreNotChecked) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    driver->setup_vq(0, kNoVector, 0x10'0000);
    driver->enable_vq(0);
    driver->program_vq(2, kNoVector, LinuxDriver::layout(kHole, 3));  // garbage, not enabled
    driver->add_status(kStatusDriverOk);
    ASSERT_EQ(net->activations.size(), 1u);
    const auto& q = activation().queues;
    EXPECT_TRUE(q[0].enabled);
    EXPECT_FALSE(q[1].enabled);
    EXPECT_FALSE(q[2].enabled);
    EXPECT_GE(fcntl(q[0].call_fd, F_GETFD), 0);
    for (unsigned v = 0; v < driver->msix_vectors; ++v) {
        EXPECT_NE(q[0].call_fd, vector_fd(v)) << "no vector: not an MSI-X eventfd";
    }
}

// ------------------------------------------------------------------------- reset

TEST_F(VirtioPciTest, ResetStopsTheDeviceAndClearsQueueState) {
    driver->bring_up();
    ASSERT_EQ(net->activations.size(), 1u);
    const int resets = net->resets;
    // A kick that reached the VMM (no ioeventfd match) just before the reset.
    driver->select(0);
    cpu.mmio_write(driver->rings.at(0).notify_addr, 4, 0);
    driver->reset();
    EXPECT_EQ(net->resets, resets + 1) << "the device stops before status reads 0";
    EXPECT_EQ(transport->status(), 0);
    EXPECT_EQ(transport->acked_features(), 0u);
    EXPECT_EQ(driver->driver_features(), 0u);
    EXPECT_EQ(driver->common_rd(kConfigMsixVector, 2), kNoVector);
    for (uint16_t q = 0; q < kQueues; ++q) {
        SCOPED_TRACE("queue " + std::to_string(q));
        driver->select(q);
        EXPECT_EQ(driver->common_rd(kQueueSize, 2), kMaxQueueSize);
        EXPECT_EQ(driver->common_rd(kQueueEnable, 2), 0u);
        EXPECT_EQ(driver->common_rd(kQueueMsixVector, 2), kNoVector);
        EXPECT_EQ(driver->common_rd(kQueueDesc, 8), 0u);
        EXPECT_EQ(driver->common_rd(kQueueDriver, 8), 0u);
        EXPECT_EQ(driver->common_rd(kQueueDevice, 8), 0u);
        EXPECT_EQ(take_eventfd(activation().queues[q].kick_fd), 0u) << "no stale kick";
    }

    // And it comes up again with what the driver programs the second time.
    ASSERT_TRUE(driver->negotiate(bit(kFeatureVersion1)));
    driver->setup_vq(0, kNoVector, 0x40'0000);
    driver->enable_vq(0);
    driver->add_status(kStatusDriverOk);
    ASSERT_EQ(net->activations.size(), 2u);
    EXPECT_EQ(activation().features, bit(kFeatureVersion1));
    EXPECT_EQ(activation().queues[0].desc_gpa, 0x40'0000u);
    EXPECT_FALSE(activation().queues[1].enabled);
}

TEST_F(VirtioPciTest, ResetAfterNeedsResetClearsIt) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    driver->program_vq(0, kNoVector, LinuxDriver::layout(0x10'0000, 3));
    driver->enable_vq(0);
    driver->add_status(kStatusDriverOk);
    ASSERT_TRUE(driver->status() & kStatusNeedsReset);
    driver->reset();
    EXPECT_EQ(driver->status(), 0);
    driver->bring_up();
    EXPECT_EQ(net->activations.size(), 1u);
}

// --------------------------------------------------------- configuration changes, ISR

TEST_F(VirtioPciTest, ConfigChangeBumpsGenerationSetsIsrAndInterruptsOnTheConfigVector) {
    driver->bring_up();
    const uint64_t generation = driver->common_rd(kConfigGeneration, 1);
    net->set_link(false);
    EXPECT_EQ(driver->common_rd(kConfigGeneration, 1), (generation + 1) & 0xff);
    EXPECT_EQ(irq.deliver(), std::vector<FakeKvmIrq::Interrupt>{interrupt(0)});
    EXPECT_EQ(cpu.mmio_read(driver->device_cfg + 6, 2), 0u) << "link down in the config";
    EXPECT_EQ(cpu.mmio_read(driver->isr, 1), 2u) << "the configuration change bit";
    EXPECT_EQ(cpu.mmio_read(driver->isr, 1), 0u) << "reading the ISR cleared it";
    net->set_link(true);
    EXPECT_EQ(driver->common_rd(kConfigGeneration, 1), (generation + 2) & 0xff);
    EXPECT_EQ(irq.deliver().size(), 1u);
}

TEST_F(VirtioPciTest, ConfigChangeWithoutAVectorOnlySetsTheIsr) {
    ASSERT_TRUE(driver->negotiate(kOffered));
    driver->enable_msix();
    driver->request_vector(0);
    net->set_link(false);
    EXPECT_TRUE(irq.deliver().empty());
    EXPECT_EQ(cpu.mmio_read(driver->isr, 1), 2u);
    EXPECT_EQ(transport->config_generation(), 1);
    // Masked config vector: pending, then delivered on unmask.
    ASSERT_EQ(driver->config_vector(0), 0);
    driver->set_vector_masked(0, true);
    net->set_link(true);
    EXPECT_TRUE(irq.deliver().empty());
    EXPECT_EQ(driver->pending(), 1u);
    driver->set_vector_masked(0, false);
    EXPECT_EQ(irq.deliver(), std::vector<FakeKvmIrq::Interrupt>{interrupt(0)});
}

TEST_F(VirtioPciTest, DeviceConfigurationIsTheDevicesOwn) {
    for (unsigned i = 0; i < 6; ++i) {
        EXPECT_EQ(cpu.mmio_read(driver->device_cfg + i, 1), net->config[i]) << "MAC byte " << i;
    }
    EXPECT_EQ(cpu.mmio_read(driver->device_cfg + 6, 2), 1u) << "status: link up";
    cpu.mmio_write(driver->device_cfg + 2, 1, 0x77);
    ASSERT_EQ(net->config_writes.size(), 1u);
    EXPECT_EQ(net->config_writes[0].first, 2u);
    EXPECT_EQ(net->config_writes[0].second, std::vector<uint8_t>{0x77});
}

// ------------------------------------------------------------------ notify region

TEST_F(VirtioPciTest, NotifyAddressesAreIoeventfdsThatMoveWithTheBar) {
    const auto expected_at = [&](uint64_t bar) {
        std::map<std::pair<uint64_t, uint32_t>, int> want;
        for (uint16_t q = 0; q < kQueues; ++q) {
            want[{bar + PciTransport::kNotifyOffset + 4 * q, 2}] = -1;
        }
        return want;
    };
    const auto addresses = [&] {
        auto got = kvm.fds;
        for (auto& [key, fd] : got) {
            fd = -1;
        }
        return got;
    };
    EXPECT_EQ(addresses(), expected_at(driver->bar0)) << "registered where firmware put BAR0";

    driver->bring_up();
    const auto& a = activation();
    for (uint16_t q = 0; q < kQueues; ++q) {
        EXPECT_EQ(kvm.fds.at({driver->rings.at(q).notify_addr, 2}), a.queues[q].kick_fd)
            << "the ioeventfd is the kick fd the backend got for queue " << q;
    }

    // The guest moves BAR0: decoding off, new address, decoding on.
    const uint64_t old_bar = driver->bar0;
    const uint64_t new_bar = 0xd000'0000;
    const uint16_t command = static_cast<uint16_t>(driver->cfg_read(0x04, 2));
    driver->cfg_write(0x04, 2, command & ~0x2u);
    EXPECT_TRUE(kvm.fds.empty()) << "not decoding: no ioeventfds";
    EXPECT_TRUE(mmio.ranges().empty());
    driver->cfg_write(0x10, 4, static_cast<uint32_t>(new_bar) | 0x4);
    driver->cfg_write(0x14, 4, 0);
    driver->cfg_write(0x04, 2, command);
    EXPECT_EQ(addresses(), expected_at(new_bar));
    EXPECT_EQ(kvm.fds.at({new_bar + PciTransport::kNotifyOffset + 4, 2}), a.queues[1].kick_fd);
    EXPECT_EQ(cpu.mmio_read(new_bar + kNumQueues, 2), kQueues) << "common config moved too";
    EXPECT_EQ(cpu.mmio_read(old_bar + kNumQueues, 2), 0xffffu) << "nothing left at the old place";

    cpu.mmio_write(new_bar + PciTransport::kNotifyOffset + 4, 2, 1);
    EXPECT_EQ(take_eventfd(a.queues[1].kick_fd), 1u);
    cpu.mmio_write(old_bar + PciTransport::kNotifyOffset + 4, 2, 1);
    EXPECT_EQ(take_eventfd(a.queues[1].kick_fd), 0u);
    EXPECT_EQ(kvm.adds, 3u * 3u) << "at firmware's address, after sizing, after the move";
}

TEST_F(VirtioPciTest, NotifyWritesThatReachTheVmmStillKick) {
    driver->bring_up();
    const auto& a = activation();
    const uint64_t notify0 = driver->rings.at(0).notify_addr;
    // The exit KVM makes when no ioeventfd matches (a 4-byte write, or a race with the
    // registration): the VMM passes the kick on.
    cpu.mmio_write(notify0, 4, 0);
    EXPECT_EQ(take_eventfd(a.queues[0].kick_fd), 1u);
    std::array<uint8_t, 2> index{2, 0};
    ASSERT_TRUE(mmio.write(driver->rings.at(2).notify_addr, index));
    EXPECT_EQ(take_eventfd(a.queues[2].kick_fd), 1u);
    EXPECT_EQ(take_eventfd(a.queues[1].kick_fd), 0u);
    std::array<uint8_t, 2> junk{0, 0};
    EXPECT_TRUE(mmio.write(driver->notify + 4 * kQueues, junk)) << "past the last queue";
    for (uint16_t q = 0; q < kQueues; ++q) {
        EXPECT_EQ(take_eventfd(a.queues[q].kick_fd), 0u);
    }
}

TEST_F(VirtioPciTest, ABarMovedOntoAnotherCardsBarKeepsBothCardsAndTheVmRunning) {
    // A second card, as in a VM with two NICs.
    auto net1 = std::make_shared<FakeNet>();
    auto card1 = std::make_shared<PciTransport>("net1", net1, irq, memory, kvm.wiring());
    const unsigned slot1 = root.add(card1);
    LinuxDriver driver1(cpu, slot1);
    driver1.enumerate();
    driver1.probe();
    driver->bring_up();
    const auto& a = activation();
    const uint64_t home1 = driver1.bar0;

    // The guest puts card 1's BAR0 on top of card 0's, decoding on. Real hardware would
    // decode garbage; the VMM must not stop the VM for it.
    EXPECT_NO_THROW({
        driver1.cfg_write(0x10, 4, static_cast<uint32_t>(driver->bar0) | 0x4);
        driver1.cfg_write(0x14, 4, 0);
    });
    EXPECT_GT(kvm.refused, 0u) << "KVM refused the colliding notify addresses";
    for (uint16_t q = 0; q < kQueues; ++q) {
        EXPECT_EQ(kvm.fds.at({driver->rings.at(q).notify_addr, 2}), a.queues[q].kick_fd)
            << "card 0 keeps its ioeventfds";
    }
    driver->kick(1);
    EXPECT_EQ(take_eventfd(a.queues[1].kick_fd), 1u) << "card 0 still works";
    EXPECT_EQ(cpu.mmio_read(driver->common + kNumQueues, 2), kQueues);

    // Moved somewhere free, card 1 is whole again: MMIO and notifications.
    EXPECT_NO_THROW(driver1.cfg_write(0x10, 4, 0xd000'0004));
    driver1.bar0 = 0xd000'0000;
    driver1.probe();
    driver1.bring_up();
    ASSERT_EQ(net1->activations.size(), 1u);
    for (uint16_t q = 0; q < kQueues; ++q) {
        EXPECT_EQ(kvm.fds.at({0xd000'0000 + PciTransport::kNotifyOffset + 4 * q, 2}),
                  net1->activations[0].queues[q].kick_fd);
    }
    driver1.kick(2);
    EXPECT_EQ(take_eventfd(net1->activations[0].queues[2].kick_fd), 1u);
    EXPECT_FALSE(kvm.fds.count({home1 + PciTransport::kNotifyOffset, 2})) << "old place empty";
}

TEST(VirtioPciTransport, DestructionRemovesItsIoeventfds) {
    FakeKvmIrq irq;
    IoEventFds kvm;
    GuestMemory memory = GuestMemory::create(kRam, false, kHole, kHoleEnd);
    {
        PciTransport t("net0", std::make_shared<FakeNet>(), irq, memory, kvm.wiring());
        EXPECT_TRUE(kvm.fds.empty()) << "nothing while BAR0 is unassigned";
        t.assign_bar(0, kWindow);
        t.enable_memory_decoding();
        EXPECT_EQ(kvm.fds.size(), kQueues);
    }
    EXPECT_TRUE(kvm.fds.empty());
    EXPECT_EQ(irq.bound_count(), 0u);
}

// -------------------------------------------------------- the PCI configuration window

class VirtioPciCfgWindow : public VirtioPciTest {
  protected:
    // virtio_pci_cfg_cap: bar at +4, offset at +8, length at +12, data at +16.
    void aim(uint8_t bar, uint32_t offset, uint32_t length) {
        const uint8_t cap = driver->caps.at(PciTransport::kCapPciCfg).pos;
        driver->cfg_write(cap + 4, 1, bar);
        driver->cfg_write(cap + 8, 4, offset);
        driver->cfg_write(cap + 12, 4, length);
    }
    uint32_t data_read(unsigned size = 4) {
        return driver->cfg_read(driver->caps.at(PciTransport::kCapPciCfg).pos + 16, size);
    }
    void data_write(uint32_t v, unsigned size = 4) {
        driver->cfg_write(driver->caps.at(PciTransport::kCapPciCfg).pos + 16, size, v);
    }
};

TEST_F(VirtioPciCfgWindow, ReadsAndWritesBar0) {
    aim(0, kNumQueues, 2);
    EXPECT_EQ(data_read() & 0xffff, kQueues);
    aim(0, kDeviceStatus, 1);
    data_write(kStatusAcknowledge);
    EXPECT_EQ(driver->status(), kStatusAcknowledge) << "the write reached the common config";
    EXPECT_EQ(data_read() & 0xff, kStatusAcknowledge);

    aim(0, kDeviceFeatureSelect, 4);
    data_write(1);
    aim(0, kDeviceFeature, 4);
    EXPECT_EQ(data_read(), kOffered >> 32) << "features, high half";

    aim(0, PciTransport::kDeviceOffset, 4);
    EXPECT_EQ(data_read(), 0x1200'5452u) << "the MAC's first bytes";
    EXPECT_EQ(data_read(1), 0x52u) << "a byte read of the data";

    // The notify structure through the window (a driver that cannot map BARs).
    driver->bring_up();
    aim(0, PciTransport::kNotifyOffset + 4 * 2, 2);
    data_write(2, 2);
    EXPECT_EQ(take_eventfd(activation().queues[2].kick_fd), 1u);

    // The ISR through the window reads and clears it too.
    net->set_link(false);
    aim(0, PciTransport::kIsrOffset, 1);
    EXPECT_EQ(data_read() & 0xff, 2u);
    EXPECT_EQ(cpu.mmio_read(driver->isr, 1), 0u);
}

TEST_F(VirtioPciCfgWindow, OtherBarsAndLengthsDoNothing) {
    aim(1, kDeviceStatus, 1);
    data_write(kStatusAcknowledge);
    EXPECT_EQ(driver->status(), 0) << "BAR 1 does not exist";
    aim(0, kDeviceStatus, 3);
    data_write(kStatusAcknowledge);
    EXPECT_EQ(driver->status(), 0) << "length 3 is no access size";
    aim(0, kDeviceStatus, 0);
    data_write(kStatusAcknowledge);
    EXPECT_EQ(driver->status(), 0);
}
