#include "vmm/devices/bus.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace conduit::vmm {

void Bus::add(uint64_t base, uint64_t size, std::shared_ptr<BusDevice> device, std::string owner) {
    if (size == 0 || base + size < base) {
        throw std::logic_error(name_ + ": invalid range for " + owner);
    }
    std::unique_lock lock(mutex_);
    for (const Range& r : ranges_) {
        if (base < r.base + r.size && r.base < base + size) {
            throw std::logic_error(name_ + ": " + owner + " overlaps " + r.owner);
        }
    }
    ranges_.push_back({base, size, std::move(device), std::move(owner)});
    std::sort(ranges_.begin(), ranges_.end(),
              [](const Range& a, const Range& b) { return a.base < b.base; });
}

bool Bus::remove(uint64_t base, const BusDevice* device) {
    std::unique_lock lock(mutex_);
    auto it = std::find_if(ranges_.begin(), ranges_.end(), [&](const Range& r) {
        return r.base == base && r.device.get() == device;
    });
    if (it == ranges_.end()) {
        return false;
    }
    ranges_.erase(it);
    return true;
}

const Bus::Range* Bus::find(uint64_t addr, uint64_t len) const {
    // Ranges are sorted and disjoint: the candidate is the last one starting at or below addr.
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                               [](uint64_t a, const Range& r) { return a < r.base; });
    if (it == ranges_.begin()) {
        return nullptr;
    }
    --it;
    if (addr - it->base < it->size && len <= it->size - (addr - it->base)) {
        return &*it;
    }
    return nullptr;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
    std::shared_ptr<BusDevice> device;
    uint64_t offset = 0;
    {
        std::shared_lock lock(mutex_);
        const Range* r = find(addr, data.size());
        if (r != nullptr) {
            device = r->device;
            offset = addr - r->base;
        }
    }
    if (!device) {
        std::memset(data.data(), 0xff, data.size());
        return false;
    }
    device->read(offset, data);
    return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
    std::shared_ptr<BusDevice> device;
    uint64_t offset = 0;
    {
        std::shared_lock lock(mutex_);
        const Range* r = find(addr, data.size());
        if (r != nullptr) {
            device = r->device;
            offset = addr - r->base;
        }
    }
    if (!device) {
        return false;
    }
    device->write(offset, data);
    return true;
}

std::vector<Bus::Range> Bus::ranges() const {
    std::shared_lock lock(mutex_);
    return ranges_;
}

}  // namespace conduit::vmm
