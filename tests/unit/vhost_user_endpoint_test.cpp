// Where vhost-user connections come from: the listening (server) mode with stale-socket
// handling and clear errors, the retrying client mode, and reconnection of a session
// after the backend goes away.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "tests/unit/vhost_user_fake_backend.h"
#include "vmm/vhost_user/endpoint.h"
#include "vmm/vhost_user/frontend.h"

using namespace std::chrono_literals;
using namespace vhost_test;
using vu::Endpoint;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/vhu-test-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) {
            throw std::runtime_error("mkdtemp");
        }
        path = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

// A plain client connection, as a backend in client mode makes it.
UniqueFd connect_unix(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        return UniqueFd();
    }
    return fd;
}

bool readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1;
}

bool is_socket(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string config_error(const std::function<void()>& f) {
    try {
        f();
    } catch (const vu::Error& e) {
        EXPECT_EQ(e.kind(), vu::Error::Kind::Config) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

vu::FrontendOptions net0() {
    vu::FrontendOptions o;
    o.name = "net0";
    return o;
}

constexpr uint64_t kVersion1 = vu::bit(vu::virtio_bit::kVersion1);

}  // namespace

TEST(VhostUserEndpoint, ServerAcceptsOneBackendAndRemovesItsSocket) {
    TempDir dir;
    const std::string path = dir.file("net0.sock");
    {
        Endpoint ep = Endpoint::listen(path);
        EXPECT_EQ(ep.mode(), Endpoint::Mode::Server);
        EXPECT_TRUE(is_socket(path));
        EXPECT_FALSE(ep.take_connection());  // nobody yet, and no blocking
        UniqueFd backend = connect_unix(path);
        ASSERT_TRUE(backend.valid());
        ASSERT_TRUE(readable(ep.wait_fd(), 5000));
        auto conn = ep.take_connection();
        ASSERT_TRUE(conn);
        EXPECT_TRUE(conn->valid());
        // The two ends talk.
        ASSERT_EQ(::write(backend.get(), "x", 1), 1);
        char c = 0;
        ASSERT_EQ(::read(conn->get(), &c, 1), 1);
        EXPECT_EQ(c, 'x');
        Endpoint moved = std::move(ep);  // the socket file goes with the object
        EXPECT_TRUE(is_socket(path));
    }
    EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(VhostUserEndpoint, StaleSocketIsReplaced) {
    TempDir dir;
    const std::string path = dir.file("stale.sock");
    {
        // A process that died without removing its socket.
        UniqueFd old(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        ASSERT_EQ(::bind(old.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    }
    ASSERT_TRUE(is_socket(path));
    Endpoint ep = Endpoint::listen(path);
    UniqueFd backend = connect_unix(path);
    ASSERT_TRUE(backend.valid());
    EXPECT_TRUE(ep.wait_for_connection(5s).valid());
}

TEST(VhostUserEndpoint, LiveListenerIsNotTakenOver) {
    TempDir dir;
    const std::string path = dir.file("live.sock");
    Endpoint first = Endpoint::listen(path);
    EXPECT_EQ(config_error([&] { Endpoint::listen(path); }),
              "cannot create vhost-user socket '" + path + "': another process is listening on it");
    UniqueFd backend = connect_unix(path);
    ASSERT_TRUE(backend.valid());
    EXPECT_TRUE(first.wait_for_connection(5s).valid());
}

TEST(VhostUserEndpoint, OtherFilesAreNeverReplaced) {
    TempDir dir;
    const std::string path = dir.file("config.yaml");
    std::ofstream(path) << "precious\n";
    EXPECT_EQ(config_error([&] { Endpoint::listen(path); }),
              "cannot create vhost-user socket '" + path +
                  "': the path exists and is not a socket; not replacing it");
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "precious");
}

TEST(VhostUserEndpoint, PathTooLongForSunPath) {
    const std::string path = "/tmp/" + std::string(115, 'a') + ".sock";
    const std::string want = "vhost-user socket path '" + path +
                             "' is 125 bytes; a unix socket "
                             "path holds at most 107";
    EXPECT_EQ(config_error([&] { Endpoint::listen(path); }), want);
    EXPECT_EQ(config_error([&] { Endpoint::connect_to(path); }), want);
    EXPECT_EQ(config_error([&] { Endpoint::listen(""); }), "vhost-user socket path is empty");
}

TEST(VhostUserEndpoint, MissingDirectory) {
    TempDir dir;
    const std::string path = dir.file("nope/net0.sock");
    EXPECT_EQ(config_error([&] { Endpoint::listen(path); }),
              "cannot create vhost-user socket '" + path + "': directory '" + dir.file("nope") +
                  "' does not exist");
    std::ofstream(dir.file("plain")) << "x";
    EXPECT_TRUE(contains(config_error([&] { Endpoint::listen(dir.file("plain/net0.sock")); }),
                         "is not a directory"));
}

TEST(VhostUserEndpoint, PermissionDenied) {
    // Root may create sockets anywhere: the check runs in a child that drops to nobody.
    TempDir dir;  // owned by root, mode 0700
    ASSERT_EQ(::chmod(dir.path.c_str(), 0755), 0);
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(p[0]);
        std::string msg;
        if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
            msg = "could not drop privileges";
        } else {
            try {
                Endpoint::listen(dir.file("net0.sock"));
                msg = "no error";
            } catch (const vu::Error& e) {
                msg = std::string(vu::kind_name(e.kind())) + ": " + e.what();
            }
        }
        (void)!::write(p[1], msg.data(), msg.size());
        ::_exit(0);
    }
    ::close(p[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) {
        msg.append(buf, static_cast<size_t>(n));
    }
    ::close(p[0]);
    int status = 0;
    ::waitpid(child, &status, 0);
    EXPECT_EQ(msg, "config: cannot create vhost-user socket '" + dir.file("net0.sock") +
                       "': permission denied in directory '" + dir.path + "'");
}

TEST(VhostUserEndpoint, ASocketFileReplacedByOthersIsLeftAlone) {
    TempDir dir;
    const std::string path = dir.file("net0.sock");
    {
        Endpoint ep = Endpoint::listen(path);
        std::filesystem::remove(path);
        std::ofstream(path) << "someone else's";
    }
    EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(VhostUserEndpoint, ServerWaitTimesOut) {
    TempDir dir;
    Endpoint ep = Endpoint::listen(dir.file("net0.sock"));
    try {
        ep.wait_for_connection(30ms);
        ADD_FAILURE() << "no timeout";
    } catch (const vu::Error& e) {
        EXPECT_EQ(e.kind(), vu::Error::Kind::Timeout);
        EXPECT_EQ(std::string(e.what()),
                  "no backend connected on '" + dir.file("net0.sock") + "' within 30 ms");
    }
}

TEST(VhostUserEndpoint, ClientRetriesWithBackoffUntilTheBackendListens) {
    TempDir dir;
    const std::string path = dir.file("backend.sock");
    Endpoint client = Endpoint::connect_to(path, {10ms, 40ms});
    EXPECT_EQ(client.mode(), Endpoint::Mode::Client);
    // The first attempt is due at once.
    ASSERT_TRUE(readable(client.wait_fd(), 1000));
    std::vector<std::string> errors;
    for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(readable(client.wait_fd(), 5000)) << "attempt " << i << " never came due";
        EXPECT_FALSE(client.take_connection());
        errors.push_back(client.last_error());
    }
    const std::string head = "connect '" + path + "': No such file or directory (attempt ";
    EXPECT_EQ(errors[0], head + "1, next in 10 ms)");
    EXPECT_EQ(errors[1], head + "2, next in 20 ms)");
    EXPECT_EQ(errors[2], head + "3, next in 40 ms)");
    EXPECT_EQ(errors[3], head + "4, next in 40 ms)");  // capped

    Endpoint server = Endpoint::listen(path);
    UniqueFd conn = client.wait_for_connection(5s);
    EXPECT_TRUE(conn.valid());
    EXPECT_EQ(client.last_error(), "");
    EXPECT_TRUE(server.wait_for_connection(5s).valid());
    // Connected: the timer is off until the session ends.
    EXPECT_FALSE(readable(client.wait_fd(), 50));
    client.session_ended();
    EXPECT_TRUE(readable(client.wait_fd(), 1000));
}

TEST(VhostUserEndpoint, ClientTimeoutNamesTheLastFailure) {
    TempDir dir;
    Endpoint client = Endpoint::connect_to(dir.file("none.sock"), {5ms, 10ms});
    try {
        client.wait_for_connection(60ms);
        ADD_FAILURE() << "no timeout";
    } catch (const vu::Error& e) {
        EXPECT_EQ(e.kind(), vu::Error::Kind::Timeout);
        EXPECT_TRUE(contains(e.what(), "(last attempt: connect '" + dir.file("none.sock") +
                                           "': No such file or directory"))
            << e.what();
    }
    EXPECT_GE(client.attempts(), 2);
}

TEST(VhostUserEndpoint, SecondBackendIsRefusedWhileASessionRuns) {
    TempDir dir;
    const std::string path = dir.file("net0.sock");
    Endpoint ep = Endpoint::listen(path);
    UniqueFd first = connect_unix(path);
    UniqueFd session = ep.wait_for_connection(5s);
    UniqueFd second = connect_unix(path);
    ASSERT_TRUE(second.valid());
    ASSERT_TRUE(readable(ep.wait_fd(), 5000));
    EXPECT_EQ(ep.refuse_pending(), 1);
    char c;
    EXPECT_EQ(::read(second.get(), &c, 1), 0);  // EOF: turned away
    EXPECT_EQ(ep.refuse_pending(), 0);
}

// Server mode, as conduit-vmm runs a card: a backend connects, handshakes, goes away;
// the frontend sees it on its poll fd; the next backend that connects gets a new session.
TEST(VhostUserEndpoint, NewSessionAfterTheBackendCloses) {
    const int fds_before = open_fd_count();
    {
        TempDir dir;
        const std::string path = dir.file("net0.sock");
        Endpoint ep = Endpoint::listen(path);
        for (int round = 0; round < 3; ++round) {
            auto backend = std::make_unique<FakeBackend>(connect_unix(path), BackendModel{});
            vu::Frontend fe(ep.wait_for_connection(5s), net0());
            const auto b = fe.negotiate(kVersion1);
            EXPECT_EQ(b.offered, BackendModel{}.features);
            EXPECT_FALSE(fe.disconnected());
            ::shutdown(fe.poll_fd(), SHUT_WR);  // the fake exits on EOF...
            backend.reset();                    // ...and its end closes
            ASSERT_TRUE(readable(fe.poll_fd(), 5000));
            EXPECT_TRUE(fe.disconnected()) << "round " << round;
            EXPECT_EQ(fe.error(), "net0: the backend closed the connection");
        }
    }
    EXPECT_EQ(open_fd_count(), fds_before);
}
