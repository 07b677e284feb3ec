// control/config_writer: a Config back to YAML, for `conduitctl save` and `show config`.
#include <sstream>

#include "control/config.h"
#include "switch/types.h"

namespace conduit::control {

namespace {

// Plain scalars only for text that YAML cannot read as anything else; the rest quoted.
std::string scalar(const std::string& text) {
    bool plain = !text.empty();
    for (const char c : text) {
        const bool safe = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '/' ||
                          c == '.' || c == '-';
        plain = plain && safe;
    }
    // Words YAML would turn into booleans, nulls or numbers stay strings.
    static const char* const kSpecial[] = {"true", "false", "yes", "no", "on", "off", "null", "~"};
    for (const char* word : kSpecial) {
        plain = plain && text != word;
    }
    plain = plain && !std::isdigit(static_cast<unsigned char>(text[0])) && text[0] != '-' &&
            text[0] != '.';
    if (plain) {
        return text;
    }
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char esc[8];
            std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned char>(c));
            out += esc;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

}  // namespace

std::string config_to_yaml(const Config& c, const std::string& header) {
    std::ostringstream y;
    std::istringstream lines(header);
    for (std::string line; std::getline(lines, line);) {
        y << "# " << line << '\n';
    }
    const DaemonConfig& d = c.daemon;
    y << "conduitd:\n";
    y << "  file_prefix: " << scalar(d.file_prefix) << '\n';
    y << "  main_cpu: " << d.main_cpu << '\n';
    y << "  workers: [";
    for (std::size_t i = 0; i < d.worker_cpus.size(); ++i) {
        y << (i ? ", " : "") << d.worker_cpus[i];
    }
    y << "]\n";
    y << "  hugepages: " << (d.hugepages ? "true" : "false") << '\n';
    y << "  memory_mb: " << d.memory_mb << '\n';
    y << "  mbufs: " << d.mbufs << '\n';
    y << "  mbuf_cache: " << d.mbuf_cache << '\n';
    y << "  idle_backoff: " << (d.idle_backoff ? "true" : "false") << '\n';
    y << "  worker_nice: " << d.worker_nice << '\n';
    y << "  log_level: " << d.log_level << '\n';
    const ControlConfig& ctl = c.control;
    y << "control:\n";
    y << "  socket: " << scalar(ctl.socket) << '\n';
    if (!ctl.socket_group.empty()) {
        y << "  socket_group: " << scalar(ctl.socket_group) << '\n';
    }
    y << "  metrics: " << scalar(ctl.metrics) << '\n';
    y << "  stall_timeout_ms: " << ctl.stall_timeout_ms << '\n';
    y << "  max_clients: " << ctl.max_clients << '\n';
    y << "bridges:" << (c.bridges.empty() ? " []" : "") << '\n';
    for (const auto& b : c.bridges) {
        y << "  - name: " << b.name << '\n';
        y << "    mac_aging: " << b.mac_aging_ms / 1000 << '\n';
        y << "    mac_table_size: " << b.mac_table_size << '\n';
        if (!b.static_macs.empty()) {
            y << "    static_macs:\n";
            for (const auto& m : b.static_macs) {
                y << "      - {mac: \"" << sw::mac_to_string(m.mac) << "\", port: " << m.port
                  << "}\n";
            }
        }
        y << "    ports:" << (b.ports.empty() ? " []" : "") << '\n';
        for (const auto& p : b.ports) {
            y << "      - name: " << p.name << '\n';
            y << "        type: " << port_type_name(p.type) << '\n';
            if (!p.admin_up) {
                y << "        admin: down\n";
            }
            y << "        mtu: " << p.mtu << '\n';
            y << "        offloads: " << (p.offloads ? "true" : "false") << '\n';
            if (p.type == PortType::kVhostUser) {
                y << "        socket: " << scalar(p.socket) << '\n';
                y << "        mode: " << vhost_mode_name(p.mode) << '\n';
                y << "        queues: " << p.queues << '\n';
            } else {
                y << "        devargs: " << scalar(p.devargs) << '\n';
                y << "        queues: " << p.queues << '\n';
                y << "        rx_descriptors: " << p.rx_descriptors << '\n';
                y << "        tx_descriptors: " << p.tx_descriptors << '\n';
            }
        }
    }
    return y.str();
}

}  // namespace conduit::control
