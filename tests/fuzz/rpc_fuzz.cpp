// Fuzzes the control server's request path without the server: bytes arrive in reads of
// varying size, are split into messages, parsed, checked and dispatched to methods that
// read typed parameters the way conduitd's do. Whatever arrives, every reply must be
// valid JSON-RPC 2.0 (one of result or error, the version set) and nothing may crash,
// hang or leak.
#include <cstddef>
#include <cstdint>
#include <string>

#include "control/rpc.h"

namespace {

using namespace conduit::control::rpc;

Dispatcher make_dispatcher() {
    Dispatcher d;
    d.add("port.add", "", "", [](Params& p) {
        json out = {{"bridge", p.string("bridge")}, {"name", p.string("name")}};
        out["queues"] = p.opt_integer("queues", 1, 16).value_or(1);
        out["may_exist"] = p.flag("may_exist", false);
        if (auto socket = p.opt_string("socket")) {
            out["socket"] = *socket;
        }
        p.done();
        return out;
    });
    d.add("capture.status", "", "", [](Params& p) {
        const uint64_t id = p.integer("id", 1, UINT64_MAX);
        p.done();
        if (id % 2 == 0) {
            throw Error(kNotFound, "no capture " + std::to_string(id));
        }
        return json{{"id", id}};
    });
    d.add("system.version", "", "", [](Params& p) {
        p.done();
        return json{{"api", kApiVersion}};
    });
    return d;
}

void check_reply(const json& r) {
    if (!r.is_object() || r.value("jsonrpc", "") != "2.0" || !r.contains("id") ||
        r.contains("result") == r.contains("error")) {
        __builtin_trap();
    }
    if (r.contains("error") && (!r["error"].contains("code") || !r["error"]["code"].is_number() ||
                                !r["error"].contains("message"))) {
        __builtin_trap();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const Dispatcher dispatcher = make_dispatcher();
    if (size == 0) {
        return 0;
    }
    // The first byte chooses how the rest arrives: in reads of 1..256 bytes.
    const std::size_t chunk = std::size_t{data[0]} + 1;
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    LineFramer framer(4096);  // small, so the fuzzer reaches the limit
    for (std::size_t at = 0; at < input.size(); at += chunk) {
        const bool fits = framer.feed(input.substr(at, chunk));
        while (auto message = framer.next()) {
            const auto reply = dispatcher.handle(*message);
            if (!reply) {
                continue;  // notifications only
            }
            if (reply->find('\n') != std::string::npos) {
                __builtin_trap();  // a reply must stay one line
            }
            const json r = json::parse(*reply);  // throws (and so fails) if not JSON
            if (r.is_array()) {
                if (r.empty()) {
                    __builtin_trap();
                }
                for (const auto& item : r) {
                    check_reply(item);
                }
            } else {
                check_reply(r);
            }
        }
        if (!fits) {
            if (!framer.overflowed()) {
                __builtin_trap();
            }
            break;  // the server closes such a connection
        }
    }
    return 0;
}
