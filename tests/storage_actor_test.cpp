// The storage actor: group commit, replies after commit, drain, outage handling with backoff.
// Deterministic cases run under CAF's test coordinator (simulated time, no threads). The
// PostgreSQL cases use real threads, a real server, and kill or restart it mid-stream.
#define BOOST_TEST_MODULE storage_actor_test
#include <boost/test/unit_test.hpp>

#include "actors/storage.hpp"
#include "common/ids.hpp"
#include "storage/query.hpp"
#include "actors/errors.hpp"
#include "deterministic.hpp"
#include "test_db.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include <cstdlib>
#include <thread>

using namespace nodecoord;
using namespace nodecoord::storage;
using nodecoord::test::test_database;
using namespace std::chrono_literals;

namespace {

struct deterministic : test::deterministic_system {
  ~deterministic() {
    for (auto& a : actors)
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    run();
  }

  storage_actor start(const test_database& t, storage_options opts = {}) {
    auto a = start_storage(t, std::move(opts));
    actors.push_back(caf::actor_cast<caf::actor>(a));
    return a;
  }

  storage_status status(const storage_actor& a) { return ask<storage_status>(a, status_atom::value); }

  std::vector<caf::actor> actors;
};

std::vector<log_entry> lines(int64_t from, int64_t to) {
  std::vector<log_entry> out;
  for (auto s = from; s < to; ++s)
    out.push_back({s, "2026-01-09T12:00:00.000Z", "stdout", "line " + std::to_string(s)});
  return out;
}

/// A node with a live session and one attempt pending under a request.
struct pending_attempt {
  node_record node;
  int64_t epoch;
  std::string attempt;
  std::string request;
};

pending_attempt make_pending_attempt(test_database& t, const std::string& name = "alpha") {
  pending_attempt p;
  p.node = t.run(node_create{name, "", "kid-" + name, "h"}).node;
  p.epoch = t.run(node_begin_session{p.node.id, 0}).epoch;
  p.attempt = new_uuid();
  t.run(attempt_upsert{p.node.id, p.attempt, "task", "running", "", "", ""});
  p.request = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{p.request, p.node.id, p.epoch, {p.attempt}}).marked.size(), 1u);
  return p;
}

int64_t count(soci::session& sql, const std::string& q) {
  int64_t n = -1;
  query(sql, q).each([&](const soci::row& r) { n = col_int(r, 0); });
  return n;
}

} // namespace

BOOST_FIXTURE_TEST_CASE(queued_operations_commit_as_one_batch_and_reply_in_order, deterministic) {
  test_database t(backend::sqlite);
  auto node = t.run(node_create{"alpha", "", "kid", "h"}).node;
  auto attempt = new_uuid();
  t.run(attempt_upsert{node.id, attempt, "task", "running", "", "", ""});
  auto st = start(t);
  auto before = status(st).stats.transactions;
  // 50 operations in the mailbox before the storage actor runs: one transaction for all.
  std::vector<decltype(self->request(st, caf::infinite, logs_insert{}))> hs;
  for (int i = 0; i < 50; ++i)
    hs.push_back(self->request(st, caf::infinite, logs_insert{node.id, attempt, lines(i, i + 1)}));
  sched.run();
  int64_t inserted = 0;
  for (auto& h : hs)
    h.receive([&](const logs_insert::result_type& r) { inserted += r.inserted; },
              [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(inserted == 50);
  auto s = status(st);
  BOOST_TEST(s.stats.transactions - before == 1u);
  BOOST_TEST(s.stats.last_batch_size == 50u);
  BOOST_TEST(s.available);
  BOOST_TEST(s.queued == 0u);
  BOOST_TEST(count(t.db().session(), "SELECT log_count FROM node_task_attempts") == 50);
}

BOOST_FIXTURE_TEST_CASE(batch_max_splits_batches_preserving_order, deterministic) {
  test_database t(backend::sqlite);
  storage_options o;
  o.batch_max = 7;
  auto st = start(t, o);
  std::vector<decltype(self->request(st, caf::infinite, node_create{}))> creates;
  for (int i = 0; i < 20; ++i)
    creates.push_back(
      self->request(st, caf::infinite, node_create{"n" + std::to_string(i), "", "k" + std::to_string(i), "h"}));
  // Arrives after the creates, so it must see all of them.
  auto list = self->request(st, caf::infinite, node_list{});
  auto before = status(st).stats.transactions;
  sched.run();
  for (auto& h : creates)
    h.receive([](const node_create::result_type& r) { BOOST_TEST(r.created); },
              [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  list.receive([](const node_list::result_type& r) { BOOST_TEST(r.size() == 20u); },
               [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  auto s = status(st);
  BOOST_TEST(s.stats.max_batch_size <= 7u);
  BOOST_TEST(s.stats.transactions - before == 3u); // 21 operations in batches of at most 7
}

BOOST_FIXTURE_TEST_CASE(handshakes_go_ahead_of_queued_data_operations, deterministic) {
  test_database t(backend::sqlite);
  auto node = t.run(node_create{"alpha", "", "kid", "h"}).node;
  storage_options o;
  o.batch_max = 4;
  auto st = start(t, o);
  // Ten reads queued first, then a session begin: the begin runs in the first batch, so every
  // read sees the node online.
  std::vector<decltype(self->request(st, caf::infinite, node_lookup_by_name{}))> reads;
  for (int i = 0; i < 10; ++i)
    reads.push_back(self->request(st, caf::infinite, node_lookup_by_name{"alpha"}));
  auto lookup = self->request(st, caf::infinite, node_lookup_by_key{"kid"});
  auto begin = self->request(st, caf::infinite, node_begin_session{node.id, 0, ""});
  sched.run();
  begin.receive([](const node_begin_session::result_type& r) { BOOST_TEST(r.ok); },
                [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  lookup.receive([](const node_lookup_by_key::result_type& r) { BOOST_TEST(r.node.status == "offline"); },
                 [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  for (auto& h : reads)
    h.receive([](const node_lookup_by_name::result_type& r) { BOOST_TEST(r.node.status == "online"); },
              [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
}

BOOST_FIXTURE_TEST_CASE(failing_operation_gets_an_error_and_the_others_apply, deterministic) {
  test_database t(backend::sqlite);
  auto st = start(t);
  auto ok1 = self->request(st, caf::infinite, node_create{"a", "", "ka", "h"});
  // An attempt of a node that does not exist violates the foreign key: its own error only.
  auto bad = self->request(st, caf::infinite, attempt_upsert{new_uuid(), new_uuid(), "t", "running", "", "", ""});
  auto ok2 = self->request(st, caf::infinite, node_create{"b", "", "kb", "h"});
  sched.run();
  ok1.receive([](const node_create::result_type& r) { BOOST_TEST(r.created); }, [](caf::error&) { BOOST_FAIL("ok1"); });
  bool failed = false;
  bad.receive([](const attempt_upsert::result_type&) { BOOST_FAIL("expected an error"); },
              [&](caf::error& e) {
                failed = true;
                BOOST_TEST(is(e, storage_errc::refused), caf::to_string(e)); // the operation's data
                BOOST_TEST(storage_message(e).find("FOREIGN KEY") != std::string::npos, storage_message(e));
              });
  BOOST_TEST(failed);
  ok2.receive([](const node_create::result_type& r) { BOOST_TEST(r.created); }, [](caf::error&) { BOOST_FAIL("ok2"); });
}

BOOST_FIXTURE_TEST_CASE(outage_waits_with_backoff_then_applies_everything_once, deterministic) {
  test_database t(backend::sqlite);
  auto node = t.run(node_create{"alpha", "", "kid", "h"}).node;
  auto attempt = new_uuid();
  t.run(attempt_upsert{node.id, attempt, "task", "running", "", "", ""});
  int failures_left = 0;
  storage_options o;
  o.fault_hook = [&](batch_executor::fault_point p) {
    if (p == batch_executor::fault_point::before_commit && failures_left > 0) {
      --failures_left;
      throw simulated_connection_loss("server closed the connection unexpectedly");
    }
  };
  auto st = start(t, o);
  failures_left = 3; // the database goes away now
  std::vector<decltype(self->request(st, caf::infinite, logs_insert{}))> hs;
  for (int i = 0; i < 10; ++i)
    hs.push_back(self->request(st, caf::infinite, logs_insert{node.id, attempt, lines(i, i + 1)}));
  sched.run();
  // The database is "down": nothing answered, readiness says so, a reconnect is scheduled.
  auto s = status(st);
  BOOST_TEST(!s.available);
  BOOST_TEST(s.queued == 10u);
  BOOST_TEST(s.last_error.find("closed the connection") != std::string::npos);
  BOOST_TEST(sched.has_pending_timeout());
  BOOST_TEST(count(t.db().session(), "SELECT log_count FROM node_task_attempts") == 0);
  // Two more failed attempts, then the connection holds.
  for (int i = 0; i < 3 && sched.has_pending_timeout(); ++i) {
    sched.trigger_timeout();
    sched.run();
  }
  BOOST_TEST(failures_left == 0);
  int64_t inserted = 0;
  for (auto& h : hs)
    h.receive([&](const logs_insert::result_type& r) { inserted += r.inserted; },
              [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(inserted == 10);
  s = status(st);
  BOOST_TEST(s.available);
  BOOST_TEST(s.queued == 0u);
  BOOST_TEST(count(t.db().session(), "SELECT log_count FROM node_task_attempts") == 10);
  BOOST_TEST(count(t.db().session(), "SELECT COUNT(*) FROM attempt_logs") == 10);
}

BOOST_FIXTURE_TEST_CASE(lost_commit_ack_delivers_results_without_reapplying, deterministic) {
  test_database t(backend::sqlite);
  bool lose_ack = false;
  storage_options o;
  o.fault_hook = [&](batch_executor::fault_point p) {
    if (p == batch_executor::fault_point::after_commit && lose_ack) {
      lose_ack = false;
      throw simulated_connection_loss("connection reset during COMMIT");
    }
  };
  auto st = start(t, o);
  // Set up after startup (whose recovery would reset a pending row).
  auto p = make_pending_attempt(t);
  lose_ack = true;
  auto h = self->request(st, caf::infinite, apply_backfill{p.request, p.node.id, {{p.attempt, false, 0, "gone"}}, 5});
  sched.run();
  BOOST_TEST(!status(st).available);
  sched.trigger_timeout();
  sched.run();
  h.receive(
    [](const apply_backfill::result_type& r) {
      BOOST_TEST(r.reset == 1);
      BOOST_TEST(r.job_status == "failed");
    },
    [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(count(t.db().session(), "SELECT backfill_failures FROM node_task_attempts") == 1);
  BOOST_TEST(status(st).stats.in_doubt_committed == 1u);
}

BOOST_FIXTURE_TEST_CASE(drain_answers_after_everything_before_it, deterministic) {
  test_database t(backend::sqlite);
  auto st = start(t);
  auto c = self->request(st, caf::infinite, node_create{"a", "", "ka", "h"});
  auto d = self->request(st, caf::infinite, drain_atom::value);
  sched.run();
  c.receive([](const node_create::result_type&) {}, [](caf::error&) { BOOST_FAIL("create"); });
  bool drained = false;
  d.receive([&](bool ok) { drained = ok; }, [](caf::error&) { BOOST_FAIL("drain"); });
  BOOST_TEST(drained);
  BOOST_TEST(count(t.db().session(), "SELECT COUNT(*) FROM nodes") == 1);
}

// A disconnect storm: the registry's session ends and other jobs' updates are queued before the
// tracker's reset. The reset's attempts half passes them and commits first; it does not pass a
// response received before the disconnect (rule 5: that completion is applied, not reset).
BOOST_FIXTURE_TEST_CASE(reset_goes_ahead_of_session_ends_but_not_of_a_queued_response, deterministic) {
  test_database t(backend::sqlite);
  struct snapshot {
    int64_t pending, partial, complete, online, running;
  };
  std::vector<snapshot> commits;
  storage_options o;
  o.fault_hook = [&](batch_executor::fault_point p) {
    if (p == batch_executor::fault_point::after_commit)
      commits.push_back(
        {count(t.db().session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'"),
         count(t.db().session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'partial'"),
         count(t.db().session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'"),
         count(t.db().session(), "SELECT COUNT(*) FROM nodes WHERE status = 'online'"),
         count(t.db().session(), "SELECT COUNT(*) FROM jobs WHERE status = 'running'")});
  };
  auto st = start(t, o);
  auto a = make_pending_attempt(t, "alpha");
  auto b = make_pending_attempt(t, "beta");
  commits.clear();
  auto answer = self->request(st, caf::infinite, apply_backfill{a.request, a.node.id, {{a.attempt, true, 0, ""}}, 5});
  auto ends = self->request(st, caf::infinite,
                            nodes_end_sessions{{{a.node.id, a.epoch, "closed"}, {b.node.id, b.epoch, "closed"}}});
  auto touch = self->request(st, caf::infinite, node_touch{{{a.node.id, "2026-01-09T12:00:00.000Z"}}});
  auto other_job = self->request(st, caf::infinite, job_update{new_uuid(), "succeeded", "", ""});
  auto reset = self->request(st, caf::infinite, reset_requests{{a.request, b.request}, "cancelled", "disconnect"});
  sched.run();
  answer.receive([](const apply_backfill::result_type& r) { BOOST_TEST(r.completed == 1); },
                 [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  ends.receive([](const nodes_end_sessions::result_type& r) { BOOST_TEST(r.applied == 2); },
               [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  touch.receive([](const node_touch::result_type&) {}, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  other_job.receive([](const job_update::result_type& r) { BOOST_TEST(!r.updated); },
                    [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  reset.receive(
    [](const reset_requests::result_type& r) {
      BOOST_TEST(r.attempts_reset == 1); // beta's; alpha's was completed by the answer
      BOOST_TEST(r.jobs_finished == 1);
    },
    [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_REQUIRE_EQUAL(commits.size(), 2u);
  // First commit: the answer, then the attempts half of the reset; nodes and jobs untouched yet.
  BOOST_TEST(commits[0].pending == 0);
  BOOST_TEST(commits[0].complete == 1);
  BOOST_TEST(commits[0].partial == 1);
  BOOST_TEST(commits[0].online == 2);
  BOOST_TEST(commits[0].running == 1); // beta's job; alpha's succeeded with the answer
  // Second: session ends, touch, job updates.
  BOOST_TEST(commits[1].online == 0);
  BOOST_TEST(commits[1].running == 0);
  BOOST_TEST(count(t.db().session(), "SELECT COUNT(*) FROM jobs WHERE status = 'cancelled'") == 1);
  BOOST_TEST(count(t.db().session(), "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'") == 1);
}

BOOST_FIXTURE_TEST_CASE(startup_resets_pending_rows_and_abandons_jobs, deterministic) {
  test_database t(backend::sqlite);
  make_pending_attempt(t);
  auto st = spawn_storage(sys, storage_options{t.parsed_url(), 100, 100ms, 1s, t.clock.fn(), {}}, false);
  actors.push_back(caf::actor_cast<caf::actor>(st));
  auto rh = self->request(st, caf::infinite, startup_atom::value);
  sched.run();
  rh.receive(
    [](const startup_report& r) {
      BOOST_TEST(r.recovery.attempts_reset == 1);
      BOOST_TEST(r.recovery.jobs_abandoned == 1);
      BOOST_TEST(r.recovery.nodes_offlined == 1);
    },
    [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(count(t.db().session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'partial'") == 1);
}

BOOST_FIXTURE_TEST_CASE(newer_schema_fails_startup_clearly, deterministic) {
  test_database t(backend::sqlite);
  t.exec_sql("INSERT INTO schema_migrations (version, description, applied_at) VALUES "
             "(999, 'future', '2030-01-01T00:00:00.000Z')");
  auto st = spawn_storage(sys, storage_options{t.parsed_url(), 100, 100ms, 1s, t.clock.fn(), {}}, false);
  // Queued before startup (it waits for the database): the fatal failure answers it.
  auto queued = self->request(st, caf::infinite, node_create{"a", "", "ka", "h"});
  auto rh = self->request(st, caf::infinite, startup_atom::value);
  sched.run();
  bool failed = false;
  rh.receive([](const startup_report&) { BOOST_FAIL("startup should fail"); },
             [&](caf::error& e) {
               failed = true;
               BOOST_TEST(is(e, storage_errc::startup), caf::to_string(e));
               BOOST_TEST(storage_message(e).find("newer than this nodecoordd") != std::string::npos);
             });
  BOOST_TEST(failed);
  // What was queued is answered `stopped`: not the operation's fault (a session keeps its data).
  bool abandoned = false;
  queued.receive([](const node_create::result_type&) { BOOST_FAIL("nothing may run on a newer schema"); },
                 [&](caf::error& e) {
                   abandoned = true;
                   BOOST_TEST(is(e, storage_errc::stopped), caf::to_string(e));
                   BOOST_TEST(!is(e, storage_errc::refused));
                 });
  BOOST_TEST(abandoned);
}

// --- PostgreSQL, real threads -----------------------------------------------------------------

namespace {

/// Runs a stream of log inserts against a detached storage actor while `disrupt` runs in the
/// middle, then checks that every operation was answered and applied exactly once.
storage_status stream_through_disruption(test_database& t,
                                         const std::function<void(const storage_actor&, caf::scoped_actor&)>& disrupt) {
  auto node = t.run(node_create{"alpha", "", "kid", "h"}).node;
  std::vector<std::string> attempts;
  for (int i = 0; i < 4; ++i) {
    attempts.push_back(new_uuid());
    t.run(attempt_upsert{node.id, attempts.back(), "task", "running", "", "", ""});
  }
  t.db().disconnect(); // only the actor's connection from here on
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  storage_options o;
  o.url = t.parsed_url();
  o.batch_max = 50;
  o.reconnect_initial = 20ms;
  o.reconnect_max = 200ms;
  auto st = spawn_storage(sys, o, true);
  self->request(st, 30s, startup_atom::value)
    .receive([](const startup_report&) {}, [](caf::error& e) { BOOST_FAIL("startup: " << caf::to_string(e)); });
  constexpr int per_phase = 300;
  int64_t inserted = 0;
  std::vector<std::string> errors;
  std::vector<decltype(self->request(st, 60s, logs_insert{}))> pending;
  auto send_phase = [&](int phase) {
    for (int i = 0; i < per_phase; ++i) {
      auto seq = phase * per_phase + i;
      pending.push_back(self->request(st, 60s, logs_insert{node.id, attempts[seq % 4], lines(seq, seq + 1)}));
    }
  };
  send_phase(0);
  disrupt(st, self);
  send_phase(1);
  // Every request gets its answer (each bounded by the 60 s request timeout).
  for (auto& h : pending)
    h.receive([&](const logs_insert::result_type& r) { inserted += r.inserted; },
              [&](caf::error& e) { errors.push_back(caf::to_string(e)); });
  for (auto& e : errors)
    BOOST_TEST_MESSAGE("error: " << e);
  BOOST_TEST(errors.empty());
  BOOST_TEST(inserted == 2 * per_phase);
  storage_status final_status;
  self->request(st, 10s, status_atom::value)
    .receive([&](const storage_status& s) { final_status = s; }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  self->send_exit(st, caf::exit_reason::user_shutdown);
  t.db().connect();
  BOOST_TEST(count(t.db().session(), "SELECT COUNT(*) FROM attempt_logs") == 2 * per_phase);
  BOOST_TEST(count(t.db().session(), "SELECT SUM(log_count) FROM node_task_attempts") == 2 * per_phase);
  return final_status;
}

bool wait_until_available(caf::scoped_actor& self, const storage_actor& st, bool want, std::chrono::seconds bound) {
  auto until = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < until) {
    bool got = !want;
    self->request(st, 10s, status_atom::value)
      .receive([&](const storage_status& s) { got = s.available; }, [](caf::error&) {});
    if (got == want)
      return true;
    std::this_thread::sleep_for(10ms); // polling a real server's state, not waiting for an actor
  }
  return false;
}

} // namespace

BOOST_AUTO_TEST_CASE(postgresql_backend_killed_mid_stream_loses_nothing) {
  test_database t(backend::postgresql);
  uint64_t lost_before = 0;
  auto after = stream_through_disruption(t, [&](const storage_actor& st, caf::scoped_actor& self) {
    self->request(st, 10s, status_atom::value)
      .receive([&](const storage_status& s) { lost_before = s.stats.connection_errors; },
               [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    auto cs = parse_storage_url(test::pg_base_url(), "", 5s).connect_string;
    soci::session admin(soci::postgresql, cs);
    // Kill every other connection of this database user: the storage actor's included.
    int killed = 0;
    admin << "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity "
             "WHERE pid <> pg_backend_pid() AND datname = current_database() AND application_name = 'nodecoordd') x "
             "WHERE x.gone",
      soci::into(killed);
    BOOST_TEST_REQUIRE(killed >= 1, "no connection of the storage actor was terminated");
  });
  // The actor's connection was really lost (and it reconnected): the test disrupted something.
  BOOST_TEST(after.stats.connection_errors > lost_before, "the storage actor never noticed the lost connection");
}

BOOST_AUTO_TEST_CASE(postgresql_restart_mid_stream_loses_nothing) {
  const char* stop = std::getenv("NODECOORD_TEST_PG_STOP");
  const char* start_cmd = std::getenv("NODECOORD_TEST_PG_START");
  BOOST_REQUIRE_MESSAGE(stop && start_cmd,
                        "NODECOORD_TEST_PG_STOP/START are not set (run through scripts/run-tests.sh)");
  test_database t(backend::postgresql);
  stream_through_disruption(t, [&](const storage_actor& st, caf::scoped_actor& self) {
    BOOST_REQUIRE_EQUAL(std::system(stop), 0);
    // The actor notices a dead server when it next uses it; phase 0 may be all applied already,
    // so give it one more operation (its answer goes nowhere).
    caf::anon_send(st, node_lookup_by_name{"alpha"});
    // While the server is down the storage actor says so (readiness: database unavailable).
    BOOST_TEST(wait_until_available(self, st, false, 30s));
    BOOST_REQUIRE_EQUAL(std::system(start_cmd), 0);
    BOOST_TEST(wait_until_available(self, st, true, 30s));
  });
}
