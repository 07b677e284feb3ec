// vmm/memory/guest_memory: the guest's RAM, one memfd mapped MAP_SHARED, so that
// vhost-user backends can map the very same pages (they receive the fd).
//
// RAM below 4 GiB stops at the MMIO hole; the rest continues at 4 GiB. Both regions are
// windows of the one memfd (and of one host mapping), so a backend maps one fd.
//
// Guest-physical addresses often come from the guest (descriptors, ring addresses):
// every accessor checks the whole range against the regions and never trusts a length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/util/mapping.h"
#include "vmm/util/unique_fd.h"

namespace conduit::vmm {

struct MemoryRegion {
    uint64_t guest_phys_addr;
    uint64_t size;
    uint64_t fd_offset;  // where the region starts in the memfd
    uint8_t* host;       // where it is mapped in this process
};

class GuestMemory {
  public:
    static constexpr uint64_t kHugePageSize = 2ull << 20;

    // Lays out `size` bytes of RAM around the MMIO hole [hole_start, hole_end) without
    // allocating anything: what the boot code needs to plan the guest's memory map.
    static std::vector<MemoryRegion> plan(uint64_t size, uint64_t hole_start, uint64_t hole_end);

    // Creates the memfd (hugetlb-backed when asked: its size must then be a multiple of
    // 2 MiB and enough free hugepages must exist) and maps it. Throws with the reason.
    static GuestMemory create(uint64_t size, bool hugepages, uint64_t hole_start,
                              uint64_t hole_end);

    GuestMemory(GuestMemory&&) = default;
    GuestMemory& operator=(GuestMemory&&) = default;

    uint64_t size() const { return size_; }
    bool hugepages() const { return hugepages_; }
    int fd() const { return fd_.get(); }
    const std::vector<MemoryRegion>& regions() const { return regions_; }
    // The highest guest-physical address of RAM below the MMIO hole, plus one.
    uint64_t low_end() const { return regions_.front().guest_phys_addr + regions_.front().size; }

    // Host address of [gpa, gpa + len) if it lies within one region, else nullptr.
    uint8_t* host_range(uint64_t gpa, uint64_t len) const;
    bool contains(uint64_t gpa, uint64_t len) const { return host_range(gpa, len) != nullptr; }

    // Copy in and out; false (nothing copied) if the range is not RAM.
    bool write(uint64_t gpa, std::span<const uint8_t> data) const;
    bool read(uint64_t gpa, std::span<uint8_t> out) const;

    template <typename T>
    bool write_obj(uint64_t gpa, const T& value) const {
        return write(gpa, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
    }
    template <typename T>
    std::optional<T> read_obj(uint64_t gpa) const {
        T value;
        if (!read(gpa, std::span(reinterpret_cast<uint8_t*>(&value), sizeof(T)))) {
            return std::nullopt;
        }
        return value;
    }

  private:
    GuestMemory() = default;

    uint64_t size_ = 0;
    bool hugepages_ = false;
    UniqueFd fd_;
    Mapping mapping_;
    std::vector<MemoryRegion> regions_;
};

// "512M", "2G", "1048576", "64K": a byte count. Throws ConfigError on anything else.
uint64_t parse_size(const std::string& text, const std::string& what);

}  // namespace conduit::vmm
