#include "vmm/arch/x86/aml.h"

#include <stdexcept>

namespace conduit::vmm::aml {

namespace {
constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kNameOp = 0x08, kBytePrefix = 0x0a,
                  kWordPrefix = 0x0b, kDWordPrefix = 0x0c, kStringPrefix = 0x0d,
                  kQWordPrefix = 0x0e, kScopeOp = 0x10, kBufferOp = 0x11, kPackageOp = 0x12,
                  kMethodOp = 0x14, kDualNamePrefix = 0x2e, kMultiNamePrefix = 0x2f,
                  kRootChar = 0x5c, kExtOpPrefix = 0x5b, kDeviceOp = 0x82, kReturnOp = 0xa4,
                  kEndTag = 0x79;

void put16(Bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v));
    b.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(Bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v));
    put16(b, static_cast<uint16_t>(v >> 16));
}
void put64(Bytes& b, uint64_t v) {
    put32(b, static_cast<uint32_t>(v));
    put32(b, static_cast<uint32_t>(v >> 32));
}

// An opcode followed by a PkgLength covering `body`, then the body.
Bytes with_length(Bytes prefix, const Bytes& body) {
    const Bytes len = pkg_length(body.size());
    prefix.insert(prefix.end(), len.begin(), len.end());
    prefix.insert(prefix.end(), body.begin(), body.end());
    return prefix;
}

// Address space descriptor common part: type, general flags, type-specific flags.
Bytes address_space_header(uint8_t tag, uint16_t length, uint8_t type, uint8_t type_flags) {
    Bytes b{tag};
    put16(b, length);
    b.push_back(type);
    b.push_back(0x0c);  // general flags: min and max fixed, positive decode, producer/consumer
    b.push_back(type_flags);
    return b;
}
}  // namespace

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& p : parts) {
        out.insert(out.end(), p.begin(), p.end());
    }
    return out;
}

Bytes pkg_length(size_t body) {
    if (body + 1 < 0x40) {
        return {static_cast<uint8_t>(body + 1)};
    }
    for (unsigned extra = 1; extra <= 3; ++extra) {
        const size_t total = body + 1 + extra;
        if (total < (size_t{1} << (4 + 8 * extra))) {
            Bytes b{static_cast<uint8_t>((extra << 6) | (total & 0x0f))};
            for (unsigned i = 0; i < extra; ++i) {
                b.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
            }
            return b;
        }
    }
    throw std::length_error("AML package too large");
}

Bytes name_string(const std::string& path) {
    Bytes out;
    size_t pos = 0;
    if (!path.empty() && path[0] == '\\') {
        out.push_back(kRootChar);
        pos = 1;
    }
    std::vector<std::string> segments;
    while (pos <= path.size()) {
        const size_t dot = path.find('.', pos);
        std::string seg =
            path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
        if (seg.empty() || seg.size() > 4) {
            throw std::invalid_argument("bad AML name segment in '" + path + "'");
        }
        seg.resize(4, '_');
        segments.push_back(seg);
        if (dot == std::string::npos) {
            break;
        }
        pos = dot + 1;
    }
    if (segments.size() == 2) {
        out.push_back(kDualNamePrefix);
    } else if (segments.size() > 2) {
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<uint8_t>(segments.size()));
    }
    for (const auto& s : segments) {
        out.insert(out.end(), s.begin(), s.end());
    }
    return out;
}

Bytes integer(uint64_t v) {
    if (v == 0) {
        return {kZeroOp};
    }
    if (v == 1) {
        return {kOneOp};
    }
    Bytes b;
    if (v <= 0xff) {
        b = {kBytePrefix, static_cast<uint8_t>(v)};
    } else if (v <= 0xffff) {
        b = {kWordPrefix};
        put16(b, static_cast<uint16_t>(v));
    } else if (v <= 0xffffffff) {
        b = {kDWordPrefix};
        put32(b, static_cast<uint32_t>(v));
    } else {
        b = {kQWordPrefix};
        put64(b, v);
    }
    return b;
}

Bytes string(const std::string& text) {
    Bytes b{kStringPrefix};
    b.insert(b.end(), text.begin(), text.end());
    b.push_back(0);
    return b;
}

Bytes eisa_id(const std::string& id) {
    if (id.size() != 7) {
        throw std::invalid_argument("EISA ID must be 3 letters and 4 hex digits: " + id);
    }
    const auto letter = [&](size_t i) { return static_cast<uint32_t>(id[i] - 0x40) & 0x1f; };
    const uint32_t product = static_cast<uint32_t>(std::stoul(id.substr(3), nullptr, 16));
    const uint32_t value = (letter(0) << 26) | (letter(1) << 21) | (letter(2) << 16) | product;
    // Stored big-endian: the compressed vendor letters come first in memory.
    Bytes b{kDWordPrefix};
    put32(b, __builtin_bswap32(value));
    return b;
}

Bytes name(const std::string& path, const Bytes& value) {
    return concat({{kNameOp}, name_string(path), value});
}

Bytes package(std::initializer_list<Bytes> elements) {
    Bytes body{static_cast<uint8_t>(elements.size())};
    for (const Bytes& e : elements) {
        body.insert(body.end(), e.begin(), e.end());
    }
    return with_length({kPackageOp}, body);
}

Bytes buffer(const Bytes& data) {
    return with_length({kBufferOp}, concat({integer(data.size()), data}));
}

Bytes scope(const std::string& path, const Bytes& body) {
    return with_length({kScopeOp}, concat({name_string(path), body}));
}

Bytes device(const std::string& path, const Bytes& body) {
    return with_length({kExtOpPrefix, kDeviceOp}, concat({name_string(path), body}));
}

Bytes method_return(const std::string& path, uint8_t args, const Bytes& value) {
    const Bytes flags{static_cast<uint8_t>(args & 0x7)};  // not serialized
    return with_length({kMethodOp}, concat({name_string(path), flags, {kReturnOp}, value}));
}

Bytes word_bus_number(uint16_t min, uint16_t max) {
    Bytes b = address_space_header(0x88, 13, 2, 0);
    put16(b, 0);  // granularity
    put16(b, min);
    put16(b, max);
    put16(b, 0);  // translation
    put16(b, static_cast<uint16_t>(max - min + 1));
    return b;
}

Bytes io_port(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
    Bytes b{0x47, 0x01};  // I/O port descriptor, 16-bit decode
    put16(b, min);
    put16(b, max);
    b.push_back(alignment);
    b.push_back(length);
    return b;
}

Bytes word_io(uint16_t min, uint16_t max) {
    Bytes b = address_space_header(0x88, 13, 1, 0x03);  // entire range
    put16(b, 0);
    put16(b, min);
    put16(b, max);
    put16(b, 0);
    put16(b, static_cast<uint16_t>(max - min + 1));
    return b;
}

Bytes dword_memory(uint32_t min, uint32_t max, bool cacheable) {
    Bytes b = address_space_header(0x87, 23, 0, cacheable ? 0x03 : 0x01);  // read-write
    put32(b, 0);
    put32(b, min);
    put32(b, max);
    put32(b, 0);
    put32(b, max - min + 1);
    return b;
}

Bytes qword_memory(uint64_t min, uint64_t max, bool cacheable) {
    Bytes b = address_space_header(0x8a, 43, 0, cacheable ? 0x03 : 0x01);
    put64(b, 0);
    put64(b, min);
    put64(b, max);
    put64(b, 0);
    put64(b, max - min + 1);
    return b;
}

Bytes resource_template(std::initializer_list<Bytes> descriptors) {
    Bytes data;
    for (const Bytes& d : descriptors) {
        data.insert(data.end(), d.begin(), d.end());
    }
    data.push_back(kEndTag);
    data.push_back(0);  // checksum 0: treated as valid
    return buffer(data);
}

}  // namespace conduit::vmm::aml
