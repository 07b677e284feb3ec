// conduit-gen's own guest NIC (tools/gen/vnic) against the fake vhost-user backend: the
// test plays the switch, reading and writing the NIC's rings in this process's memory
// (vhost-user ring addresses are the frontend's own addresses), including used entries
// a broken switch could write.
#include "tools/gen/vnic.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "vhost_user_fake_backend.h"

namespace {

using conduit::gen::Vnic;
using conduit::gen::VnicOptions;
using vhost_test::BackendModel;
using vhost_test::FakeBackend;

struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

// One virtqueue as the switch sees it.
struct Ring {
    Desc* desc = nullptr;
    uint16_t* avail = nullptr;  // flags, idx, ring[]
    uint16_t* used = nullptr;   // flags, idx, then {id, len} pairs
    void put_used(uint16_t slot, uint32_t id, uint32_t len) const {
        auto* ring = reinterpret_cast<uint32_t*>(used + 2);
        ring[2 * slot] = id;
        ring[2 * slot + 1] = len;
    }
};

class VnicTest : public ::testing::Test {
  protected:
    static constexpr uint16_t kRing = 8;

    void SetUp() override {
        path_ = "/tmp/conduit-vnic-test-" + std::to_string(getpid()) + ".sock";
        unlink(path_.c_str());
        listener_ = conduit::vmm::UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
        ASSERT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        ASSERT_EQ(listen(listener_.get(), 1), 0);
        BackendModel model;
        model.hook = [this](vhost_test::BackendSocket&, vhost_test::RawMessage& m) {
            std::lock_guard lock(mutex_);
            if (m.request == 9) {  // SET_VRING_ADDR: index, flags, desc, used, avail
                Ring& r = rings_[m.u32_at(0)];
                r.desc = reinterpret_cast<Desc*>(m.u64_at(8));
                r.used = reinterpret_cast<uint16_t*>(m.u64_at(16));
                r.avail = reinterpret_cast<uint16_t*>(m.u64_at(24));
            } else if (m.request == 5) {  // SET_MEM_TABLE: one region, GPA then user address
                gpa_ = m.u64_at(8);
                user_ = m.u64_at(24);
            }
            return false;  // the backend answers as usual
        };
        std::thread acceptor([this, model] {
            const int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
            backend_ = std::make_unique<FakeBackend>(conduit::vmm::UniqueFd(fd), model);
        });
        VnicOptions o;
        o.name = "g";
        o.socket = path_;
        o.listen = false;  // the test's socket is the switch's
        o.ring_size = kRing;
        nic_ = std::make_unique<Vnic>(o);
        nic_->connect(std::chrono::seconds(5));
        acceptor.join();
        ASSERT_TRUE(nic_->running());
        std::lock_guard lock(mutex_);
        rx_ = rings_[0];
        tx_ = rings_[1];
        ASSERT_NE(rx_.desc, nullptr);
        ASSERT_NE(tx_.desc, nullptr);
    }
    void TearDown() override {
        nic_.reset();  // the session's socket closes: the backend thread ends
        if (backend_) {
            backend_->join();
            EXPECT_TRUE(backend_->violations.empty()) << backend_->violations.front();
        }
        unlink(path_.c_str());
    }
    uint8_t* host(uint64_t gpa) const { return reinterpret_cast<uint8_t*>(user_ + (gpa - gpa_)); }

    std::string path_;
    conduit::vmm::UniqueFd listener_;
    std::mutex mutex_;
    std::map<uint32_t, Ring> rings_;
    uint64_t gpa_ = 0, user_ = 0;
    std::unique_ptr<FakeBackend> backend_;
    std::unique_ptr<Vnic> nic_;
    Ring rx_, tx_;
};

TEST_F(VnicTest, OffersEveryReceiveBufferAndAsksForNoInterrupts) {
    EXPECT_EQ(rx_.avail[0], 1);  // VIRTQ_AVAIL_F_NO_INTERRUPT
    EXPECT_EQ(rx_.avail[1], kRing);
    for (uint16_t i = 0; i < kRing; ++i) {
        EXPECT_EQ(rx_.desc[i].flags, 2);  // the device writes it
        EXPECT_GE(rx_.desc[i].len, Vnic::kNetHdr + 1514);
    }
    EXPECT_EQ(tx_.avail[1], 0);
}

TEST_F(VnicTest, ReceivesFramesAndSkipsUsedEntriesItCannotHonour) {
    const uint16_t id = rx_.avail[2 + 3];
    uint8_t* buf = host(rx_.desc[id].addr);
    for (int k = 0; k < 60; ++k) {
        buf[Vnic::kNetHdr + k] = static_cast<uint8_t>(k + 1);
    }
    rx_.put_used(0, id, Vnic::kNetHdr + 60);
    rx_.put_used(1, 42, 72);                     // no such descriptor
    rx_.put_used(2, id, 72);                     // the same one again
    rx_.put_used(3, rx_.avail[2 + 5], 1 << 20);  // longer than its buffer
    __atomic_store_n(&rx_.used[1], 4, __ATOMIC_RELEASE);
    const uint8_t* frames[16];
    uint32_t lens[16];
    ASSERT_EQ(nic_->rx_poll(0, frames, lens, 16), 1);
    EXPECT_EQ(frames[0], buf + Vnic::kNetHdr);
    EXPECT_EQ(lens[0], 60u);
    EXPECT_EQ(frames[0][59], 60);
    EXPECT_EQ(nic_->bad_entries(), 3u);
    // Both buffers it took (the good frame's and the overlong one's) go back, once.
    nic_->rx_release(0);
    EXPECT_EQ(rx_.avail[1], kRing + 2);
    EXPECT_EQ(rx_.avail[2 + (kRing & (kRing - 1))], id);
    EXPECT_EQ(nic_->rx_poll(0, frames, lens, 16), 0);  // nothing new
}

TEST_F(VnicTest, SendsInItsOwnBuffersAndTakesBackOnlyWhatTheSwitchHeld) {
    uint8_t* frames[kRing];
    ASSERT_EQ(nic_->tx_reserve(3, frames), 3);
    std::memset(frames[0], 0xab, 64);
    std::memset(frames[1], 0xcd, 64);
    nic_->tx_commit(2, nullptr, 64);  // the third stays ours
    ASSERT_EQ(tx_.avail[1], 2);
    const uint16_t first = tx_.avail[2];
    EXPECT_EQ(tx_.desc[first].len, Vnic::kNetHdr + 64);
    EXPECT_EQ(host(tx_.desc[first].addr)[Vnic::kNetHdr], 0xab);
    EXPECT_EQ(tx_.desc[first].flags, 0);
    // The switch is done with the first; then it repeats it and names one that never was.
    tx_.put_used(0, first, 0);
    tx_.put_used(1, first, 0);
    tx_.put_used(2, 99, 0);
    __atomic_store_n(&tx_.used[1], 3, __ATOMIC_RELEASE);
    EXPECT_EQ(nic_->tx_reserve(kRing, frames), kRing - 1);  // all but the one it holds
    EXPECT_EQ(nic_->bad_entries(), 2u);
    nic_->tx_commit(kRing - 1, nullptr, 60);
    EXPECT_EQ(tx_.avail[1], 2 + kRing - 1);
    // With none free, or fewer than asked for at least, nothing is reserved.
    EXPECT_EQ(nic_->tx_reserve(4, frames), 0);
    tx_.put_used(3, tx_.avail[2 + 2], 0);
    __atomic_store_n(&tx_.used[1], 4, __ATOMIC_RELEASE);
    EXPECT_EQ(nic_->tx_reserve(4, frames, 2), 0);
    EXPECT_EQ(nic_->tx_reserve(4, frames), 1);
    nic_->tx_commit(0, nullptr, 0);
}

TEST_F(VnicTest, KicksOnlyASwitchThatAsksForKicks) {
    uint8_t* frames[1];
    ASSERT_EQ(nic_->tx_reserve(1, frames), 1);
    nic_->tx_commit(1, nullptr, 64);
    EXPECT_EQ(nic_->kicks(), 1u);  // its used ring's flags left notifications on
    __atomic_store_n(&tx_.used[0], 1, __ATOMIC_RELEASE);  // VIRTQ_USED_F_NO_NOTIFY: it polls
    ASSERT_EQ(nic_->tx_reserve(1, frames), 1);
    nic_->tx_commit(1, nullptr, 64);
    EXPECT_EQ(nic_->kicks(), 1u);
}

TEST(VnicSetup, ABadRingSizeOrNoSwitchIsSaidPlainly) {
    VnicOptions o;
    o.name = "g";
    o.socket = "/tmp/conduit-vnic-test-none-" + std::to_string(getpid()) + ".sock";
    o.ring_size = 100;
    try {
        Vnic nic(o);
        ADD_FAILURE() << "a ring of 100 was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "port g: the ring size must be a power of two up to 32768, not 100");
    }
    o.ring_size = 256;
    Vnic nic(o);  // listens
    try {
        nic.connect(std::chrono::milliseconds(200));
        ADD_FAILURE() << "connected to nobody";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "port g: no switch connected to " + o.socket + " within 0.2 s");
    }
    EXPECT_FALSE(nic.running());
}

}  // namespace
