// vmm/virtio/net: a virtio-net card whose datapath is a vhost-user backend.
//
// The VMM models the card (features, MAC, link status, MTU) and hands the guest's rings
// to the backend; frames never pass through the VMM: the guest's kicks reach the backend
// through KVM ioeventfds, the backend's interrupts reach the guest through irqfds.
//
// Each card has a thread of its own that owns the vhost-user side: it waits for a backend
// (listening, the default, or connecting with retries), negotiates, starts the rings
// when the driver is ready, and notices when the backend goes away. While there is no
// backend the guest sees the link down (VIRTIO_NET_F_STATUS plus a config interrupt);
// when one comes back the VMM sends the whole state again, with ring positions taken
// from the used indices, and the link comes up - no guest reboot. A backend that sends
// garbage, closes mid-handshake or lacks what the guest acked gets a log line and the
// card stays down, waiting for the next one; the VM keeps running.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "vmm/memory/guest_memory.h"
#include "vmm/util/unique_fd.h"
#include "vmm/virtio/virtio_device.h"
#include "vmm/vm_config.h"

namespace conduit::vmm::vhost_user {
class Endpoint;
class Frontend;
}  // namespace conduit::vmm::vhost_user

namespace conduit::vmm::virtio {

// virtio-net feature bits (virtio 1.2, 5.1.3).
namespace net_bit {
inline constexpr unsigned kCsum = 0, kGuestCsum = 1, kMtu = 3, kMac = 5, kGuestTso4 = 7,
                          kGuestTso6 = 8, kGuestEcn = 9, kHostTso4 = 11, kHostTso6 = 12,
                          kHostEcn = 13, kMrgRxbuf = 15, kStatus = 16;
}
inline constexpr uint16_t kNetLinkUp = 1;

// What this card offers a guest, before intersecting with a backend.
uint64_t net_model_features(const NetCardConfig& card);

class VhostUserNet final : public VirtioDevice {
  public:
    static constexpr uint16_t kQueues = 2;  // receive, transmit

    // Opens the card's endpoint now (server mode: the socket listens from here on), so
    // that a bad socket path fails before the VM starts.
    VhostUserNet(NetCardConfig card, const GuestMemory& memory);
    ~VhostUserNet() override;

    // Starts the card's thread (after the transport is wired up); stop() ends it and the
    // backend session, before the transport's eventfds go away.
    void start();
    void stop();

    uint16_t device_type() const override { return 1; }
    uint16_t queue_count() const override { return kQueues; }
    uint16_t queue_max_size() const override { return card_.queue_size; }
    uint64_t offered_features() const override;
    bool accept_features(uint64_t acked) override;
    void read_config(uint64_t offset, std::span<uint8_t> data) override;
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;
    void activate(uint64_t acked_features, const std::vector<QueueSetup>& queues) override;
    void reset() override;

    bool link_up() const { return link_up_.load(); }
    const NetCardConfig& card() const { return card_; }

  private:
    enum class Command { kStart, kReset, kQuit };

    void run();
    void handle_connection(UniqueFd connection);
    void start_rings();  // on the card thread, with a negotiated session
    void end_session(const std::string& why);
    void set_link(bool up);
    void post(Command command, bool wait);

    NetCardConfig card_;
    const GuestMemory& memory_;
    std::unique_ptr<vhost_user::Endpoint> endpoint_;
    std::unique_ptr<vhost_user::Frontend> session_;  // card thread only
    uint64_t session_serial_ = 0;                    // counts sessions, card thread only
    std::thread thread_;
    UniqueFd wakeup_;  // eventfd: a command is waiting

    mutable std::mutex mutex_;
    std::condition_variable done_;
    std::deque<Command> commands_;
    uint64_t commands_posted_ = 0;
    uint64_t commands_done_ = 0;
    // The driver's side, as of the last DRIVER_OK (guarded by mutex_).
    bool active_ = false;
    uint64_t acked_ = 0;
    std::vector<QueueSetup> queues_;
    std::optional<uint64_t> backend_usable_;  // what the first backend could do
    std::atomic<bool> link_up_{false};
};

}  // namespace conduit::vmm::virtio
