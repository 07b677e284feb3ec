// control/ctl_commands: conduitctl's commands: their arguments, help, completion and
// what each asks conduitd. One table drives the command line, `--help`, bash completion
// and the interactive mode, so they cannot disagree.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/ctl_client.h"

namespace conduit::ctl {

// Exit codes (documented in docs/control.md and `conduitctl --help`).
enum Exit : int {
    kOk = 0,
    kFailed = 1,       // conduitd could not do it (nothing changed)
    kUsage = 2,        // bad command line
    kUnreachable = 3,  // conduitd not running, no permission, or no answer in time
    kNotFound = 4,     // no such bridge, port, MAC or capture (and no --if-exists)
    kExists = 5,       // already exists (and no --may-exist)
    kInvalid = 6,      // a value or config conduitd refused as invalid
    kRestart = 7,      // the change needs a restart of conduitd
    kIncomplete = 8,   // a capture ended before it had all the frames asked for
};

struct Globals {
    std::string socket = "/run/conduit/conduitd.sock";
    bool json = false;
    bool quiet = false;
    int timeout_ms = 30000;
};

class UsageError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

enum class ArgKind { kText, kBridge, kPort, kFile, kMac, kChoice, kSetting };

struct ArgSpec {
    ArgSpec(std::string arg_name, ArgKind arg_kind = ArgKind::kText, bool is_required = true,
            bool does_repeat = false, std::vector<std::string> arg_choices = {})
        : name(std::move(arg_name)),
          kind(arg_kind),
          required(is_required),
          repeats(does_repeat),
          choices(std::move(arg_choices)) {}
    std::string name;
    ArgKind kind = ArgKind::kText;
    bool required = true;
    bool repeats = false;              // takes every remaining word
    std::vector<std::string> choices;  // kChoice; kSetting: "key=" words
};

struct OptionSpec {
    std::string name;  // without dashes
    char short_name = 0;
    std::string value;  // metavar; empty: a flag without a value
    std::string help;
    std::vector<std::string> choices;
    bool file = false;
};

struct Parsed {
    std::vector<std::string> args;
    std::map<std::string, std::string> options;
    bool has(const std::string& name) const { return options.contains(name); }
    std::string get(const std::string& name, const std::string& fallback = "") const {
        auto it = options.find(name);
        return it == options.end() ? fallback : it->second;
    }
};

struct Context {
    Client& client;
    const Globals& globals;
    std::ostream& out;
};

struct Command {
    std::string name;  // one or two words: "add-port", "show ports"
    std::string summary;
    std::string details;
    std::vector<ArgSpec> args;
    std::vector<OptionSpec> options;
    std::function<int(Context&, const Parsed&)> run;
};

const std::vector<Command>& commands();

// The command the words start with and how many words name it.
std::pair<const Command*, std::size_t> find_command(const std::vector<std::string>& words);

// Runs one command line (without global options). Prints results to `out` and errors to
// stderr; returns the exit code.
int run_words(const std::vector<std::string>& words, Client& client, const Globals& globals,
              std::ostream& out);

std::string command_help(const Command& command);
std::string general_help();

// Candidates for words[index] (words after the program name; global options included).
// Asks conduitd for bridge and port names when `client` is given and answers. A single
// candidate "__files__" means: complete a file name.
std::vector<std::string> complete(const std::vector<std::string>& words, std::size_t index,
                                  Client* client);

std::string bash_completion_script();

// Splits an interactive line into words: blanks separate, quotes group, backslash escapes.
std::vector<std::string> split_line(const std::string& line);

}  // namespace conduit::ctl
