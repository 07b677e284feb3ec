#include "control/config.h"

#include <gtest/gtest.h>

#include <fstream>

namespace conduit::control {
namespace {

const char* const kGood = R"(conduitd:
  file_prefix: t1
  workers: [1]
  hugepages: false
bridges:
  - name: br0
    mac_aging: 30
    mac_table_size: 100
    ports:
      - {name: g1, type: vhost-user, socket: /run/c/g1.sock}
      - {name: g2, type: vhost-user, socket: /run/c/g2.sock, mode: server, queues: 2}
      - {name: up, type: ethdev, devargs: "net_af_packet0,iface=veth0"}
  - name: br1
    ports:
      - {name: g3, type: vhost-user, socket: /run/c/g3.sock}
)";

// Expects the config to be rejected with "t.yaml:LINE: ..." containing `reason`.
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

TEST(Config, ParsesAGoodConfig) {
    const Config c = parse_config(kGood, "t.yaml");
    EXPECT_EQ(c.daemon.file_prefix, "t1");
    EXPECT_FALSE(c.daemon.hugepages);
    ASSERT_EQ(c.bridges.size(), 2u);
    EXPECT_EQ(c.bridges[0].mac_aging_ms, 30'000u);
    EXPECT_EQ(c.bridges[0].mac_table_size, 100u);
    ASSERT_EQ(c.bridges[0].ports.size(), 3u);
    EXPECT_EQ(c.bridges[0].ports[0].mode, VhostMode::kClient);  // the default
    EXPECT_EQ(c.bridges[0].ports[1].mode, VhostMode::kServer);
    EXPECT_EQ(c.bridges[0].ports[1].queues, 2);
    EXPECT_EQ(c.bridges[0].ports[2].type, PortType::kEthdev);
    EXPECT_EQ(c.bridges[0].ports[2].devargs, "net_af_packet0,iface=veth0");
    EXPECT_EQ(c.bridges[1].mac_aging_ms, 300'000u);  // default 300 s
    EXPECT_EQ(c.port_count(), 4u);
}

TEST(Config, ShippedDefaultIsValid) {
    const Config c = load_config(CONDUIT_SOURCE_DIR "/configs/default.yaml");
    EXPECT_GE(c.port_count(), 3u);
}

TEST(Config, MissingFile) {
    EXPECT_THROW(load_config("/nonexistent/conduit.yaml"), ConfigError);
}

TEST(Config, Errors) {
    expect_error("bridges: [", 1, "not valid YAML");
    expect_error("conduitd:\n  workers: [1]\n", 1, "'bridges' must be a list");
    expect_error("bridgs: []\n", 1, "unknown key 'bridgs'");
    expect_error("conduitd:\n  workers: [1, x]\nbridges:\n  - name: b\n", 2, "whole number");
    expect_error("conduitd:\n  workers: [999]\nbridges:\n  - name: b\n", 2, "between");
    expect_error("bridges:\n  - name: b\n    ports:\n      - name: p\n        type: tap\n", 5,
                 "unknown port type 'tap'");
    expect_error("bridges:\n  - name: b\n    ports:\n      - name: p\n        type: vhost-user\n",
                 4, "has no 'socket'");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n      - {name: p, type: vhost-user, socket: "
        "rel.sock}\n",
        4, "absolute path");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: p, type: vhost-user, socket: /a, mode: both}\n",
        4, "mode must be");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: p, type: vhost-user, socket: /a}\n"
        "      - {name: p, type: vhost-user, socket: /b}\n",
        5, "port name 'p' is used twice");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: p, type: vhost-user, socket: /a}\n"
        "      - {name: q, type: vhost-user, socket: /a}\n",
        5, "used by two ports");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: u1, type: ethdev, devargs: net_null0}\n"
        "      - {name: u2, type: ethdev, devargs: net_null1}\n",
        5, "only one uplink");
    expect_error("bridges:\n  - name: b\n  - name: b\n", 3, "bridge name 'b' is used twice");
    expect_error("bridges:\n  - name: bad-name\n", 2, "letters, digits or '_'");
    expect_error("bridges:\n  - name: b\n    mac_aging: 0\n", 3, "between 1 and");
    expect_error("conduitd:\n  hugepages: maybe\nbridges:\n  - name: b\n", 2, "true or false");
}

TEST(Config, MtuAndOffloads) {
    const Config c = parse_config(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: g1, type: vhost-user, socket: /a}\n"
        "      - {name: g2, type: vhost-user, socket: /b, mtu: 9000, offloads: false}\n"
        "      - {name: up, type: ethdev, devargs: net_null0, mtu: 1400, offloads: off}\n",
        "t.yaml");
    const auto& ports = c.bridges[0].ports;
    EXPECT_EQ(ports[0].mtu, 1500u);  // the defaults
    EXPECT_TRUE(ports[0].offloads);
    EXPECT_EQ(ports[1].mtu, 9000u);
    EXPECT_FALSE(ports[1].offloads);
    EXPECT_EQ(ports[2].mtu, 1400u);
    EXPECT_FALSE(ports[2].offloads);
    // Either changes how the guest negotiates or how the device is set up: re-created.
    PortConfig other = ports[0];
    other.mtu = 9000;
    EXPECT_FALSE(ports[0].same_endpoint(other));
    other = ports[0];
    other.offloads = false;
    EXPECT_FALSE(ports[0].same_endpoint(other));
    other = ports[0];
    other.mtu = 67;
    EXPECT_NE(port_problem(other), std::nullopt);
}

TEST(Config, MtuAndOffloadsErrors) {
    expect_error(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: p, type: vhost-user, socket: /a, mtu: 67}\n",
        4, "mtu must be between 68 and 9216");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: p, type: ethdev, devargs: net_null0, mtu: 9217}\n",
        4, "mtu must be between 68 and 9216");
    expect_error(
        "bridges:\n  - name: b\n    ports:\n"
        "      - {name: p, type: vhost-user, socket: /a, offloads: tso}\n",
        4, "offloads must be true or false");
}

}  // namespace
}  // namespace conduit::control
