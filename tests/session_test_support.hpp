#pragma once

// Shared by the session_test sources: the deterministic coordinator (acceptor, registry, tracker,
// storage on SQLite, CAF's test multiplexer), held commits, and an agent's link talking to it.

#include "actors/acceptor.hpp"
#include "actors/registry.hpp"
#include "actors/shutdown.hpp"
#include "actors/storage.hpp"
#include "actors/tracker.hpp"
#include "common/api_key.hpp"
#include "common/ids.hpp"
#include "common/ingest_budget.hpp"
#include "common/metrics.hpp"
#include "protocol/codec.hpp"
#include "storage/query.hpp"
#include "deterministic.hpp"
#include "test_db.hpp"
#include "tools/agent/link.hpp"
#include "tools/agent/store.hpp"
#include "process.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/test_multiplexer.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>

using namespace nodecoord;

namespace nodecoord {
inline std::ostream& operator<<(std::ostream& os, order_status s) { return os << to_string(s); }
} // namespace nodecoord
using namespace std::chrono_literals;
using json = nlohmann::json;
using caf::io::connection_handle;

namespace session_test {

inline constexpr uint16_t test_port = 4242; // the 0.17 test multiplexer needs a fixed port

/// The database first: it outlives the actor system (the storage actor's connection).
struct session_database {
  explicit session_database(std::shared_ptr<test::test_database> db)
    : db_owner(db ? std::move(db) : std::make_shared<test::test_database>(storage::backend::sqlite)), t(*db_owner) {}
  std::shared_ptr<test::test_database> db_owner;
  test::test_database& t;
};

struct session_fixture : session_database, test::deterministic_system {

  /// `db`: a database an earlier fixture used (a restarted coordinator); `fault_hook`: storage's.
  /// `tweak`: changes the acceptor's (and so every session's) options before it starts.
  explicit session_fixture(uint32_t max_connections = 100, std::shared_ptr<test::test_database> db = nullptr,
                           std::function<void(storage::batch_executor::fault_point)> fault_hook = {},
                           std::function<void(acceptor_options&)> tweak = {})
    : session_database(std::move(db)), deterministic_system(io::simulated), mpx(*mpx_or_null) {
    storage = start_storage(t, storage_options{{}, 100, 100ms, 1s, {}, std::move(fault_hook)});
    registry_options ro;
    ro.storage = storage;
    ro.clock = t.clock.fn();
    ro.auth_failures_per_minute = 5;
    registry = spawn_registry(sys, ro);
    tracker_options to;
    to.storage = storage;
    tracker = spawn_tracker(sys, to);
    caf::anon_send(registry, subscribe_atom::value, caf::actor_cast<caf::actor>(tracker));
    mpx.provide_acceptor(test_port, acc);
    acceptor_options ao;
    ao.port = test_port;
    ao.max_connections = max_connections;
    ao.session.hello_timeout = 5s;
    ao.session.heartbeat_interval = 10s;
    ao.session.idle_timeout = 30s;
    ao.session.max_protocol_errors = 3;
    ao.session.max_frame_bytes = 4096;
    ao.session.max_outbound_bytes = 64 * 1024;
    ao.session.registry = registry;
    ao.session.storage = storage;
    ao.session.tracker = tracker;
    ao.session.clock = t.clock.fn();
    if (tweak)
      tweak(ao);
    acceptor = spawn_acceptor(sys, ao);
    run();
  }

  ~session_fixture() {
    // As the daemon does: the acceptor closes every session, then everything stops.
    caf::anon_send(acceptor, shutdown_atom::value);
    run();
    caf::anon_send_exit(acceptor, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(tracker, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(storage, caf::exit_reason::user_shutdown);
    run();
  }

  connection_handle connect() { return connect_to(acc); }

  using node = test::test_node;

  node add_node(const std::string& name) { return test::add_test_node(t, name); }

  std::string hello_line(const node& n, const std::string& key = "") {
    return protocol::encode_hello({protocol::version, n.name, key.empty() ? n.key : key, "test", ""});
  }

  /// Connects and authenticates; returns the connection and the welcome frame.
  std::pair<connection_handle, json> login(const node& n) {
    auto c = connect();
    send(c, hello_line(n));
    auto f = frames(c);
    BOOST_REQUIRE_EQUAL(f.size(), 1u);
    BOOST_REQUIRE_EQUAL(f[0]["type"], "welcome");
    return {c, f[0]};
  }

  storage::node_record row(const node& n) {
    auto r = t.run(storage::node_lookup_by_name{n.name});
    BOOST_REQUIRE(r.found);
    return r.node;
  }

  /// A backfill of `n`'s oldest partial attempts (or of `ids`) through the tracker.
  order_result order(const node& n, std::vector<std::string> ids = {}) {
    order_result out;
    auto limit = ids.empty() ? 10 : 0;
    auto rh = self->request(tracker, caf::infinite, backfill_order{n.id, 0, std::move(ids), limit, "test"});
    run();
    rh.receive([&](order_result& r) { out = std::move(r); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    return out;
  }

  /// Starts the orderly shutdown (actors/shutdown.hpp) from an actor of its own; `report` is set
  /// when the sequence is done. (The actor takes an argument: CAF 0.17 dereferences a null tuple
  /// when a function actor takes none, which UBSan reports.)
  caf::actor start_shutdown(std::optional<shutdown_report>& report) {
    return sys.spawn(
      [&](caf::event_based_actor* self, int) -> caf::behavior {
        shutdown_in_order(self, {acceptor, registry, scheduler_actor{}, tracker, storage},
                          [&report](const shutdown_report& r) { report = r; });
        return {};
      },
      0);
  }

  std::vector<connected_node> connected() {
    std::vector<connected_node> out;
    auto rh = self->request(registry, caf::infinite, caf::get_atom::value);
    run();
    rh.receive([&](std::vector<connected_node>& v) { out = std::move(v); }, [](caf::error&) { BOOST_FAIL("get"); });
    return out;
  }

  caf::io::network::test_multiplexer& mpx;
  caf::io::accept_handle acc = caf::io::accept_handle::from_int(1);
  storage_actor storage;
  registry_actor registry;
  tracker_actor tracker;
  caf::actor acceptor;
};

/// Storage commits fail (a connection lost right before COMMIT) while `hold` is set: the
/// database is down, or the daemon is about to die before its commit.
struct held_commits {
  std::shared_ptr<bool> hold = std::make_shared<bool>(false);
  std::function<void(storage::batch_executor::fault_point)> hook() const {
    return [h = hold](storage::batch_executor::fault_point p) {
      if (*h && p == storage::batch_executor::fault_point::before_commit)
        throw storage::simulated_connection_loss("commit held by the test");
    };
  }
};

inline std::vector<std::string> types_of(const std::vector<json>& frames) {
  std::vector<std::string> out;
  for (auto& f : frames)
    out.push_back(f["type"] == "error"           ? "error:" + f["code"].get<std::string>()
                  : f["type"] == "heartbeat_ack" ? "ack:" + std::to_string(f["seq"].get<int64_t>())
                                                 : f["type"].get<std::string>());
  return out;
}

using strings = std::vector<std::string>;

/// The stored lines of attempt `a` as "seq text", in seq order.
inline strings stored_lines(test::test_database& t, const std::string& a) {
  strings out;
  for (auto& l : t.run(storage::logs_get{a, -1, 1000}))
    out.push_back(std::to_string(l.seq) + " " + l.line);
  return out;
}

/// "0 line 0" .. "n-1 line n-1": the lines the backpressure tests send.
inline strings numbered_lines(int n) {
  strings out;
  for (int s = 0; s < n; ++s)
    out.push_back(std::to_string(s) + " line " + std::to_string(s));
  return out;
}

/// Hands every frame the coordinator wrote to `c` to the agent's link; what the link answers
/// is sent back (and the exchange repeated until nobody has more to say).
inline void converse(session_fixture& f, connection_handle c, agent::coordinator_link& link, std::string out = {}) {
  for (int i = 0; i < 20; ++i) {
    if (!out.empty())
      f.send(c, out);
    out.clear();
    auto frames = f.frames(c);
    if (frames.empty())
      return;
    for (auto& fr : frames)
      link.on_line(fr.dump(), out);
  }
  BOOST_FAIL("the agent and the coordinator did not come to rest");
}

/// The agent connects (hello, welcome) and sends what its store holds unconfirmed.
inline connection_handle agent_connects(session_fixture& f, agent::coordinator_link& link) {
  auto c = f.connect();
  converse(f, c, link, link.start());
  BOOST_TEST_REQUIRE(link.welcomed());
  std::string out;
  link.poll_store(out);
  converse(f, c, link, out);
  return c;
}

} // namespace session_test
