// Fuzzes the vhost-user frontend with hostile backends: the input is what a backend
// sends back during a whole session (negotiate, start, a disconnect check, stop), split
// into writes, some carrying fds. Whatever the bytes, the frontend must either complete
// the session or fail with a vhost_user::Error that names the card, leave the session
// closed, and keep no fd the backend sent. The codec's decoders are also fed raw input.
//
// Input: byte 0 picks the card (bit 0: two queue pairs, bit 1: MTU 1500, bit 2: wants
// VIRTIO_NET_F_MQ, bit 3: the guest acked a feature the backend may lack), then chunks
// of [control][length lo][length hi][bytes]: each chunk is one sendmsg carrying
// (control & 3) pipe write ends. tests/fuzz/vhost_user_corpus.py writes the seeds.
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/vhost_user/frontend.h"

namespace vu = conduit::vmm::vhost_user;
using conduit::vmm::UniqueFd;

namespace {

struct Guest {
    UniqueFd mem{::memfd_create("fuzz-guest", MFD_CLOEXEC)};
    UniqueFd events[8];
    Guest() {
        if (::ftruncate(mem.get(), 1 << 20) != 0) {
            __builtin_trap();
        }
        for (auto& e : events) {
            e = UniqueFd(::eventfd(0, EFD_CLOEXEC));
        }
    }
};

int open_fds() {
    int n = 0;
    for (int fd = 0; fd < 512; ++fd) {
        n += ::fcntl(fd, F_GETFD) >= 0;
    }
    return n;
}

void send_chunk(int sock, const uint8_t* bytes, size_t len, const std::vector<int>& fds) {
    iovec iov{const_cast<uint8_t*>(bytes), len};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)];
    if (!fds.empty()) {
        std::memset(control, 0, sizeof control);
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    (void)::sendmsg(sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
}

void fuzz_decoders(const uint8_t* data, size_t size) {
    if (size < vu::kHeaderSize) {
        return;
    }
    for (vu::Request r : {vu::Request::GetFeatures, vu::Request::GetVringBase}) {
        try {
            vu::ReceivedMessage m;
            m.header = vu::decode_header(std::span(data, vu::kHeaderSize), r);
            m.payload.assign(data + vu::kHeaderSize,
                             data + std::min<size_t>(size, vu::kHeaderSize + m.header.size));
            if (r == vu::Request::GetFeatures) {
                vu::decode_u64_reply(m, r);
            } else {
                vu::decode_state_reply(m, r);
            }
        } catch (const vu::Error& e) {
            if (e.kind() != vu::Error::Kind::Protocol ||
                std::string(e.what()).rfind(vu::request_name(r) + " reply: ", 0) != 0) {
                __builtin_trap();
            }
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Guest guest;
    // VHOST_USER_FUZZ_VERBOSE=1: print how each input ended (to check seeds, reproducers).
    static const bool verbose = std::getenv("VHOST_USER_FUZZ_VERBOSE") != nullptr;
    if (size < 1) {
        return 0;
    }
    fuzz_decoders(data + 1, size - 1);
    const uint8_t mode = data[0];
    // Counted per input: libFuzzer itself opens files between inputs.
    const int fds_before = open_fds();

    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        __builtin_trap();
    }
    UniqueFd front(sv[0]);
    UniqueFd back(sv[1]);
    std::vector<UniqueFd> read_ends;  // a backend fd the frontend kept would show here
    for (size_t off = 1; off + 3 <= size;) {
        const uint8_t control = data[off];
        size_t len = data[off + 1] | (size_t{data[off + 2]} << 8);
        off += 3;
        len = std::min(len, size - off);
        std::vector<UniqueFd> write_ends;
        std::vector<int> fds;
        for (int i = 0; i < (control & 3) && len > 0; ++i) {
            int p[2];
            if (::pipe2(p, O_CLOEXEC) != 0) {
                __builtin_trap();
            }
            read_ends.emplace_back(p[0]);
            write_ends.emplace_back(p[1]);
            fds.push_back(p[1]);
        }
        send_chunk(back.get(), data + off, len, fds);
        off += len;
    }
    // The backend says nothing more: the frontend sees EOF instead of waiting. It keeps
    // its socket open, so the frontend's requests are still accepted.
    ::shutdown(back.get(), SHUT_WR);

    vu::FrontendOptions options;
    options.name = "fuzz";
    options.reply_timeout = std::chrono::milliseconds(1000);
    options.queue_pairs = (mode & 1) != 0 ? 2 : 1;
    options.mtu = (mode & 2) != 0 ? 1500 : 0;
    uint64_t wanted = vu::bit(vu::virtio_bit::kVersion1) | vu::bit(vu::virtio_bit::kNetStatus);
    if ((mode & 2) != 0) {
        wanted |= vu::bit(vu::virtio_bit::kNetMtu);
    }
    if ((mode & 4) != 0) {
        wanted |= vu::bit(vu::virtio_bit::kNetMq);
    }
    const vu::MemoryRegion regions[2] = {
        {0, 1 << 19, 0x7f0000000000, 0, guest.mem.get()},
        {1ull << 32, 1 << 19, 0x7f0000080000, 1 << 19, guest.mem.get()}};
    std::vector<vu::VringSetup> vrings;
    for (uint16_t i = 0; i < 2 * options.queue_pairs; ++i) {
        const uint64_t at = 0x7f0000000000 + i * 0x4000;
        vrings.push_back({i, 256, at, at + 0x1000, at + 0x2000, static_cast<uint16_t>(i * 100),
                          guest.events[2 * i].get(), guest.events[2 * i + 1].get()});
    }

    {
        vu::Frontend fe(std::move(front), options);
        try {
            const vu::BackendFeatures b = fe.negotiate(wanted);
            uint64_t acked = b.usable;
            if ((mode & 8) != 0) {
                acked |= vu::bit(vu::virtio_bit::kNetMrgRxbuf);  // acked in an earlier session
            }
            fe.start(acked, regions, vrings);
            if (!fe.disconnected()) {
                fe.stop();
            }
            if (verbose) {
                std::fprintf(stderr, "vhost_user_fuzz: session completed\n");
            }
        } catch (const vu::Error& e) {
            if (verbose) {
                std::fprintf(stderr, "vhost_user_fuzz: %s\n", e.what());
            }
            // Every failure names the card, and the session is over.
            if (std::string(e.what()).rfind("fuzz: ", 0) != 0 || fe.is_open() ||
                fe.poll_fd() != -1 || fe.error() != e.what()) {
                __builtin_trap();
            }
        }
        // std::logic_error / invalid_argument would be a frontend bug here: uncaught, it
        // aborts and libFuzzer reports it.
    }
    back.reset();
    for (const auto& r : read_ends) {
        pollfd p{r.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) != 1 || (p.revents & POLLHUP) == 0) {
            __builtin_trap();  // a copy of an fd the backend sent is still open
        }
    }
    read_ends.clear();
    if (open_fds() != fds_before) {
        __builtin_trap();
    }
    return 0;
}
