// control/running_config: the configuration conduitd is running, kept as a Config that
// every change goes through. A change edits a copy, validates the copy as a whole (the
// same checks as a file), works out the difference and hands it to the datapath as one
// change set; only when the datapath took it does the copy become the running config.
// So the running config is always one `conduitctl save` could write and a restart read.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "control/config.h"
#include "control/config_diff.h"

namespace conduit::dp {
class Dataplane;
}

namespace conduit::control {

class RunningConfig {
  public:
    // Brings the datapath (empty, started) to `initial`; throws on failure.
    RunningConfig(dp::Dataplane& dp, Config initial);

    Config snapshot() const;

    // Applies `edit` to a copy of the running config. Throws ConfigError when the result
    // is invalid, RestartRequired when it changes a start-only setting, and
    // dp::ChangeError when the datapath could not do it (then nothing changed).
    ConfigPlan change(const std::function<void(Config&)>& edit, bool dry_run = false);

    // Replaces the running config with `target`. Sections the file left out keep their
    // running values.
    ConfigPlan apply(Config target, bool dry_run);

    // Writes the running config to the file conduitd was started with: a new file
    // renamed over the old (atomic), the previous version kept as FILE.prev.
    // Returns the path written; throws std::runtime_error.
    std::string save();

    const std::string& path() const { return path_; }

  private:
    ConfigPlan commit_locked(Config target, bool dry_run);

    dp::Dataplane& dp_;
    mutable std::mutex mutex_;
    Config running_;
    std::string path_;  // absolute
};

class RestartRequired : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

}  // namespace conduit::control
