#include "vmm/vm_config.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdio>
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
    // Runs `parse` and turns a ConfigError without a location into one at `n`; `parse`
    // must not call scalar(), number() or boolean(), whose errors have a location already.
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

// Applies one card setting (from YAML or --net) to `card`; throws ConfigError(reason).
void apply_net_setting(NetCardConfig& card, const std::string& key, const std::string& value) {
    const auto number = [&](unsigned min, unsigned max) {
        std::size_t used = 0;
        unsigned long v = 0;
        try {
            v = std::stoul(value, &used, 10);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != value.size() || value[0] == '-' || v < min || v > max) {
            throw ConfigError("net " + key + " must be from " + std::to_string(min) + " to " +
                              std::to_string(max) + ", not '" + value + "'");
        }
        return static_cast<unsigned>(v);
    };
    if (key == "socket") {
        if (value.empty()) {
            throw ConfigError("net socket must not be empty");
        }
        card.socket = value;
    } else if (key == "mode") {
        if (value != "server" && value != "client") {
            throw ConfigError("net mode must be server or client, not '" + value + "'");
        }
        card.client = value == "client";
    } else if (key == "mac") {
        card.mac = parse_mac(value, "net mac");
    } else if (key == "mtu") {
        card.mtu = static_cast<uint16_t>(number(kMinMtu, kMaxMtu));
    } else if (key == "offloads") {
        if (value == "on" || value == "true" || value == "yes") {
            card.offloads = true;
        } else if (value == "off" || value == "false" || value == "no") {
            card.offloads = false;
        } else {
            throw ConfigError("net offloads must be on or off, not '" + value + "'");
        }
    } else if (key == "queue_size") {
        const unsigned n = number(64, 32768);
        if ((n & (n - 1)) != 0) {
            throw ConfigError("net queue_size must be a power of two, not " + value);
        }
        card.queue_size = static_cast<uint16_t>(n);
    } else {
        throw ConfigError("unknown net setting '" + key +
                          "' (known: socket, mode, mac, mtu, offloads, queue_size)");
    }
}

}  // namespace

std::array<uint8_t, 6> parse_mac(const std::string& text, const std::string& where) {
    std::array<uint8_t, 6> mac{};
    unsigned v[6];
    char tail;
    // sscanf's %x alone would take " 5", "+5", "-1" or "0x" as an octet: check the shape
    // (two hex digits, a colon, ...) first, so that such text is refused, not misread.
    bool shaped = text.size() == 17;
    for (size_t i = 0; shaped && i < text.size(); ++i) {
        shaped =
            i % 3 == 2 ? text[i] == ':' : std::isxdigit(static_cast<unsigned char>(text[i])) != 0;
    }
    if (!shaped || std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2],
                               &v[3], &v[4], &v[5], &tail) != 6) {
        throw ConfigError(where + ": '" + text + "' is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    for (int i = 0; i < 6; ++i) {
        mac[i] = static_cast<uint8_t>(v[i]);
    }
    if (mac[0] & 1) {
        throw ConfigError(where + ": " + text + " is a multicast address");
    }
    if (mac == std::array<uint8_t, 6>{}) {
        throw ConfigError(where + ": the all-zero MAC is not a station address");
    }
    return mac;
}

std::array<uint8_t, 6> default_mac(const std::string& vm_name, size_t index) {
    // FNV-1a of the name: stable across runs, different across VMs.
    uint32_t h = 2166136261u;
    for (const char c : vm_name) {
        h = (h ^ static_cast<uint8_t>(c)) * 16777619u;
    }
    return {0x52,
            0x54,
            static_cast<uint8_t>(h >> 16),
            static_cast<uint8_t>(h >> 8),
            static_cast<uint8_t>(h),
            static_cast<uint8_t>(index)};
}

NetCardConfig parse_net_spec(const std::string& spec, const std::string& vm_name, size_t index) {
    NetCardConfig card;
    card.name = "net" + std::to_string(index);
    size_t pos = 0;
    while (pos <= spec.size()) {
        const size_t comma = spec.find(',', pos);
        const std::string item =
            spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        const size_t eq = item.find('=');
        if (eq == std::string::npos) {
            throw ConfigError("--net: '" + item + "' is not key=value");
        }
        apply_net_setting(card, item.substr(0, eq), item.substr(eq + 1));
        if (comma == std::string::npos) {
            break;
        }
        pos = comma + 1;
    }
    if (card.socket.empty()) {
        throw ConfigError("--net: a card needs socket=PATH");
    }
    (void)vm_name;  // the default MAC is filled in once the VM's name is final
    return card;
}

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
                // scalar() outside at(): its error already names the line (once is enough).
                const std::string text = src.scalar(v, key);
                c.memory = src.at(v, [&] { return parse_size(text, "memory"); });
            } else if (key == "hugepages") {
                c.hugepages = src.boolean(v, key);
            } else if (key == "serial") {
                const std::string text = src.scalar(v, key);
                c.serial = src.at(v, [&] { return parse_serial(text, "serial"); });
            } else if (key == "log_level") {
                c.log_level = src.scalar(v, key);
            } else if (key == "net") {
                if (!v.IsSequence()) {
                    src.fail(v, "'net' must be a list of cards");
                }
                for (const auto& item : v) {
                    if (!item.IsMap()) {
                        src.fail(item, "each net card is a mapping (socket, mode, mac, ...)");
                    }
                    NetCardConfig card;
                    card.name = "net" + std::to_string(c.nets.size());
                    for (const auto& setting : item) {
                        if (!setting.first.IsScalar()) {
                            src.fail(setting.first, "keys must be plain names");
                        }
                        const std::string k = setting.first.Scalar();
                        const std::string value = src.scalar(setting.second, k);
                        src.at(setting.second, [&] { apply_net_setting(card, k, value); });
                    }
                    if (card.socket.empty()) {
                        src.fail(item, "a net card needs 'socket'");
                    }
                    c.nets.push_back(card);
                }
            } else {
                src.fail(kv.first, "unknown setting '" + key +
                                       "' (known: name, kernel, initrd, cmdline, cpus, memory, "
                                       "hugepages, serial, log_level, net)");
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

void fill_default_macs(VmConfig& c) {
    for (size_t i = 0; i < c.nets.size(); ++i) {
        if (c.nets[i].mac == std::array<uint8_t, 6>{}) {
            c.nets[i].mac = default_mac(c.name, i);
        }
    }
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
    if (c.hugepages && c.memory % (2ull << 20) != 0) {
        throw ConfigError("with hugepages the memory size must be a multiple of 2 MiB, not " +
                          std::to_string(c.memory) + " bytes");
    }
    if (c.name.empty() || c.name.size() > 64) {
        throw ConfigError("name must be 1 to 64 characters");
    }
    if (c.nets.size() > 16) {
        throw ConfigError("at most 16 net cards per VM");
    }
    for (size_t i = 0; i < c.nets.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
            if (c.nets[i].socket == c.nets[j].socket) {
                throw ConfigError(c.nets[i].name + " and " + c.nets[j].name +
                                  " use the same socket " + c.nets[i].socket);
            }
            if (c.nets[i].mac == c.nets[j].mac) {
                throw ConfigError(c.nets[i].name + " and " + c.nets[j].name + " have the same MAC");
            }
        }
    }
}

}  // namespace conduit::vmm
