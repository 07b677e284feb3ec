// control/ctl_client: conduitctl's side of the JSON-RPC control protocol: one unix
// socket connection, one request at a time, each with a deadline.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace conduit::ctl {

using json = nlohmann::json;

// conduitd could not be reached or did not answer in time.
class ConnectError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// conduitd answered with a JSON-RPC error.
class RpcError : public std::runtime_error {
  public:
    RpcError(int code, const std::string& message, json data)
        : std::runtime_error(message), code_(code), data_(std::move(data)) {}
    int code() const { return code_; }
    const json& data() const { return data_; }

  private:
    int code_;
    json data_;
};

class Client {
  public:
    Client(std::string socket_path, int timeout_ms);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Sends one request and waits for its reply; returns "result" or throws RpcError.
    // Connects on first use (and again after a failure).
    json call(const std::string& method, const json& params = json::object());

  private:
    void connect();
    void disconnect();
    void send_all(const std::string& data);
    std::string read_line();

    std::string path_;
    int timeout_ms_;
    int fd_ = -1;
    uint64_t next_id_ = 1;
    std::string buffer_;
};

}  // namespace conduit::ctl
