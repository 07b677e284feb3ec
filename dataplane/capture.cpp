#include "dataplane/capture.h"

#include <fcntl.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pcapng.h>
#include <rte_ring.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "dataplane/port.h"

namespace conduit::dp {

namespace {

constexpr unsigned kPoolSize = 4095;  // frames in flight between workers and the file
constexpr unsigned kRingSize = 4096;
constexpr uint16_t kDrainBurst = 64;

// pcapng block and option codes (pcapng specification, section 4.2).
constexpr uint32_t kInterfaceBlock = 1;
constexpr uint16_t kOptEnd = 0;
constexpr uint16_t kOptIfName = 2;
constexpr uint16_t kOptIfDescription = 3;
constexpr uint16_t kOptIfTsResol = 9;
constexpr std::size_t kEpbInterfaceOffset = 8;  // Enhanced Packet Block: interface id

void append_u16(std::vector<uint8_t>& b, uint16_t v) {
    b.insert(b.end(), reinterpret_cast<uint8_t*>(&v), reinterpret_cast<uint8_t*>(&v) + 2);
}
void append_u32(std::vector<uint8_t>& b, uint32_t v) {
    b.insert(b.end(), reinterpret_cast<uint8_t*>(&v), reinterpret_cast<uint8_t*>(&v) + 4);
}
void append_option(std::vector<uint8_t>& b, uint16_t code, const void* data, uint16_t length) {
    append_u16(b, code);
    append_u16(b, length);
    const auto* bytes = static_cast<const uint8_t*>(data);
    b.insert(b.end(), bytes, bytes + length);
    b.resize((b.size() + 3) & ~std::size_t{3}, 0);
}

}  // namespace

Capture::Capture(uint64_t id, const Port& port, CaptureOptions options)
    : id_(id), port_(port), options_(std::move(options)), remaining_(options_.count) {
    const std::string name = "cap" + std::to_string(id);
    pool_ = rte_pktmbuf_pool_create_by_ops(name.c_str(), kPoolSize, 0, 0,
                                           rte_pcapng_mbuf_size(options_.snaplen),
                                           static_cast<int>(rte_socket_id()), "ring_mp_mc");
    if (pool_ == nullptr) {
        throw std::runtime_error("capture: cannot create its mbuf pool: " +
                                 std::string(rte_strerror(rte_errno)));
    }
    ring_ = rte_ring_create(("capr" + std::to_string(id)).c_str(), kRingSize,
                            static_cast<int>(rte_socket_id()), RING_F_SC_DEQ);
    if (ring_ == nullptr) {
        rte_mempool_free(pool_);
        throw std::runtime_error("capture: cannot create its ring: " +
                                 std::string(rte_strerror(rte_errno)));
    }
    fd_ = open(options_.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd_ < 0) {
        const std::string why = std::strerror(errno);
        rte_ring_free(ring_);
        rte_mempool_free(pool_);
        throw std::runtime_error("capture: cannot create " + options_.path + ": " + why);
    }
    const std::string app = "conduitd " CONDUIT_VERSION;
    const std::string comment = "conduit port " + port.name();
    pcapng_ = rte_pcapng_fdopen(fd_, nullptr, nullptr, app.c_str(), comment.c_str());
    if (pcapng_ == nullptr) {
        close(fd_);
        rte_ring_free(ring_);
        rte_mempool_free(pool_);
        throw std::runtime_error("capture: cannot write the pcapng header to " + options_.path);
    }
    write_interface_block();
}

Capture::~Capture() {
    finish();
    rte_ring_free(ring_);
    rte_mempool_free(pool_);
}

// DPDK 22.11's pcapng writer describes ethdev ports only (one interface block each, in
// port order); a guest port is not an ethdev. So the file gets one more interface block
// for the captured port, after the library's, and each packet block names it.
void Capture::write_interface_block() {
    uint16_t ethdevs = 0;
    uint16_t port_id;
    RTE_ETH_FOREACH_DEV(port_id) {
        ++ethdevs;
    }
    interface_id_ = ethdevs;
    std::vector<uint8_t> block;
    append_u32(block, kInterfaceBlock);
    append_u32(block, 0);  // total length, filled in below
    append_u16(block, 1);  // LINKTYPE_ETHERNET
    append_u16(block, 0);
    append_u32(block, options_.snaplen);
    const std::string& name = port_.name();
    append_option(block, kOptIfName, name.data(), static_cast<uint16_t>(name.size()));
    const std::string description =
        std::string("conduit ") + port_.type() + " port " + name + " (" + port_.endpoint() + ")";
    append_option(block, kOptIfDescription, description.data(),
                  static_cast<uint16_t>(description.size()));
    const uint8_t nanoseconds = 9;  // rte_pcapng_copy writes timestamps in ns
    append_option(block, kOptIfTsResol, &nanoseconds, 1);
    append_option(block, kOptEnd, nullptr, 0);
    const uint32_t total = static_cast<uint32_t>(block.size() + 4);
    append_u32(block, total);
    std::memcpy(block.data() + 4, &total, 4);
    if (write(fd_, block.data(), block.size()) != static_cast<ssize_t>(block.size())) {
        error_ = "cannot write to " + options_.path;
    }
}

void Capture::offer(rte_mbuf* const* pkts, uint16_t count, Direction direction, uint16_t queue) {
    if ((options_.directions & direction) == 0) {
        return;
    }
    uint16_t take = count;
    if (options_.count != 0) {
        // Claim frames for the whole burst at once; several workers may be offering.
        uint64_t left = remaining_.load(std::memory_order_relaxed);
        do {
            if (left == 0) {
                return;
            }
            take = static_cast<uint16_t>(std::min<uint64_t>(left, count));
        } while (!remaining_.compare_exchange_weak(left, left - take, std::memory_order_relaxed));
    }
    const auto dir = direction == kIn ? RTE_PCAPNG_DIRECTION_IN : RTE_PCAPNG_DIRECTION_OUT;
    const uint64_t now = rte_rdtsc();
    rte_mbuf* copies[32];
    uint16_t copied = 0;
    uint16_t lost = 0;
    for (uint16_t i = 0; i < take; ++i) {
        rte_mbuf* c = rte_pcapng_copy(0, queue, pkts[i], pool_, options_.snaplen, now, dir);
        if (c == nullptr) {
            ++lost;
            continue;
        }
        copies[copied++] = c;
        if (copied == 32) {
            const unsigned queued =
                rte_ring_enqueue_burst(ring_, reinterpret_cast<void**>(copies), copied, nullptr);
            if (queued < copied) {
                rte_pktmbuf_free_bulk(copies + queued, copied - queued);
                lost = static_cast<uint16_t>(lost + copied - queued);
            }
            copied = 0;
        }
    }
    if (copied != 0) {
        const unsigned queued =
            rte_ring_enqueue_burst(ring_, reinterpret_cast<void**>(copies), copied, nullptr);
        if (queued < copied) {
            rte_pktmbuf_free_bulk(copies + queued, copied - queued);
            lost = static_cast<uint16_t>(lost + copied - queued);
        }
    }
    if (lost != 0) {
        dropped_.fetch_add(lost, std::memory_order_relaxed);
        if (options_.count != 0) {
            // Not captured: let later frames take their place, so the file still gets
            // `count` frames.
            remaining_.fetch_add(lost, std::memory_order_relaxed);
        }
    }
}

uint64_t Capture::drain() {
    uint64_t total = 0;
    rte_mbuf* pkts[kDrainBurst];
    for (;;) {
        const unsigned n =
            rte_ring_dequeue_burst(ring_, reinterpret_cast<void**>(pkts), kDrainBurst, nullptr);
        if (n == 0) {
            return total;
        }
        for (unsigned i = 0; i < n; ++i) {
            rte_mbuf* m = pkts[i];
            if (fd_ >= 0 && error_.empty()) {
                std::memcpy(rte_pktmbuf_mtod_offset(m, uint8_t*, kEpbInterfaceOffset),
                            &interface_id_, sizeof interface_id_);
                iovec iov[8];
                int segments = 0;
                for (rte_mbuf* s = m; s != nullptr && segments < 8; s = s->next) {
                    iov[segments++] = {rte_pktmbuf_mtod(s, void*), rte_pktmbuf_data_len(s)};
                }
                if (writev(fd_, iov, segments) < 0) {
                    error_ = "writing " + options_.path + ": " + std::strerror(errno);
                } else {
                    ++written_;
                    ++total;
                }
            }
        }
        rte_pktmbuf_free_bulk(pkts, n);
    }
}

void Capture::finish(const std::string& error) {
    if (done_) {
        return;
    }
    drain();
    if (error_.empty()) {
        error_ = error;
    }
    if (pcapng_ != nullptr) {
        rte_pcapng_close(pcapng_);  // closes fd_
        pcapng_ = nullptr;
        fd_ = -1;
    }
    done_ = true;
}

CaptureStatus Capture::status() const {
    CaptureStatus s;
    s.id = id_;
    s.port = port_.name();
    s.path = options_.path;
    s.directions = options_.directions;
    s.count = options_.count;
    s.written = written_;
    s.dropped = dropped_.load(std::memory_order_relaxed);
    s.done = done_;
    s.error = error_;
    return s;
}

}  // namespace conduit::dp
