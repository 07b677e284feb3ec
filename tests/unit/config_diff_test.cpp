// The config as the control plane changes it: the new keys and their errors, writing it
// back to YAML (read back equal), and the differences `conduitctl apply` applies.
#include "control/config_diff.h"

#include <gtest/gtest.h>

#include "control/config.h"

namespace conduit::control {
namespace {

const char* const kBase = R"(conduitd:
  file_prefix: t1
  workers: [1]
control:
  socket: /run/t/ctl.sock
  metrics: 127.0.0.1:9999
bridges:
  - name: br0
    mac_aging: 30
    static_macs:
      - {mac: "02:00:00:00:00:aa", port: g1}
    ports:
      - {name: g1, type: vhost-user, socket: /run/t/g1.sock}
      - {name: g2, type: vhost-user, socket: /run/t/g2.sock, mode: server, admin: down}
      - {name: up, type: ethdev, devargs: "net_af_packet0,iface=veth0", rx_descriptors: 512}
  - name: br1
    ports: []
)";

Config base() {
    return parse_config(kBase, "base.yaml");
}

std::vector<std::string> lines(const ConfigPlan& plan) {
    std::vector<std::string> out;
    for (const auto& c : plan.changes) {
        out.push_back(c.text);
    }
    return out;
}

void expect_error(const std::string& text, int line, const std::string& reason) {
    try {
        parse_config(text, "t.yaml");
        ADD_FAILURE() << "accepted a bad config; wanted: " << reason;
    } catch (const ConfigError& e) {
        const std::string what = e.what();
        EXPECT_EQ(what.rfind("t.yaml:" + std::to_string(line) + ": ", 0), 0u) << what;
        EXPECT_NE(what.find(reason), std::string::npos) << what;
    }
}

TEST(ConfigControl, NewKeysParse) {
    const Config c = base();
    EXPECT_EQ(c.control.socket, "/run/t/ctl.sock");
    EXPECT_EQ(c.control.metrics, "127.0.0.1:9999");
    EXPECT_EQ(c.control.stall_timeout_ms, 5000u);
    ASSERT_EQ(c.bridges[0].static_macs.size(), 1u);
    EXPECT_EQ(c.bridges[0].static_macs[0].mac, 0x0200000000aaULL);
    EXPECT_FALSE(c.bridges[0].ports[1].admin_up);
    EXPECT_TRUE(c.bridges[0].ports[0].admin_up);
    EXPECT_TRUE(c.bridges[1].ports.empty());
    EXPECT_TRUE(c.has_daemon_section && c.has_control_section);
    EXPECT_FALSE(parse_config("bridges: []\n", "x").has_control_section);
}

TEST(ConfigControl, NewKeysErrors) {
    expect_error("control:\n  socket: rel.sock\nbridges: []\n", 2, "absolute path");
    expect_error("control:\n  metrics: localhost\nbridges: []\n", 2, "IPV4:PORT");
    expect_error("control:\n  metrics: 1.2.3.4:70000\nbridges: []\n", 2, "IPV4:PORT");
    expect_error("control:\n  sockett: /x\nbridges: []\n", 2, "unknown key 'sockett'");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n      - {name: p, type: vhost-user, socket: /a, "
        "admin: off}\n",
        4, "admin must be 'up' or 'down'");
    expect_error(
        "bridges:\n  - name: b\n    static_macs:\n      - {mac: \"01:00:00:00:00:01\", port: p}\n",
        4, "not a unicast MAC");
    expect_error(
        "bridges:\n  - name: b\n    static_macs:\n      - {mac: \"02:00:00:00:00:01\", port: p}\n",
        4, "names port 'p', which is not a port of bridge 'b'");
    expect_error(
        "bridges:\n  - name: b\n    static_macs:\n      - {mac: \"02:00:00:00:00:01\", port: p}\n"
        "      - {mac: \"02:00:00:00:00:01\", port: p}\n    ports:\n"
        "      - {name: p, type: vhost-user, socket: /a}\n",
        5, "listed twice");
    expect_error("bridges: 3\n", 1, "'bridges' must be a list");
}

TEST(ConfigWriter, ReadsBackEqual) {
    const Config c = base();
    const std::string yaml = config_to_yaml(c, "a header\nof two lines");
    EXPECT_EQ(yaml.rfind("# a header\n# of two lines\n", 0), 0u);
    const Config again = parse_config(yaml, "again.yaml");
    EXPECT_TRUE(diff_configs(c, again).empty()) << diff_configs(c, again).text() << yaml;
    EXPECT_EQ(config_to_yaml(again), config_to_yaml(c));
    EXPECT_EQ(again.bridges[0].ports[2].devargs, "net_af_packet0,iface=veth0");
    EXPECT_EQ(again.bridges[0].ports[2].rx_descriptors, 512);
}

TEST(ConfigWriter, QuotesWhatYamlWouldMisread) {
    Config c;
    c.bridges.push_back(BridgeConfig{});
    c.bridges[0].name = "b";
    PortConfig p;
    p.name = "p";
    p.socket = "/tmp/odd dir/\"q\": #x.sock";
    c.bridges[0].ports.push_back(p);
    const Config again = parse_config(config_to_yaml(c), "x.yaml");
    EXPECT_EQ(again.bridges[0].ports[0].socket, p.socket);
    EXPECT_TRUE(parse_config(config_to_yaml(Config{}), "empty.yaml").bridges.empty());
}

TEST(ConfigDiff, NoChangesBetweenEqualConfigs) {
    const ConfigPlan plan = diff_configs(base(), base());
    EXPECT_TRUE(plan.empty());
    EXPECT_EQ(plan.text(), "no changes\n");
}

TEST(ConfigDiff, AddsRemovesAndChangesInOrder) {
    const Config from = base();
    Config to = base();
    // br0: g1 re-created (queues), g2 admin up, uplink removed, g3 added, aging changed,
    // static MAC moved to g3; br1 removed; br2 added with a port.
    BridgeConfig& br0 = to.bridges[0];
    br0.mac_aging_ms = 60'000;
    br0.ports[0].queues = 2;
    br0.ports[1].admin_up = true;
    br0.ports.pop_back();
    PortConfig g3;
    g3.name = "g3";
    g3.socket = "/run/t/g3.sock";
    br0.ports.push_back(g3);
    br0.static_macs[0].port = "g3";
    to.bridges.pop_back();
    BridgeConfig br2;
    br2.name = "br2";
    PortConfig g4 = g3;
    g4.name = "g4";
    g4.socket = "/run/t/g4.sock";
    br2.ports.push_back(g4);
    to.bridges.push_back(br2);
    to.daemon.log_level = "debug";

    const ConfigPlan plan = diff_configs(from, to);
    EXPECT_TRUE(plan.restart_required.empty());
    const std::vector<std::string> expected = {
        "- port br0/up: ethdev net_af_packet0,iface=veth0, 1 queue, 512/1024 descriptors",
        "- bridge br1 (mac_aging 300s, mac_table_size 8192)",
        "~ port br0/g1: vhost-user /run/t/g1.sock client, 1 queue -> vhost-user /run/t/g1.sock "
        "client, 2 queues (re-created; its guest reconnects)",
        "~ port br0/g2: admin down -> up",
        "~ bridge br0: mac_aging 30s, mac_table_size 8192 -> mac_aging 60s, mac_table_size 8192",
        "~ conduitd.log_level: info -> debug",
        "+ bridge br2 (mac_aging 300s, mac_table_size 8192)",
        "+ port br0/g3: vhost-user /run/t/g3.sock client, 1 queue",
        "+ port br2/g4: vhost-user /run/t/g4.sock client, 1 queue",
        "+ mac br0 02:00:00:00:00:aa -> g3 (static)",
    };
    EXPECT_EQ(lines(plan), expected) << plan.text();
}

TEST(ConfigDiff, RecreatedPortGetsItsStaticMacsBack) {
    const Config from = base();
    Config to = base();
    to.bridges[0].ports[0].socket = "/run/t/other.sock";
    const auto l = lines(diff_configs(from, to));
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[1], "+ mac br0 02:00:00:00:00:aa -> g1 (static)");
}

TEST(ConfigDiff, MtuAndOffloadsRecreateThePort) {
    const Config from = base();
    Config to = base();
    to.bridges[0].ports[0].mtu = 9000;
    to.bridges[0].ports[0].offloads = false;
    const auto l = lines(diff_configs(from, to));
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[0],
              "~ port br0/g1: vhost-user /run/t/g1.sock client, 1 queue -> vhost-user "
              "/run/t/g1.sock client, 1 queue, mtu 9000, offloads off (re-created; its guest "
              "reconnects)");
    // And both survive a save.
    const Config again = parse_config(config_to_yaml(to), "again.yaml");
    EXPECT_EQ(again.bridges[0].ports[0].mtu, 9000u);
    EXPECT_FALSE(again.bridges[0].ports[0].offloads);
    EXPECT_TRUE(diff_configs(to, again).empty());
}

TEST(ConfigDiff, PortMovingToAnotherBridge) {
    const Config from = base();
    Config to = base();
    to.bridges[1].ports.push_back(to.bridges[0].ports[1]);
    to.bridges[0].ports.erase(to.bridges[0].ports.begin() + 1);
    const auto l = lines(diff_configs(from, to));
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[0], "- port br0/g2: moves to br1");
    EXPECT_EQ(l[1].rfind("+ port br1/g2:", 0), 0u);
}

TEST(ConfigDiff, StartOnlySettingsAreListed) {
    const Config from = base();
    Config to = base();
    to.daemon.worker_cpus = {0, 1};
    to.control.metrics = "off";
    const ConfigPlan plan = diff_configs(from, to);
    EXPECT_TRUE(plan.changes.empty());
    ASSERT_EQ(plan.restart_required.size(), 2u);
    EXPECT_EQ(plan.restart_required[0], "conduitd.workers: [1] -> [0, 1]");
    EXPECT_EQ(plan.restart_required[1], "control.metrics: 127.0.0.1:9999 -> off");
    EXPECT_NE(plan.text().find("! conduitd.workers"), std::string::npos);
}

TEST(ConfigValidate, RuntimeItemsHaveNoLine) {
    Config c = base();
    PortConfig dup;
    dup.name = "g9";
    dup.socket = "/run/t/g1.sock";  // g1's
    c.bridges[1].ports.push_back(dup);
    try {
        validate_config(c);
        ADD_FAILURE();
    } catch (const ConfigError& e) {
        EXPECT_STREQ(e.what(), "socket '/run/t/g1.sock' is used by two ports");
    }
    PortConfig bad;
    bad.name = "x-y";
    bad.socket = "/s";
    EXPECT_TRUE(port_problem(bad).has_value());
    bad.name = "xy";
    EXPECT_FALSE(port_problem(bad).has_value());
    bad.queues = 17;
    EXPECT_TRUE(port_problem(bad).has_value());
}

}  // namespace
}  // namespace conduit::control
