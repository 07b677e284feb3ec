// VM config files: settings, defaults, and errors with file, line and reason.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <set>
#include <string>

#include "vmm/util/error.h"
#include "vmm/vm_config.h"

using namespace conduit::vmm;

namespace {
std::string error_of(const std::string& text) {
    try {
        parse_vm_config(text, "vm.yaml");
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST(VmConfig, ReadsEverySetting) {
    const VmConfig c = parse_vm_config(
        "name: router1\nkernel: /boot/vmlinuz\ninitrd: /tmp/i.gz\ncmdline: console=ttyS0 quiet\n"
        "cpus: 4\nmemory: 2G\nhugepages: true\nserial: file:/tmp/console.log\nlog_level: debug\n",
        "vm.yaml");
    EXPECT_EQ(c.name, "router1");
    EXPECT_EQ(c.kernel, "/boot/vmlinuz");
    EXPECT_EQ(c.initrd, "/tmp/i.gz");
    EXPECT_EQ(c.cmdline, "console=ttyS0 quiet");
    EXPECT_EQ(c.cpus, 4u);
    EXPECT_EQ(c.memory, 2ull << 30);
    EXPECT_TRUE(c.hugepages);
    EXPECT_EQ(c.serial.kind, SerialConfig::Kind::kFile);
    EXPECT_EQ(c.serial.path, "/tmp/console.log");
    EXPECT_EQ(c.log_level, "debug");
}

TEST(VmConfig, Defaults) {
    const VmConfig c = parse_vm_config("kernel: k\n", "vm.yaml");
    EXPECT_EQ(c.cpus, 1u);
    EXPECT_EQ(c.memory, 512ull << 20);
    EXPECT_FALSE(c.hugepages);
    EXPECT_EQ(c.serial.kind, SerialConfig::Kind::kStdio);
    EXPECT_EQ(c.cmdline, "console=ttyS0");
}

TEST(VmConfig, ErrorsNameFileLineAndReason) {
    EXPECT_EQ(error_of("kernel: k\ncpus: 0\n"),
              "vm.yaml:2: 'cpus' must be a whole number from 1 to 254, not '0'");
    EXPECT_EQ(error_of("kernel: k\n\nmemroy: 1G\n").rfind("vm.yaml:3: unknown setting 'memroy'", 0),
              0u);
    EXPECT_EQ(error_of("memory: 12Q\n").rfind("vm.yaml:1: memory: unknown unit", 0), 0u);
    EXPECT_EQ(error_of("hugepages: maybe\n"),
              "vm.yaml:1: 'hugepages' must be true or false, not 'maybe'");
    EXPECT_EQ(error_of("serial: tty\n").rfind("vm.yaml:1: serial: 'tty' is not a console", 0), 0u);
    EXPECT_EQ(error_of("kernel: [a, b]\n"), "vm.yaml:1: 'kernel' must be a single value");
    EXPECT_EQ(error_of("kernel: k\ncpus: [\n").rfind("vm.yaml:", 0), 0u);
    EXPECT_NE(error_of("kernel: k\ncpus: [\n").find("not valid YAML"), std::string::npos);
    EXPECT_EQ(error_of("- a\n- b\n").rfind("vm.yaml:1: a VM config is a mapping", 0), 0u);
    EXPECT_EQ(error_of("? [a]\n: b\n").rfind("vm.yaml:1: keys must be plain names", 0), 0u);
}

TEST(VmConfig, ValidationAfterMerging) {
    VmConfig c;
    EXPECT_THROW(validate_vm_config(c), ConfigError) << "no kernel";
    c.kernel = "k";
    EXPECT_NO_THROW(validate_vm_config(c));
    c.memory = 32ull << 20;
    EXPECT_THROW(validate_vm_config(c), ConfigError) << "too little memory";
    c.memory = (64ull << 20) + 1;
    EXPECT_THROW(validate_vm_config(c), ConfigError) << "not whole pages";
}

TEST(VmConfig, SerialSpecs) {
    EXPECT_EQ(parse_serial("none", "x").kind, SerialConfig::Kind::kNone);
    EXPECT_EQ(parse_serial("socket:/run/c.sock", "x").path, "/run/c.sock");
    EXPECT_THROW(parse_serial("file:", "x"), ConfigError);
}

// ------------------------------------------------------------------------- net cards

namespace {
const std::array<uint8_t, 6> kMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
}  // namespace

TEST(NetCards, YamlListWithEverySettingAndDefaults) {
    const VmConfig c = parse_vm_config(
        "kernel: k\n"
        "net:\n"
        "  - socket: /run/conduit/vm1-0.sock\n"
        "    mode: client\n"
        "    mac: 52:54:00:12:34:56\n"
        "    mtu: 9000\n"
        "    offloads: on\n"
        "    queue_size: 1024\n"
        "  - socket: /run/conduit/vm1-1.sock\n",
        "vm.yaml");
    ASSERT_EQ(c.nets.size(), 2u);
    const NetCardConfig& a = c.nets[0];
    EXPECT_EQ(a.name, "net0");
    EXPECT_EQ(a.socket, "/run/conduit/vm1-0.sock");
    EXPECT_TRUE(a.client);
    EXPECT_EQ(a.mac, kMac);
    EXPECT_EQ(a.mtu, 9000);
    EXPECT_TRUE(a.offloads);
    EXPECT_EQ(a.queue_size, 1024);
    const NetCardConfig& b = c.nets[1];
    EXPECT_EQ(b.name, "net1");
    EXPECT_FALSE(b.client) << "server mode by default: conduitd's client ports connect";
    EXPECT_EQ(b.mac, (std::array<uint8_t, 6>{})) << "filled in once the VM's name is final";
    EXPECT_EQ(b.mtu, 0) << "no MTU feature by default";
    EXPECT_FALSE(b.offloads);
    EXPECT_EQ(b.queue_size, 256);
    EXPECT_TRUE(parse_vm_config("kernel: k\nnet: []\n", "vm.yaml").nets.empty());
}

TEST(NetCards, YamlErrorsNameFileLineAndReason) {
    EXPECT_EQ(error_of("kernel: k\nnet:\n  socket: /a\n"),
              "vm.yaml:3: 'net' must be a list of cards");
    EXPECT_EQ(error_of("net:\n  - /a.sock\n"),
              "vm.yaml:2: each net card is a mapping (socket, mode, mac, ...)");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n  - mode: client\n    mtu: 1500\n"),
              "vm.yaml:3: a net card needs 'socket'");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    mtu: 10\n"),
              "vm.yaml:3: net mtu must be from 68 to 9000, not '10'");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    mtu: 9001\n"),
              "vm.yaml:3: net mtu must be from 68 to 9000, not '9001'");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n  - socket: /b\n\n    mac: 01:00:5e:00:00:01\n"),
              "vm.yaml:5: net mac: 01:00:5e:00:00:01 is a multicast address");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    mode: both\n"),
              "vm.yaml:3: net mode must be server or client, not 'both'");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    offloads: maybe\n"),
              "vm.yaml:3: net offloads must be on or off, not 'maybe'");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    queue_size: 100\n"),
              "vm.yaml:3: net queue_size must be a power of two, not 100");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    queue_size: 32\n"),
              "vm.yaml:3: net queue_size must be from 64 to 32768, not '32'");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    spped: 10\n")
                  .rfind("vm.yaml:3: unknown net setting 'spped' (known: socket, mode, mac,", 0),
              0u);
    EXPECT_EQ(error_of("net:\n  - socket: ''\n"), "vm.yaml:2: net socket must not be empty");
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    ? [x]\n    : 1\n"),
              "vm.yaml:3: keys must be plain names");
    // A non-scalar value: one location, once.
    EXPECT_EQ(error_of("net:\n  - socket: /a\n    mtu: [1500]\n"),
              "vm.yaml:3: 'mtu' must be a single value");
    EXPECT_EQ(error_of("kernel: k\nmemory: [1G]\n"), "vm.yaml:2: 'memory' must be a single value");
    EXPECT_EQ(error_of("kernel: k\nserial: {file: x}\n"),
              "vm.yaml:2: 'serial' must be a single value");
}

TEST(NetCards, CommandLineSpecs) {
    const NetCardConfig c = parse_net_spec(
        "socket=/run/a.sock,mac=52:54:00:12:34:56,mode=client,mtu=1500,offloads=off,queue_size=512",
        "vm1", 2);
    EXPECT_EQ(c.name, "net2");
    EXPECT_EQ(c.socket, "/run/a.sock");
    EXPECT_EQ(c.mac, kMac);
    EXPECT_TRUE(c.client);
    EXPECT_EQ(c.mtu, 1500);
    EXPECT_FALSE(c.offloads);
    EXPECT_EQ(c.queue_size, 512);

    const NetCardConfig d = parse_net_spec("socket=/run/b.sock", "vm1", 0);
    EXPECT_EQ(d.name, "net0");
    EXPECT_FALSE(d.client);
    EXPECT_EQ(d.mtu, 0);
    EXPECT_EQ(d.queue_size, 256);
    EXPECT_EQ(parse_net_spec("socket=/a=b", "vm", 0).socket, "/a=b") << "split at the first '='";
    EXPECT_TRUE(parse_net_spec("mode=server,socket=/s,offloads=on", "vm", 0).offloads);
}

TEST(NetCards, CommandLineSpecErrors) {
    const auto error = [](const std::string& spec) {
        try {
            parse_net_spec(spec, "vm", 0);
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_EQ(error("mac=52:54:00:12:34:56"), "--net: a card needs socket=PATH");
    EXPECT_EQ(error(""), "--net: '' is not key=value");
    EXPECT_EQ(error("/run/a.sock"), "--net: '/run/a.sock' is not key=value");
    EXPECT_EQ(error("socket=/a,,mtu=1500"), "--net: '' is not key=value");
    EXPECT_EQ(error("socket=/a,"), "--net: '' is not key=value");
    EXPECT_EQ(error("socket="), "net socket must not be empty");
    EXPECT_EQ(error("socket=/a,mtu=abc"), "net mtu must be from 68 to 9000, not 'abc'");
    EXPECT_EQ(error("socket=/a,mtu=-1500"), "net mtu must be from 68 to 9000, not '-1500'");
    EXPECT_EQ(error("socket=/a,mtu=1500x"), "net mtu must be from 68 to 9000, not '1500x'");
    EXPECT_EQ(error("socket=/a,queue_size=65536"),
              "net queue_size must be from 64 to 32768, not '65536'");
    EXPECT_EQ(error("socket=/a,mac=00:00:00:00:00:00"),
              "net mac: the all-zero MAC is not a station address");
    EXPECT_EQ(error("socket=/a,colour=blue").rfind("unknown net setting 'colour'", 0), 0u);
}

TEST(NetCards, ParseMacAcceptsUnicastInEitherCase) {
    EXPECT_EQ(parse_mac("52:54:00:12:34:56", "x"), kMac);
    EXPECT_EQ(parse_mac("52:54:00:AB:cd:Ef", "x"),
              (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}));
    EXPECT_EQ(parse_mac("02:00:00:00:00:01", "x")[0], 0x02) << "locally administered";
    EXPECT_EQ(parse_mac("fe:ff:ff:ff:ff:ff", "x")[5], 0xff);
}

TEST(NetCards, ParseMacRefusesMulticastZeroAndMalformed) {
    const auto error = [](const std::string& text) {
        try {
            parse_mac(text, "--net mac");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_EQ(error("01:00:5e:00:00:01"), "--net mac: 01:00:5e:00:00:01 is a multicast address");
    EXPECT_EQ(error("33:33:00:00:00:01"), "--net mac: 33:33:00:00:00:01 is a multicast address");
    EXPECT_EQ(error("ff:ff:ff:ff:ff:ff"), "--net mac: ff:ff:ff:ff:ff:ff is a multicast address")
        << "broadcast";
    EXPECT_EQ(error("00:00:00:00:00:00"), "--net mac: the all-zero MAC is not a station address");
    for (const char* bad : {
             "",                      // empty
             "52:54:00:12:34",        // five octets
             "52:54:00:12:34:56:78",  // seven
             "52:54:00:12:34:5",      // a short last octet
             "52:54:00:12:34:567",    // a long one
             "52-54-00-12-34-56",     // other separators
             "5254.0012.3456",        // Cisco style
             "525400123456",          // none
             "52:54:00:12:34:5g",     // not hex
             "52:54:00:12:34:56 ",    // trailing space
             " 52:54:00:12:34:5",     // leading space, still 17 characters
             "52:54:00:12:34: 5",     // space inside an octet
             "52:54:00:12:34:+5",     // a sign
             "+2:54:00:12:34:56",
             "52:54:00:12:-1:56",
             "0x:54:00:12:34:56",
             "52::54:00:12:34:5",
         }) {
        EXPECT_EQ(error(bad).rfind("--net mac: '" + std::string(bad) + "' is not a MAC address", 0),
                  0u)
            << "'" << bad << "' gave: " << error(bad);
    }
}

TEST(NetCards, DefaultMacsAreStableDistinctUnicastAndLocallyAdministered) {
    const auto a0 = default_mac("router1", 0);
    EXPECT_EQ(a0, default_mac("router1", 0)) << "the same across runs";
    std::set<std::array<uint8_t, 6>> seen;
    for (const char* name : {"vm", "vm1", "vm2", "router1", "router2", "a", "b"}) {
        for (size_t i = 0; i < 16; ++i) {
            const auto mac = default_mac(name, i);
            EXPECT_TRUE(seen.insert(mac).second) << name << " card " << i;
            EXPECT_EQ(mac[0] & 0x01, 0) << "unicast";
            EXPECT_EQ(mac[0] & 0x02, 0x02) << "locally administered";
            char text[18];
            std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1],
                          mac[2], mac[3], mac[4], mac[5]);
            EXPECT_EQ(parse_mac(text, "x"), mac) << "a MAC the config would accept";
        }
    }
}

TEST(NetCards, DefaultMacsFollowTheFinalNameAndKeepGivenOnes) {
    VmConfig c = parse_vm_config(
        "name: early\nkernel: k\nnet:\n  - socket: /a\n  - socket: /b\n    mac: 52:54:00:12:34:56\n"
        "  - socket: /c\n",
        "vm.yaml");
    c.name = "late";  // --name on the command line comes after the file
    fill_default_macs(c);
    EXPECT_EQ(c.nets[0].mac, default_mac("late", 0));
    EXPECT_EQ(c.nets[1].mac, kMac) << "given MACs stay";
    EXPECT_EQ(c.nets[2].mac, default_mac("late", 2));
    EXPECT_NO_THROW(validate_vm_config(c));
}

TEST(NetCards, ValidationRefusesSharedSocketsAndMacs) {
    const auto error = [](const VmConfig& c) {
        try {
            validate_vm_config(c);
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    VmConfig c;
    c.kernel = "k";
    c.nets.push_back(parse_net_spec("socket=/a,mac=52:54:00:00:00:01", c.name, 0));
    c.nets.push_back(parse_net_spec("socket=/b,mac=52:54:00:00:00:02", c.name, 1));
    EXPECT_EQ(error(c), "accepted");
    c.nets.push_back(parse_net_spec("socket=/a,mac=52:54:00:00:00:03", c.name, 2));
    EXPECT_EQ(error(c), "net2 and net0 use the same socket /a");
    c.nets[2] = parse_net_spec("socket=/c,mac=52:54:00:00:00:02", c.name, 2);
    EXPECT_EQ(error(c), "net2 and net1 have the same MAC");
    c.nets[2] = parse_net_spec("socket=/c,mac=52:54:00:00:00:03", c.name, 2);
    EXPECT_EQ(error(c), "accepted");

    VmConfig many;
    many.kernel = "k";
    for (size_t i = 0; i < 17; ++i) {
        many.nets.push_back(parse_net_spec("socket=/s" + std::to_string(i), many.name, i));
    }
    fill_default_macs(many);
    EXPECT_EQ(error(many), "at most 16 net cards per VM");
    many.nets.pop_back();
    EXPECT_EQ(error(many), "accepted") << "16 cards with default MACs";
}
