#pragma once
// The fixture of the tracker and scheduler tests: a storage actor on a real database (SQLite or
// PostgreSQL), the tracker (and optionally the scheduler) under the deterministic scheduler, and
// node sessions played by small fake actors that record the backfill_request frames they get.
#include "actors/actors.hpp"
#include "actors/scheduler.hpp"
#include "actors/storage.hpp"
#include "actors/tracker.hpp"
#include "common/api_key.hpp"
#include "common/ids.hpp"
#include "common/log.hpp"
#include "deterministic.hpp"
#include "test_db.hpp"

#include <caf/event_based_actor.hpp>

#include <nlohmann/json.hpp>
#include <soci/soci.h>

#include <map>
#include <ostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nodecoord {
inline std::ostream& operator<<(std::ostream& os, order_status s) { return os << to_string(s); }
} // namespace nodecoord

namespace nodecoord::test::backfill {

/// Warnings and errors only: a failing case prints what went wrong, not every request. (Each
/// test module including this header gets it once.)
struct quiet_log {
  quiet_log() { log::set_level(log::level::warn); }
};
BOOST_TEST_GLOBAL_FIXTURE(quiet_log);

using namespace std::chrono_literals;
using json = nlohmann::json;
using respond_atom = caf::atom_constant<caf::atom("respond")>;

/// A backfill_response a fake session sent, and whether the tracker knew its request.
struct sent_response {
  std::string request_id;
  std::string node_id;
  int64_t epoch = 0;
  std::vector<storage::backfill_item> items;
  std::optional<bool> known;
};

/// What a fake session saw.
struct session_log {
  std::vector<json> requests; // backfill_request frames, in order
  bool fail_sends = false;    // behave like a session that cannot write (closing, slow consumer)
  std::shared_ptr<std::vector<sent_response>> responses = std::make_shared<std::vector<sent_response>>();
};

/// Plays a node_session towards the tracker: takes backfill_request frames, or reports that it
/// could not send them.
inline caf::behavior fake_session(caf::event_based_actor* self, std::shared_ptr<session_log> log, tracker_actor tracker,
                                  std::string node_id, int64_t epoch) {
  return {
    [=](backfill_atom, const backfill_delivery& d) {
      const auto& rid = d.request_id;
      const auto& line = d.frame;
      if (log->fail_sends || d.to != session_ref{node_id, epoch}) {
        self->send(tracker, sendfail_atom::value, d.to, rid);
        return;
      }
      log->requests.push_back(json::parse(line));
    },
    [=](respond_atom, const std::string& rid, std::vector<storage::backfill_item>& items) {
      auto idx = log->responses->size();
      log->responses->push_back({rid, node_id, epoch, items, std::nullopt});
      self
        ->request(tracker, caf::infinite, response_atom::value, session_ref{node_id, epoch}, rid, std::move(items))
        // An error (the epoch fence refused the apply: the node has a newer session) is not an
        // acceptance either.
        .then([=](bool known) { (*log->responses)[idx].known = known; },
              [=](caf::error&) { (*log->responses)[idx].known = false; });
    },
  };
}

inline storage::backfill_item ok(const std::string& id, int64_t log_count) { return {id, true, log_count, ""}; }
inline storage::backfill_item not_ok(const std::string& id, std::string error = "not found") {
  return {id, false, 0, std::move(error)};
}

/// The database first: it outlives the actor system (the storage actor's connection).
struct with_database {
  explicit with_database(storage::backend b) : t(b) {}
  test::test_database t;
};

struct fixture : with_database, test::deterministic_system {

  struct node {
    std::string id, name;
    int64_t epoch = 0;
    caf::actor session;
    std::shared_ptr<session_log> log;
  };

  explicit fixture(storage::backend b, tracker_options to = {}, std::optional<scheduler_options> so = {})
    : with_database(b) {
    storage = start_storage(t, storage_options{{}, 100, 100ms, 1s, {}, {}});
    to.storage = storage;
    tracker = spawn_tracker(sys, to);
    if (so) {
      so->storage = storage;
      so->tracker = tracker;
      if (!so->seed)
        so->seed = 1;
      scheduler = spawn_scheduler(sys, *so);
    }
    run();
  }

  ~fixture() {
    caf::anon_send_exit(tracker, caf::exit_reason::user_shutdown);
    if (scheduler)
      caf::anon_send_exit(scheduler, caf::exit_reason::user_shutdown);
    for (auto& s : sessions)
      caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(storage, caf::exit_reason::user_shutdown);
    run();
  }

  /// Runs every actor until nothing is left to do (timers excepted).
  node add_node(const std::string& name) {
    auto k = generate_api_key();
    auto r = t.run(storage::node_create{name, "", k.key_id, k.key_hash});
    BOOST_REQUIRE(r.created);
    return {r.node.id, name, 0, {}, {}};
  }

  void announce(node& n) {
    auto r = t.run(storage::node_begin_session{n.id, n.epoch, ""});
    BOOST_REQUIRE(r.ok);
    n.epoch = r.epoch;
    n.log = std::make_shared<session_log>();
    n.session = sys.spawn(fake_session, n.log, tracker, n.id, n.epoch);
    sessions.push_back(n.session);
    caf::anon_send(tracker, node_up_atom::value, session_ref{n.id, n.epoch}, n.session);
    if (scheduler)
      caf::anon_send(scheduler, node_up_atom::value, session_ref{n.id, n.epoch}, n.session);
  }

  /// A new session of `n` (epoch compare-and-set in the table, as the registry does), announced
  /// to the tracker and the scheduler as the registry would.
  void connect(node& n) {
    announce(n);
    run();
  }

  /// New sessions of all `ns` announced at the same instant, before any actor runs (a connect
  /// storm as the scheduler sees it).
  void connect_all(std::vector<node>& ns) {
    for (auto& n : ns)
      announce(n);
    run();
  }

  /// What the scheduler reports about itself.
  scheduler_status scheduler_counters() {
    scheduler_status out;
    auto rh = self->request(scheduler, caf::infinite, caf::get_atom::value);
    run();
    rh.receive([&](scheduler_status& s) { out = s; }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    return out;
  }

  void disconnect(const node& n, int64_t epoch = 0, const std::string& reason = "socket_closed") {
    auto e = epoch ? epoch : n.epoch;
    caf::anon_send(tracker, node_down_atom::value, session_ref{n.id, e}, reason);
    if (scheduler)
      caf::anon_send(scheduler, node_down_atom::value, session_ref{n.id, e}, reason);
    run();
  }

  /// An attempt of `n` with log lines 0..logs-1 stored.
  std::string attempt(const node& n, int64_t logs = 0) {
    auto id = new_uuid();
    BOOST_REQUIRE(t.run(storage::attempt_upsert{n.id, id, "task-" + id.substr(0, 4), "succeeded", "", "", "{}"}).status
                  == storage::write_status::ok);
    add_logs(n, id, 0, logs);
    t.clock.advance(1ms); // distinct created_at: "oldest first" is well defined
    return id;
  }

  void add_logs(const node& n, const std::string& id, int64_t from, int64_t to) {
    if (to <= from)
      return;
    storage::logs_insert op{n.id, id, {}};
    for (auto s = from; s < to; ++s)
      op.entries.push_back({s, "2026-01-09T12:00:00.000Z", "stdout", "line " + std::to_string(s)});
    BOOST_REQUIRE(t.run(op).status == storage::write_status::ok);
  }

  order_result order(const node& n, std::vector<std::string> ids, int64_t limit = 0, int64_t epoch = 0) {
    order_result out;
    auto rh = self->request(tracker, caf::infinite, backfill_order{n.id, epoch, std::move(ids), limit, "test"});
    run();
    rh.receive([&](order_result& r) { out = std::move(r); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    return out;
  }

  /// Sends a backfill_response as the session (node_id, epoch) would; true if the tracker knew it.
  bool respond(const std::string& node_id, int64_t epoch, const std::string& rid,
               std::vector<storage::backfill_item> items) {
    bool known = false;
    auto rh =
      self->request(tracker, caf::infinite, response_atom::value, session_ref{node_id, epoch}, rid, std::move(items));
    run();
    rh.receive([&](bool k) { known = k; }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    return known;
  }
  bool respond(const node& n, const std::string& rid, std::vector<storage::backfill_item> items) {
    return respond(n.id, n.epoch, rid, std::move(items));
  }

  storage::attempt_record row(const std::string& id) {
    auto r = t.run(storage::attempt_get{id});
    BOOST_REQUIRE(r.found);
    return r.attempt;
  }

  std::optional<storage::job_record> job(const std::string& id) {
    for (auto& j : t.run(storage::job_query{}))
      if (j.id == id)
        return j;
    return std::nullopt;
  }

  int64_t count_jobs(const std::string& type) {
    int64_t n = 0;
    for (auto& j : t.run(storage::job_query{{}, {type}, "", "", "", 100000}))
      n += j.type == type;
    return n;
  }

  int64_t pending_rows() {
    int64_t n = 0;
    for (auto& [state, c] : t.run(storage::count_summary{}).attempts_by_sync_state)
      if (state == "pending_backfill")
        n = c;
    return n;
  }

  tracker_status status() {
    tracker_status out;
    auto rh = self->request(tracker, caf::infinite, caf::get_atom::value);
    run();
    rh.receive([&](tracker_status& s) { out = std::move(s); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    return out;
  }

  storage_actor storage;
  tracker_actor tracker;
  scheduler_actor scheduler;
  std::vector<caf::actor> sessions;
};

inline tracker_options opts(uint32_t max_failures = 5, uint32_t max_inflight = 2,
                            std::chrono::milliseconds timeout = 60s) {
  tracker_options o;
  o.max_failures = max_failures;
  o.max_inflight_per_node = max_inflight;
  o.request_timeout = timeout;
  return o;
}

/// The attempt ids of a backfill_request frame.
inline std::vector<std::string> ids_of(const json& frame) {
  return frame.at("attempt_ids").get<std::vector<std::string>>();
}

} // namespace nodecoord::test::backfill

/// One test body, run on SQLite (NAME_sqlite) and PostgreSQL (NAME_postgresql).
#define TRACKER_CASE(name)                                                                                             \
  static void name##_body(::nodecoord::storage::backend b);                                                            \
  BOOST_AUTO_TEST_CASE(name##_sqlite) { name##_body(::nodecoord::storage::backend::sqlite); }                          \
  BOOST_AUTO_TEST_CASE(name##_postgresql) { name##_body(::nodecoord::storage::backend::postgresql); }                  \
  static void name##_body(::nodecoord::storage::backend b)
