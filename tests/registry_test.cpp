// The registry on its own (deterministic scheduler, SQLite): authentication and its failure
// limit, one live session per node (superseded by a newer one), session ends fenced by epoch,
// node_up/node_down to subscribers, disable and shutdown closing sessions, batched last_seen_at.
#define BOOST_TEST_MODULE registry_test
#include <boost/test/unit_test.hpp>

#include "actors/actors.hpp"
#include "actors/registry.hpp"
#include "common/api_key.hpp"
#include "deterministic.hpp"
#include "protocol/codec.hpp"
#include "storage/query.hpp"

#include <caf/event_based_actor.hpp>

#include <memory>
#include <string>
#include <vector>

using namespace nodecoord;
using namespace std::chrono_literals;

namespace {

/// What a stand-in session or subscriber received, in order ("close:superseded", "up:<epoch>").
using inbox = std::shared_ptr<std::vector<std::string>>;

caf::behavior recorder(caf::event_based_actor*, inbox log) {
  return {
    [=](caf::close_atom, const std::string& reason) { log->push_back("close:" + reason); },
    [=](node_up_atom, const session_ref& who, const caf::actor&) { log->push_back("up:" + std::to_string(who.epoch)); },
    [=](node_down_atom, const session_ref& who, const std::string& reason) {
      log->push_back("down:" + std::to_string(who.epoch) + ":" + reason);
    },
  };
}

struct with_database {
  with_database() : t(storage::backend::sqlite) {}
  test::test_database t;
};

struct fixture : with_database, test::deterministic_system {
  fixture() {
    storage = start_storage(t);
    registry_options ro;
    ro.storage = storage;
    ro.clock = t.clock.fn();
    ro.auth_failures_per_minute = 3;
    registry = spawn_registry(sys, ro);
    subscriber = sys.spawn(recorder, events);
    caf::anon_send(registry, subscribe_atom::value, subscriber);
    run();
  }
  ~fixture() {
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(storage, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(subscriber, caf::exit_reason::user_shutdown);
    for (auto& s : sessions)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    run();
  }

  using node = test::test_node;
  node add_node(const std::string& name) { return test::add_test_node(t, name); }

  /// A stand-in session actor and what it receives.
  std::pair<caf::actor, inbox> session() {
    auto log = std::make_shared<std::vector<std::string>>();
    sessions.push_back(sys.spawn(recorder, log));
    return {sessions.back(), log};
  }

  auth_result hello(const std::string& name, const std::string& key, const caf::actor& s,
                    const std::string& peer = "10.0.0.1") {
    return ask<auth_result>(registry, hello_atom::value, auth_request{name, key, peer, "{}"}, s);
  }

  storage::node_record row(const node& n) { return t.run(storage::node_lookup_by_name{n.name}).node; }

  storage_actor storage;
  registry_actor registry;
  inbox events = std::make_shared<std::vector<std::string>>();
  caf::actor subscriber;
  std::vector<caf::actor> sessions;
};

using strings = std::vector<std::string>;

} // namespace

BOOST_FIXTURE_TEST_CASE(a_good_hello_begins_a_session_and_tells_subscribers, fixture) {
  auto n = add_node("alpha");
  auto [s, log] = session();
  auto r = hello("alpha", n.key, s);
  BOOST_TEST_REQUIRE(r.ok, r.code << " " << r.message);
  BOOST_TEST(r.node_id == n.id);
  BOOST_TEST(r.epoch == 1);
  BOOST_TEST(row(n).status == "online");
  BOOST_TEST(row(n).session_epoch == 1);
  BOOST_TEST(*events == strings{"up:1"});
  auto connected = ask<std::vector<connected_node>>(registry, caf::get_atom::value);
  BOOST_TEST_REQUIRE(connected.size() == 1u);
  BOOST_TEST(connected[0].name == "alpha");
  BOOST_TEST(connected[0].peer == "10.0.0.1");
}

// Every authentication problem is the same answer (a prober learns nothing).
BOOST_FIXTURE_TEST_CASE(every_bad_hello_is_auth_failed, fixture) {
  auto n = add_node("alpha");
  add_node("beta");
  auto other = add_node("gamma");
  auto [s, log] = session();
  for (auto& [name, key] : std::vector<std::pair<std::string, std::string>>{
         {"alpha", "not a key"},
         {"alpha", other.key},                                                             // another node's key
         {"nobody", n.key},                                                                // a name that does not exist
         {"alpha", n.key.substr(0, n.key.size() - 1) + (n.key.back() == '0' ? "1" : "0")}, // wrong secret
       }) {
    auto r = hello(name, key, s, "10.0.0." + std::to_string(name.size())); // apart from the limiter
    BOOST_TEST(!r.ok, name);
    BOOST_TEST(r.code == protocol::code::auth_failed, name << ": " << r.code);
  }
  BOOST_TEST(events->empty());
  BOOST_TEST(row(n).status == "offline");
}

// auth_failures_per_minute (3 here) per address: then refused without a lookup, for a minute;
// other addresses are not affected.
BOOST_FIXTURE_TEST_CASE(failed_hellos_are_limited_per_address, fixture) {
  auto n = add_node("alpha");
  auto [s, log] = session();
  for (int i = 0; i < 3; ++i)
    BOOST_TEST(!hello("alpha", "nck_00_00", s, "10.9.9.9").ok);
  // Now even the right key fails from that address...
  BOOST_TEST(!hello("alpha", n.key, s, "10.9.9.9").ok);
  // ...but not from another one.
  BOOST_TEST(hello("alpha", n.key, s, "10.9.9.10").ok);
  t.clock.advance(61s);
  auto [s2, log2] = session();
  BOOST_TEST(hello("alpha", n.key, s2, "10.9.9.9").ok, "a minute later the address may try again");
}

// One live session per node: a newer hello supersedes the older session (which is told to close),
// and the older session's end changes nothing about the node's row.
BOOST_FIXTURE_TEST_CASE(a_newer_session_supersedes_and_ends_are_fenced_by_epoch, fixture) {
  auto n = add_node("alpha");
  auto [s1, log1] = session();
  auto [s2, log2] = session();
  BOOST_TEST_REQUIRE(hello("alpha", n.key, s1).epoch == 1);
  BOOST_TEST_REQUIRE(hello("alpha", n.key, s2).epoch == 2);
  run();
  BOOST_TEST(*log1 == strings{"close:superseded"});
  BOOST_TEST(log2->empty());
  // The old session ends: the node stays online under epoch 2.
  caf::anon_send(registry, ended_atom::value, session_ref{n.id, 1}, std::string("superseded"));
  advance(1s);
  BOOST_TEST(row(n).status == "online");
  BOOST_TEST(row(n).session_epoch == 2);
  // The current one ends: offline, with its reason.
  caf::anon_send(registry, ended_atom::value, session_ref{n.id, 2}, std::string("socket_closed"));
  advance(1s);
  BOOST_TEST(row(n).status == "offline");
  BOOST_TEST(row(n).disconnect_reason == "socket_closed");
  BOOST_TEST(*events == (strings{"up:1", "up:2", "down:1:superseded", "down:2:socket_closed"}));
  BOOST_TEST(ask<std::vector<connected_node>>(registry, caf::get_atom::value).empty());
}

// The admin API's page of nodes asks about its own nodes only, and the overview only for a count.
BOOST_FIXTURE_TEST_CASE(sessions_are_listed_for_given_nodes_and_counted, fixture) {
  auto a = add_node("alpha");
  auto b = add_node("beta");
  auto c = add_node("gamma");
  auto [sa, la] = session();
  auto [sc, lc] = session();
  BOOST_TEST_REQUIRE(hello("alpha", a.key, sa).ok);
  BOOST_TEST_REQUIRE(hello("gamma", c.key, sc).ok);
  BOOST_TEST(ask<uint64_t>(registry, stats_atom::value) == 2u);
  auto some = ask<std::vector<connected_node>>(registry, caf::get_atom::value,
                                               std::vector<std::string>{b.id, c.id, "not-a-node"});
  BOOST_TEST_REQUIRE(some.size() == 1u);
  BOOST_TEST(some[0].name == "gamma");
  BOOST_TEST(some[0].node_id == c.id);
  BOOST_TEST(ask<std::vector<connected_node>>(registry, caf::get_atom::value, std::vector<std::string>{}).empty());
}

BOOST_FIXTURE_TEST_CASE(disable_and_shutdown_close_sessions, fixture) {
  auto a = add_node("alpha");
  auto b = add_node("beta");
  auto [sa, la] = session();
  auto [sb, lb] = session();
  BOOST_TEST_REQUIRE(hello("alpha", a.key, sa).ok);
  BOOST_TEST_REQUIRE(hello("beta", b.key, sb).ok);
  BOOST_TEST(ask<bool>(registry, disable_atom::value, std::string("alpha")));
  BOOST_TEST(!ask<bool>(registry, disable_atom::value, std::string("nobody")));
  run();
  BOOST_TEST(*la == strings{"close:disabled"});
  BOOST_TEST(ask<uint64_t>(registry, shutdown_atom::value) == 2u);
  run();
  BOOST_TEST(*la == (strings{"close:disabled", "close:shutdown"}));
  BOOST_TEST(*lb == strings{"close:shutdown"});
}

// An operator disables a node in the database (nodecoordctl): the poll closes its session.
BOOST_FIXTURE_TEST_CASE(a_node_disabled_in_the_database_is_disconnected_by_the_poll, fixture) {
  auto a = add_node("alpha");
  auto [sa, la] = session();
  BOOST_TEST_REQUIRE(hello("alpha", a.key, sa).ok);
  t.clock.advance(1s);
  BOOST_TEST_REQUIRE(t.run(storage::node_disable{"alpha"}).found);
  advance(defaults::disabled_poll * 2);
  // The polls' windows overlap (a node disabled during a query is seen by the next one too), so
  // the session may hear it twice; it closes on the first.
  BOOST_TEST_REQUIRE(!la->empty());
  for (auto& m : *la)
    BOOST_TEST(m == "close:disabled");
  // A disabled node cannot begin a session.
  auto [s2, l2] = session();
  auto r = hello("alpha", a.key, s2, "10.1.1.1");
  BOOST_TEST(!r.ok);
  BOOST_TEST(r.code == protocol::code::auth_failed); // like every other authentication problem
}

// last_seen_at: written in batches every seen_flush, only for the current session.
BOOST_FIXTURE_TEST_CASE(last_seen_is_flushed_in_batches_for_the_current_session, fixture) {
  auto a = add_node("alpha");
  auto [sa, la] = session();
  BOOST_TEST_REQUIRE(hello("alpha", a.key, sa).ok);
  auto before = row(a).last_seen_at;
  t.clock.advance(3s);
  caf::anon_send(registry, seen_atom::value, session_ref{a.id, 7}); // not its epoch: ignored
  advance(defaults::seen_flush + 1s);
  BOOST_TEST(row(a).last_seen_at == before);
  caf::anon_send(registry, seen_atom::value, session_ref{a.id, 1});
  run();
  BOOST_TEST(row(a).last_seen_at == before, "not written at once");
  advance(defaults::seen_flush + 1s);
  BOOST_TEST(row(a).last_seen_at != before);
  BOOST_TEST(row(a).last_seen_at == "2026-01-09T12:00:03.000Z");
}
