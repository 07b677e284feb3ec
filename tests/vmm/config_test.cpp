// VM config files: settings, defaults, and errors with file, line and reason.
#include <gtest/gtest.h>

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
