// A private EAL (in memory: no hugepages, no devices, no shared config) and one mbuf
// pool for unit tests that work on real DPDK mbufs. A test file registers it once:
//
//   const auto* const g_env = ::testing::AddGlobalTestEnvironment(
//       new conduit::test::MbufPoolEnvironment("offload_test", 128, 8191));
//
// and takes its buffers from conduit::test::g_pool.
#pragma once

#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace conduit::test {

inline rte_mempool* g_pool = nullptr;

class MbufPoolEnvironment : public ::testing::Environment {
  public:
    // PROGRAM names the test in messages and in the EAL's file prefix; MEMORY_MB is the
    // EAL's heap; MBUFS the pool's size.
    MbufPoolEnvironment(std::string program, unsigned memory_mb, unsigned mbufs)
        : program_(std::move(program)), memory_mb_(std::to_string(memory_mb)), mbufs_(mbufs) {}

    void SetUp() override {
        prefix_ = program_ + std::to_string(getpid());
        const char* args[] = {program_.c_str(), "--no-huge",     "--no-pci",    "--no-shconf",
                              "--file-prefix",  prefix_.c_str(), "-m",          memory_mb_.c_str(),
                              "--lcores",       "0@0",           "--log-level", "error",
                              "--no-telemetry"};
        int argc = sizeof args / sizeof args[0];
        // Without an EAL every test would fail for a reason unrelated to it: stop instead,
        // loudly.
        if (rte_eal_init(argc, const_cast<char**>(args)) < 0) {
            std::fprintf(stderr, "%s: EAL initialisation failed\n", program_.c_str());
            std::abort();
        }
        g_pool = rte_pktmbuf_pool_create("test", mbufs_, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
        if (g_pool == nullptr) {
            std::fprintf(stderr, "%s: cannot create the mbuf pool\n", program_.c_str());
            std::abort();
        }
    }

    void TearDown() override {
        rte_mempool_free(g_pool);
        g_pool = nullptr;
        rte_eal_cleanup();
        std::error_code ignored;
        std::filesystem::remove_all("/var/run/dpdk/" + prefix_, ignored);
    }

  private:
    std::string program_;
    std::string memory_mb_;
    unsigned mbufs_;
    std::string prefix_;
};

}  // namespace conduit::test
