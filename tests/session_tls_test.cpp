// node_session over TLS (issue 17), deterministic: the session's TLS stream talks to a client
// tls::stream through CAF's test multiplexer. A node logs in and stores over TLS; plain hellos get
// close{tls_required} (or work, when TLS is optional); mutual TLS checks that the certificate names
// the node; a failed or stalled handshake and garbage records close that connection only; a
// reload changes what new connections get while live sessions keep theirs.
#include <boost/test/unit_test.hpp>

#include "session_test_support.hpp"
#include "test_tls.hpp"
#include "tls/stream.hpp"

using namespace session_test;

namespace {

std::shared_ptr<const tls::context> server_ctx(const std::string& cert, const std::string& client_ca = "") {
  return test::server_context(cert, client_ca);
}

std::shared_ptr<const tls::context> client_ctx(const std::string& cert = "") {
  return test::client_context("ca", cert);
}

/// A coordinator whose node port has `setting` (replaceable through `tls`).
struct tls_fixture {
  std::shared_ptr<tls::server_setting> tls = std::make_shared<tls::server_setting>();
  session_fixture f;
  explicit tls_fixture(tls::server_setting::value setting)
    : f(100, nullptr, {}, [this, setting](acceptor_options& ao) {
        tls->set(setting);
        ao.session.tls = tls;
      }) {}
};

/// A node's end of a TLS connection to the fixture.
struct tls_client {
  session_fixture& f;
  connection_handle c;
  tls::stream s;
  std::string plain;    // decrypted, not yet taken as frames
  std::string raw_seen; // every byte the session wrote, as it crossed the wire
  tls_client(session_fixture& fx, std::shared_ptr<const tls::context> ctx)
    : f(fx), c(fx.connect()), s(std::move(ctx), "localhost") {
    s.start();
    pump();
  }
  /// Moves bytes both ways until neither side has more.
  void pump() {
    for (int i = 0; i < 20; ++i) {
      std::string out;
      s.take_output(out);
      if (!out.empty() && !f.closed(c))
        f.send(c, out);
      auto in = f.written(c);
      raw_seen += in;
      if (!in.empty())
        s.receive(in, plain);
      if (out.empty() && in.empty())
        return;
    }
    BOOST_FAIL("the connection kept talking for 20 rounds");
  }
  void send_line(const std::string& line) {
    BOOST_TEST_REQUIRE(s.send(line), s.error());
    pump();
  }
  std::vector<json> frames() {
    pump();
    std::vector<json> out;
    size_t pos = 0;
    for (auto nl = plain.find('\n'); nl != std::string::npos; nl = plain.find('\n', pos)) {
      out.push_back(json::parse(plain.substr(pos, nl - pos)));
      pos = nl + 1;
    }
    plain.erase(0, pos);
    return out;
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(session_tls)

BOOST_AUTO_TEST_CASE(a_node_logs_in_and_stores_over_tls) {
  tls_fixture x({server_ctx("server"), true});
  auto n = x.f.add_node("alpha");
  tls_client node(x.f, client_ctx());
  BOOST_TEST_REQUIRE(node.s.open(), node.s.error());
  node.send_line(x.f.hello_line(n));
  auto welcome = node.frames();
  BOOST_TEST_REQUIRE(types_of(welcome) == strings{"welcome"});
  auto a = new_uuid();
  const std::string ts = "2026-01-09T12:00:00.000Z";
  node.send_line(protocol::encode_attempt({a, "task-a", "succeeded", ts, ts, ""})
                 + protocol::encode_logs({a, {{0, ts, "stdout", "secret line"}}}) + protocol::encode_heartbeat(1));
  BOOST_TEST(types_of(node.frames()) == strings{"ack:1"});
  BOOST_TEST(stored_lines(x.f.t, a) == strings{"0 secret line"});
  // Nothing crossed the wire in clear text.
  BOOST_TEST(node.raw_seen.find("welcome") == std::string::npos);
  BOOST_TEST(node.raw_seen.find("heartbeat_ack") == std::string::npos);
  BOOST_TEST(x.f.row(n).status == "online");
}

BOOST_AUTO_TEST_CASE(a_plain_hello_gets_tls_required_unless_tls_is_optional) {
  tls_fixture required({server_ctx("server"), true});
  auto n = required.f.add_node("alpha");
  auto c = required.f.connect();
  required.f.send(c, required.f.hello_line(n));
  auto f = required.f.frames(c);
  BOOST_TEST_REQUIRE(f.size() == 1u);
  BOOST_TEST(f[0]["type"] == "close");
  BOOST_TEST(f[0]["reason"] == "tls_required");
  BOOST_TEST(required.f.closed(c));
  BOOST_TEST(required.f.row(n).status != "online");

  tls_fixture optional({server_ctx("server"), false});
  auto m = optional.f.add_node("beta");
  auto [pc, welcome] = optional.f.login(m); // plain
  BOOST_TEST(welcome["type"] == "welcome");
  tls_client node(optional.f, client_ctx()); // and TLS on the same port
  BOOST_TEST(node.s.open(), node.s.error());
}

BOOST_AUTO_TEST_CASE(mutual_tls_needs_a_certificate_that_names_the_node) {
  tls_fixture x({server_ctx("server", "ca"), true});
  auto a = x.f.add_node("node-a");
  auto intruder = x.f.add_node("intruder");
  // The right certificate and the right key.
  tls_client good(x.f, client_ctx("node-a"));
  good.send_line(x.f.hello_line(a));
  BOOST_TEST(types_of(good.frames()) == strings{"welcome"});
  // node-a's key (stolen) with another node's valid certificate: refused before the key check.
  tls_client stolen(x.f, client_ctx("wrong-cn"));
  BOOST_TEST_REQUIRE(stolen.s.open(), stolen.s.error());
  stolen.send_line(x.f.hello_line(a));
  auto refused = stolen.frames();
  BOOST_TEST_REQUIRE(types_of(refused) == strings{"error:auth_failed"});
  BOOST_TEST(refused[0]["message"].get<std::string>().find("does not name node 'node-a'") != std::string::npos);
  BOOST_TEST(x.f.closed(stolen.c));
  // That certificate with its own node's key is fine.
  tls_client own(x.f, client_ctx("wrong-cn"));
  own.send_line(x.f.hello_line(intruder));
  BOOST_TEST(types_of(own.frames()) == strings{"welcome"});
  // No certificate, or one from another CA: the handshake fails and the connection closes.
  auto failures = metrics::daemon().tls_failures.load();
  tls_client none(x.f, client_ctx());
  BOOST_TEST(!none.s.open());
  BOOST_TEST(x.f.closed(none.c));
  tls_client rogue(x.f, client_ctx("rogue"));
  BOOST_TEST(!rogue.s.open());
  BOOST_TEST(x.f.closed(rogue.c));
  BOOST_TEST(metrics::daemon().tls_failures.load() == failures + 2);
  // The good session is untouched.
  good.send_line(protocol::encode_heartbeat(1));
  BOOST_TEST(types_of(good.frames()) == strings{"ack:1"});
}

BOOST_AUTO_TEST_CASE(garbage_records_and_a_stalled_handshake_close_only_their_connection) {
  tls_fixture x({server_ctx("server"), true});
  auto n = x.f.add_node("alpha");
  tls_client good(x.f, client_ctx());
  good.send_line(x.f.hello_line(n));
  BOOST_TEST(types_of(good.frames()) == strings{"welcome"});
  // A TLS client that sends a record that does not decrypt.
  tls_client bad(x.f, client_ctx());
  BOOST_TEST_REQUIRE(bad.s.open());
  x.f.send(bad.c, "\x17\x03\x03\x00\x20" + std::string(32, 'x'));
  BOOST_TEST(x.f.closed(bad.c));
  // Handshake bytes, then nothing: closed at the hello deadline (5 s here).
  auto stalled = x.f.connect();
  tls::stream half(client_ctx(), "localhost");
  half.start();
  std::string hello;
  half.take_output(hello);
  x.f.send(stalled, hello.substr(0, hello.size() / 2));
  BOOST_TEST(!x.f.closed(stalled));
  x.f.advance(5s);
  BOOST_TEST(x.f.closed(stalled));
  good.send_line(protocol::encode_heartbeat(1));
  BOOST_TEST(types_of(good.frames()) == strings{"ack:1"});
}

BOOST_AUTO_TEST_CASE(a_reload_changes_new_connections_and_keeps_live_sessions) {
  tls_fixture x({server_ctx("server"), true});
  auto n = x.f.add_node("alpha");
  auto m = x.f.add_node("beta");
  tls_client before(x.f, client_ctx());
  before.send_line(x.f.hello_line(n));
  BOOST_TEST(types_of(before.frames()) == strings{"welcome"});
  // Rotate to another certificate and make TLS mutual: new connections need a client certificate.
  x.tls->set({server_ctx("server2", "ca"), true});
  tls_client plain_cert(x.f, client_ctx());
  BOOST_TEST(!plain_cert.s.open());
  tls_client after(x.f, client_ctx("wrong-cn"));
  BOOST_TEST_REQUIRE(after.s.open(), after.s.error());
  after.send_line(x.f.hello_line(m));
  BOOST_TEST(types_of(after.frames()) == strings{"error:auth_failed"}); // the name check is on too
  // The session from before the reload goes on with its own context.
  before.send_line(protocol::encode_heartbeat(1));
  BOOST_TEST(types_of(before.frames()) == strings{"ack:1"});
  BOOST_TEST(!x.f.closed(before.c));
}

BOOST_AUTO_TEST_SUITE_END()
