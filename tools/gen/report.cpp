#include "tools/gen/report.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace conduit::gen {

namespace {

using nlohmann::json;

json latency_json(const LatencySummary& l) {
    return {{"samples", l.samples}, {"min_us", l.min_us}, {"mean_us", l.mean_us},
            {"p50_us", l.p50_us},   {"p99_us", l.p99_us}, {"p99_9_us", l.p999_us},
            {"max_us", l.max_us}};
}

json phase_json(const PhaseResult& r, const Report& report) {
    json streams = json::array();
    for (const StreamResult& s : r.streams) {
        streams.push_back({{"name", s.name},
                           {"tx_port", report.ports[s.tx_port].name},
                           {"rx_port", report.ports[s.rx_port].name},
                           {"offered", s.offered},
                           {"sent", s.sent},
                           {"refused", s.refused},
                           {"received", s.received},
                           {"lost", s.lost},
                           {"duplicates", s.duplicates},
                           {"reordered", s.reordered},
                           {"misdelivered", s.misdelivered},
                           {"latency", latency_json(s.latency)}});
    }
    json ports = json::object();
    for (std::size_t i = 0; i < r.ports.size(); ++i) {
        const PortPhaseCounters& c = r.ports[i];
        ports[report.ports[i].name] = {
            {"tx_frames", c.tx_frames},    {"tx_bytes", c.tx_bytes},
            {"refused", c.refused},        {"rx_frames", c.rx_frames},
            {"rx_bytes", c.rx_bytes},      {"rx_stale", c.rx_stale},
            {"rx_foreign", c.rx_foreign},  {"tx_calls", c.tx_calls},
            {"rx_calls", c.rx_calls},      {"tx_calls_short", c.tx_calls_short},
            {"bad_entries", c.bad_entries}};
        if (report.ports[i].rx_queues > 1) {
            ports[report.ports[i].name]["rx_queue_frames"] = std::vector<uint64_t>(
                c.rx_queue_frames.begin(), c.rx_queue_frames.begin() + report.ports[i].rx_queues);
        }
    }
    return {{"label", r.label},
            {"size", r.size},
            {"mean_frame_bytes", r.mean_frame},
            {"target_pps", r.target_pps},
            {"tx_seconds", r.tx_seconds},
            {"offered_pps", r.offered_pps},
            {"sent_pps", r.sent_pps},
            {"rx_pps", r.rx_pps},
            {"rx_bits_per_s", r.rx_bits_per_s},
            {"offered", r.offered},
            {"sent", r.sent},
            {"refused", r.refused},
            {"received", r.received},
            {"lost", r.lost},
            {"loss_ratio", r.loss_ratio},
            {"duplicates", r.duplicates},
            {"reordered", r.reordered},
            {"misdelivered", r.misdelivered},
            {"stale", r.stale},
            {"foreign", r.foreign},
            {"backpressure", r.backpressure},
            {"generator_skipped", r.generator_skipped},
            {"generator_limited", r.generator_limited},
            {"generator_stalls", r.generator_stalls},
            {"generator_longest_stall_us", r.generator_longest_stall_us},
            {"generator_busy", r.generator_busy},
            {"cycles_per_frame", r.cycles_per_frame},
            {"latency", latency_json(r.latency)},
            {"streams", streams},
            {"ports", ports}};
}

json search_json(const SearchResult& s, const Report& report) {
    json j = {{"target_pps", s.target}, {"upper_pps", s.upper}, {"steps", s.steps}};
    if (s.best >= 0) {
        const PhaseResult& r = report.trials[static_cast<std::size_t>(s.best)];
        j["rate_pps"] = r.offered_pps;
        j["rx_pps"] = r.rx_pps;
        j["rx_bits_per_s"] = r.rx_bits_per_s;
        j["loss_ratio"] = r.loss_ratio;
        j["latency"] = latency_json(r.latency);
        j["trial"] = s.best;
    } else {
        j["rate_pps"] = 0;
    }
    return j;
}

json iteration_json(const LearningIteration& it) {
    return {{"addresses", it.addresses}, {"target_pps", it.target_pps},
            {"learn_pps", it.learn_pps}, {"flooded", it.flooded},
            {"lost", it.lost},           {"pass", it.pass}};
}

std::string fmt(const char* format, double v) {
    char text[64];
    std::snprintf(text, sizeof text, format, v);
    return text;
}

std::string mpps(double pps) {
    return fmt("%.3f", pps / 1e6);
}

std::string us(double v) {
    return fmt(v < 100 ? "%.1f" : "%.0f", v);
}

// Runs gnuplot on a script; its messages become the exception's text.
void run_gnuplot(const std::string& script_path) {
    const std::string command = "gnuplot '" + script_path + "' 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) {
        throw std::runtime_error("cannot run gnuplot (install gnuplot-nox)");
    }
    std::string output;
    char buf[256];
    while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
        output += buf;
    }
    const int status = pclose(pipe);
    if (status != 0) {
        throw std::runtime_error("gnuplot failed (" +
                                 std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                                 "): " + output);
    }
}

}  // namespace

std::string to_json(const Report& report) {
    json j;
    j["generator"] = {{"name", "conduit-gen"},
                      {"command", report.command},
                      {"started", report.started_utc},
                      {"tsc_hz", report.tsc_hz},
                      {"cpu", report.cpu}};
    j["mode"] = report.mode;
    j["title"] = report.title;
    j["traffic"] = {{"topology", report.topology},
                    {"expect_loopback", report.expect_loopback},
                    {"macs", report.macs},
                    {"flows", report.flows},
                    {"tx_batch", report.tx_batch}};
    json ports = json::array();
    for (const PortReport& p : report.ports) {
        json port = {{"name", p.name},
                     {"description", p.description},
                     {"rx_queues", p.rx_queues},
                     {"tx_queues", p.tx_queues},
                     {"tx_frames", p.totals.tx_frames},
                     {"tx_bytes", p.totals.tx_bytes},
                     {"rx_frames", p.totals.rx_frames},
                     {"rx_bytes", p.totals.rx_bytes}};
        if (p.rx_queues > 1) {
            // Which queues the switch sent on.
            port["rx_queue_frames"] = std::vector<uint64_t>(
                p.totals.rx_queue_frames.begin(), p.totals.rx_queue_frames.begin() + p.rx_queues);
        }
        ports.push_back(std::move(port));
    }
    j["ports"] = ports;
    json trials = json::array();
    for (const PhaseResult& r : report.trials) {
        trials.push_back(phase_json(r, report));
    }
    j["trials"] = trials;
    json sizes = json::array();
    for (const SizeReport& s : report.sizes) {
        json e = {{"size", s.size},
                  {"throughput_pps", s.throughput_pps},
                  {"throughput_bits_per_s", s.throughput_bps},
                  {"offered_max_pps", s.offered_max_pps},
                  {"max_trials", s.max_trials}};
        if (report.mode == "rfc2544") {
            e["pdr"] = search_json(s.pdr, report);
            e["ndr"] = search_json(s.ndr, report);
        }
        sizes.push_back(e);
    }
    j["sizes"] = sizes;
    if (report.learning) {
        const LearningReport& l = *report.learning;
        json cap = json::array(), rate = json::array();
        for (const auto& it : l.capacity_steps) {
            cap.push_back(iteration_json(it));
        }
        for (const auto& it : l.rate_steps) {
            rate.push_back(iteration_json(it));
        }
        j["learning"] = {{"learning_port", l.learning_port},
                         {"test_port", l.test_port},
                         {"monitor_port", l.monitor_port},
                         {"aging_s", l.aging_s},
                         {"capacity", l.capacity},
                         {"capacity_failed", l.capacity_failed},
                         {"capacity_steps", cap},
                         {"rate_addresses", l.rate_addresses},
                         {"rate_pps", l.rate_pps},
                         {"rate_failed_pps", l.rate_failed_pps},
                         {"rate_steps", rate}};
    }
    if (!report.ceiling.empty()) {
        json c = json::array();
        for (const CeilingRow& row : report.ceiling) {
            c.push_back({{"link", row.link},
                         {"size", row.size},
                         {"rx_pps", row.rx_pps},
                         {"rx_bits_per_s", row.rx_bps},
                         {"ns_per_frame", row.rx_pps > 0 ? 1e9 / row.rx_pps : 0},
                         {"cycles_per_frame", row.cycles_per_frame},
                         {"backpressure", row.backpressure}});
        }
        j["ceiling"] = c;
    }
    return j.dump(2) + "\n";
}

std::string to_markdown(const Report& report) {
    std::ostringstream md;
    md << "### " << (report.title.empty() ? "conduit-gen " + report.mode : report.title) << "\n\n";
    md << "`" << report.command << "`\n\n";
    if (report.mode == "rfc2544") {
        md << "| size | max Mpps | PDR Mpps | NDR Mpps | NDR Gbit/s | NDR p50 us | NDR p99 us "
              "| NDR p99.9 us | NDR max us |\n";
        md << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for (const SizeReport& s : report.sizes) {
            auto best = [&](const SearchResult& r) -> const PhaseResult* {
                return r.best >= 0 ? &report.trials[static_cast<std::size_t>(r.best)] : nullptr;
            };
            const PhaseResult* pdr = best(s.pdr);
            const PhaseResult* ndr = best(s.ndr);
            md << "| " << s.size << " | " << mpps(s.throughput_pps) << " | "
               << (pdr ? mpps(pdr->offered_pps) : "none") << " | "
               << (ndr ? mpps(ndr->offered_pps) : "none") << " | "
               << (ndr ? fmt("%.2f", ndr->rx_bits_per_s / 1e9) : "-") << " | "
               << (ndr ? us(ndr->latency.p50_us) : "-") << " | "
               << (ndr ? us(ndr->latency.p99_us) : "-") << " | "
               << (ndr ? us(ndr->latency.p999_us) : "-") << " | "
               << (ndr ? us(ndr->latency.max_us) : "-") << " |\n";
        }
        md << "\nPDR: loss at most the configured ratio; NDR: no loss. Rates are offered frames "
              "per second, all streams together.\n";
    } else if (report.mode == "learning" && report.learning) {
        const LearningReport& l = *report.learning;
        md << "| test | result | first failure |\n| --- | ---: | ---: |\n";
        md << "| address caching capacity | " << l.capacity << " addresses | "
           << (l.capacity_failed ? std::to_string(l.capacity_failed) : "none") << " |\n";
        md << "| address learning rate (" << l.rate_addresses << " addresses) | "
           << fmt("%.0f", l.rate_pps) << " frames/s | "
           << (l.rate_failed_pps > 0 ? fmt("%.0f", l.rate_failed_pps) : "none") << " |\n\n";
        md << "| iteration | addresses | learning frames/s | flooded | lost | result |\n";
        md << "| --- | ---: | ---: | ---: | ---: | --- |\n";
        int k = 0;
        for (const auto* steps : {&l.capacity_steps, &l.rate_steps}) {
            for (const LearningIteration& it : *steps) {
                md << "| " << (steps == &l.capacity_steps ? "capacity " : "rate ") << ++k << " | "
                   << it.addresses << " | " << fmt("%.0f", it.learn_pps) << " | " << it.flooded
                   << " | " << it.lost << " | " << (it.pass ? "pass" : "fail") << " |\n";
            }
        }
    } else if (report.mode == "ceiling") {
        md << "| link | size | Mpps | ns per frame | cycles per frame |\n"
              "| --- | --- | ---: | ---: | ---: |\n";
        for (const CeilingRow& c : report.ceiling) {
            md << "| " << c.link << " | " << c.size << " | " << mpps(c.rx_pps) << " | "
               << fmt("%.1f", c.rx_pps > 0 ? 1e9 / c.rx_pps : 0) << " | "
               << fmt("%.0f", c.cycles_per_frame) << " |\n";
        }
    } else {
        md << "| trial | offered Mpps | received Mpps | Gbit/s | lost | loss % | misdelivered | "
              "p50 us | p99 us | p99.9 us | max us |\n";
        md << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for (const PhaseResult& r : report.trials) {
            md << "| " << r.label << " | " << mpps(r.offered_pps) << " | " << mpps(r.rx_pps)
               << " | " << fmt("%.2f", r.rx_bits_per_s / 1e9) << " | " << r.lost << " | "
               << fmt("%.4f", 100 * r.loss_ratio) << " | " << r.misdelivered << " | "
               << us(r.latency.p50_us) << " | " << us(r.latency.p99_us) << " | "
               << us(r.latency.p999_us) << " | " << us(r.latency.max_us) << " |\n";
        }
    }
    return md.str();
}

void write_plot(const Report& report, const std::string& png_path) {
    namespace fs = std::filesystem;
    const fs::path png = fs::absolute(png_path);
    const fs::path data = png.string() + ".dat";
    const fs::path script = png.string() + ".gp";
    std::ofstream d(data);
    std::ofstream g(script);
    const std::string title = report.title.empty() ? "conduit-gen " + report.mode : report.title;
    g << "set terminal pngcairo size 960,540 font 'sans,10'\n"
      << "set output '" << png.string() << "'\n"
      << "set title \"" << title << "\"\n"
      << "set grid ytics\nset key top right\n";
    if (report.mode == "learning" && report.learning) {
        d << "# addresses flooded pass\n";
        for (const LearningIteration& it : report.learning->capacity_steps) {
            d << it.addresses << " " << it.flooded << " " << (it.pass ? 1 : 0) << "\n";
        }
        g << "set xlabel 'addresses learned'\nset ylabel 'test frames flooded'\n"
          << "plot '" << data.string() << "' using 1:2 with points pt 7 ps 1.5 title 'flooded'\n";
    } else if (report.mode == "rfc2544") {
        d << "# size max pdr ndr\n";
        for (const SizeReport& s : report.sizes) {
            auto rate = [&](const SearchResult& r) {
                return r.best >= 0
                           ? report.trials[static_cast<std::size_t>(r.best)].offered_pps / 1e6
                           : 0.0;
            };
            d << s.size << " " << s.throughput_pps / 1e6 << " " << rate(s.pdr) << " " << rate(s.ndr)
              << "\n";
        }
        g << "set ylabel 'Mpps'\nset xlabel 'frame size (bytes)'\nset yrange [0:*]\n"
          << "set style data histograms\nset style histogram clustered gap 1\n"
          << "set style fill solid 0.8 border -1\nset boxwidth 0.9\n"
          << "plot '" << data.string() << "' using 2:xtic(1) title 'maximum rate', '' using 3 "
          << "title 'PDR', '' using 4 title 'NDR'\n";
    } else if (report.mode == "ceiling") {
        d << "# label mpps\n";
        for (const CeilingRow& c : report.ceiling) {
            d << "\"" << c.link << " " << c.size << "\" " << c.rx_pps / 1e6 << "\n";
        }
        g << "set ylabel 'Mpps'\nset yrange [0:*]\nset style data histograms\n"
          << "set style fill solid 0.8 border -1\nset boxwidth 0.8\n"
          << "plot '" << data.string() << "' using 2:xtic(1) title 'generator alone'\n";
    } else {
        d << "# trial received_mpps p99_us\n";
        int k = 0;
        for (const PhaseResult& r : report.trials) {
            d << ++k << " " << r.rx_pps / 1e6 << " " << r.latency.p99_us << " \"" << r.size
              << "\"\n";
        }
        g << "set ylabel 'received Mpps'\nset y2label 'p99 latency (us)'\nset y2tics\n"
          << "set yrange [0:*]\nset y2range [0:*]\nset xlabel 'trial'\n"
          << "set style fill solid 0.6 border -1\nset boxwidth 0.6\n"
          << "plot '" << data.string() << "' using 1:2:xtic(4) with boxes title 'received Mpps', "
          << "'' using 1:3 axes x1y2 with linespoints pt 7 title 'p99 latency'\n";
    }
    d.close();
    g.close();
    try {
        run_gnuplot(script.string());
    } catch (...) {
        fs::remove(data);
        fs::remove(script);
        throw;
    }
    fs::remove(data);
    fs::remove(script);
}

}  // namespace conduit::gen
