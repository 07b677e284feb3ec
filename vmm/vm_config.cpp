#include "vmm/vm_config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "vmm/memory/guest_memory.h"
#include "vmm/util/error.h"

namespace conduit::vmm {

namespace {

class YamlSource {
  public:
    explicit YamlSource(std::string path) : path_(std::move(path)) {}

    [[noreturn]] void fail(const YAML::Node& at, const std::string& reason) const {
        throw ConfigError(path_ + ":" + std::to_string(at.Mark().line + 1) + ": " + reason);
    }
    std::string scalar(const YAML::Node& n, const std::string& key) const {
        if (!n.IsScalar()) {
            fail(n, "'" + key + "' must be a single value");
        }
        return n.Scalar();
    }
    unsigned number(const YAML::Node& n, const std::string& key, unsigned min, unsigned max) const {
        const std::string text = scalar(n, key);
        std::size_t used = 0;
        unsigned long value = 0;
        try {
            value = std::stoul(text, &used, 10);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != text.size() || text[0] == '-' || value < min || value > max) {
            fail(n, "'" + key + "' must be a whole number from " + std::to_string(min) + " to " +
                        std::to_string(max) + ", not '" + text + "'");
        }
        return static_cast<unsigned>(value);
    }
    bool boolean(const YAML::Node& n, const std::string& key) const {
        const std::string t = scalar(n, key);
        if (t == "true" || t == "yes" || t == "on") {
            return true;
        }
        if (t == "false" || t == "no" || t == "off") {
            return false;
        }
        fail(n, "'" + key + "' must be true or false, not '" + t + "'");
    }
    // Runs `parse` and turns a ConfigError without a location into one at `n`.
    template <typename F>
    auto at(const YAML::Node& n, F parse) const {
        try {
            return parse();
        } catch (const ConfigError& e) {
            fail(n, e.what());
        }
    }

  private:
    std::string path_;
};

}  // namespace

SerialConfig parse_serial(const std::string& text, const std::string& where) {
    SerialConfig s;
    if (text == "stdio") {
        s.kind = SerialConfig::Kind::kStdio;
    } else if (text == "none") {
        s.kind = SerialConfig::Kind::kNone;
    } else if (text.rfind("file:", 0) == 0 && text.size() > 5) {
        s.kind = SerialConfig::Kind::kFile;
        s.path = text.substr(5);
    } else if (text.rfind("socket:", 0) == 0 && text.size() > 7) {
        s.kind = SerialConfig::Kind::kSocket;
        s.path = text.substr(7);
    } else {
        throw ConfigError(where + ": '" + text +
                          "' is not a console (stdio, none, file:PATH or socket:PATH)");
    }
    return s;
}

VmConfig parse_vm_config(const std::string& text, const std::string& path) {
    const YamlSource src(path);
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
        throw ConfigError(path + ":" + std::to_string(e.mark.line + 1) +
                          ": not valid YAML: " + e.msg);
    }
    if (!root.IsMap()) {
        throw ConfigError(path + ":1: a VM config is a mapping of settings (kernel, cpus, ...)");
    }
    VmConfig c;
    try {
        for (const auto& kv : root) {
            if (!kv.first.IsScalar()) {
                src.fail(kv.first, "keys must be plain names");
            }
            const std::string key = kv.first.Scalar();
            const YAML::Node& v = kv.second;
            if (key == "name") {
                c.name = src.scalar(v, key);
            } else if (key == "kernel") {
                c.kernel = src.scalar(v, key);
            } else if (key == "initrd") {
                c.initrd = src.scalar(v, key);
            } else if (key == "cmdline") {
                c.cmdline = src.scalar(v, key);
            } else if (key == "cpus") {
                c.cpus = src.number(v, key, 1, kMaxVcpus);
            } else if (key == "memory") {
                c.memory = src.at(v, [&] { return parse_size(src.scalar(v, key), "memory"); });
            } else if (key == "hugepages") {
                c.hugepages = src.boolean(v, key);
            } else if (key == "serial") {
                c.serial = src.at(v, [&] { return parse_serial(src.scalar(v, key), "serial"); });
            } else if (key == "log_level") {
                c.log_level = src.scalar(v, key);
            } else {
                src.fail(kv.first, "unknown setting '" + key +
                                       "' (known: name, kernel, initrd, cmdline, cpus, memory, "
                                       "hugepages, serial, log_level)");
            }
        }
    } catch (const YAML::Exception& e) {
        throw ConfigError(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
    return c;
}

VmConfig load_vm_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw ConfigError(path + ": cannot read the VM config: " + std::strerror(errno));
    }
    std::stringstream text;
    text << in.rdbuf();
    return parse_vm_config(text.str(), path);
}

void validate_vm_config(const VmConfig& c) {
    if (c.kernel.empty()) {
        throw ConfigError("no kernel given (--kernel FILE or 'kernel:' in the config)");
    }
    if (c.cpus < 1 || c.cpus > kMaxVcpus) {
        throw ConfigError("cpus must be from 1 to " + std::to_string(kMaxVcpus));
    }
    if (c.memory < kMinMemory) {
        throw ConfigError("memory must be at least " + std::to_string(kMinMemory >> 20) + " MiB");
    }
    if (c.memory % 4096 != 0) {
        throw ConfigError("memory must be a whole number of 4 KiB pages");
    }
    if (c.name.empty() || c.name.size() > 64) {
        throw ConfigError("name must be 1 to 64 characters");
    }
}

}  // namespace conduit::vmm
