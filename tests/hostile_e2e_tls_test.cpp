#include <boost/test/unit_test.hpp>

// Hostile peers on a TLS node port, end to end (issue 17): the real nodecoordd with [server.tls]
// against records that are not TLS, a forged record after a real handshake, and handshakes that
// stall at each step. Each is closed (at once, or at hello_timeout for a stall), counted in
// nodecoord_tls_failures_total when the stream failed, and a good TLS node gets in while the
// stalled ones wait. Waits are bounded; no assertion depends on timing.

#include "admin_e2e_support.hpp"
#include "test_tls.hpp"
#include "tls/stream.hpp"

#include <poll.h>

#include <random>

using namespace admin_e2e;

namespace {

using steady = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto tls_close_bound = 20s; // hello_timeout is 1 s here

/// A TLS node on a node_client's socket: ciphertext goes out with send_raw, comes in by recv on
/// its fd (node_client's own buffer stays unused).
struct tls_node {
  node_client sock;
  nodecoord::tls::stream tls;
  std::string plain;

  explicit tls_node(uint16_t port) : sock(port), tls(test::client_context("ca"), "127.0.0.1") {}

  void flush() {
    std::string out;
    tls.take_output(out);
    if (!out.empty())
      sock.send_raw(out);
  }

  /// Reads what arrives within `bound` into the stream; false if the connection ended or the
  /// stream failed.
  bool pump(std::chrono::milliseconds bound) {
    pollfd p{sock.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(bound.count())) <= 0)
      return true;
    char buf[16384];
    auto n = ::recv(sock.fd(), buf, sizeof buf, 0);
    if (n <= 0)
      return false;
    bool ok = tls.receive(std::string_view(buf, static_cast<size_t>(n)), plain);
    flush();
    return ok;
  }

  /// The next frame of the coordinator within `bound`; fails the test otherwise.
  json read_frame(std::chrono::milliseconds bound = 10s) {
    auto deadline = steady::now() + bound;
    for (;;) {
      auto nl = plain.find('\n');
      if (nl != std::string::npos) {
        auto line = plain.substr(0, nl);
        plain.erase(0, nl + 1);
        return json::parse(line);
      }
      BOOST_TEST_REQUIRE((steady::now() < deadline), "no frame within the bound");
      BOOST_TEST_REQUIRE(pump(100ms), "connection ended: " << tls.error());
    }
  }

  void send_line(const std::string& line) {
    BOOST_TEST_REQUIRE(tls.send(line), tls.error());
    flush();
  }

  /// Handshake and hello; the welcome frame.
  json hello(const node_info& n) {
    tls.start();
    flush();
    send_line(protocol::encode_hello({protocol::version, n.name, n.key, "hostile_e2e_test/1", ""}));
    return read_frame();
  }
};

/// Waits at most `bound` for the daemon to close `c`; what it sent meanwhile is in c.buffered().
bool closed_within(node_client& c, std::chrono::milliseconds bound) {
  auto deadline = steady::now() + bound;
  while (steady::now() < deadline) {
    if (!c.read_available())
      return true;
    pollfd p{c.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
  }
  return !c.read_available();
}

/// A TLS record header: content type, version 3.1, length.
std::string record(unsigned char type, const std::string& body) {
  std::string r{static_cast<char>(type), '\x03', '\x01', static_cast<char>(body.size() >> 8),
                static_cast<char>(body.size() & 0xff)};
  return r + body;
}

} // namespace

BOOST_AUTO_TEST_CASE(garbage_records_and_stalled_tls_handshakes_are_closed_and_counted) {
  const auto& certs = test::test_certs::get();
  daemon_under_test d(with(base_settings(), {{"hello_timeout", "\"1s\""}}), "",
                      "[server.tls]\ncert_file = \"" + certs.crt("server") + "\"\nkey_file = \"" + certs.key("server")
                        + "\"\n");
  auto alpha = d.add_node("alpha");
  d.start();
  auto failures = [&] { return metric(http(d, "GET", "/metrics").body, "nodecoord_tls_failures_total"); };
  BOOST_TEST_REQUIRE(failures() == 0);

  // Stalls: a partial record header; a whole ClientHello and then nothing; twenty more of those
  // at once. Each holds a handshake place until hello_timeout.
  node_client partial_header(d.port());
  partial_header.send_raw(std::string("\x16\x03\x01", 3));
  tls_node after_client_hello(d.port());
  after_client_hello.tls.start();
  after_client_hello.flush();
  std::vector<std::unique_ptr<tls_node>> crowd;
  for (int i = 0; i < 20; ++i) {
    crowd.push_back(std::make_unique<tls_node>(d.port()));
    crowd.back()->tls.start();
    crowd.back()->flush();
  }

  // Garbage: a handshake record that is no ClientHello; random bytes after a handshake byte; a
  // forged application record (bad MAC) after a real handshake and welcome.
  std::mt19937 rng(17);
  std::string noise(2048, '\0');
  for (auto& ch : noise)
    ch = static_cast<char>(rng());
  node_client not_hello(d.port());
  not_hello.send_raw(record(0x16, "hello, coordinator"));
  node_client random_bytes(d.port());
  random_bytes.send_until_closed("\x16" + noise, 5s);
  tls_node forger(d.port());
  BOOST_TEST_REQUIRE(forger.hello(alpha).value("type", "") == "welcome");
  forger.sock.send_raw(record(0x17, noise.substr(0, 64)));
  BOOST_TEST(forger.pump(tls_close_bound) == false, "the forged record did not end the stream");

  for (auto* c : {&not_hello, &random_bytes}) {
    BOOST_TEST(closed_within(*c, tls_close_bound), "garbage did not close the connection");
    // At most a TLS alert came back (content type 21), never protocol text.
    BOOST_TEST((c->buffered().empty() || c->buffered()[0] == '\x15'), c->buffered().size() << " bytes");
  }
  // While every stalled handshake still waits: a good node gets in over TLS and works.
  {
    tls_node good(d.port());
    BOOST_TEST_REQUIRE(good.hello(alpha).value("type", "") == "welcome");
    good.send_line(protocol::encode_heartbeat(0));
    auto ack = good.read_frame();
    BOOST_TEST(ack.value("type", "") == "heartbeat_ack", ack.dump());
  }
  BOOST_TEST(closed_within(partial_header, tls_close_bound), "a partial record header was not closed");
  // The stalled clients never read the server's flight (reading it would finish their handshake).
  BOOST_TEST(closed_within(after_client_hello.sock, tls_close_bound), "a stalled ClientHello was not closed");
  for (auto& c : crowd)
    BOOST_TEST(closed_within(c->sock, tls_close_bound), "a stalled handshake of the crowd was not closed");

  // Exactly three streams failed (the deadline closed the stalls, not TLS); nothing waits.
  BOOST_TEST(failures() == 3);
  BOOST_TEST(eventually([&] { return metric(http(d, "GET", "/metrics").body, "nodecoord_handshakes") == 0; }, 20s));
  tls_node last(d.port());
  BOOST_TEST(last.hello(alpha).value("type", "") == "welcome", "the daemon serves on");
  d.stop();
}
