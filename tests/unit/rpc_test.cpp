// JSON-RPC framing, parsing and dispatch as the control server applies them to every
// request: each malformed input gets its error code, nothing else breaks.
#include "control/rpc.h"

#include <gtest/gtest.h>

namespace conduit::control::rpc {
namespace {

Dispatcher make_dispatcher() {
    Dispatcher d;
    d.add("echo", "", "text, [times]", [](Params& p) {
        const std::string text = p.string("text");
        const uint64_t times = p.opt_integer("times", 1, 3).value_or(1);
        const bool upper = p.flag("upper", false);
        p.done();
        std::string out;
        for (uint64_t i = 0; i < times; ++i) {
            out += upper ? "X" : text;
        }
        return json(out);
    });
    d.add("fail", "", "", [](Params& p) -> json {
        p.done();
        throw Error(kNotFound, "no such thing");
    });
    return d;
}

json reply(const Dispatcher& d, const std::string& message) {
    const auto text = d.handle(message);
    EXPECT_TRUE(text.has_value()) << message;
    return text ? json::parse(*text) : json();
}

int code(const json& r) {
    return r.contains("error") ? r["error"]["code"].get<int>() : 0;
}

TEST(LineFramer, SplitsMessagesAcrossReads) {
    LineFramer f(100);
    ASSERT_TRUE(f.feed("{\"a\":1}\n{\"b\""));
    EXPECT_EQ(f.next(), "{\"a\":1}");
    EXPECT_FALSE(f.next().has_value());
    EXPECT_EQ(f.pending(), 4u);
    ASSERT_TRUE(f.feed(":2}\r\n\n"));
    EXPECT_EQ(f.next(), "{\"b\":2}");
    EXPECT_EQ(f.next(), "");
    EXPECT_FALSE(f.next().has_value());
    EXPECT_EQ(f.pending(), 0u);
}

TEST(LineFramer, RefusesAnOversizedMessage) {
    LineFramer f(10);
    EXPECT_TRUE(f.feed("0123456789"));  // exactly the limit, not finished
    EXPECT_FALSE(f.feed("x"));
    EXPECT_TRUE(f.overflowed());
    EXPECT_FALSE(f.feed("\n"));
    LineFramer g(10);
    // Complete messages in one read may add up to more than the limit; one may not.
    EXPECT_TRUE(g.feed("0123456\n0123456\n"));
    EXPECT_EQ(g.next(), "0123456");
    EXPECT_EQ(g.next(), "0123456");
    LineFramer h(10);
    EXPECT_TRUE(h.feed("short\n"));
    h.feed("0123456789012\n");
    EXPECT_EQ(h.next(), "short");
    EXPECT_FALSE(h.next().has_value());
    EXPECT_TRUE(h.overflowed());
}

TEST(Dispatcher, CallsAMethod) {
    const auto d = make_dispatcher();
    const json r =
        reply(d, R"({"jsonrpc":"2.0","id":7,"method":"echo","params":{"text":"a","times":3}})");
    EXPECT_EQ(r["id"], 7);
    EXPECT_EQ(r["jsonrpc"], "2.0");
    EXPECT_EQ(r["result"], "aaa");
    EXPECT_FALSE(r.contains("error"));
}

TEST(Dispatcher, BadRequestsGetTheirErrorCodes) {
    const auto d = make_dispatcher();
    EXPECT_EQ(code(reply(d, "{not json")), kParseError);
    EXPECT_EQ(code(reply(d, "")), kParseError);
    EXPECT_EQ(code(reply(d, "42")), kInvalidRequest);
    EXPECT_EQ(code(reply(d, R"({"id":1,"method":"echo"})")), kInvalidRequest);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"1.0","id":1,"method":"echo"})")), kInvalidRequest);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":1,"method":5})")), kInvalidRequest);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":[1],"method":"echo"})")), kInvalidRequest);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":1,"method":"echo","extra":1})")),
              kInvalidRequest);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":1,"method":"nope"})")), kMethodNotFound);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":1,"method":"echo"})")), kInvalidParams);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":1,"method":"echo","params":[1]})")),
              kInvalidParams);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":1}})")),
              kInvalidParams);
    EXPECT_EQ(
        code(reply(d,
                   R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","times":9}})")),
        kInvalidParams);
    EXPECT_EQ(
        code(reply(d,
                   R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","times":-1}})")),
        kInvalidParams);
    EXPECT_EQ(
        code(reply(
            d, R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","times":1.5}})")),
        kInvalidParams);
    EXPECT_EQ(
        code(reply(
            d, R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","upper":"yes"}})")),
        kInvalidParams);
    const json unknown =
        reply(d, R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","txet":1}})");
    EXPECT_EQ(code(unknown), kInvalidParams);
    EXPECT_NE(unknown["error"]["message"].get<std::string>().find("unknown parameter 'txet'"),
              std::string::npos);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":"x","method":"fail"})")), kNotFound);
}

TEST(Dispatcher, NotificationsGetNoReply) {
    const auto d = make_dispatcher();
    EXPECT_FALSE(d.handle(R"({"jsonrpc":"2.0","method":"echo","params":{"text":"a"}})"));
    EXPECT_FALSE(d.handle(R"({"jsonrpc":"2.0","method":"nope"})"));
    // A null id is a request, answered with a null id.
    EXPECT_EQ(
        reply(d, R"({"jsonrpc":"2.0","id":null,"method":"echo","params":{"text":"b"}})")["id"],
        nullptr);
}

TEST(Dispatcher, Batches) {
    const auto d = make_dispatcher();
    const json r = reply(d, R"([{"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a"}},
        {"jsonrpc":"2.0","method":"echo","params":{"text":"n"}}, 5,
        {"jsonrpc":"2.0","id":2,"method":"nope"}])");
    ASSERT_TRUE(r.is_array());
    ASSERT_EQ(r.size(), 3u);  // the notification gets nothing
    EXPECT_EQ(r[0]["result"], "a");
    EXPECT_EQ(code(r[1]), kInvalidRequest);
    EXPECT_EQ(code(r[2]), kMethodNotFound);
    EXPECT_EQ(code(reply(d, "[]")), kInvalidRequest);
    EXPECT_FALSE(d.handle(R"([{"jsonrpc":"2.0","method":"echo","params":{"text":"n"}}])"));
}

TEST(Dispatcher, DeepNestingIsRefused) {
    const auto d = make_dispatcher();
    std::string deep(100000, '[');
    EXPECT_EQ(code(reply(d, deep)), kParseError);
    std::string params = R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","x":)" +
                         std::string(40, '[') + std::string(40, ']') + "}}";
    EXPECT_EQ(code(reply(d, params)), kParseError);
}

TEST(Dispatcher, InvalidUtf8NeverBreaksTheReply) {
    const auto d = make_dispatcher();
    // A raw invalid byte or an escaped lone surrogate is a parse error, and the reply,
    // whose message quotes the bad input, is still valid JSON (reply() parses it).
    EXPECT_EQ(code(reply(d, "{\"jsonrpc\":\"2.0\",\"id\":\"\xff\xfe\",\"method\":\"echo\"}")),
              kParseError);
    EXPECT_EQ(code(reply(d, R"({"jsonrpc":"2.0","id":"\ud800","method":"nope"})")), kParseError);
    // Valid non-ASCII text goes through untouched.
    EXPECT_EQ(
        reply(d,
              R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"\u00e9"}})")["result"],
        "\u00e9");
}

}  // namespace
}  // namespace conduit::control::rpc
