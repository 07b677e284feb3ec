// Fuzzes conduitd's config parser: any text must either parse into a valid config or
// throw ConfigError naming the file and line; nothing else may escape, crash or leak.
#include <cstddef>
#include <cstdint>
#include <string>

#include "control/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        conduit::control::parse_config(text, "fuzz.yaml");
    } catch (const conduit::control::ConfigError& e) {
        const std::string what = e.what();
        if (what.rfind("fuzz.yaml", 0) != 0) {
            __builtin_trap();  // every error must say where it is
        }
    }
    return 0;
}
