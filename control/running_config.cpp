#include "control/running_config.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "dataplane/dataplane.h"
#include "dataplane/log.h"

namespace conduit::control {

namespace {

dp::ChangeSet change_set(const ConfigPlan& plan, const Config& target) {
    using Kind = ConfigChange::Kind;
    dp::ChangeSet cs;
    auto settings = [&](const std::string& name) {
        const BridgeConfig& b = *target.find_bridge(name);
        return dp::ChangeSet::BridgeSettings{b.name, b.mac_aging_ms, b.mac_table_size};
    };
    auto port_add = [&](const ConfigChange& c) {
        return dp::ChangeSet::PortAdd{c.bridge, *target.find_bridge(c.bridge)->find_port(c.port)};
    };
    for (const ConfigChange& c : plan.changes) {
        switch (c.kind) {
            case Kind::kRemoveMac:
                cs.remove_macs.push_back({c.bridge, c.mac, c.port});
                break;
            case Kind::kRemovePort:
                cs.remove_ports.push_back(c.port);
                break;
            case Kind::kRemoveBridge:
                cs.remove_bridges.push_back(c.bridge);
                break;
            case Kind::kSetBridge:
                cs.set_bridges.push_back(settings(c.bridge));
                break;
            case Kind::kSetAdmin:
                cs.set_admin.emplace_back(
                    c.port, target.find_bridge(c.bridge)->find_port(c.port)->admin_up);
                break;
            case Kind::kReplacePort:
                cs.remove_ports.push_back(c.port);
                cs.add_ports.push_back(port_add(c));
                break;
            case Kind::kSetLogLevel:
                break;  // not the datapath's
            case Kind::kAddBridge:
                cs.add_bridges.push_back(settings(c.bridge));
                break;
            case Kind::kAddPort:
                cs.add_ports.push_back(port_add(c));
                break;
            case Kind::kAddMac:
                cs.add_macs.push_back({c.bridge, c.mac, c.port});
                break;
        }
    }
    return cs;
}

void write_file(const std::string& path, const std::string& text) {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
    }
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = write(fd, text.data() + done, text.size() - done);
        if (n < 0) {
            const std::string why = std::strerror(errno);
            close(fd);
            throw std::runtime_error("cannot write " + path + ": " + why);
        }
        done += static_cast<std::size_t>(n);
    }
    // On disk before it replaces anything.
    if (fsync(fd) != 0 || close(fd) != 0) {
        throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
    }
}

}  // namespace

RunningConfig::RunningConfig(dp::Dataplane& dp, Config initial) : dp_(dp) {
    std::error_code ec;
    path_ = initial.path.empty() ? "" : std::filesystem::absolute(initial.path, ec).string();
    running_.path = initial.path;
    running_.daemon = initial.daemon;
    running_.control = initial.control;
    std::lock_guard lock(mutex_);
    commit_locked(std::move(initial), false);
}

Config RunningConfig::snapshot() const {
    std::lock_guard lock(mutex_);
    return running_;
}

ConfigPlan RunningConfig::change(const std::function<void(Config&)>& edit, bool dry_run) {
    std::lock_guard lock(mutex_);
    Config target = running_;
    edit(target);
    return commit_locked(std::move(target), dry_run);
}

ConfigPlan RunningConfig::apply(Config target, bool dry_run) {
    std::lock_guard lock(mutex_);
    if (!target.has_daemon_section) {
        target.daemon = running_.daemon;
    }
    if (!target.has_control_section) {
        target.control = running_.control;
    }
    return commit_locked(std::move(target), dry_run);
}

ConfigPlan RunningConfig::commit_locked(Config target, bool dry_run) {
    target.path = running_.path;
    validate_config(target);
    ConfigPlan plan = diff_configs(running_, target);
    if (dry_run) {
        return plan;
    }
    if (!plan.restart_required.empty()) {
        std::string what;
        for (const auto& r : plan.restart_required) {
            what += (what.empty() ? "" : "; ") + r;
        }
        throw RestartRequired("only a restart changes " + what +
                              " (edit the config file and restart conduitd)");
    }
    const dp::ChangeSet cs = change_set(plan, target);
    if (!cs.empty()) {
        dp_.commit(cs);
    }
    if (running_.daemon.log_level != target.daemon.log_level) {
        log::set_level(target.daemon.log_level.c_str());
    }
    for (const auto& c : plan.changes) {
        CLOG_NOTICE("control", "%s", c.text.c_str());
    }
    running_ = std::move(target);
    return plan;
}

std::string RunningConfig::save() {
    std::lock_guard lock(mutex_);
    if (path_.empty()) {
        throw std::runtime_error("conduitd was started without a config file");
    }
    char when[64];
    const std::time_t now = std::time(nullptr);
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", std::localtime(&now));
    const std::string text = config_to_yaml(
        running_, "conduitd configuration, written by `conduitctl save` (conduitd " CONDUIT_VERSION
                  ") at " +
                      std::string(when) + ".\nThe previous version is kept as " +
                      std::filesystem::path(path_).filename().string() + ".prev.");
    // What we write must read back as what runs; never replace a good file with one
    // conduitd would refuse.
    parse_config(text, path_);
    const std::string prev = path_ + ".prev";
    const std::string tmp = path_ + ".tmp";
    if (std::filesystem::exists(path_)) {
        std::ifstream old(path_, std::ios::binary);
        const std::string old_text((std::istreambuf_iterator<char>(old)),
                                   std::istreambuf_iterator<char>());
        write_file(prev + ".tmp", old_text);
        if (rename((prev + ".tmp").c_str(), prev.c_str()) != 0) {
            throw std::runtime_error("cannot keep the previous version as " + prev + ": " +
                                     std::strerror(errno));
        }
    }
    write_file(tmp, text);
    if (rename(tmp.c_str(), path_.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        unlink(tmp.c_str());
        throw std::runtime_error("cannot replace " + path_ + ": " + why);
    }
    // The rename itself on disk.
    const int dir = open(std::filesystem::path(path_).parent_path().c_str(),
                         O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    CLOG_NOTICE("control", "running config saved to %s", path_.c_str());
    return path_;
}

}  // namespace conduit::control
