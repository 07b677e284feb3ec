// tools/gen/memif: conduit-gen's own memif NIC (a memif port's driver=native, the
// default), in place of DPDK's net_memif PMD, in either role.
//
// memif (libmemif's shared memory packet interface, as DPDK's net_memif and VPP speak
// it): a unix SOCK_SEQPACKET control channel of fixed 128-byte messages (HELLO, INIT,
// ADD_REGION with the region's fd, ADD_RING with an eventfd, CONNECT, CONNECTED, ACK,
// DISCONNECT), and rings of descriptors in memory the client owns: client-to-server
// rings (the client produces at `head`, the server consumes at `tail`) and
// server-to-client rings (the client hands empty buffers out at `head`, the server
// fills them and moves `tail`).
//
// As a client the generator owns the region (ordinary shared memory, sealed against
// shrinking, new for each server): every descriptor has its buffer for good,
// a frame is built and read where the peer copies it from and to, and the buffer's
// address comes from the generator's own layout, never from what the descriptor says
// now. As a server it builds and reads frames in the client's buffers, each checked to
// lie inside a region the client gave (a descriptor is in shared memory: it is read
// once, then checked, then used). Either way: no mbufs and no copies of its own.
//
// What the peer writes that cannot be honoured (a length past the buffer, a buffer
// outside every region, a chained frame) is counted (bad_entries()) and skipped; a ring
// index that runs past the ring ends the session (error() says why).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tools/gen/nic.h"
#include "vmm/util/mapping.h"
#include "vmm/util/unique_fd.h"

namespace conduit::gen {

struct MemifOptions {
    std::string name;      // the port's name, for messages
    std::string socket;    // the control channel's unix socket name
    bool abstract = true;  // in the abstract namespace, as DPDK's socket-abstract= default
    bool listen = false;   // server role (the switch's memif port is then the client)
    uint32_t id = 0;       // the interface id (memif's id=: a server serves clients by id)
    uint16_t rx_queues = 1;
    uint16_t tx_queues = 1;
    uint8_t log2_ring_size = 10;  // descriptors per ring: 1024, as DPDK's default
    uint32_t frame_room = 2048;   // bytes of frame a buffer holds
};

class MemifNic final : public NativeNic {
  public:
    // The protocol version this NIC speaks (2.0, as DPDK 22.11 and VPP).
    static constexpr uint16_t kVersion = 0x0200;
    static constexpr uint8_t kMaxLog2RingSize = 14;

    // Client: creates the region now. Server: listens on the socket now.
    // Throws std::runtime_error naming the port and the reason.
    explicit MemifNic(MemifOptions options);
    ~MemifNic() override;
    MemifNic(const MemifNic&) = delete;
    MemifNic& operator=(const MemifNic&) = delete;

    const MemifOptions& options() const { return options_; }

    void connect(std::chrono::milliseconds timeout) override;
    bool alive() override;
    bool running() const override { return connected_; }
    const std::string& error() const override { return error_; }

    uint16_t rx_poll(uint16_t q, const uint8_t** frames, uint32_t* lens, uint16_t max) override;
    void rx_release(uint16_t q) override;
    uint16_t tx_reserve(uint16_t want, uint8_t** frames, uint16_t least = 1) override;
    void tx_commit(uint16_t n, const uint16_t* lens, uint16_t len) override;

    uint64_t bad_entries() const override { return bad_entries_; }
    // Interrupts sent: a peer that polls (it masks them on the rings it receives on)
    // asks for none.
    uint64_t kicks() const { return kicks_; }

  private:
    struct Ring;
    struct Region {
        vmm::Mapping map;
        vmm::UniqueFd fd;
    };

    // Server: a client's connection, or false if none came by the deadline.
    bool accept_client(std::chrono::steady_clock::time_point deadline);
    void handshake_as_client(std::chrono::steady_clock::time_point deadline);
    // Client: the region, its rings and buffers, made anew for each server given one.
    void make_client_region();
    void handshake_as_server(std::chrono::steady_clock::time_point deadline);
    void start_rings();
    void end_session(const std::string& why);
    // Ends the session from the datapath (it cannot say why on the socket there): the
    // control thread's alive() does.
    void broken(const char* why);
    uint8_t* region_bytes(uint16_t region, uint64_t offset, uint64_t length) const;

    MemifOptions options_;
    vmm::UniqueFd listener_;       // server role
    vmm::UniqueFd channel_;        // the control channel of the session
    std::vector<Region> regions_;  // client: the one it owns; server: the client's
    std::vector<std::unique_ptr<Ring>> rx_, tx_;
    bool connected_ = false;
    bool region_sent_ = false;      // client: the region went to a server
    const char* broken_ = nullptr;  // set on the traffic lcore, read on the control thread
    std::string error_;
    uint64_t bad_entries_ = 0;
    uint64_t kicks_ = 0;
};

}  // namespace conduit::gen
