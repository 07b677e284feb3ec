// vmm/virtio/virtio_device: what a virtio device model offers its transport, and what the
// transport hands it when the driver is ready. The transport (virtio-pci here) owns the
// registers, feature negotiation, queue configuration, notifications and interrupts; the
// device owns its configuration space and what happens to the queues.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace conduit::vmm::virtio {

// Feature bits common to all devices (virtio 1.2, 6).
inline constexpr unsigned kFeatureIndirectDesc = 28;
inline constexpr unsigned kFeatureEventIdx = 29;
inline constexpr unsigned kFeatureVersion1 = 32;
inline constexpr unsigned kFeatureAccessPlatform = 33;
inline constexpr unsigned kFeatureRingPacked = 34;

inline constexpr uint64_t bit(unsigned feature) {
    return uint64_t{1} << feature;
}

// Device status bits (virtio 1.2, 2.1).
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusNeedsReset = 64;
inline constexpr uint8_t kStatusFailed = 128;

inline constexpr uint16_t kNoVector = 0xffff;

// One split virtqueue as the driver configured it.
struct QueueSetup {
    uint16_t index = 0;
    uint16_t size = 0;
    bool enabled = false;
    uint64_t desc_gpa = 0;
    uint64_t avail_gpa = 0;  // "driver area"
    uint64_t used_gpa = 0;   // "device area"
    int kick_fd = -1;        // signalled (by KVM) when the driver notifies this queue
    int call_fd = -1;        // write to interrupt the driver for this queue
};

class VirtioDevice {
  public:
    virtual ~VirtioDevice() = default;

    virtual uint16_t device_type() const = 0;  // 1: network
    virtual uint16_t queue_count() const = 0;
    virtual uint16_t queue_max_size() const = 0;
    virtual uint64_t offered_features() const = 0;
    // At FEATURES_OK: whether the device can work with what the driver accepted.
    virtual bool accept_features(uint64_t acked) = 0;

    virtual void read_config(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;

    // DRIVER_OK: the queues are ready. The device starts its datapath from here.
    virtual void activate(uint64_t acked_features, const std::vector<QueueSetup>& queues) = 0;
    // The driver reset the device (status 0): stop using the queues before returning.
    virtual void reset() = 0;

    // Set by the transport: raises the configuration-change interrupt.
    void set_config_notifier(std::function<void()> notify) { notify_config_ = std::move(notify); }

  protected:
    void notify_config_change() {
        if (notify_config_) {
            notify_config_();
        }
    }

  private:
    std::function<void()> notify_config_;
};

}  // namespace conduit::vmm::virtio
