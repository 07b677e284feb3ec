#include "vmm/virtio/pci_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "vmm/util/error.h"
#include "vmm/util/log.h"

namespace conduit::vmm::virtio {

namespace {

constexpr uint8_t kVendorCapability = 0x09;
constexpr uint16_t kVirtioVendor = 0x1af4;
constexpr uint16_t kModernDeviceBase = 0x1040;

// Common configuration register offsets (virtio 1.2, 4.1.4.3).
enum : uint64_t {
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

uint32_t class_of(uint16_t type) {
    return type == 1 ? 0x020000 : 0xff0000;  // network controller, or "other"
}

std::vector<uint8_t> virtio_cap(uint8_t cfg_type, uint64_t offset, uint64_t length,
                                uint8_t cap_len = 16) {
    // After ID and next: cap_len, cfg_type, bar, id, padding[2], offset, length.
    std::vector<uint8_t> b = {cap_len, cfg_type, 0, 0, 0, 0};
    for (int i = 0; i < 4; ++i) {
        b.push_back(static_cast<uint8_t>(offset >> (8 * i)));
    }
    for (int i = 0; i < 4; ++i) {
        b.push_back(static_cast<uint8_t>(length >> (8 * i)));
    }
    return b;
}

UniqueFd make_eventfd() {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) {
        throw_errno("eventfd");
    }
    return fd;
}

class Bar0 final : public BusDevice {
  public:
    explicit Bar0(PciTransport& t) : t_(t) {}
    void read(uint64_t offset, std::span<uint8_t> data) override { t_.bar_read(offset, data); }
    void write(uint64_t offset, std::span<const uint8_t> data) override {
        t_.bar_write(offset, data);
    }

  private:
    PciTransport& t_;
};

}  // namespace

PciTransport::PciTransport(std::string name, std::shared_ptr<VirtioDevice> device,
                           pci::MsiController& msi, const GuestMemory& memory, IoEventWiring wiring)
    : PciDevice(std::move(name),
                pci::PciIds{kVirtioVendor,
                            static_cast<uint16_t>(kModernDeviceBase + device->device_type()), 1,
                            class_of(device->device_type()), kVirtioVendor, 0x1100}),
      device_(std::move(device)),
      msix_(device_->queue_count() + 1u, msi),
      memory_(memory),
      wiring_(std::move(wiring)),
      queues_(device_->queue_count()) {
    for (Queue& q : queues_) {
        q.size = device_->queue_max_size();
        q.kick = make_eventfd();
        q.no_vector = make_eventfd();
    }
    add_memory_bar(0, kBarSize, true, std::make_shared<Bar0>(*this));
    add_capability(kVendorCapability, virtio_cap(kCapCommon, kCommonOffset, kCommonSize));
    auto notify = virtio_cap(kCapNotify, kNotifyOffset,
                             kNotifyMultiplier * std::max<size_t>(queues_.size(), 1), 20);
    for (int i = 0; i < 4; ++i) {
        notify.push_back(static_cast<uint8_t>(kNotifyMultiplier >> (8 * i)));
    }
    add_capability(kVendorCapability, notify);
    add_capability(kVendorCapability, virtio_cap(kCapIsr, kIsrOffset, 1));
    add_capability(kVendorCapability, virtio_cap(kCapDevice, kDeviceOffset, kDeviceSize));
    // The PCI configuration access window: bar, offset and length are the driver's to set.
    auto cfg = virtio_cap(kCapPciCfg, 0, 0, 20);
    cfg.insert(cfg.end(), {0, 0, 0, 0});
    pci_cfg_cap_ = add_capability(kVendorCapability, cfg);
    set_writable(pci_cfg_cap_ + 4, 1);   // bar
    set_writable(pci_cfg_cap_ + 8, 8);   // offset, length
    set_writable(pci_cfg_cap_ + 16, 4);  // data
    msix_cap_ = add_capability(pci::Msix::kCapabilityId,
                               msix_.capability(0, kMsixTableOffset, kMsixPbaOffset));
    set_writable(msix_cap_ + 3, 1, 0xc0);  // enable and function mask
    device_->set_config_notifier([this] { notify_config_change(); });
}

PciTransport::~PciTransport() {
    std::lock_guard lock(mutex_);
    unwire_notifications_locked();
}

uint8_t PciTransport::status() const {
    std::lock_guard lock(mutex_);
    return status_;
}

uint64_t PciTransport::acked_features() const {
    std::lock_guard lock(mutex_);
    return driver_features_;
}

uint8_t PciTransport::config_generation() const {
    std::lock_guard lock(mutex_);
    return generation_;
}

void PciTransport::config_written(uint16_t offset, unsigned size) {
    if (offset <= msix_cap_ + 3u && offset + size > msix_cap_ + 2u) {
        msix_.set_control(config16(msix_cap_ + 2));
    }
    // A write to the PCI_CFG window's data performs the write on the BAR.
    if (offset >= pci_cfg_cap_ + 16 && offset < pci_cfg_cap_ + 20) {
        const uint32_t length = config32(pci_cfg_cap_ + 12);
        if (config8(pci_cfg_cap_ + 4) == 0 && (length == 1 || length == 2 || length == 4)) {
            uint8_t bytes[4];
            for (uint32_t i = 0; i < 4; ++i) {
                bytes[i] = config8(static_cast<uint16_t>(pci_cfg_cap_ + 16 + i));
            }
            bar_write(config32(pci_cfg_cap_ + 8), std::span<const uint8_t>(bytes, length));
        }
    }
}

uint32_t PciTransport::config_read_hook(uint16_t offset, unsigned size, uint32_t value) {
    if (offset >= pci_cfg_cap_ + 16 && offset < pci_cfg_cap_ + 20) {
        const uint32_t length = config32(pci_cfg_cap_ + 12);
        if (config8(pci_cfg_cap_ + 4) == 0 && (length == 1 || length == 2 || length == 4)) {
            uint8_t bytes[4] = {0, 0, 0, 0};
            bar_read(config32(pci_cfg_cap_ + 8), std::span<uint8_t>(bytes, length));
            uint32_t v = 0;
            for (unsigned i = 0; i < size; ++i) {
                v |= uint32_t{bytes[offset - (pci_cfg_cap_ + 16) + i]} << (8 * i);
            }
            return v;
        }
    }
    return value;
}

void PciTransport::bar_relocated(unsigned bar, uint64_t old_addr, uint64_t new_addr) {
    if (bar == 0) {
        wire_notifications(old_addr, new_addr);
    }
}

void PciTransport::unwire_notifications_locked() {
    for (size_t i = 0; i < queues_.size(); ++i) {
        if (queues_[i].ioeventfd) {
            wiring_.remove(notify_base_ + i * kNotifyMultiplier, 2, queues_[i].kick.get());
            queues_[i].ioeventfd = false;
        }
    }
    notify_base_ = 0;
}

void PciTransport::wire_notifications(uint64_t old_bar, uint64_t new_bar) {
    std::lock_guard lock(mutex_);
    if (old_bar != 0 && notify_base_ != 0) {
        unwire_notifications_locked();
    }
    if (new_bar != 0) {
        notify_base_ = new_bar + kNotifyOffset;
        for (size_t i = 0; i < queues_.size(); ++i) {
            // This runs on a vCPU thread inside the guest's BAR write. KVM refuses an
            // address another ioeventfd holds (EEXIST: the guest put this BAR over another
            // card's); throwing here would stop the whole VM. Without the ioeventfd the
            // kick exits to the VMM instead, and bar_write() passes it on - slower, still
            // correct - so say why and carry on.
            try {
                wiring_.add(notify_base_ + i * kNotifyMultiplier, 2, queues_[i].kick.get());
                queues_[i].ioeventfd = true;
            } catch (const std::exception& e) {
                VLOG_WARN("virtio", "%s: queue %zu notify at %#llx without an ioeventfd: %s",
                          name().c_str(), i,
                          static_cast<unsigned long long>(notify_base_ + i * kNotifyMultiplier),
                          e.what());
            }
        }
    }
}

void PciTransport::bar_read(uint64_t offset, std::span<uint8_t> data) {
    if (offset < kCommonOffset + kCommonSize) {
        common_read(offset - kCommonOffset, data);
    } else if (offset == kIsrOffset) {
        std::lock_guard lock(mutex_);
        store_le(data, isr_);
        isr_ = 0;  // reading the ISR acknowledges it
    } else if (offset >= kDeviceOffset && offset < kDeviceOffset + kDeviceSize) {
        device_->read_config(offset - kDeviceOffset, data);
    } else if (offset >= kMsixTableOffset && offset < kMsixTableOffset + msix_.table_size()) {
        msix_.table_read(offset - kMsixTableOffset, data);
    } else if (offset >= kMsixPbaOffset && offset < kMsixPbaOffset + msix_.pba_size()) {
        msix_.pba_read(offset - kMsixPbaOffset, data);
    } else {
        store_le(data, 0);
    }
}

void PciTransport::bar_write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset < kCommonOffset + kCommonSize) {
        common_write(offset - kCommonOffset, data);
    } else if (offset >= kDeviceOffset && offset < kDeviceOffset + kDeviceSize) {
        device_->write_config(offset - kDeviceOffset, data);
    } else if (offset >= kNotifyOffset &&
               offset < kNotifyOffset + kNotifyMultiplier * queues_.size()) {
        // Only before the ioeventfd is in place: pass the kick on ourselves.
        const size_t q = (offset - kNotifyOffset) / kNotifyMultiplier;
        const uint64_t one = 1;
        (void)!::write(queues_[q].kick.get(), &one, sizeof one);
    } else if (offset >= kMsixTableOffset && offset < kMsixTableOffset + msix_.table_size()) {
        msix_.table_write(offset - kMsixTableOffset, data);
    }
}

std::array<uint8_t, PciTransport::kCommonSize> PciTransport::common_image() const {
    std::array<uint8_t, kCommonSize> b{};
    const auto put = [&](uint64_t off, uint64_t v, unsigned n) {
        for (unsigned i = 0; i < n; ++i) {
            b[off + i] = static_cast<uint8_t>(v >> (8 * i));
        }
    };
    const uint64_t offered = device_->offered_features();
    put(kDeviceFeatureSelect, device_feature_select_, 4);
    put(kDeviceFeature,
        device_feature_select_ < 2 ? static_cast<uint32_t>(offered >> (32 * device_feature_select_))
                                   : 0,
        4);
    put(kDriverFeatureSelect, driver_feature_select_, 4);
    put(kDriverFeature,
        driver_feature_select_ < 2
            ? static_cast<uint32_t>(driver_features_ >> (32 * driver_feature_select_))
            : 0,
        4);
    put(kConfigMsixVector, config_vector_, 2);
    put(kNumQueues, queues_.size(), 2);
    put(kDeviceStatus, status_, 1);
    put(kConfigGeneration, generation_, 1);
    put(kQueueSelect, queue_select_, 2);
    if (queue_select_ < queues_.size()) {
        const Queue& q = queues_[queue_select_];
        put(kQueueSize, q.size, 2);
        put(kQueueMsixVector, q.vector, 2);
        put(kQueueEnable, q.enabled ? 1 : 0, 2);
        put(kQueueNotifyOff, queue_select_, 2);
        put(kQueueDesc, q.desc, 8);
        put(kQueueDriver, q.avail, 8);
        put(kQueueDevice, q.used, 8);
    }
    // A selected queue that does not exist reads as size 0: "not available".
    return b;
}

void PciTransport::common_read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    const auto image = common_image();
    for (size_t i = 0; i < data.size(); ++i) {
        data[i] = offset + i < image.size() ? image[offset + i] : 0;
    }
}

void PciTransport::common_write(uint64_t offset, std::span<const uint8_t> data) {
    std::unique_lock lock(mutex_);
    auto image = common_image();
    if (offset + data.size() > image.size()) {
        return;
    }
    std::memcpy(image.data() + offset, data.data(), data.size());
    const auto get = [&](uint64_t off, unsigned n) {
        uint64_t v = 0;
        for (unsigned i = 0; i < n; ++i) {
            v |= uint64_t{image[off + i]} << (8 * i);
        }
        return v;
    };
    const auto touched = [&](uint64_t off, unsigned n) {
        return offset < off + n && off < offset + data.size();
    };
    if (touched(kDeviceFeatureSelect, 4)) {
        device_feature_select_ = static_cast<uint32_t>(get(kDeviceFeatureSelect, 4));
    }
    if (touched(kDriverFeatureSelect, 4)) {
        driver_feature_select_ = static_cast<uint32_t>(get(kDriverFeatureSelect, 4));
    }
    if (touched(kDriverFeature, 4) && driver_feature_select_ < 2 &&
        !(status_ & kStatusFeaturesOk)) {
        const unsigned shift = 32 * driver_feature_select_;
        driver_features_ =
            (driver_features_ & ~(0xffffffffull << shift)) | (get(kDriverFeature, 4) << shift);
    }
    if (touched(kConfigMsixVector, 2)) {
        const uint16_t v = static_cast<uint16_t>(get(kConfigMsixVector, 2));
        config_vector_ = v < msix_.vectors() ? v : kNoVector;
    }
    if (touched(kQueueSelect, 2)) {
        queue_select_ = static_cast<uint16_t>(get(kQueueSelect, 2));
    }
    if (queue_select_ < queues_.size()) {
        Queue& q = queues_[queue_select_];
        // Queue settings are frozen while the queue is enabled (virtio 1.2, 4.1.4.3.2).
        if (!q.enabled) {
            if (touched(kQueueSize, 2)) {
                q.size = static_cast<uint16_t>(get(kQueueSize, 2));
            }
            if (touched(kQueueDesc, 8)) {
                q.desc = get(kQueueDesc, 8);
            }
            if (touched(kQueueDriver, 8)) {
                q.avail = get(kQueueDriver, 8);
            }
            if (touched(kQueueDevice, 8)) {
                q.used = get(kQueueDevice, 8);
            }
        }
        if (touched(kQueueMsixVector, 2)) {
            const uint16_t v = static_cast<uint16_t>(get(kQueueMsixVector, 2));
            q.vector = v < msix_.vectors() ? v : kNoVector;
        }
        if (touched(kQueueEnable, 2) && get(kQueueEnable, 2) == 1) {
            q.enabled = true;  // only the driver's 1 counts; queues are disabled by reset
        }
    }
    if (touched(kDeviceStatus, 1)) {
        const uint8_t status = image[kDeviceStatus];
        lock.unlock();
        set_status(status);
    }
}

bool PciTransport::queues_valid(std::string& why) const {
    for (size_t i = 0; i < queues_.size(); ++i) {
        const Queue& q = queues_[i];
        if (!q.enabled) {
            continue;
        }
        const uint64_t n = q.size;
        if (n == 0 || n > device_->queue_max_size() || (n & (n - 1)) != 0) {
            why = "queue " + std::to_string(i) + " size " + std::to_string(n) +
                  " is not a power of two up to " + std::to_string(device_->queue_max_size());
            return false;
        }
        // Split ring layout (virtio 1.2, 2.7): alignment and extent of the three parts.
        const bool aligned = q.desc % 16 == 0 && q.avail % 2 == 0 && q.used % 4 == 0;
        const bool in_ram = memory_.contains(q.desc, 16 * n) &&
                            memory_.contains(q.avail, 6 + 2 * n) &&
                            memory_.contains(q.used, 6 + 8 * n);
        if (!aligned || !in_ram) {
            why = "queue " + std::to_string(i) + " rings are " +
                  (aligned ? "outside guest RAM" : "misaligned");
            return false;
        }
    }
    return true;
}

void PciTransport::reset_locked() {
    status_ = 0;
    driver_features_ = 0;
    device_feature_select_ = driver_feature_select_ = 0;
    config_vector_ = kNoVector;
    queue_select_ = 0;
    isr_ = 0;
    for (Queue& q : queues_) {
        q.size = device_->queue_max_size();
        q.vector = kNoVector;
        q.enabled = false;
        q.desc = q.avail = q.used = 0;
        uint64_t drained;
        (void)!::read(q.kick.get(), &drained, sizeof drained);  // stale kicks
    }
}

void PciTransport::set_status(uint8_t status) {
    if (status == 0) {
        // The device must be quiet before the driver sees 0 read back.
        device_->reset();
        std::lock_guard lock(mutex_);
        reset_locked();
        return;
    }
    std::unique_lock lock(mutex_);
    const uint8_t added = static_cast<uint8_t>(status & ~status_);
    if ((added & kStatusFeaturesOk)) {
        const uint64_t offered = device_->offered_features();
        const bool subset = (driver_features_ & ~offered) == 0;
        const bool modern = driver_features_ & bit(kFeatureVersion1);
        if (!subset || !modern || !device_->accept_features(driver_features_)) {
            VLOG_WARN("virtio", "%s: driver features %#llx refused (offered %#llx)", name().c_str(),
                      static_cast<unsigned long long>(driver_features_),
                      static_cast<unsigned long long>(offered));
            status &= static_cast<uint8_t>(~kStatusFeaturesOk);  // the driver reads it back
        }
    }
    if ((added & kStatusDriverOk)) {
        std::string why;
        if (!(status & kStatusFeaturesOk) || !queues_valid(why)) {
            VLOG_WARN("virtio", "%s: cannot start: %s", name().c_str(),
                      why.empty() ? "features were not accepted" : why.c_str());
            status_ = static_cast<uint8_t>(status | kStatusNeedsReset);
            isr_ |= 2;
            const uint16_t v = config_vector_;
            lock.unlock();
            if (v != kNoVector) {
                msix_.trigger(v);
            }
            return;
        }
        std::vector<QueueSetup> setups;
        for (size_t i = 0; i < queues_.size(); ++i) {
            const Queue& q = queues_[i];
            setups.push_back(QueueSetup{
                static_cast<uint16_t>(i), q.size, q.enabled, q.desc, q.avail, q.used, q.kick.get(),
                q.vector == kNoVector ? q.no_vector.get() : msix_.eventfd(q.vector)});
        }
        const uint64_t features = driver_features_;
        status_ = status;
        lock.unlock();
        device_->activate(features, setups);
        return;
    }
    status_ = status;
}

void PciTransport::notify_config_change() {
    uint16_t vector;
    {
        std::lock_guard lock(mutex_);
        ++generation_;
        isr_ |= 2;
        vector = config_vector_;
    }
    if (vector != kNoVector) {
        msix_.trigger(vector);
    }
}

}  // namespace conduit::vmm::virtio
