#define BOOST_TEST_MODULE acceptor_test
#include <boost/test/unit_test.hpp>

// The acceptor (actors/acceptor.hpp) under CAF's deterministic scheduler and test multiplexer:
// max_connections and max_handshakes refuse at once and give places back, and a shutdown closes
// every session with close{shutdown}. The sessions themselves are in session_test.

#include "session_test_support.hpp"

using namespace session_test;

BOOST_AUTO_TEST_CASE(max_connections_refuses_extra_connections) {
  session_fixture fx(2);
  auto c1 = fx.connect();
  auto c2 = fx.connect();
  auto c3 = fx.connect();
  BOOST_TEST(!fx.closed(c1));
  BOOST_TEST(!fx.closed(c2));
  BOOST_TEST(fx.closed(c3));
  BOOST_TEST(fx.mpx.output_buffer(c3).empty()); // closed at once: nothing written
  acceptor_stats s;
  auto rh = fx.self->request(fx.acceptor, caf::infinite, stats_atom::value);
  fx.run();
  rh.receive([&](const acceptor_stats& x) { s = x; }, [](caf::error&) { BOOST_FAIL("stats"); });
  BOOST_TEST(s.refused == 1u);
  BOOST_TEST(s.open == 2u);
}

// A session that ends gives its place back: with max_connections reached, closing one lets the
// next connection in, and the acceptor's counts follow.
BOOST_AUTO_TEST_CASE(a_closed_session_frees_its_place) {
  session_fixture fx(2);
  auto n = fx.add_node("alpha");
  auto [c1, w] = fx.login(n);
  auto c2 = fx.connect();
  BOOST_TEST(fx.closed(fx.connect()), "a third connection is refused");
  fx.send(c1, protocol::encode_bye("done"));
  BOOST_TEST(fx.closed(c1));
  auto c4 = fx.connect();
  BOOST_TEST(!fx.closed(c4), "the place c1 held is free again");
  BOOST_TEST(!fx.closed(c2));
  auto s = fx.ask<acceptor_stats>(fx.acceptor, stats_atom::value);
  BOOST_TEST(s.refused == 1u);
  BOOST_TEST(s.open == 2u);
}

// A cap on connections that have not authenticated: a flood of hellos cannot hold every slot.
BOOST_AUTO_TEST_CASE(max_handshakes_refuses_unauthenticated_connections_beyond_it) {
  session_fixture f(100, nullptr, {}, [](acceptor_options& o) { o.max_handshakes = 3; });
  auto n = f.add_node("alpha");
  auto c1 = f.connect();
  auto c2 = f.connect();
  auto c3 = f.connect();
  auto c4 = f.connect();
  BOOST_TEST(!f.closed(c1));
  BOOST_TEST(!f.closed(c3));
  BOOST_TEST(f.closed(c4), "the fourth unauthenticated connection is closed at once");
  BOOST_TEST(f.mpx.output_buffer(c4).empty());
  // Authenticating frees a place: c1 is welcomed, a new connection is accepted.
  f.send(c1, f.hello_line(n));
  BOOST_TEST(types_of(f.frames(c1)) == strings{"welcome"});
  auto c5 = f.connect();
  BOOST_TEST(!f.closed(c5));
  // So does failing, or timing out: c2 fails, c3 and c5 time out; three new ones fit again.
  f.send(c2, f.hello_line(n, "ncak_bogus.bogus"));
  BOOST_TEST(f.closed(c2));
  f.advance(6s);
  BOOST_TEST(f.closed(c3));
  BOOST_TEST(f.closed(c5));
  auto c6 = f.connect();
  auto c7 = f.connect();
  auto c8 = f.connect();
  BOOST_TEST(!f.closed(c6));
  BOOST_TEST(!f.closed(c8));
  BOOST_TEST(f.closed(f.connect()));
  BOOST_TEST(!f.closed(c1), "the authenticated session is not counted");
  acceptor_stats s;
  auto rh = f.self->request(f.acceptor, caf::infinite, stats_atom::value);
  f.run();
  rh.receive([&](acceptor_stats& x) { s = x; }, [](caf::error&) { BOOST_FAIL("stats"); });
  BOOST_TEST(s.refused_handshakes == 2u);
  (void)c7;
}

BOOST_FIXTURE_TEST_CASE(shutdown_closes_every_session, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  auto idle = connect();
  auto rh = self->request(acceptor, caf::infinite, shutdown_atom::value);
  run();
  rh.receive([](uint64_t) {}, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  auto f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["reason"] == "shutdown");
  BOOST_TEST(closed(c));
  BOOST_TEST(closed(idle));
  BOOST_TEST(row(n).status == "offline");
  BOOST_TEST(row(n).disconnect_reason == "shutdown");
}
