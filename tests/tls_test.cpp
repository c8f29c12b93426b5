// The TLS layer on its own (tls/context.hpp, tls/stream.hpp; issue 17): a client and a server
// stream joined by strings instead of sockets, with certificates made by the openssl command
// (tests/support/make_certs.sh). Handshake, data both ways and in pieces, every refusal (wrong CA,
// expired, wrong name, missing or foreign client certificate, garbage), resumption, rotation.
#define BOOST_TEST_MODULE tls_test
#include <boost/test/unit_test.hpp>

#include "test_tls.hpp"
#include "tls/stream.hpp"

#include <openssl/ssl.h>

#include <optional>
#include <random>

using namespace nodecoord;
using nodecoord::test::test_certs;

namespace {

const test_certs& certs() { return test_certs::get(); }

std::shared_ptr<const tls::context> server_ctx(const std::string& cert = "server", const std::string& client_ca = "",
                                               tls::version min = tls::version::tls1_2) {
  return test::server_context(cert, client_ca, min);
}

std::shared_ptr<const tls::context> client_ctx(const std::string& ca = "ca", const std::string& cert = "") {
  return test::client_context(ca, cert);
}

/// A client and a server stream and the bytes each has received, joined by pump().
struct tls_link {
  tls::stream client;
  tls::stream server;
  std::string client_got;
  std::string server_got;

  tls_link(std::shared_ptr<const tls::context> c, std::shared_ptr<const tls::context> s,
           const std::string& name = "localhost", tls::saved_session resume = nullptr)
    : client(std::move(c), name, std::move(resume)), server(std::move(s)) {
    client.start();
    pump();
  }

  /// Moves ciphertext both ways until neither side has any left.
  void pump() {
    for (int i = 0; i < 50; ++i) {
      std::string to_server, to_client;
      client.take_output(to_server);
      if (!to_server.empty())
        server.receive(to_server, server_got);
      server.take_output(to_client);
      if (!to_client.empty())
        client.receive(to_client, client_got);
      if (to_server.empty() && to_client.empty())
        return;
    }
    BOOST_FAIL("the streams kept talking for 50 rounds");
  }
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_CASE(handshake_then_data_both_ways) {
  tls_link l(client_ctx(), server_ctx());
  BOOST_TEST_REQUIRE(l.client.open(), l.client.error());
  BOOST_TEST_REQUIRE(l.server.open(), l.server.error());
  BOOST_TEST(l.client.protocol() == "TLSv1.3");
  BOOST_TEST(!l.client.resumed());
  // The server's certificate names what the client verified; no client certificate here.
  BOOST_TEST(l.client.peer_certificate_names("localhost"));
  BOOST_TEST(l.server.peer_names().empty());
  BOOST_TEST(l.client.send("{\"type\":\"hello\"}\n"));
  l.pump();
  BOOST_TEST(l.server_got == "{\"type\":\"hello\"}\n");
  // 1 MiB back, delivered to the client in uneven pieces (records split across reads).
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i)
    big[i] = static_cast<char>('a' + i % 26);
  BOOST_TEST(l.server.send(big));
  std::string wire;
  l.server.take_output(wire);
  BOOST_TEST(wire.size() > big.size()); // encrypted, with record overhead
  BOOST_TEST(!contains(wire, big.substr(0, 64)));
  size_t at = 0, piece = 1;
  while (at < wire.size()) {
    auto n = std::min(piece, wire.size() - at);
    BOOST_TEST_REQUIRE(l.client.receive(std::string_view(wire).substr(at, n), l.client_got), l.client.error());
    at += n;
    piece = piece * 3 % 7001 + 1;
  }
  BOOST_TEST(l.client_got == big);
}

BOOST_AUTO_TEST_CASE(data_sent_before_the_handshake_is_held_until_it_is_done) {
  tls::stream client(client_ctx(), "localhost");
  tls::stream server(server_ctx());
  BOOST_TEST(client.send("early\n"));
  client.start();
  std::string got, ignored, wire;
  for (int i = 0; i < 10 && !(client.open() && server.open() && got == "early\n"); ++i) {
    wire.clear();
    client.take_output(wire);
    server.receive(wire, got);
    wire.clear();
    server.take_output(wire);
    client.receive(wire, ignored);
  }
  BOOST_TEST(got == "early\n");
}

BOOST_AUTO_TEST_CASE(a_tls_client_starts_with_a_handshake_record_a_plain_one_with_a_brace) {
  tls::stream client(client_ctx(), "localhost");
  client.start();
  std::string hello;
  client.take_output(hello);
  BOOST_TEST_REQUIRE(!hello.empty());
  BOOST_TEST(tls::starts_tls(static_cast<unsigned char>(hello[0])));
  BOOST_TEST(!tls::starts_tls('{'));
}

BOOST_AUTO_TEST_CASE(the_client_refuses_a_server_signed_by_another_ca) {
  tls_link l(client_ctx("other-ca"), server_ctx());
  BOOST_TEST((l.client.current() == tls::stream::state::failed));
  BOOST_TEST(contains(l.client.error(), "certificate verification failed"), l.client.error());
  // The server hears the client's alert and fails too; nothing was delivered.
  BOOST_TEST(!l.server.open());
  BOOST_TEST(l.server_got.empty());
}

BOOST_AUTO_TEST_CASE(the_client_checks_the_server_name) {
  auto s = server_ctx();
  tls_link by_ip(client_ctx(), s, "127.0.0.1");
  BOOST_TEST(by_ip.client.open(), by_ip.client.error());
  tls_link wrong(client_ctx(), s, "coordinator.example.org");
  BOOST_TEST((wrong.client.current() == tls::stream::state::failed));
  BOOST_TEST(contains(wrong.client.error(), "hostname mismatch"), wrong.client.error());
  tls_link wrong_ip(client_ctx(), s, "127.0.0.2");
  BOOST_TEST((wrong_ip.client.current() == tls::stream::state::failed));
  BOOST_TEST(contains(wrong_ip.client.error(), "IP address mismatch"), wrong_ip.client.error());
}

BOOST_AUTO_TEST_CASE(the_client_refuses_an_expired_server_certificate) {
  // A server context cannot be built from an expired certificate (see below), so swap it in.
  auto s = server_ctx();
  SSL_CTX* native = s->native();
  BOOST_TEST_REQUIRE(SSL_CTX_use_certificate_file(native, certs().crt("expired").c_str(), SSL_FILETYPE_PEM) == 1);
  BOOST_TEST_REQUIRE(SSL_CTX_use_PrivateKey_file(native, certs().key("expired").c_str(), SSL_FILETYPE_PEM) == 1);
  tls_link l(client_ctx(), s);
  BOOST_TEST((l.client.current() == tls::stream::state::failed));
  BOOST_TEST(contains(l.client.error(), "certificate has expired"), l.client.error());
}

BOOST_AUTO_TEST_CASE(a_server_below_its_minimum_version_refuses) {
  auto client = client_ctx();
  SSL_CTX_set_max_proto_version(client->native(), TLS1_2_VERSION);
  tls_link old(client, server_ctx("server", "", tls::version::tls1_3));
  BOOST_TEST(!old.server.open());
  BOOST_TEST(contains(old.server.error(), "unsupported protocol"), old.server.error());
  tls_link fine(client, server_ctx());
  BOOST_TEST(fine.server.open(), fine.server.error());
  BOOST_TEST(fine.client.protocol() == "TLSv1.2");
}

BOOST_AUTO_TEST_CASE(mutual_tls_verifies_the_client_certificate_and_reports_its_names) {
  auto s = server_ctx("server", "ca");
  BOOST_TEST(s->verifies_clients());
  tls_link good(client_ctx("ca", "node-a"), s);
  BOOST_TEST_REQUIRE(good.server.open(), good.server.error());
  BOOST_TEST(good.server.peer_certificate_names("node-a"));
  BOOST_TEST(!good.server.peer_certificate_names("node-b"));
  BOOST_TEST(!good.server.peer_certificate_names(""));
  // Without a certificate: refused in the handshake.
  tls_link none(client_ctx(), s);
  BOOST_TEST(!none.server.open());
  BOOST_TEST(contains(none.server.error(), "certificate"), none.server.error());
  // Signed by another CA (a stolen key is not enough): refused.
  tls_link rogue(client_ctx("ca", "rogue"), s);
  BOOST_TEST(!rogue.server.open());
  BOOST_TEST(contains(rogue.server.error(), "certificate verification failed"), rogue.server.error());
  // A valid certificate for another name completes the handshake; the session compares names.
  tls_link other(client_ctx("ca", "wrong-cn"), s);
  BOOST_TEST_REQUIRE(other.server.open(), other.server.error());
  BOOST_TEST(!other.server.peer_certificate_names("node-a"));
  BOOST_TEST(other.server.peer_certificate_names("intruder"));
  // node-a's certificate, expired (a client context refuses to load it, see below; swapped in).
  auto c = client_ctx("ca", "node-a");
  SSL_CTX* native = c->native();
  BOOST_TEST_REQUIRE(SSL_CTX_use_certificate_file(native, certs().crt("expired-node-a").c_str(), SSL_FILETYPE_PEM)
                     == 1);
  BOOST_TEST_REQUIRE(SSL_CTX_use_PrivateKey_file(native, certs().key("expired-node-a").c_str(), SSL_FILETYPE_PEM) == 1);
  tls_link expired(c, s);
  BOOST_TEST(!expired.server.open());
  BOOST_TEST(contains(expired.server.error(), "certificate has expired"), expired.server.error());
  BOOST_TEST(expired.server_got.empty());
}

BOOST_AUTO_TEST_CASE(garbage_fails_the_stream_and_nothing_else) {
  auto s = server_ctx();
  std::mt19937 rng(17);
  for (int round = 0; round < 200; ++round) {
    tls::stream server(s);
    std::string junk(1 + rng() % 600, '\0');
    for (auto& c : junk)
      c = static_cast<char>(rng());
    if (round % 2 == 0)
      junk[0] = 0x16; // looks like a handshake record
    std::string got;
    server.receive(junk, got);
    BOOST_TEST(got.empty());
    BOOST_TEST((server.current() != tls::stream::state::open));
  }
  // Plain JSON on a TLS stream.
  tls::stream plain(s);
  std::string got;
  BOOST_TEST(!plain.receive("{\"type\":\"hello\",\"node\":\"a\"}\n", got));
  BOOST_TEST(!plain.error().empty());
  // Garbage after a good handshake: the stream fails, the other streams of the context do not.
  tls_link l(client_ctx(), s);
  tls_link bystander(client_ctx(), s);
  BOOST_TEST_REQUIRE(l.server.open());
  std::string record = "\x17\x03\x03\x00\x20" + std::string(32, 'x');
  BOOST_TEST(!l.server.receive(record, l.server_got));
  BOOST_TEST((l.server.current() == tls::stream::state::failed));
  BOOST_TEST(bystander.client.send("still here\n"));
  bystander.pump();
  BOOST_TEST(bystander.server_got == "still here\n");
}

BOOST_AUTO_TEST_CASE(a_closed_stream_reports_closed) {
  tls_link l(client_ctx(), server_ctx());
  BOOST_TEST_REQUIRE(l.server.open());
  l.client.shutdown();
  l.pump();
  BOOST_TEST((l.server.current() == tls::stream::state::closed));
}

BOOST_AUTO_TEST_CASE(a_reconnecting_client_resumes_its_session) {
  auto s = server_ctx();
  auto c = client_ctx();
  tls_link first(c, s);
  BOOST_TEST(first.client.send("x\n"));
  first.pump();
  BOOST_TEST(first.server.send("y\n"));
  first.pump(); // TLS 1.3 tickets arrive after the handshake
  auto saved = first.client.session();
  BOOST_TEST_REQUIRE(saved != nullptr);
  tls_link second(c, s, "localhost", saved);
  BOOST_TEST_REQUIRE(second.client.open(), second.client.error());
  BOOST_TEST(second.client.resumed());
  BOOST_TEST(second.server.resumed());
}

BOOST_AUTO_TEST_CASE(live_streams_keep_their_context_when_a_new_one_replaces_it) {
  auto s = server_ctx("server");
  tls_link l(client_ctx(), s);
  BOOST_TEST_REQUIRE(l.server.open());
  s = server_ctx("server2"); // the reload: the old context lives on in its streams only
  tls_link fresh(client_ctx(), s);
  BOOST_TEST(fresh.server.open(), fresh.server.error());
  BOOST_TEST(l.client.send("after the reload\n"));
  l.pump();
  BOOST_TEST(l.server_got == "after the reload\n");
}

BOOST_AUTO_TEST_CASE(contexts_refuse_unusable_files_with_the_reason) {
  auto server_error = [](tls::server_options o) {
    std::string why;
    auto c = tls::context::server(o, why);
    BOOST_TEST(c == nullptr);
    return why;
  };
  tls::server_options o;
  o.cert_file = certs().crt("server");
  o.key_file = certs().key("server");
  auto missing = o;
  missing.key_file = certs().dir() + "/absent.key";
  BOOST_TEST(contains(server_error(missing), "key_file: cannot read"), server_error(missing));
  auto mismatch = o;
  mismatch.key_file = certs().key("server2");
  BOOST_TEST(contains(server_error(mismatch), "does not belong to the certificate"), server_error(mismatch));
  auto not_pem = o;
  not_pem.cert_file = certs().dir() + "/ca.cnf";
  BOOST_TEST(contains(server_error(not_pem), "cert_file: " + not_pem.cert_file + " holds no usable PEM certificate"),
             server_error(not_pem));
  auto expired = o;
  expired.cert_file = certs().crt("expired");
  expired.key_file = certs().key("expired");
  BOOST_TEST(contains(server_error(expired), "expired at 2020-01-02T00:00:00Z"), server_error(expired));
  auto bad_ca = o;
  bad_ca.client_ca_file = certs().dir() + "/none.crt";
  BOOST_TEST(contains(server_error(bad_ca), "client_ca_file: cannot read"), server_error(bad_ca));
  auto unset = o;
  unset.cert_file.clear();
  BOOST_TEST(contains(server_error(unset), "cert_file is not set"), server_error(unset));
  // A client: a certificate needs its key.
  tls::client_options co;
  co.ca_file = certs().crt("ca");
  co.cert_file = certs().crt("node-a");
  std::string why;
  BOOST_TEST(tls::context::client(co, why) == nullptr);
  BOOST_TEST(contains(why, "key_file is not set"), why);
  // Versions.
  tls::version v;
  BOOST_TEST(tls::parse_version("1.3", v));
  BOOST_TEST((v == tls::version::tls1_3));
  BOOST_TEST(!tls::parse_version("1.1", v));
  BOOST_TEST(!tls::parse_version("TLSv1.2", v));
}
