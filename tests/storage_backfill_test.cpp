#include <boost/test/unit_test.hpp>

// The backfill state machine of DESIGN §3 through the real operations on both backends: marks,
// answers, failures, reopening, and the SQL compared with storage/sync_rules.

#include "storage_test_support.hpp"

using namespace storage_test;

// --- backfill state machine ------------------------------------------------------------------

NC_BOTH_BACKENDS(mark_pending_cas_from_partial_only) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto epoch = begin_session(t, a);
  auto x = add_attempt(t, a), y = add_attempt(t, a), z = add_attempt(t, a), foreign = add_attempt(t, b);
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete' WHERE id = '" + z + "'");
  auto r1 = new_uuid();
  auto m = t.run(mark_pending{r1, a.id, epoch, {x, y, z, foreign, new_uuid()}});
  BOOST_REQUIRE_EQUAL(m.marked.size(), 2u); // only this node's partial attempts
  BOOST_TEST(m.marked[0].attempt_id == x);
  BOOST_TEST(m.marked[1].attempt_id == y);
  BOOST_TEST(get(t, x).sync_state == "pending_backfill");
  BOOST_TEST(get(t, x).backfill_request_id == r1);
  BOOST_TEST(get(t, foreign).sync_state == "partial");
  BOOST_TEST(job_status_of(t, r1) == "running");
  BOOST_TEST(count(t, "SELECT attempt_count FROM jobs WHERE id = '" + r1 + "'") == 2);
  // Rule 4: an attempt is never in two live requests.
  auto r2 = new_uuid();
  auto m2 = t.run(mark_pending{r2, a.id, epoch, {x, y}});
  BOOST_TEST(m2.marked.empty());
  BOOST_TEST(get(t, x).backfill_request_id == r1);
  // Nothing marked: no job left behind.
  BOOST_TEST(job_status_of(t, r2).empty());
  // A request under a stale epoch marks nothing.
  auto w = add_attempt(t, a);
  BOOST_TEST(t.run(mark_pending{new_uuid(), a.id, epoch + 1, {w}}).marked.empty());
  BOOST_TEST(get(t, w).sync_state == "partial");
}

NC_BOTH_BACKENDS(mark_pending_reports_logs_after) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto none = add_attempt(t, a), full = add_attempt(t, a), gap = add_attempt(t, a), nozero = add_attempt(t, a);
  t.run(logs_insert{a.id, full, lines(0, 4)});
  auto g = lines(0, 3);
  auto tail = lines(5, 7);
  g.insert(g.end(), tail.begin(), tail.end());
  t.run(logs_insert{a.id, gap, g});
  t.run(logs_insert{a.id, nozero, lines(1, 4)});
  auto m = t.run(mark_pending{new_uuid(), a.id, epoch, {none, full, gap, nozero}});
  BOOST_REQUIRE_EQUAL(m.marked.size(), 4u);
  std::map<std::string, int64_t> after;
  for (auto& x : m.marked)
    after[x.attempt_id] = x.logs_after;
  BOOST_TEST(after[none] == -1);
  BOOST_TEST(after[full] == 3);
  BOOST_TEST(after[gap] == 2);     // 0..2 stored, 3 and 4 missing
  BOOST_TEST(after[nozero] == -1); // seq 0 missing: resend everything
}

NC_BOTH_BACKENDS(apply_backfill_rules_1_to_3) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto good = add_attempt(t, a), short_logs = add_attempt(t, a), failing = add_attempt(t, a),
       unanswered = add_attempt(t, a);
  t.run(logs_insert{a.id, good, lines(0, 3)});
  t.run(logs_insert{a.id, short_logs, lines(0, 2)});
  auto req = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{req, a.id, epoch, {good, short_logs, failing, unanswered}}).marked.size(), 4u);
  t.clock.advance(std::chrono::seconds(2));
  auto r = t.run(apply_backfill{
    req,
    a.id,
    {{good, true, 3, ""}, {short_logs, true, 5, ""}, {failing, false, 0, "not found"}, {new_uuid(), true, 0, ""}},
    5});
  BOOST_TEST(r.completed == 1);
  BOOST_TEST(r.reset == 3); // missing evidence, failure result, no result at all
  BOOST_TEST(r.failed == 0);
  BOOST_TEST(r.stale == 1); // the attempt that was never part of the request
  BOOST_TEST(r.job_status == "failed");
  auto g = get(t, good);
  BOOST_TEST(g.sync_state == "complete");
  BOOST_TEST(g.backfill_request_id.empty());
  BOOST_TEST(g.last_full_sync_at == "2026-01-09T12:00:02.000Z");
  BOOST_TEST(get(t, short_logs).sync_state == "partial"); // rule 2
  BOOST_TEST(get(t, short_logs).backfill_failures == 1);
  BOOST_TEST(get(t, failing).backfill_failures == 1); // rule 3
  BOOST_TEST(get(t, unanswered).sync_state == "partial");
  BOOST_TEST(job_status_of(t, req) == "failed");
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM jobs WHERE detail IS NOT NULL") == 1);
  // Rule 1: the same response again (duplicate) changes nothing.
  auto before = t.dump();
  auto dup = t.run(apply_backfill{req, a.id, {{good, true, 3, ""}, {failing, false, 0, ""}}, 5});
  BOOST_TEST(dup.stale == 2);
  BOOST_TEST(dup.completed + dup.reset + dup.failed == 0);
  BOOST_TEST(dup.job_status.empty());
  BOOST_TEST(t.dump() == before);
}

NC_BOTH_BACKENDS(apply_backfill_all_ok_succeeds_job) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto x = add_attempt(t, a);
  t.run(logs_insert{a.id, x, lines(0, 2)});
  auto req = new_uuid();
  t.run(mark_pending{req, a.id, epoch, {x}});
  auto r = t.run(apply_backfill{req, a.id, {{x, true, 2, ""}}, 5});
  BOOST_TEST(r.job_status == "succeeded");
  BOOST_TEST(job_status_of(t, req) == "succeeded");
  BOOST_TEST(get(t, x).sync_state == "complete");
}

NC_BOTH_BACKENDS(foreign_late_and_stale_epoch_responses_change_nothing) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto ea = begin_session(t, a);
  begin_session(t, b);
  auto x = add_attempt(t, a);
  auto req = new_uuid();
  t.run(mark_pending{req, a.id, ea, {x}});
  auto before = t.dump();
  // Another node answers the same request id.
  auto r = t.run(apply_backfill{req, b.id, {{x, true, 0, ""}}, 5});
  BOOST_TEST(r.stale == 1);
  BOOST_TEST(t.dump() == before);
  // The request was reset (disconnect), the attempt re-requested; the late answer to the old
  // request must not complete the new one.
  t.run(reset_requests{{req}, "cancelled", "disconnect"});
  auto req2 = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{req2, a.id, ea, {x}}).marked.size(), 1u);
  r = t.run(apply_backfill{req, a.id, {{x, true, 0, ""}}, 5});
  BOOST_TEST(r.stale == 1);
  BOOST_TEST(get(t, x).sync_state == "pending_backfill");
  BOOST_TEST(get(t, x).backfill_request_id == req2);
  BOOST_TEST(job_status_of(t, req) == "cancelled");
}

NC_BOTH_BACKENDS(a_response_applied_after_its_node_reconnected_still_counts) {
  // The tracker accepted the answer of session 1; the node's next hello bumped the epoch before
  // storage applied it. The request id is session 1's alone, so the answer completes what it
  // proves and resets the rest, and nothing stays pending under a request nobody tracks.
  auto a = add_node(t, "alpha");
  auto e1 = begin_session(t, a);
  auto x = add_attempt(t, a);
  auto y = add_attempt(t, a);
  t.run(logs_insert{a.id, x, {{0, "2026-01-09T12:00:00.000Z", "stdout", "l"}}});
  auto req = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{req, a.id, e1, {x, y}}).marked.size(), 2u);
  BOOST_REQUIRE(t.run(node_begin_session{a.id, e1, ""}).ok);
  auto r = t.run(apply_backfill{req, a.id, {{x, true, 1, ""}, {y, false, 0, "gone"}}, 5});
  BOOST_TEST(r.completed == 1);
  BOOST_TEST(r.reset == 1);
  BOOST_TEST(get(t, x).sync_state == "complete");
  BOOST_TEST(get(t, y).sync_state == "partial");
  BOOST_TEST(job_status_of(t, req) == "failed");
}

NC_BOTH_BACKENDS(max_failures_makes_attempt_failed_and_requeue) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto x = add_attempt(t, a);
  for (int i = 1; i <= 3; ++i) {
    auto req = new_uuid();
    BOOST_REQUIRE_EQUAL(t.run(mark_pending{req, a.id, epoch, {x}}).marked.size(), 1u);
    auto r = t.run(apply_backfill{req, a.id, {{x, false, 0, "gone"}}, 3});
    BOOST_TEST(r.attempts.at(0).outcome == (i < 3 ? backfill_outcome::reset : backfill_outcome::failed));
  }
  BOOST_TEST(get(t, x).sync_state == "failed");
  BOOST_TEST(get(t, x).backfill_failures == 3);
  // Failed attempts leave the automatic triggers.
  BOOST_TEST(t.run(attempts_partial_of_node{a.id, 10}).empty());
  BOOST_TEST(t.run(mark_pending{new_uuid(), a.id, epoch, {x}}).marked.empty());
  auto q = t.run(attempt_requeue{x});
  BOOST_TEST(q.found);
  BOOST_TEST(q.requeued);
  BOOST_TEST(get(t, x).sync_state == "partial");
  BOOST_TEST(get(t, x).backfill_failures == 0);
  BOOST_TEST(!t.run(attempt_requeue{x}).requeued);
  BOOST_TEST(!t.run(attempt_requeue{new_uuid()}).found);
}

// DESIGN §3: any change on the node takes a complete (or failed) attempt back to partial, so a
// completion of a queued or running attempt is provisional; resending it unchanged does not.
NC_BOTH_BACKENDS(any_change_reopens_a_complete_or_failed_attempt) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto id = new_uuid();
  attempt_upsert base{a.id, id, "task-1", "running", "2026-01-09T11:00:00.000Z", "", R"({"a":1,"b":[1,2]})"};
  t.run(base);
  t.run(logs_insert{a.id, id, lines(0, 2)});
  complete(t, a, epoch, id, 2);
  // Unchanged: the same frame, meta in another key order and spacing, or fields left out.
  auto same = base;
  same.meta = R"({"b": [1, 2], "a": 1})";
  BOOST_TEST(!t.run(same).reopened);
  auto sparse = base;
  sparse.started_at = sparse.meta = "";
  BOOST_TEST(!t.run(sparse).reopened);
  BOOST_TEST(!t.run(logs_insert{a.id, id, lines(0, 2)}).reopened); // old lines
  BOOST_TEST(get(t, id).sync_state == "complete");
  // Each kind of change reopens it: state, finished_at, meta, started_at, task.
  std::vector<attempt_upsert> changes;
  auto c = base;
  c.state = "failed";
  changes.push_back(c);
  c.finished_at = "2026-01-09T11:05:00.000Z";
  changes.push_back(c);
  c.meta = R"({"a":2,"b":[1,2]})";
  changes.push_back(c);
  c.started_at = "2026-01-09T10:59:00.000Z";
  changes.push_back(c);
  c.task_id = "task-2";
  changes.push_back(c);
  for (auto& change : changes) {
    auto r = t.run(change);
    BOOST_TEST(r.status == write_status::ok);
    BOOST_TEST(r.reopened, change.state << " " << change.finished_at << " " << change.meta);
    auto at = get(t, id);
    BOOST_TEST(at.sync_state == "partial");
    BOOST_TEST(at.backfill_request_id.empty());
    BOOST_TEST(!t.run(change).reopened); // the same again changes nothing
    complete(t, a, epoch, id, 2);
  }
  auto at = get(t, id);
  BOOST_TEST(at.task_id == "task-2");
  BOOST_TEST(at.state == "failed");
  BOOST_TEST(at.started_at == "2026-01-09T10:59:00.000Z");
  BOOST_TEST(at.finished_at == "2026-01-09T11:05:00.000Z");
  // A failed attempt: resent unchanged it stays failed; a change or a new line takes it back to
  // partial with its failures forgotten.
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'failed', backfill_failures = 5");
  BOOST_TEST(!t.run(c).reopened);
  BOOST_TEST(!t.run(logs_insert{a.id, id, lines(1, 2)}).reopened);
  BOOST_TEST(get(t, id).sync_state == "failed");
  c.state = "succeeded";
  BOOST_TEST(t.run(c).reopened);
  BOOST_TEST(get(t, id).sync_state == "partial");
  BOOST_TEST(get(t, id).backfill_failures == 0);
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'failed', backfill_failures = 5");
  BOOST_TEST(t.run(logs_insert{a.id, id, lines(2, 3)}).reopened);
  BOOST_TEST(get(t, id).sync_state == "partial");
  BOOST_TEST(get(t, id).backfill_failures == 0);
  // Pending: a change leaves it to the response in flight (frames are applied in order, so the
  // response answers for what came before it).
  auto req = new_uuid();
  t.run(mark_pending{req, a.id, epoch, {id}});
  c.state = "cancelled";
  BOOST_TEST(!t.run(c).reopened);
  BOOST_TEST(get(t, id).sync_state == "pending_backfill");
  BOOST_TEST(get(t, id).backfill_request_id == req);
}

// Within one batch (one set-based run) the order decides: a change after the completion reopens
// it, a change before it is covered by the response.
NC_BOTH_BACKENDS(reopen_follows_the_order_inside_a_batch) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto x = add_attempt(t, a), y = add_attempt(t, a);
  auto rx = new_uuid(), ry = new_uuid();
  t.run(mark_pending{rx, a.id, epoch, {x}});
  t.run(mark_pending{ry, a.id, epoch, {y}});
  std::vector<batch_item> items(4);
  auto ax = bind_item(items[0], apply_backfill{rx, a.id, {{x, true, 0, ""}}, 5});
  auto ux = bind_item(items[1], attempt_upsert{a.id, x, "task-1", "succeeded", "", "", ""});
  auto uy = bind_item(items[2], attempt_upsert{a.id, y, "task-1", "succeeded", "", "", ""});
  auto ay = bind_item(items[3], apply_backfill{ry, a.id, {{y, true, 0, ""}}, 5});
  auto errors = t.run_items(items);
  for (auto& e : errors)
    BOOST_TEST(e.empty(), e);
  BOOST_TEST(ax->result.completed == 1);
  BOOST_TEST(ux->result.reopened);
  BOOST_TEST(!uy->result.reopened);
  BOOST_TEST(ay->result.completed == 1);
  BOOST_TEST(get(t, x).sync_state == "partial");
  BOOST_TEST(get(t, x).state == "succeeded");
  BOOST_TEST(get(t, y).sync_state == "complete");
  BOOST_TEST(get(t, y).state == "succeeded");
  BOOST_TEST(t.executor().stats().groups >= 1u);
}

// DESIGN §3 rule 3: an expired request counts a failure for each attempt in it (the counter is
// incremented in SQL); a session that ends counts nothing.
NC_BOTH_BACKENDS(an_expired_request_counts_a_failure_a_session_end_does_not) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto x = add_attempt(t, a), y = add_attempt(t, a);
  auto run_request = [&](bool expire) {
    auto req = new_uuid();
    BOOST_REQUIRE_EQUAL(t.run(mark_pending{req, a.id, epoch, {x, y}}).marked.size(), 2u);
    reset_requests op{{req}, expire ? "expired" : "cancelled", expire ? "deadline" : "session ended"};
    op.count_failure = expire;
    op.max_failures = 3;
    auto r = t.run(op);
    BOOST_TEST(job_status_of(t, req) == op.job_status);
    return r;
  };
  for (int i = 0; i < 4; ++i) {
    auto r = run_request(false);
    BOOST_TEST(r.attempts_reset == 2);
    BOOST_TEST(r.attempts_failed == 0);
  }
  BOOST_TEST(get(t, x).backfill_failures == 0);
  for (int i = 1; i <= 3; ++i) {
    auto r = run_request(true);
    BOOST_TEST(r.attempts_reset == (i < 3 ? 2 : 0));
    BOOST_TEST(r.attempts_failed == (i < 3 ? 0 : 2));
    for (auto& id : {x, y}) {
      auto at = get(t, id);
      BOOST_TEST(at.backfill_failures == i);
      BOOST_TEST(at.sync_state == (i < 3 ? "partial" : "failed"));
      BOOST_TEST(at.backfill_request_id.empty());
    }
  }
  // A reset that names no pending row changes nothing.
  auto r = t.run(reset_requests{{new_uuid()}, "expired", "deadline", true, 3});
  BOOST_TEST(r.attempts_reset + r.attempts_failed == 0);
  BOOST_TEST(get(t, x).backfill_failures == 3);
}

// The SQL of every operation that moves sync_state does what storage/sync_rules.hpp says, from
// every starting state (tests/sync_rules_test.cpp checks the functions themselves).
NC_BOTH_BACKENDS(sql_agrees_with_sync_rules) {
  const int64_t max = 3;
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto epoch = begin_session(t, a);
  namespace rules = sync_rules;
  struct event {
    const char* name;
    // Runs the operation on attempt `id` (pending under `req` if pending) holding `stored` lines.
    std::function<void(const std::string& id, const std::string& req, int64_t stored)> sql;
    std::function<void(sync_row&, const std::string& marked_as)> rule;
  };
  const std::string mark_req_text = "mark";
  std::string mark_req; // the request id a mark used (a new one each case)
  std::vector<event> events{
    {"a new line",
     [&](auto& id, auto&, int64_t stored) {
       t.run(logs_insert{a.id, id, lines(stored, stored + 1)});
     },
     [](sync_row& r, auto&) {
       rules::reopen(r);
       ++r.log_count;
     }},
    {"a new state",
     [&](auto& id, auto&, int64_t) {
       t.run(attempt_upsert{a.id, id, "task-1", "failed", "", "", ""});
     },
     [](sync_row& r, auto&) { rules::reopen(r); }},
    {"the same record again",
     [&](auto& id, auto&, int64_t) {
       t.run(attempt_upsert{a.id, id, "task-1", "running", "", "", ""});
     },
     [](sync_row&, auto&) {}},
    {"a mark by id",
     [&](auto& id, auto&, int64_t) {
       t.run(mark_pending{mark_req, a.id, epoch, {id}});
     },
     [](sync_row& r, auto& m) { rules::mark(r, m); }},
    {"a mark by limit",
     [&](auto&, auto&, int64_t) {
       mark_pending op{mark_req, a.id, epoch, {}};
       op.limit = 10;
       op.max_failures = max;
       t.run(op);
     },
     [](sync_row& r, auto& m) { rules::mark(r, m); }},
    {"ok with evidence",
     [&](auto& id, auto& req, int64_t stored) {
       t.run(apply_backfill{req, a.id, {{id, true, stored, ""}}, max});
     },
     [](sync_row& r, auto&) {
       if (r.state == sync_state::pending_backfill)
         rules::answer(r, node_answer{true, r.log_count}, max);
     }},
    {"ok without evidence",
     [&](auto& id, auto& req, int64_t stored) {
       t.run(apply_backfill{req, a.id, {{id, true, stored + 1, ""}}, max});
     },
     [](sync_row& r, auto&) {
       if (r.state == sync_state::pending_backfill)
         rules::answer(r, node_answer{true, r.log_count + 1}, max);
     }},
    {"a failure result",
     [&](auto& id, auto& req, int64_t) {
       t.run(apply_backfill{req, a.id, {{id, false, 0, "gone"}}, max});
     },
     [](sync_row& r, auto&) {
       if (r.state == sync_state::pending_backfill)
         rules::answer(r, node_answer{false, 0}, max);
     }},
    {"no result for it",
     [&](auto&, auto& req, int64_t) {
       t.run(apply_backfill{req, a.id, {}, max});
     },
     [](sync_row& r, auto&) {
       if (r.state == sync_state::pending_backfill)
         rules::answer(r, std::nullopt, max);
     }},
    {"a foreign sender",
     [&](auto& id, auto& req, int64_t stored) {
       t.run(apply_backfill{req, b.id, {{id, true, stored, ""}}, max});
     },
     [](sync_row& r, auto&) { BOOST_TEST(!rules::pending_under(r, r.request_id, "beta's id")); }},
    {"an expired request",
     [&](auto&, auto& req, int64_t) {
       t.run(reset_requests{{req}, "expired", "deadline", true, max});
     },
     [](sync_row& r, auto&) { rules::end_request(r, true, max); }},
    {"a session end",
     [&](auto&, auto& req, int64_t) {
       t.run(reset_requests{{req}, "cancelled", "session ended", false, max});
     },
     [](sync_row& r, auto&) { rules::end_request(r, false, max); }},
    {"a requeue", [&](auto& id, auto&, int64_t) { t.run(attempt_requeue{id}); },
     [](sync_row& r, auto&) { rules::requeue(r); }},
    {"a restart", [&](auto&, auto&, int64_t) { t.run(reset_all_pending{}); },
     [](sync_row& r, auto&) { rules::recover(r); }},
  };
  const sync_state states[] = {sync_state::partial, sync_state::pending_backfill, sync_state::complete,
                               sync_state::failed};
  int cases = 0;
  for (auto& e : events)
    for (auto s : states)
      for (int64_t failures : {int64_t{0}, max - 1}) {
        if (s == sync_state::failed && failures == 0)
          continue; // failed means max_failures reached (or an operator's doing): take max - 1 only
        // A fresh attempt with two lines, put into the starting state directly.
        auto id = add_attempt(t, a);
        t.run(logs_insert{a.id, id, lines(0, 2)});
        auto req = new_uuid();
        mark_req = new_uuid();
        t.exec_sql("UPDATE node_task_attempts SET sync_state = '" + std::string(to_string(s))
                   + "', backfill_request_id = " + (s == sync_state::pending_backfill ? "'" + req + "'" : "NULL")
                   + ", backfill_failures = " + std::to_string(failures) + " WHERE id = '" + id + "'");
        sync_row expected;
        expected.state = s;
        expected.request_id = s == sync_state::pending_backfill ? req : "";
        expected.owner = a.id;
        expected.log_count = 2;
        expected.failures = failures;
        e.rule(expected, mark_req);
        e.sql(id, req, 2);
        auto got = get(t, id);
        std::string what =
          std::string(e.name) + " on " + to_string(s) + " with " + std::to_string(failures) + " failures";
        BOOST_TEST(got.sync_state == to_string(expected.state), what);
        BOOST_TEST(got.backfill_request_id == expected.request_id, what);
        BOOST_TEST(got.backfill_failures == expected.failures, what);
        BOOST_TEST(got.log_count == expected.log_count, what);
        ++cases;
        // Leave no partial attempt behind for the next case's mark by limit.
        t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete', backfill_request_id = NULL "
                   "WHERE id = '"
                   + id + "'");
      }
  BOOST_TEST(cases == static_cast<int>(events.size()) * 7);
}

// Marks by limit take the oldest partial attempts with as many failures as the oldest one, and
// fewer of them the more failures they have: a poison attempt's companions get asked apart.
NC_BOTH_BACKENDS(mark_by_limit_groups_attempts_by_failures) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {
    ids.push_back(add_attempt(t, a));
    t.clock.advance(std::chrono::seconds(1)); // created_at orders them
  }
  // The oldest and three others are suspects (one failure); two are worse (two failures).
  for (int i : {0, 3, 5, 9})
    t.exec_sql("UPDATE node_task_attempts SET backfill_failures = 1 WHERE id = '" + ids[i] + "'");
  for (int i : {6, 7})
    t.exec_sql("UPDATE node_task_attempts SET backfill_failures = 2 WHERE id = '" + ids[i] + "'");
  auto marked = [](const mark_pending::result_type& r) {
    std::vector<std::string> out;
    for (auto& m : r.marked)
      out.push_back(m.attempt_id);
    return out;
  };
  mark_pending op{new_uuid(), a.id, epoch, {}, 8, 3};
  auto m1 = marked(t.run(op)); // oldest has 1 failure: request_size(8, 1, 3) = 2 of the suspects
  BOOST_TEST(m1 == (std::vector<std::string>{ids[0], ids[3]}), boost::test_tools::per_element());
  op.request_id = new_uuid();
  auto m2 = marked(t.run(op)); // now the oldest (ids[1]) is clean: up to 8 clean ones
  BOOST_TEST(m2 == (std::vector<std::string>{ids[1], ids[2], ids[4], ids[8], ids[10], ids[11]}),
             boost::test_tools::per_element());
  op.request_id = new_uuid();
  auto m3 = marked(t.run(op)); // the oldest left (ids[5]) has 1 failure
  BOOST_TEST(m3 == (std::vector<std::string>{ids[5], ids[9]}), boost::test_tools::per_element());
  op.request_id = new_uuid();
  auto m4 = marked(t.run(op)); // then the two-failure ones, alone
  BOOST_TEST(m4 == (std::vector<std::string>{ids[6]}), boost::test_tools::per_element());
  // Two nodes in one set-based run each get their own grouping.
  auto b = add_node(t, "beta");
  auto eb = begin_session(t, b);
  auto bx = add_attempt(t, b);
  t.exec_sql("UPDATE node_task_attempts SET backfill_failures = 2 WHERE id = '" + bx + "'");
  std::vector<batch_item> items(2);
  auto ma = bind_item(items[0], mark_pending{new_uuid(), a.id, epoch, {}, 8, 3});
  auto mb = bind_item(items[1], mark_pending{new_uuid(), b.id, eb, {}, 8, 3});
  for (auto& e : t.run_items(items))
    BOOST_TEST(e.empty(), e);
  BOOST_TEST(marked(ma->result) == (std::vector<std::string>{ids[7]}), boost::test_tools::per_element());
  BOOST_TEST(marked(mb->result) == (std::vector<std::string>{bx}), boost::test_tools::per_element());
}

NC_BOTH_BACKENDS(reset_requests_and_reset_all_pending) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto x = add_attempt(t, a), y = add_attempt(t, a), z = add_attempt(t, a);
  t.run(logs_insert{a.id, z, lines(0, 1)});
  auto r1 = new_uuid(), r2 = new_uuid(), r3 = new_uuid();
  t.run(mark_pending{r1, a.id, epoch, {x}});
  t.run(mark_pending{r2, a.id, epoch, {y}});
  t.run(mark_pending{r3, a.id, epoch, {z}});
  t.run(apply_backfill{r3, a.id, {{z, true, 1, ""}}, 5});
  // A reset names requests; a completed request is untouched by it.
  auto r = t.run(reset_requests{{r1, r3, new_uuid()}, "expired", "deadline"});
  BOOST_TEST(r.attempts_reset == 1);
  BOOST_TEST(r.jobs_finished == 1);
  BOOST_TEST(get(t, x).sync_state == "partial");
  BOOST_TEST(get(t, z).sync_state == "complete");
  BOOST_TEST(job_status_of(t, r1) == "expired");
  BOOST_TEST(job_status_of(t, r3) == "succeeded");
  // A check in flight: its session is gone with the process.
  auto check = new_uuid();
  BOOST_REQUIRE(t.run(job_insert{{check, "check", "running", a.id}}).inserted);
  // Startup: every pending row back to partial, open jobs abandoned (requests and checks: no
  // answer can come for them now), online nodes offline.
  auto all = t.run(reset_all_pending{});
  BOOST_TEST(all.attempts_reset == 1);
  BOOST_TEST(all.jobs_abandoned == 2);
  BOOST_TEST(job_status_of(t, check) == "abandoned");
  BOOST_TEST(all.nodes_offlined == 1);
  BOOST_TEST(get(t, y).sync_state == "partial");
  BOOST_TEST(job_status_of(t, r2) == "abandoned");
  BOOST_TEST(t.run(node_lookup_by_name{"alpha"}).node.disconnect_reason == "restart");
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'") == 0);
  BOOST_TEST(t.run(reset_all_pending{}).attempts_reset == 0);
}
