// dataplane/capture: packet capture of one port into a pcapng file, through DPDK's
// pcapng library (rte_pcapng).
//
// A port being captured points at its Capture; workers check that pointer once per
// burst, so ports not being captured pay one load and a predictable branch. A worker
// copies the frames it received from or hands to the port (rte_pcapng_copy, into the
// capture's own pool) onto a ring; the control thread drains the ring into the file.
// Frames the ring or pool has no room for are counted, never waited for.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;
struct rte_pcapng;

namespace conduit::dp {

class Port;

struct CaptureOptions {
    std::string path;         // the pcapng file (created or truncated)
    uint64_t count = 0;       // frames to capture, then stop; 0: until stopped
    uint8_t directions = 3;   // Capture::kIn | Capture::kOut
    uint32_t snaplen = 2048;  // bytes kept of each frame
};

struct CaptureStatus {
    uint64_t id = 0;
    std::string port;
    std::string path;
    uint8_t directions = 0;
    uint64_t count = 0;    // asked for (0: unlimited)
    uint64_t written = 0;  // frames in the file
    uint64_t dropped = 0;  // frames not captured: the capture's ring or pool was full
    bool done = false;     // file complete and closed
    std::string error;     // why it ended early, if it did
};

class Capture {
  public:
    enum Direction : uint8_t { kIn = 1, kOut = 2 };  // received from / sent to the port

    // Opens the file and writes its header; throws std::runtime_error.
    Capture(uint64_t id, const Port& port, CaptureOptions options);
    ~Capture();
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;

    // Datapath: copies up to the frames still wanted. Any worker, concurrently.
    void offer(rte_mbuf* const* pkts, uint16_t count, Direction direction, uint16_t queue);

    // Control side.
    uint64_t drain();  // writes queued frames to the file; returns how many
    bool has_all() const { return options_.count != 0 && written_ >= options_.count; }
    void finish(const std::string& error = "");  // drain, close the file
    CaptureStatus status() const;
    const Port& port() const { return port_; }
    uint64_t id() const { return id_; }

  private:
    void write_interface_block();

    uint64_t id_;
    const Port& port_;
    CaptureOptions options_;
    int fd_ = -1;
    rte_pcapng* pcapng_ = nullptr;
    rte_mempool* pool_ = nullptr;
    rte_ring* ring_ = nullptr;
    uint32_t interface_id_ = 0;        // our interface's index among the file's interface blocks
    std::atomic<uint64_t> remaining_;  // frames still to copy (when a count was given)
    std::atomic<uint64_t> dropped_{0};
    uint64_t written_ = 0;
    bool done_ = false;
    std::string error_;
};

// The captures of one dataplane: running ones by id, and the last finished ones.
struct CaptureRegistry {
    static constexpr std::size_t kKeepFinished = 32;
    uint64_t next_id = 1;
    std::map<uint64_t, std::unique_ptr<Capture>> active;
    std::deque<CaptureStatus> finished;
};

}  // namespace conduit::dp
