// control/rpc: JSON-RPC 2.0 as conduitd's control server speaks it, without any I/O:
// splitting a byte stream into messages, parsing and checking requests, typed access to
// their parameters, dispatching to methods and building replies. No DPDK here: the
// request fuzzer links this file alone.
//
// Framing: each message is one line of UTF-8 JSON ending in '\n' (a JSON text has no raw
// newline outside strings, so a serialiser's compact output is always one line). A
// message longer than kMaxMessage bytes is refused.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

namespace conduit::control::rpc {

using json = nlohmann::json;

inline constexpr int kApiVersion = 1;
inline constexpr std::size_t kMaxMessage = 1 << 20;
inline constexpr int kMaxDepth = 32;  // nesting in a request

// Error codes: JSON-RPC's own, then conduit's (documented in docs/control.md).
enum Code : int {
    kParseError = -32700,
    kInvalidRequest = -32600,
    kMethodNotFound = -32601,
    kInvalidParams = -32602,
    kInternalError = -32603,
    kNotFound = -32001,         // no such bridge, port, MAC or capture
    kAlreadyExists = -32002,    // without may_exist
    kInvalidConfig = -32003,    // the change would make the config invalid
    kFailed = -32004,           // valid, but the datapath could not do it (nothing changed)
    kRestartRequired = -32005,  // a setting read only at start differs
    kTooLarge = -32006,         // message over kMaxMessage
    kTimeout = -32007,          // a request left incomplete for too long
};

class Error : public std::runtime_error {
  public:
    Error(int code, const std::string& message, json data = nullptr)
        : std::runtime_error(message), code_(code), data_(std::move(data)) {}
    int code() const { return code_; }
    const json& data() const { return data_; }

  private:
    int code_;
    json data_;
};

// Splits a byte stream into '\n'-terminated messages.
class LineFramer {
  public:
    explicit LineFramer(std::size_t max_message = kMaxMessage) : max_(max_message) {}
    // Appends received bytes. Returns false once a message grows past the limit without
    // its newline: the stream cannot be trusted any more.
    bool feed(std::string_view data);
    std::optional<std::string> next();  // a complete message, without its newline
    std::size_t pending() const { return buffer_.size() - start_; }  // bytes not yet a message
    bool overflowed() const { return overflowed_; }

  private:
    std::size_t max_;
    std::string buffer_;
    std::size_t start_ = 0;
    std::size_t scanned_ = 0;  // bytes after start_ known to hold no newline
    bool overflowed_ = false;
};

// Typed, checked access to a request's "params" (an object, or absent). Every read
// names the key; done() rejects any key no read asked for, so a misspelt parameter is an
// error rather than silently ignored.
class Params {
  public:
    explicit Params(const json& params);
    std::string string(const char* key);
    std::optional<std::string> opt_string(const char* key);
    uint64_t integer(const char* key, uint64_t min, uint64_t max);
    std::optional<uint64_t> opt_integer(const char* key, uint64_t min, uint64_t max);
    bool flag(const char* key, bool fallback);  // an optional boolean
    std::optional<bool> opt_flag(const char* key);
    bool has(const char* key) const;
    void done() const;

  private:
    const json* find(const char* key);
    json params_;
    std::set<std::string> read_;
};

struct Method {
    std::string summary;
    std::string params;  // one line: "name, [may_exist]" (documentation and system.methods)
    std::function<json(Params&)> handler;
};

class Dispatcher {
  public:
    void add(const std::string& name, std::string summary, std::string params,
             std::function<json(Params&)> handler);
    // One message: a request, a notification or a batch. Returns the reply (one line,
    // no newline), or nullopt when there is nothing to send back (notifications only).
    // Never throws.
    std::optional<std::string> handle(std::string_view message) const;
    const std::map<std::string, Method>& methods() const { return methods_; }

  private:
    std::optional<json> handle_one(const json& request) const;
    std::map<std::string, Method> methods_;
};

// A reply line: serialised so that it never throws (invalid UTF-8 in strings is replaced).
std::string to_line(const json& value);
json error_reply(const json& id, int code, const std::string& message, const json& data = nullptr);
json result_reply(const json& id, json result);

// Parses a message with the nesting limit; throws Error(kParseError).
json parse(std::string_view message);

}  // namespace conduit::control::rpc
