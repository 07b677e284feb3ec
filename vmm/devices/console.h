// vmm/devices/console: where the guest's serial console goes and comes from: the VMM's
// stdin/stdout, a file (output only), a unix socket (one client at a time), or nowhere.
//
// Output is written by vCPU threads, one byte per UART write, straight to the fd (the
// UART exit already costs far more than the write). Input is read by a thread of its own
// and fed to the UART as its FIFO has room. On a terminal, stdin is put in raw mode (and
// restored) and Ctrl-A x stops the VM, as in QEMU.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vmm/util/unique_fd.h"
#include "vmm/vm_config.h"

struct termios;

namespace conduit::vmm {

class Serial8250;

class Console {
  public:
    using Quit = std::function<void()>;

    // Opens the file or socket now, so a bad path fails before the VM starts.
    explicit Console(const SerialConfig& config);
    ~Console();
    Console(const Console&) = delete;
    Console& operator=(const Console&) = delete;

    void output(uint8_t byte);
    // Starts feeding input to `uart`; `quit` is called on Ctrl-A x.
    void start_input(Serial8250& uart, Quit quit);
    void stop_input();

    uint64_t dropped_output() const { return dropped_.load(); }

  private:
    void input_loop(Serial8250& uart, Quit quit);
    bool feed(Serial8250& uart, const uint8_t* data, size_t size, const Quit& quit);

    SerialConfig config_;
    UniqueFd out_;     // file
    UniqueFd listen_;  // socket mode
    // The socket client: replaced by the input thread, written by vCPU threads.
    std::mutex client_mutex_;
    UniqueFd client_;
    UniqueFd stop_event_;  // eventfd that ends the input thread
    std::unique_ptr<termios> saved_termios_;
    bool escape_pending_ = false;
    std::thread input_;
    std::atomic<uint64_t> dropped_{0};
};

}  // namespace conduit::vmm
