// conduitctl: the operator's command line for conduitd (see `conduitctl --help` and
// docs/control.md). Each command is one JSON-RPC request on conduitd's control socket;
// without a command (on a terminal) it is an interactive prompt with line editing,
// history and completion (libedit).
#include <editline/readline.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "control/ctl_client.h"
#include "control/ctl_commands.h"

namespace {

using namespace conduit::ctl;

Globals g_globals;
Client* g_client = nullptr;

// ---- interactive mode

std::vector<std::string> g_matches;

char* next_match(const char* text, int state) {
    static std::size_t i;
    if (state == 0) {
        i = 0;
    }
    const std::size_t length = std::strlen(text);
    while (i < g_matches.size()) {
        const std::string& m = g_matches[i++];
        if (m.compare(0, length, text) == 0) {
            return strdup(m.c_str());
        }
    }
    return nullptr;
}

char** complete_line(const char* text, int start, int) {
    rl_attempted_completion_over = 1;  // no file-name fallback unless we ask for it
    const std::string before(rl_line_buffer, static_cast<std::size_t>(start));
    std::vector<std::string> words = split_line(before);
    const std::size_t index = words.size();
    words.push_back(text);
    g_matches = complete(words, index, g_client);
    if (g_matches.size() == 1 && g_matches[0] == "__files__") {
        rl_attempted_completion_over = 0;
        return nullptr;
    }
    return rl_completion_matches(text, next_match);
}

int interactive() {
    const char* home = std::getenv("HOME");
    const std::string history = home != nullptr ? std::string(home) + "/.conduitctl_history" : "";
    rl_readline_name = const_cast<char*>("conduitctl");
    rl_attempted_completion_function = complete_line;
    // MAC addresses and KEY=VALUE are single words.
    rl_basic_word_break_characters = const_cast<char*>(" \t");
    using_history();
    if (!history.empty()) {
        read_history(history.c_str());
    }
    std::cout << "conduitctl " CONDUIT_VERSION " on " << g_globals.socket
              << " (help, quit; Tab completes)\n";
    int last = kOk;
    for (;;) {
        char* raw = readline("conduit> ");
        if (raw == nullptr) {
            std::cout << '\n';
            break;
        }
        const std::string line = raw;
        std::free(raw);
        const std::vector<std::string> words = split_line(line);
        if (words.empty()) {
            continue;
        }
        add_history(line.c_str());
        if (words[0] == "quit" || words[0] == "exit") {
            break;
        }
        last = run_words(words, *g_client, g_globals, std::cout);
        std::cout.flush();
    }
    if (!history.empty()) {
        write_history(history.c_str());
    }
    return last;
}

[[noreturn]] void usage_error(const std::string& message) {
    std::cerr << "conduitctl: " << message << " (conduitctl --help)\n";
    std::exit(kUsage);
}

}  // namespace

int main(int argc, char** argv) {
    if (const char* env = std::getenv("CONDUIT_SOCKET"); env != nullptr && env[0] != '\0') {
        g_globals.socket = env;
    }
    std::vector<std::string> args(argv + 1, argv + argc);
    // Shell completion: conduitctl __complete INDEX WORD... (words after the program name).
    if (!args.empty() && args[0] == "__complete") {
        if (args.size() < 2) {
            return kUsage;
        }
        const std::size_t index = std::strtoul(args[1].c_str(), nullptr, 10);
        std::vector<std::string> words(args.begin() + 2, args.end());
        // The socket may be among the words being completed.
        for (std::size_t i = 0; i + 1 < words.size(); ++i) {
            if (words[i] == "--socket" || words[i] == "-s") {
                g_globals.socket = words[i + 1];
            }
        }
        Client client(g_globals.socket, 1000);
        for (const auto& candidate : complete(words, index, &client)) {
            std::cout << candidate << '\n';
        }
        return kOk;
    }
    std::size_t i = 0;
    for (; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "--json") {
            g_globals.json = true;
        } else if (a == "--quiet" || a == "-q") {
            g_globals.quiet = true;
        } else if (a == "--socket" || a == "-s") {
            if (++i == args.size()) {
                usage_error("--socket needs a path");
            }
            g_globals.socket = args[i];
        } else if (a.rfind("--socket=", 0) == 0) {
            g_globals.socket = a.substr(9);
        } else if (a == "--timeout") {
            if (++i == args.size()) {
                usage_error("--timeout needs a number of seconds");
            }
            char* end = nullptr;
            const double seconds = std::strtod(args[i].c_str(), &end);
            if (end == args[i].c_str() || *end != '\0' || seconds <= 0) {
                usage_error("--timeout must be a positive number of seconds");
            }
            g_globals.timeout_ms = static_cast<int>(seconds * 1000);
        } else if (a == "--help" || a == "-h") {
            std::cout << general_help();
            return kOk;
        } else if (a == "--version") {
            std::cout << "conduitctl " CONDUIT_VERSION "\n";
            return kOk;
        } else if (a.rfind("-", 0) == 0) {
            usage_error("unknown option " + a);
        } else {
            break;
        }
    }
    const std::vector<std::string> words(args.begin() + static_cast<long>(i), args.end());
    if (!words.empty() && words[0] == "completion") {
        if (words.size() != 2 || words[1] != "bash") {
            usage_error("usage: conduitctl completion bash");
        }
        std::cout << bash_completion_script();
        return kOk;
    }
    Client client(g_globals.socket, g_globals.timeout_ms);
    g_client = &client;
    if (words.empty() || (words.size() == 1 && words[0] == "interactive")) {
        if (words.empty() && !isatty(STDIN_FILENO)) {
            std::cerr << general_help();
            return kUsage;
        }
        return interactive();
    }
    return run_words(words, client, g_globals, std::cout);
}
