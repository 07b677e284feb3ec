// tools/gen/nic: what the traffic engine needs of a NIC of conduit-gen's own, one that
// builds and reads frames in buffers it shares with its peer instead of in mbufs: the
// guest NIC on vhost-user (tools/gen/vnic) and the memif NIC (tools/gen/memif).
//
// Threads: connect(), alive(), running() and error() run on the control thread while no
// phase runs; the datapath calls on the one traffic lcore. Nothing is shared between the
// two while a phase runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "vmm/util/unique_fd.h"

namespace conduit::gen {

class NativeNic {
  public:
    virtual ~NativeNic() = default;

    // Waits up to `timeout` for the peer, and sets up a session with it (a NIC whose
    // session ended starts again with fresh rings). Throws std::runtime_error naming the
    // port and the reason.
    virtual void connect(std::chrono::milliseconds timeout) = 0;
    // False once the peer closed the session or broke the protocol (error() says why).
    virtual bool alive() = 0;
    virtual bool running() const = 0;
    virtual const std::string& error() const = 0;

    // --- datapath, on the traffic lcore ---

    // Frames the peer delivered on receive queue `q`, up to `max`: their addresses and
    // lengths. They stay the generator's until rx_release(q), which hands every buffer
    // of that poll back to the peer.
    virtual uint16_t rx_poll(uint16_t q, const uint8_t** frames, uint32_t* lens, uint16_t max) = 0;
    virtual void rx_release(uint16_t q) = 0;

    // Reserves up to `want` transmit buffers of queue 0 and returns where each frame
    // goes; tx_commit(n, lens) hands the first n of them to the peer, frame k being
    // lens[k] bytes (or all `len` bytes when lens is null). Reserved and not committed
    // stay free. With fewer than `least` free (or half the ring), reserves none.
    virtual uint16_t tx_reserve(uint16_t want, uint8_t** frames, uint16_t least = 1) = 0;
    virtual void tx_commit(uint16_t n, const uint16_t* lens, uint16_t len) = 0;

    // Entries the peer wrote that could not be honoured (each NIC says which), counted
    // and skipped, never followed.
    virtual uint64_t bad_entries() const = 0;
};

// For the NICs' set-up: a non-blocking eventfd (throws naming the port), and a
// timeout as messages say it ("2", "0.5").
vmm::UniqueFd make_eventfd(const std::string& port);
std::string seconds_text(std::chrono::milliseconds t);

}  // namespace conduit::gen
