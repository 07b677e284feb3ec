// kvm_port_io: the smallest real KVM guest. It proves that /dev/kvm can run code, not
// just open: the vCPU computes A + B in real mode, writes the sum to an I/O port and
// halts; this program prints each exit so that a test can assert the value seen.
//
//   kvm_port_io A B [PORT]   (A, B, PORT: 16-bit numbers; PORT defaults to 0x10)
//
// Output: "api=12", then "io port=0x10 size=2 value=0x1234" and "hlt" on success.
// Exit status 0 only when the guest reached HLT after exactly one port write.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

class Fd {
  public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }

  private:
    int fd_;
};

class Mapping {
  public:
    Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
    ~Mapping() {
        if (addr_ != MAP_FAILED) {
            ::munmap(addr_, size_);
        }
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    uint8_t* bytes() const { return static_cast<uint8_t*>(addr_); }
    size_t size() const { return size_; }

  private:
    void* addr_;
    size_t size_;
};

int checked_ioctl(int fd, unsigned long request, unsigned long arg, const char* name) {
    const int rc = ::ioctl(fd, request, arg);
    if (rc < 0) {
        fail(name);
    }
    return rc;
}

uint16_t parse_u16(const char* text) {
    char* end = nullptr;
    const unsigned long value = std::strtoul(text, &end, 0);
    if (*text == '\0' || *end != '\0' || value > 0xffff) {
        throw std::invalid_argument(std::string("not a 16-bit number: ") + text);
    }
    return static_cast<uint16_t>(value);
}

constexpr uint64_t kGuestRamSize = 0x10000;
constexpr uint64_t kCodeAddress = 0x1000;

int run(uint16_t a, uint16_t b, uint16_t port) {
    Fd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
    if (kvm.get() < 0) {
        fail("open /dev/kvm");
    }
    std::printf("api=%d\n",
                checked_ioctl(kvm.get(), KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION"));
    Fd vm(checked_ioctl(kvm.get(), KVM_CREATE_VM, 0, "KVM_CREATE_VM"));

    Mapping ram(::mmap(nullptr, kGuestRamSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
                kGuestRamSize);
    if (ram.bytes() == MAP_FAILED) {
        fail("mmap guest RAM");
    }
    // 16-bit real mode: mov ax, A; add ax, B; mov dx, PORT; out dx, ax; hlt
    const uint8_t code[] = {0xb8,
                            static_cast<uint8_t>(a),
                            static_cast<uint8_t>(a >> 8),
                            0x05,
                            static_cast<uint8_t>(b),
                            static_cast<uint8_t>(b >> 8),
                            0xba,
                            static_cast<uint8_t>(port),
                            static_cast<uint8_t>(port >> 8),
                            0xef,
                            0xf4};
    std::memcpy(ram.bytes() + kCodeAddress, code, sizeof code);

    kvm_userspace_memory_region region{};
    region.slot = 0;
    region.guest_phys_addr = 0;
    region.memory_size = ram.size();
    region.userspace_addr = reinterpret_cast<uint64_t>(ram.bytes());
    checked_ioctl(vm.get(), KVM_SET_USER_MEMORY_REGION, reinterpret_cast<unsigned long>(&region),
                  "KVM_SET_USER_MEMORY_REGION");

    Fd vcpu(checked_ioctl(vm.get(), KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU"));
    const int run_size =
        checked_ioctl(kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
    Mapping run_area(::mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu.get(), 0),
                     run_size);
    if (run_area.bytes() == MAP_FAILED) {
        fail("mmap kvm_run");
    }
    auto* kvm_run_state = reinterpret_cast<kvm_run*>(run_area.bytes());

    kvm_sregs sregs{};
    checked_ioctl(vcpu.get(), KVM_GET_SREGS, reinterpret_cast<unsigned long>(&sregs),
                  "KVM_GET_SREGS");
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    checked_ioctl(vcpu.get(), KVM_SET_SREGS, reinterpret_cast<unsigned long>(&sregs),
                  "KVM_SET_SREGS");
    kvm_regs regs{};
    regs.rip = kCodeAddress;
    regs.rflags = 0x2;  // bit 1 is reserved and must be set
    checked_ioctl(vcpu.get(), KVM_SET_REGS, reinterpret_cast<unsigned long>(&regs), "KVM_SET_REGS");

    int port_writes = 0;
    // A handful of exits at most; a bound keeps a broken KVM from looping forever.
    for (int exits = 0; exits < 16; ++exits) {
        checked_ioctl(vcpu.get(), KVM_RUN, 0, "KVM_RUN");
        switch (kvm_run_state->exit_reason) {
            case KVM_EXIT_IO: {
                const auto& io = kvm_run_state->io;
                uint32_t value = 0;
                std::memcpy(&value, run_area.bytes() + io.data_offset, io.size);
                std::printf("io port=0x%x size=%u value=0x%x dir=%s\n", io.port, io.size, value,
                            io.direction == KVM_EXIT_IO_OUT ? "out" : "in");
                ++port_writes;
                break;
            }
            case KVM_EXIT_HLT:
                std::printf("hlt\n");
                return port_writes == 1 ? 0 : 1;
            default:
                std::printf(
                    "unexpected exit reason %u (hardware reason 0x%llx)\n",
                    kvm_run_state->exit_reason,
                    static_cast<unsigned long long>(kvm_run_state->hw.hardware_exit_reason));
                return 1;
        }
    }
    std::printf("no hlt after 16 exits\n");
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) {
        std::fprintf(stderr, "usage: kvm_port_io A B [PORT]\n");
        return 2;
    }
    try {
        return run(parse_u16(argv[1]), parse_u16(argv[2]), argc == 4 ? parse_u16(argv[3]) : 0x10);
    } catch (const std::exception& err) {
        std::fprintf(stderr, "kvm_port_io: %s\n", err.what());
        return 1;
    }
}
