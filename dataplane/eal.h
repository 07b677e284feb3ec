// dataplane/eal: DPDK's environment (EAL) for conduitd, set up from the config and torn
// down on destruction, hugepage files included.
#pragma once

#include <string>
#include <vector>

#include "control/config.h"

namespace conduit::dp {

class Eal {
  public:
    // hugepages_usable: false forces --no-huge (memfd-backed memory) whatever the config says.
    Eal(const control::Config& config, bool hugepages_usable);
    ~Eal();
    Eal(const Eal&) = delete;
    Eal& operator=(const Eal&) = delete;

    static std::vector<std::string> arguments(const control::Config& config, bool hugepages_usable);
    bool hugepages() const { return hugepages_; }

  private:
    std::string file_prefix_;
    bool hugepages_;
    bool pdump_ = false;
};

}  // namespace conduit::dp
