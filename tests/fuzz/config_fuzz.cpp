// Fuzzes conduitd's config parser: any text must either parse into a valid config or
// throw ConfigError naming the file and line; nothing else may escape, crash or leak.
// A config that parses must also survive the trip `conduitctl save` makes: written back
// as YAML it parses again, to a config with no difference from the first.
#include <cstddef>
#include <cstdint>
#include <string>

#include "control/config.h"
#include "control/config_diff.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace conduit::control;
    const std::string text(reinterpret_cast<const char*>(data), size);
    Config config;
    try {
        config = parse_config(text, "fuzz.yaml");
    } catch (const ConfigError& e) {
        const std::string what = e.what();
        if (what.rfind("fuzz.yaml", 0) != 0) {
            __builtin_trap();  // every error must say where it is
        }
        return 0;
    }
    const std::string written = config_to_yaml(config, "round trip");
    Config again;
    try {
        again = parse_config(written, "written.yaml");
    } catch (const ConfigError&) {
        __builtin_trap();  // save would write a file conduitd refuses
    }
    if (!diff_configs(config, again).empty()) {
        __builtin_trap();  // a restart would not run what was saved
    }
    return 0;
}
