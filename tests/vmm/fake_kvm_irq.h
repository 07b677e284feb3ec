// A recording stand-in for kvm::IrqRouter (which needs /dev/kvm, absent in unit tests).
//
// It keeps what the router would hand KVM - one MSI route per GSI, and which eventfds are
// bound to which GSI with KVM_IRQFD - and models what KVM then does with them, so tests
// can assert on interrupts rather than on call sequences:
// - an eventfd bound to a GSI is KVM's: every write to it becomes one interrupt at the
//   GSI's route as it is at that moment (collected by deliver()),
// - binding an eventfd that already holds a count injects at once (KVM polls it on
//   KVM_IRQFD assign): that is how an unmasked pending vector fires,
// - while unbound, writes accumulate in the eventfd: nothing is delivered.
// Misuse KVM would refuse (binding twice, unbinding what is not bound, binding a GSI
// that has no route yet) fails the running test.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "vmm/devices/pci/msix.h"

namespace conduit::vmm::testing {

class FakeKvmIrq final : public pci::MsiController {
  public:
    static constexpr uint32_t kFirstMsiGsi = 24;  // after the legacy ISA and PCI lines

    struct Route {
        uint64_t address = 0;
        uint32_t data = 0;
        bool operator==(const Route&) const = default;
    };
    struct Interrupt {
        uint32_t gsi;
        Route route;
        bool operator==(const Interrupt&) const = default;
    };

    uint32_t allocate_msi_gsi() override { return next_gsi_++; }

    void set_msi(uint32_t gsi, uint64_t address, uint32_t data) override {
        EXPECT_GE(gsi, kFirstMsiGsi);
        EXPECT_LT(gsi, next_gsi_) << "route for a GSI never allocated";
        routes_[gsi] = Route{address, data};
        ++route_updates_;
    }

    void bind(int eventfd, uint32_t gsi) override {
        EXPECT_EQ(bound_.count(eventfd), 0u) << "KVM_IRQFD: eventfd already bound (EBUSY)";
        EXPECT_EQ(routes_.count(gsi), 1u) << "bound GSI " << gsi << " before routing it";
        bound_[eventfd] = gsi;
        ++binds_;
        consume(eventfd, gsi);  // KVM injects at once if the eventfd is already signalled
    }

    void unbind(int eventfd, uint32_t gsi) override {
        auto it = bound_.find(eventfd);
        ASSERT_NE(it, bound_.end()) << "KVM_IRQFD deassign of an unbound eventfd";
        EXPECT_EQ(it->second, gsi);
        consume(eventfd, gsi);  // whatever was written while bound was KVM's already
        bound_.erase(it);
        ++unbinds_;
    }

    // What KVM injected since the last call (bound eventfds written in the meantime
    // included).
    std::vector<Interrupt> deliver() {
        for (const auto& [fd, gsi] : bound_) {
            consume(fd, gsi);
        }
        return std::exchange(delivered_, {});
    }

    bool bound(int eventfd) const { return bound_.count(eventfd) != 0; }
    size_t bound_count() const { return bound_.size(); }
    const std::map<uint32_t, Route>& routes() const { return routes_; }
    unsigned route_updates() const { return route_updates_; }
    unsigned binds() const { return binds_; }
    unsigned unbinds() const { return unbinds_; }
    uint32_t allocated() const { return next_gsi_ - kFirstMsiGsi; }

  private:
    void consume(int eventfd, uint32_t gsi) {
        uint64_t count = 0;
        if (::read(eventfd, &count, sizeof count) == sizeof count && count != 0) {
            delivered_.push_back(Interrupt{gsi, routes_[gsi]});
        }
    }

    uint32_t next_gsi_ = kFirstMsiGsi;
    std::map<uint32_t, Route> routes_;
    std::map<int, uint32_t> bound_;  // eventfd -> GSI
    std::vector<Interrupt> delivered_;
    unsigned route_updates_ = 0;
    unsigned binds_ = 0;
    unsigned unbinds_ = 0;
};

// Whether an eventfd has been written since it was last read; reading it clears it.
inline uint64_t take_eventfd(int fd) {
    uint64_t count = 0;
    if (::read(fd, &count, sizeof count) != sizeof count) {
        return 0;
    }
    return count;
}

inline void signal_eventfd(int fd) {
    const uint64_t one = 1;
    EXPECT_EQ(::write(fd, &one, sizeof one), static_cast<ssize_t>(sizeof one));
}

}  // namespace conduit::vmm::testing
