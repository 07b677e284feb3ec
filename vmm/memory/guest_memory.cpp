#include "vmm/memory/guest_memory.h"

#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>

#include "vmm/util/error.h"

namespace conduit::vmm {

namespace {

long free_hugepages() {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    long value = 0;
    while (meminfo >> key >> value) {
        if (key == "HugePages_Free:") {
            return value;
        }
        meminfo.ignore(256, '\n');
    }
    return 0;
}

}  // namespace

std::vector<MemoryRegion> GuestMemory::plan(uint64_t size, uint64_t hole_start, uint64_t hole_end) {
    std::vector<MemoryRegion> regions;
    const uint64_t low = size < hole_start ? size : hole_start;
    regions.push_back({0, low, 0, nullptr});
    if (size > low) {
        regions.push_back({hole_end, size - low, low, nullptr});
    }
    return regions;
}

GuestMemory GuestMemory::create(uint64_t size, bool hugepages, uint64_t hole_start,
                                uint64_t hole_end) {
    if (size == 0) {
        throw ConfigError("guest memory size must not be zero");
    }
    if (hugepages && size % kHugePageSize != 0) {
        throw ConfigError("with hugepages the memory size must be a multiple of 2 MiB, not " +
                          std::to_string(size) + " bytes");
    }
    GuestMemory mem;
    mem.size_ = size;
    mem.hugepages_ = hugepages;
    unsigned flags = MFD_CLOEXEC;
    if (hugepages) {
        flags |= MFD_HUGETLB | MFD_HUGE_2MB;
    }
    mem.fd_.reset(memfd_create("conduit-vmm-ram", flags));
    if (!mem.fd_) {
        throw_errno(hugepages ? "cannot create a hugepage-backed memfd (is hugetlbfs available?)"
                              : "cannot create the guest memory memfd");
    }
    if (ftruncate(mem.fd_.get(), static_cast<off_t>(size)) != 0) {
        throw_errno("cannot size guest memory to " + std::to_string(size >> 20) + " MiB");
    }
    // Shared, so the pages a vhost-user backend maps from the same fd are these pages.
    // Hugetlb pages are reserved here, so a shortage fails now rather than as a SIGBUS
    // inside the guest later.
    void* addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, mem.fd_.get(), 0);
    if (addr == MAP_FAILED) {
        const int err = errno;
        if (hugepages) {
            throw SystemError("cannot map " + std::to_string(size >> 20) +
                                  " MiB of hugepage-backed guest memory (" +
                                  std::to_string(free_hugepages()) +
                                  " free 2 MiB pages; reserve more in "
                                  "/proc/sys/vm/nr_hugepages)",
                              err);
        }
        throw SystemError("cannot map " + std::to_string(size >> 20) + " MiB of guest memory", err);
    }
    mem.mapping_ = Mapping(addr, size);
    // Guest RAM in a core dump of the VMM would be huge and would leak guest secrets.
    madvise(addr, size, MADV_DONTDUMP);
    mem.regions_ = plan(size, hole_start, hole_end);
    for (auto& r : mem.regions_) {
        r.host = mem.mapping_.data() + r.fd_offset;
    }
    return mem;
}

uint8_t* GuestMemory::host_range(uint64_t gpa, uint64_t len) const {
    for (const auto& r : regions_) {
        // Written so that no sum can overflow: a guest may pass any 64-bit values.
        if (gpa >= r.guest_phys_addr && gpa - r.guest_phys_addr <= r.size &&
            len <= r.size - (gpa - r.guest_phys_addr)) {
            return r.host + (gpa - r.guest_phys_addr);
        }
    }
    return nullptr;
}

bool GuestMemory::write(uint64_t gpa, std::span<const uint8_t> data) const {
    uint8_t* host = host_range(gpa, data.size());
    if (host == nullptr) {
        return false;
    }
    std::memcpy(host, data.data(), data.size());
    return true;
}

bool GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
    const uint8_t* host = host_range(gpa, out.size());
    if (host == nullptr) {
        return false;
    }
    std::memcpy(out.data(), host, out.size());
    return true;
}

uint64_t parse_size(const std::string& text, const std::string& what) {
    std::size_t used = 0;
    unsigned long long value = 0;
    try {
        value = std::stoull(text, &used, 10);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || text[0] == '-') {
        throw ConfigError(what + ": '" + text + "' is not a size (e.g. 512M, 2G)");
    }
    const std::string suffix = text.substr(used);
    unsigned shift = 0;
    if (suffix.empty()) {
        shift = 0;
    } else if (suffix == "K" || suffix == "k" || suffix == "KiB") {
        shift = 10;
    } else if (suffix == "M" || suffix == "m" || suffix == "MiB") {
        shift = 20;
    } else if (suffix == "G" || suffix == "g" || suffix == "GiB") {
        shift = 30;
    } else {
        throw ConfigError(what + ": unknown unit in '" + text + "' (use K, M or G)");
    }
    if (shift != 0 && value > (~0ull >> shift)) {
        throw ConfigError(what + ": '" + text + "' is too large");
    }
    return value << shift;
}

}  // namespace conduit::vmm
