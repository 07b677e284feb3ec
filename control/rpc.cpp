#include "control/rpc.h"

#include <algorithm>

namespace conduit::control::rpc {

bool LineFramer::feed(std::string_view data) {
    if (overflowed_) {
        return false;
    }
    // Drop what earlier messages used, so the buffer holds only the pending one(s).
    if (start_ > 0 && start_ == buffer_.size()) {
        buffer_.clear();
        start_ = scanned_ = 0;
    } else if (start_ > (1u << 16)) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    buffer_.append(data);
    // The limit applies to the message still being received, not to complete ones
    // before it (next() checks those).
    const std::size_t last_newline = buffer_.rfind('\n');
    const std::size_t from =
        last_newline == std::string::npos || last_newline < start_ ? start_ : last_newline + 1;
    if (buffer_.size() - from > max_) {
        overflowed_ = true;
        return false;
    }
    return true;
}

std::optional<std::string> LineFramer::next() {
    const std::size_t newline = buffer_.find('\n', start_ + scanned_);
    if (newline == std::string::npos) {
        scanned_ = buffer_.size() - start_;
        return std::nullopt;
    }
    if (overflowed_ || newline - start_ > max_) {
        overflowed_ = true;
        return std::nullopt;
    }
    std::string message = buffer_.substr(start_, newline - start_);
    start_ = newline + 1;
    scanned_ = 0;
    if (!message.empty() && message.back() == '\r') {
        message.pop_back();
    }
    return message;
}

Params::Params(const json& params) {
    if (params.is_null()) {
        params_ = json::object();
    } else if (params.is_object()) {
        params_ = params;
    } else {
        throw Error(kInvalidParams, "params must be an object of named parameters");
    }
}

const json* Params::find(const char* key) {
    read_.insert(key);
    auto it = params_.find(key);
    return it == params_.end() || it->is_null() ? nullptr : &*it;
}

bool Params::has(const char* key) const {
    auto it = params_.find(key);
    return it != params_.end() && !it->is_null();
}

std::optional<std::string> Params::opt_string(const char* key) {
    const json* v = find(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_string()) {
        throw Error(kInvalidParams, std::string("'") + key + "' must be a string");
    }
    return v->get<std::string>();
}

std::string Params::string(const char* key) {
    auto v = opt_string(key);
    if (!v) {
        throw Error(kInvalidParams, std::string("missing parameter '") + key + "'");
    }
    return *v;
}

std::optional<uint64_t> Params::opt_integer(const char* key, uint64_t min, uint64_t max) {
    const json* v = find(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<int64_t>() >= 0)) {
        throw Error(kInvalidParams, std::string("'") + key + "' must be a whole number between " +
                                        std::to_string(min) + " and " + std::to_string(max));
    }
    const uint64_t value = v->get<uint64_t>();
    if (value < min || value > max) {
        throw Error(kInvalidParams, std::string("'") + key + "' must be between " +
                                        std::to_string(min) + " and " + std::to_string(max) +
                                        ", not " + std::to_string(value));
    }
    return value;
}

uint64_t Params::integer(const char* key, uint64_t min, uint64_t max) {
    auto v = opt_integer(key, min, max);
    if (!v) {
        throw Error(kInvalidParams, std::string("missing parameter '") + key + "'");
    }
    return *v;
}

std::optional<bool> Params::opt_flag(const char* key) {
    const json* v = find(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_boolean()) {
        throw Error(kInvalidParams, std::string("'") + key + "' must be true or false");
    }
    return v->get<bool>();
}

bool Params::flag(const char* key, bool fallback) {
    return opt_flag(key).value_or(fallback);
}

void Params::done() const {
    for (const auto& [key, value] : params_.items()) {
        if (!read_.contains(key)) {
            std::string known;
            for (const auto& k : read_) {
                known += (known.empty() ? "" : ", ") + k;
            }
            throw Error(kInvalidParams, "unknown parameter '" + key + "'" +
                                            (known.empty() ? " (this method takes none)"
                                                           : " (known: " + known + ")"));
        }
    }
}

std::string to_line(const json& value) {
    return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

json error_reply(const json& id, int code, const std::string& message, const json& data) {
    json error = {{"code", code}, {"message", message}};
    if (!data.is_null()) {
        error["data"] = data;
    }
    return {{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(error)}};
}

json result_reply(const json& id, json result) {
    return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json parse(std::string_view message) {
    // The callback sees every value as it is parsed; deeper nesting than any method
    // needs is refused before it costs anything.
    const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
        if (depth > kMaxDepth) {
            throw Error(kParseError, "nesting deeper than " + std::to_string(kMaxDepth));
        }
        return true;
    };
    try {
        return json::parse(message.begin(), message.end(), limit_depth);
    } catch (const json::exception& e) {
        throw Error(kParseError, std::string("invalid JSON: ") + e.what());
    }
}

void Dispatcher::add(const std::string& name, std::string summary, std::string params,
                     std::function<json(Params&)> handler) {
    methods_[name] = Method{std::move(summary), std::move(params), std::move(handler)};
}

std::optional<json> Dispatcher::handle_one(const json& request) const {
    // A reply may echo the id only when it is one JSON-RPC allows.
    json id = nullptr;
    if (request.is_object()) {
        auto it = request.find("id");
        if (it != request.end() && (it->is_string() || it->is_number() || it->is_null())) {
            id = *it;
        }
    }
    try {
        if (!request.is_object()) {
            throw Error(kInvalidRequest, "a request must be a JSON object");
        }
        auto version = request.find("jsonrpc");
        if (version == request.end() || *version != "2.0") {
            throw Error(kInvalidRequest, "\"jsonrpc\" must be \"2.0\"");
        }
        auto method = request.find("method");
        if (method == request.end() || !method->is_string()) {
            throw Error(kInvalidRequest, "\"method\" must be a string");
        }
        auto id_it = request.find("id");
        const bool notification = id_it == request.end();
        if (!notification && !(id_it->is_string() || id_it->is_number() || id_it->is_null())) {
            throw Error(kInvalidRequest, "\"id\" must be a string, a number or null");
        }
        for (const auto& [key, value] : request.items()) {
            if (key != "jsonrpc" && key != "method" && key != "params" && key != "id") {
                throw Error(kInvalidRequest, "unknown member \"" + key + "\" in the request");
            }
        }
        const auto found = methods_.find(method->get<std::string>());
        std::optional<json> reply;
        if (found == methods_.end()) {
            if (notification) {
                return std::nullopt;
            }
            throw Error(kMethodNotFound,
                        "no method \"" + method->get<std::string>() + "\" (see system.methods)");
        }
        auto params_it = request.find("params");
        Params params(params_it == request.end() ? json() : *params_it);
        json result = found->second.handler(params);
        if (notification) {
            return std::nullopt;
        }
        return result_reply(id, std::move(result));
    } catch (const Error& e) {
        return error_reply(id, e.code(), e.what(), e.data());
    } catch (const json::exception& e) {
        return error_reply(id, kInvalidParams, std::string("invalid parameters: ") + e.what());
    } catch (const std::exception& e) {
        return error_reply(id, kInternalError, e.what());
    }
}

std::optional<std::string> Dispatcher::handle(std::string_view message) const {
    try {
        json request;
        try {
            request = parse(message);
        } catch (const Error& e) {
            return to_line(error_reply(nullptr, e.code(), e.what()));
        }
        if (request.is_array()) {
            if (request.empty()) {
                return to_line(error_reply(nullptr, kInvalidRequest, "an empty batch"));
            }
            json replies = json::array();
            for (const auto& item : request) {
                if (auto reply = handle_one(item)) {
                    replies.push_back(std::move(*reply));
                }
            }
            if (replies.empty()) {
                return std::nullopt;
            }
            return to_line(replies);
        }
        auto reply = handle_one(request);
        if (!reply) {
            return std::nullopt;
        }
        return to_line(*reply);
    } catch (const std::exception& e) {
        // Only an exhausted allocator gets here; the client still gets an answer.
        return to_line(error_reply(nullptr, kInternalError, e.what()));
    }
}

}  // namespace conduit::control::rpc
