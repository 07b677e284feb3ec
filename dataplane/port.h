// dataplane/port: what a worker needs from a port: receive a burst from one of its
// queues, transmit a burst (consuming one reference per mbuf and counting the outcome).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "switch/counters.h"
#include "switch/offload.h"
#include "switch/types.h"

struct rte_mbuf;

namespace conduit::dp {

class Capture;

class Port {
  public:
    Port(std::string name, sw::PortIndex index) : name_(std::move(name)), index_(index) {}
    virtual ~Port() = default;
    Port(const Port&) = delete;
    Port& operator=(const Port&) = delete;

    const std::string& name() const { return name_; }
    sw::PortIndex index() const { return index_; }

    // Control path.
    virtual void start() = 0;
    virtual void stop() = 0;
    virtual const char* type() const = 0;
    virtual std::string endpoint() const = 0;  // socket path or devargs
    virtual uint16_t rx_queue_count() const = 0;

    // Datapath.
    virtual bool is_up() const = 0;
    // What the port takes: its MTU and the offloads its guest or device completes. A
    // worker reads this once per transmit burst and fits the burst to it (sw::TxFitter);
    // a vhost-user port reads its connection first, so the caps belong to the guest the
    // burst then goes to.
    virtual sw::TxCaps tx_caps() const = 0;
    // The offloads the port's guest asks of the switch (TxCaps bits), for reports.
    virtual uint8_t rx_offloads() const { return 0; }
    virtual uint16_t receive(uint16_t queue, rte_mbuf** pkts, uint16_t max,
                             sw::PortCounters& counters) = 0;
    virtual void transmit(unsigned worker, rte_mbuf** pkts, uint16_t count,
                          sw::PortCounters& counters) = 0;

    // The capture running on this port, if any: workers check it once per burst.
    Capture* capture() const { return capture_.load(std::memory_order_acquire); }
    void set_capture(Capture* capture) { capture_.store(capture, std::memory_order_release); }

  private:
    std::string name_;
    sw::PortIndex index_;
    std::atomic<Capture*> capture_{nullptr};
};

// Sums the bytes of the first `count` frames (before they are handed away).
uint64_t burst_bytes(rte_mbuf* const* pkts, uint16_t count);

}  // namespace conduit::dp
