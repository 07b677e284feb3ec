// tools/gen/vnic: conduit-gen's own virtio-net guest NIC on vhost-user (a virtio port's
// driver=native, the default), in place of DPDK's virtio-user PMD.
//
// The generator is the guest. It owns the NIC's memory (a memfd the switch maps, laid
// out as GPA 0 up), sets up split virtqueues in it through the VMM's vhost-user
// frontend (vmm/vhost_user), and gives every descriptor a buffer of its own for good:
// a frame is built, and read, where the switch copies it from and to. No mbuf, no
// allocation, no per-frame descriptor writes on receive (a buffer goes back by its
// index alone): what the PMD spends per frame on mbufs and descriptor chains, the
// generator does not (docs/conduit-gen.md, "Guest ports").
//
// Threads: the constructor, connect() and alive() run on the control thread while no
// phase runs; the datapath calls (rx_poll/rx_release, tx_reserve/tx_commit) on the one
// traffic lcore. Nothing is shared between the two while a phase runs.
//
// What the switch writes (used ring entries: descriptor ids and lengths) is checked
// before it is used: an id out of range or not held by the switch, or a length beyond
// its buffer, is counted (bad_entries()) and the entry skipped, never followed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tools/gen/nic.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/util/unique_fd.h"
#include "vmm/vhost_user/endpoint.h"
#include "vmm/vhost_user/frontend.h"

namespace conduit::gen {

struct VnicOptions {
    std::string name;    // the port's name, for messages
    std::string socket;  // vhost-user socket path
    bool listen = true;  // server mode: the switch connects (its ports are clients)
    uint16_t queue_pairs = 1;
    uint16_t ring_size = 256;    // descriptors per virtqueue, a power of two
    uint32_t frame_room = 2048;  // bytes of frame a buffer holds (after the virtio-net header)
};

class Vnic final : public NativeNic {
  public:
    // The virtio-net header before every frame (VIRTIO_F_VERSION_1: always 12 bytes).
    static constexpr uint32_t kNetHdr = 12;

    // Creates the memory and the rings, and in server mode listens on the socket now.
    // Throws std::runtime_error naming the port and the reason.
    explicit Vnic(VnicOptions options);
    ~Vnic() override;
    Vnic(const Vnic&) = delete;
    Vnic& operator=(const Vnic&) = delete;

    const VnicOptions& options() const { return options_; }

    // Waits up to `timeout` for the switch (server mode: it connects; client mode: the
    // socket accepts), negotiates and starts the rings. A NIC whose session ended
    // starts again with fresh rings. Throws std::runtime_error with the reason (the
    // last connection error in client mode, "nobody connected" in server mode).
    void connect(std::chrono::milliseconds timeout) override;
    // False once the switch closed the session or broke the protocol (error() says why).
    bool alive() override;
    bool running() const override {
        return session_ && session_->state() == Session::State::Running;
    }
    const std::string& error() const override { return error_; }

    // --- datapath, on the traffic lcore (tools/gen/nic.h) ---
    // Frames are given without the virtio-net header; transmit buffers are those of
    // queue pair 0, the ones the switch finished with last first.

    uint16_t rx_poll(uint16_t q, const uint8_t** frames, uint32_t* lens, uint16_t max) override;
    void rx_release(uint16_t q) override;
    uint16_t tx_reserve(uint16_t want, uint8_t** frames, uint16_t least = 1) override;
    void tx_commit(uint16_t n, const uint16_t* lens, uint16_t len) override;

    // Used entries the switch wrote that could not be honoured (see the header comment).
    uint64_t bad_entries() const override { return bad_entries_; }
    // Kicks sent: a switch that polls asks for none.
    uint64_t kicks() const { return kicks_; }

  private:
    using Session = vmm::vhost_user::Frontend;
    struct Queue;

    void reset_rings();
    void kick_if_wanted(Queue& vq);

    VnicOptions options_;
    vmm::GuestMemory memory_;
    std::vector<std::unique_ptr<Queue>> queues_;  // 2 per pair: receive, transmit
    vmm::vhost_user::Endpoint endpoint_;
    std::unique_ptr<Session> session_;
    std::string error_;
    uint64_t bad_entries_ = 0;
    uint64_t kicks_ = 0;
};

}  // namespace conduit::gen
