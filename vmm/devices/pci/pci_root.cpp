#include "vmm/devices/pci/pci_root.h"

#include <stdexcept>

#include "vmm/util/log.h"

namespace conduit::vmm::pci {

namespace {

constexpr uint16_t kConfigAddressPort = 0xcf8;
constexpr uint16_t kConfigDataPort = 0xcfc;
constexpr uint32_t kConfigEnable = 0x80000000;

// The host bridge: a function that only identifies itself.
class HostBridge final : public PciDevice {
  public:
    HostBridge() : PciDevice("host bridge", PciIds{0x8086, 0x0d57, 0, 0x060000, 0x1af4, 0x1100}) {}
};

class ConfigAddressPort final : public BusDevice {
  public:
    explicit ConfigAddressPort(PciRoot& root) : root_(root) {}
    void read(uint64_t, std::span<uint8_t> data) override {
        store_le(data, data.size() == 4 ? root_.config_address() : 0xffffffff);
    }
    void write(uint64_t, std::span<const uint8_t> data) override {
        // Only dword accesses select a function; byte writes to 0xCF8 are other chipsets'.
        if (data.size() == 4) {
            root_.write_config_address(static_cast<uint32_t>(load_le(data)));
        }
    }

  private:
    PciRoot& root_;
};

class ConfigDataPort final : public BusDevice {
  public:
    explicit ConfigDataPort(PciRoot& root) : root_(root) {}
    void read(uint64_t offset, std::span<uint8_t> data) override {
        store_le(data, root_.read_config_data(static_cast<unsigned>(offset),
                                              static_cast<unsigned>(data.size())));
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        root_.write_config_data(static_cast<unsigned>(offset), static_cast<unsigned>(data.size()),
                                static_cast<uint32_t>(load_le(data)));
    }

  private:
    PciRoot& root_;
};

}  // namespace

PciRoot::PciRoot(Bus& pio, Bus& mmio, uint64_t window_start, uint64_t window_end)
    : mmio_(mmio),
      window_start_(window_start),
      window_end_(window_end),
      next_bar_addr_(window_start) {
    pio.add(kConfigAddressPort, 4, std::make_shared<ConfigAddressPort>(*this),
            "PCI config address");
    pio.add(kConfigDataPort, 4, std::make_shared<ConfigDataPort>(*this), "PCI config data");
    add(std::make_shared<HostBridge>());
}

unsigned PciRoot::add(std::shared_ptr<PciDevice> device) {
    unsigned slot = 0;
    {
        std::lock_guard lock(mutex_);
        while (slot < kSlots && slots_[slot]) {
            ++slot;
        }
        if (slot == kSlots) {
            throw std::runtime_error("PCI bus 0 is full (32 slots)");
        }
        slots_[slot] = device;
    }
    PciDevice* dev = device.get();
    device->set_bar_listener([this, dev](unsigned bar, uint64_t old_addr, uint64_t new_addr) {
        bar_moved(*dev, bar, old_addr, new_addr);
    });
    for (unsigned i = 0; i < kBarCount; ++i) {
        const uint64_t size = device->bar(i).size;
        if (size == 0) {
            continue;
        }
        const uint64_t addr = (next_bar_addr_ + size - 1) & ~(size - 1);
        if (addr + size > window_end_) {
            throw std::runtime_error("PCI MMIO window full placing " + device->name());
        }
        device->assign_bar(i, addr);
        next_bar_addr_ = addr + size;
    }
    device->enable_memory_decoding();
    return slot;
}

void PciRoot::bar_moved(PciDevice& dev, unsigned bar, uint64_t old_addr, uint64_t new_addr) {
    const auto& b = dev.bar(bar);
    if (old_addr != 0) {
        mmio_.remove(old_addr, b.handler.get());
    }
    if (new_addr == 0) {
        return;
    }
    try {
        mmio_.add(new_addr, b.size, b.handler, dev.name() + " BAR" + std::to_string(bar));
    } catch (const std::logic_error& e) {
        // The guest placed it over something else: real hardware would decode garbage;
        // we leave the BAR unmapped and say why.
        VLOG_WARN("pci", "%s BAR%u at %#llx not mapped: %s", dev.name().c_str(), bar,
                  static_cast<unsigned long long>(new_addr), e.what());
    }
}

void PciRoot::write_config_address(uint32_t value) {
    std::lock_guard lock(mutex_);
    address_ = value & 0x80fffffc;  // enable, bus, device, function, dword register
}

uint32_t PciRoot::config_address() const {
    std::lock_guard lock(mutex_);
    return address_;
}

PciDevice* PciRoot::selected(uint16_t& offset) const {
    std::lock_guard lock(mutex_);
    if (!(address_ & kConfigEnable)) {
        return nullptr;
    }
    const unsigned bus = (address_ >> 16) & 0xff;
    const unsigned device = (address_ >> 11) & 0x1f;
    const unsigned function = (address_ >> 8) & 0x7;
    if (bus != 0 || function != 0) {
        return nullptr;
    }
    offset = static_cast<uint16_t>(address_ & 0xfc);
    return slots_[device].get();
}

uint32_t PciRoot::read_config_data(unsigned byte, unsigned size) {
    uint16_t offset = 0;
    PciDevice* dev = selected(offset);
    if (dev == nullptr || byte + size > 4) {
        return 0xffffffff;  // no device: the read aborts with all ones
    }
    return dev->config_read(static_cast<uint16_t>(offset + byte), size);
}

void PciRoot::write_config_data(unsigned byte, unsigned size, uint32_t value) {
    uint16_t offset = 0;
    PciDevice* dev = selected(offset);
    if (dev == nullptr || byte + size > 4) {
        return;
    }
    dev->config_write(static_cast<uint16_t>(offset + byte), size, value);
}

aml::Bytes PciRoot::dsdt_aml() const {
    using namespace aml;
    const Bytes crs = resource_template({
        word_bus_number(0, 0),
        io_port(kConfigAddressPort, kConfigAddressPort, 1, 8),
        word_io(0x0000, 0x0cf7),
        word_io(0x0d00, 0xffff),
        dword_memory(static_cast<uint32_t>(window_start_), static_cast<uint32_t>(window_end_ - 1),
                     false),
    });
    return scope("\\_SB_", device("PCI0", concat({
                                              name("_HID", eisa_id("PNP0A03")),
                                              name("_ADR", integer(0)),
                                              name("_SEG", integer(0)),
                                              name("_UID", integer(0)),
                                              name("_BBN", integer(0)),
                                              name("_CRS", crs),
                                          })));
}

}  // namespace conduit::vmm::pci
