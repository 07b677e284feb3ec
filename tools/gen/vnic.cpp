#include "tools/gen/vnic.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "vmm/vhost_user/error.h"
#include "vmm/vhost_user/message.h"

namespace conduit::gen {

namespace {

// The split virtqueue's layout (virtio 1.x, 2.7).
struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
static_assert(sizeof(Desc) == 16);
struct UsedElem {
    uint32_t id;
    uint32_t len;
};
constexpr uint16_t kDescWrite = 2;         // VIRTQ_DESC_F_WRITE: the device writes it
constexpr uint16_t kAvailNoInterrupt = 1;  // VIRTQ_AVAIL_F_NO_INTERRUPT
constexpr uint16_t kUsedNoNotify = 1;      // VIRTQ_USED_F_NO_NOTIFY

constexpr uint64_t kPage = 4096;
constexpr uint64_t align_up(uint64_t v, uint64_t a) {
    return (v + a - 1) / a * a;
}

uint32_t buffer_stride(const VnicOptions& o) {
    return static_cast<uint32_t>(align_up(Vnic::kNetHdr + o.frame_room, 64));
}
// Bytes of one queue: descriptor table, avail ring, used ring (each on a page of its
// own), then its buffers.
uint64_t queue_bytes(const VnicOptions& o) {
    const uint64_t q = o.ring_size;
    return align_up(16 * q, kPage) + align_up(6 + 2 * q, kPage) + align_up(6 + 8 * q, kPage) +
           align_up(q * buffer_stride(o), kPage);
}

vmm::GuestMemory make_memory(const VnicOptions& o) {
    if (o.ring_size == 0 || (o.ring_size & (o.ring_size - 1)) != 0 || o.ring_size > 32768) {
        throw std::invalid_argument("port " + o.name + ": the ring size must be a power of two " +
                                    "up to 32768, not " + std::to_string(o.ring_size));
    }
    const uint64_t bytes = queue_bytes(o) * 2 * o.queue_pairs;
    // Hugepages when there are any to spare (fewer TLB misses on both sides, the
    // switch's copies included); else ordinary pages, which work the same.
    const uint64_t huge = align_up(bytes, vmm::GuestMemory::kHugePageSize);
    try {
        return vmm::GuestMemory::create(huge, true, huge, huge);
    } catch (const std::exception&) {
        try {
            return vmm::GuestMemory::create(bytes, false, bytes, bytes);
        } catch (const std::exception& e) {
            throw std::runtime_error("port " + o.name + ": " + e.what());
        }
    }
}

vmm::vhost_user::Endpoint make_endpoint(const VnicOptions& o) {
    try {
        return o.listen ? vmm::vhost_user::Endpoint::listen(o.socket)
                        : vmm::vhost_user::Endpoint::connect_to(o.socket);
    } catch (const vmm::vhost_user::Error& e) {
        throw std::runtime_error("port " + o.name + ": " + e.what());
    }
}

}  // namespace

// One virtqueue in the NIC's memory, with the driver's side of its state.
struct Vnic::Queue {
    uint16_t index = 0;
    bool receive = false;
    uint16_t size = 0, mask = 0;
    Desc* desc = nullptr;
    uint16_t* avail = nullptr;  // flags, idx, ring[size], used_event
    uint16_t* used = nullptr;   // flags, idx, then UsedElem ring[size]
    UsedElem* used_ring = nullptr;
    uint64_t desc_gpa = 0, avail_gpa = 0, used_gpa = 0, buffers_gpa = 0;
    uint8_t* buffers = nullptr;
    uint32_t stride = 0;
    uint16_t avail_idx = 0;          // the driver's next avail index (published in avail[1])
    uint16_t last_used = 0;          // the next used entry to read
    std::vector<uint8_t> held;       // 1: descriptor i is the switch's
    std::vector<uint16_t> free_ids;  // transmit: descriptors of ours, the last freed on top
    uint16_t free_count = 0;
    std::vector<uint16_t> taken;  // receive: of the last poll; transmit: reserved
    uint16_t taken_count = 0;
    vmm::UniqueFd kick, call;

    uint16_t* avail_ring() { return avail + 2; }
    uint8_t* frame(uint32_t id) { return buffers + uint64_t{id} * stride + kNetHdr; }
    void publish() { __atomic_store_n(&avail[1], avail_idx, __ATOMIC_RELEASE); }
};

Vnic::Vnic(VnicOptions options)
    : options_(std::move(options)),
      memory_(make_memory(options_)),
      endpoint_(make_endpoint(options_)) {
    uint8_t* const host = memory_.regions().front().host;
    uint64_t at = 0;
    const uint32_t stride = buffer_stride(options_);
    for (uint16_t i = 0; i < 2 * options_.queue_pairs; ++i) {
        auto q = std::make_unique<Queue>();
        q->index = i;
        q->receive = i % 2 == 0;  // virtio-net: receiveq N is 2N, transmitq N is 2N + 1
        q->size = options_.ring_size;
        q->mask = static_cast<uint16_t>(q->size - 1);
        const uint64_t n = q->size;
        q->desc_gpa = at;
        at += align_up(16 * n, kPage);
        q->avail_gpa = at;
        at += align_up(6 + 2 * n, kPage);
        q->used_gpa = at;
        at += align_up(6 + 8 * n, kPage);
        q->buffers_gpa = at;
        at += align_up(n * stride, kPage);
        // The one region starts at GPA 0, so a GPA is an offset into the mapping.
        q->desc = reinterpret_cast<Desc*>(host + q->desc_gpa);
        q->avail = reinterpret_cast<uint16_t*>(host + q->avail_gpa);
        q->used = reinterpret_cast<uint16_t*>(host + q->used_gpa);
        q->used_ring = reinterpret_cast<UsedElem*>(q->used + 2);
        q->buffers = host + q->buffers_gpa;
        q->stride = stride;
        q->held.assign(n, 0);
        q->free_ids.assign(n, 0);
        q->taken.assign(n, 0);
        q->kick = make_eventfd(options_.name);
        q->call = make_eventfd(options_.name);
        queues_.push_back(std::move(q));
    }
    reset_rings();
}

Vnic::~Vnic() = default;

void Vnic::reset_rings() {
    // Fresh rings, as a guest driver sets them up before DRIVER_OK: every receive
    // buffer offered, every transmit buffer ours. The memory is zeroed first, which also
    // makes every virtio-net header all zeros (no offloads asked, none expected).
    std::memset(memory_.regions().front().host, 0, memory_.size());
    for (auto& qp : queues_) {
        Queue& q = *qp;
        q.avail_idx = 0;
        q.last_used = 0;
        q.taken_count = 0;
        q.free_count = 0;
        for (uint16_t i = 0; i < q.size; ++i) {
            q.desc[i] = {q.buffers_gpa + uint64_t{i} * q.stride, q.receive ? q.stride : 0u,
                         q.receive ? kDescWrite : uint16_t{0}, 0};
            if (q.receive) {
                q.avail_ring()[q.avail_idx++ & q.mask] = i;
                q.held[i] = 1;
            } else {
                q.held[i] = 0;
                q.free_ids[q.free_count++] = static_cast<uint16_t>(q.size - 1 - i);
            }
        }
        // The generator polls: no interrupts, please.
        q.avail[0] = kAvailNoInterrupt;
        q.publish();
    }
}

void Vnic::connect(std::chrono::milliseconds timeout) {
    namespace vu = vmm::vhost_user;
    if (running()) {
        return;
    }
    session_.reset();
    error_.clear();
    reset_rings();
    vmm::UniqueFd connection;
    try {
        connection = endpoint_.wait_for_connection(timeout);
    } catch (const vu::Error& e) {
        throw std::runtime_error(
            options_.listen ? "port " + options_.name + ": no switch connected to " +
                                  options_.socket + " within " + seconds_text(timeout) + " s"
                            : "port " + options_.name + ": " + e.what());
    }
    vu::FrontendOptions fo;
    fo.name = "port " + options_.name;
    fo.queue_pairs = options_.queue_pairs;
    auto session = std::make_unique<Session>(std::move(connection), fo);
    // The library's errors (vu::Error, a std::runtime_error) name the port already.
    uint64_t wanted = vu::bit(vu::virtio_bit::kVersion1);
    if (options_.queue_pairs > 1) {
        wanted |= vu::bit(vu::virtio_bit::kNetMq);
    }
    const vu::BackendFeatures b = session->negotiate(wanted);
    const uint64_t acked = wanted & b.usable;
    if (acked != wanted) {
        throw std::runtime_error("port " + options_.name +
                                 ": the switch does not offer multiqueue");
    }
    const vu::MemoryRegion region{0, memory_.size(),
                                  reinterpret_cast<uint64_t>(memory_.regions().front().host), 0,
                                  memory_.fd()};
    std::vector<vu::VringSetup> vrings;
    for (auto& q : queues_) {
        vrings.push_back({q->index, q->size, reinterpret_cast<uint64_t>(q->desc),
                          reinterpret_cast<uint64_t>(q->avail), reinterpret_cast<uint64_t>(q->used),
                          0, q->kick.get(), q->call.get()});
    }
    session->start(acked, std::span(&region, 1), vrings);
    session_ = std::move(session);
    if (!options_.listen) {
        endpoint_.session_ended();  // a later connect() tries again at once
    }
    // Once: the receive buffers are there (a switch that waits for a notification
    // instead of polling would not look before one).
    for (auto& q : queues_) {
        const uint64_t one = 1;
        (void)!::write(q->kick.get(), &one, sizeof one);
    }
}

bool Vnic::alive() {
    if (!session_ || !session_->is_open()) {
        if (session_ && error_.empty()) {
            error_ = session_->error();
        }
        return false;
    }
    pollfd p{session_->poll_fd(), POLLIN, 0};
    if (::poll(&p, 1, 0) > 0 && session_->disconnected()) {
        error_ = session_->error();
        return false;
    }
    return true;
}

void Vnic::kick_if_wanted(Queue& vq) {
    // The switch may have asked to be told (it sleeps): its flag is read after the new
    // index is visible to it (a full fence: a store then a load), or a switch that just
    // went to sleep would wait for a kick that never comes.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if ((__atomic_load_n(&vq.used[0], __ATOMIC_RELAXED) & kUsedNoNotify) == 0) {
        const uint64_t one = 1;
        (void)!::write(vq.kick.get(), &one, sizeof one);
        ++kicks_;
    }
}

uint16_t Vnic::rx_poll(uint16_t q, const uint8_t** frames, uint32_t* lens, uint16_t max) {
    Queue& vq = *queues_[2 * q];
    const uint16_t used_idx = __atomic_load_n(&vq.used[1], __ATOMIC_ACQUIRE);
    const auto n = static_cast<uint16_t>(
        std::min<uint32_t>(static_cast<uint16_t>(used_idx - vq.last_used), max));
    uint16_t got = 0;
    for (uint16_t k = 0; k < n; ++k) {
        const UsedElem e = vq.used_ring[(vq.last_used + k) & vq.mask];
        // The switch wrote this entry: an id it does not hold would make two owners of
        // one buffer, a length past the buffer a read past it.
        if (e.id >= vq.size || vq.held[e.id] == 0) [[unlikely]] {
            ++bad_entries_;
            continue;
        }
        vq.held[e.id] = 0;
        vq.taken[vq.taken_count++] = static_cast<uint16_t>(e.id);
        if (e.len < kNetHdr || e.len > vq.stride) [[unlikely]] {
            ++bad_entries_;
            continue;
        }
        frames[got] = vq.frame(e.id);
        lens[got] = e.len - kNetHdr;
        ++got;
    }
    vq.last_used = static_cast<uint16_t>(vq.last_used + n);
    return got;
}

void Vnic::rx_release(uint16_t q) {
    Queue& vq = *queues_[2 * q];
    if (vq.taken_count == 0) {
        return;
    }
    // Each buffer goes back by its index alone: its descriptor never changes.
    for (uint16_t k = 0; k < vq.taken_count; ++k) {
        const uint16_t id = vq.taken[k];
        vq.avail_ring()[vq.avail_idx++ & vq.mask] = id;
        vq.held[id] = 1;
    }
    vq.taken_count = 0;
    vq.publish();
    kick_if_wanted(vq);
}

uint16_t Vnic::tx_reserve(uint16_t want, uint8_t** frames, uint16_t least) {
    Queue& vq = *queues_[1];
    const uint16_t used_idx = __atomic_load_n(&vq.used[1], __ATOMIC_ACQUIRE);
    while (vq.last_used != used_idx) {
        const UsedElem e = vq.used_ring[vq.last_used & vq.mask];
        ++vq.last_used;
        if (e.id >= vq.size || vq.held[e.id] == 0) [[unlikely]] {
            ++bad_entries_;
            continue;
        }
        vq.held[e.id] = 0;
        vq.free_ids[vq.free_count++] = static_cast<uint16_t>(e.id);
    }
    if (vq.free_count < std::min<uint16_t>(least, vq.size / 2)) {
        return 0;
    }
    const uint16_t n = std::min(want, vq.free_count);
    for (uint16_t k = 0; k < n; ++k) {
        const uint16_t id = vq.free_ids[--vq.free_count];
        vq.taken[k] = id;
        frames[k] = vq.frame(id);
    }
    vq.taken_count = n;
    return n;
}

void Vnic::tx_commit(uint16_t n, const uint16_t* lens, uint16_t len) {
    Queue& vq = *queues_[1];
    n = std::min(n, vq.taken_count);
    for (uint16_t k = 0; k < n; ++k) {
        const uint16_t id = vq.taken[k];
        vq.desc[id].len = kNetHdr + (lens != nullptr ? lens[k] : len);
        vq.avail_ring()[vq.avail_idx++ & vq.mask] = id;
        vq.held[id] = 1;
    }
    for (uint16_t k = vq.taken_count; k > n; --k) {
        vq.free_ids[vq.free_count++] = vq.taken[k - 1];
    }
    vq.taken_count = 0;
    if (n != 0) {
        vq.publish();
        kick_if_wanted(vq);
    }
}

}  // namespace conduit::gen
