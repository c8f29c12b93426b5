// Every storage operation on SQLite and on PostgreSQL (the same body, two backends), the state
// machine rules of DESIGN §3, migrations, group commit equivalence and exactly-once commits.
#define BOOST_TEST_MODULE storage_test
#include <boost/test/unit_test.hpp>

#include "common/ids.hpp"
#include "storage/grouped.hpp"
#include "storage/migrations.hpp"
#include "storage/query.hpp"
#include "test_db.hpp"

#include <soci/soci.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>

using namespace nodecoord;
using namespace nodecoord::storage;
using nodecoord::test::test_database;

namespace {

node_record add_node(test_database& t, const std::string& name) {
  auto r = t.run(node_create{name, "", "kid-" + name, sha256_hex("secret-" + name)});
  BOOST_REQUIRE(r.created);
  return r.node;
}

int64_t begin_session(test_database& t, const node_record& n) {
  auto cur = t.run(node_lookup_by_name{n.name});
  auto r = t.run(node_begin_session{n.id, cur.node.session_epoch});
  BOOST_REQUIRE(r.ok);
  return r.epoch;
}

std::string add_attempt(test_database& t, const node_record& n, const std::string& id = new_uuid()) {
  auto r = t.run(attempt_upsert{n.id, id, "task-1", "running", "", "", ""});
  BOOST_REQUIRE(r.status == write_status::ok);
  return id;
}

std::vector<log_entry> lines(int64_t from, int64_t to) { // [from, to)
  std::vector<log_entry> out;
  for (auto s = from; s < to; ++s)
    out.push_back({s, "2026-01-09T12:00:00.000Z", "stdout", "line " + std::to_string(s)});
  return out;
}

attempt_record get(test_database& t, const std::string& id) {
  auto r = t.run(attempt_get{id});
  BOOST_REQUIRE(r.found);
  return r.attempt;
}

std::string job_status_of(test_database& t, const std::string& id) {
  std::string s;
  query(t.db().session(), "SELECT status FROM jobs WHERE id = :id").bind("id", id).each([&](const soci::row& r) {
    s = col_str(r, 0);
  });
  return s;
}

int64_t count(test_database& t, const std::string& sql) {
  int64_t n = -1;
  query(t.db().session(), sql).each([&](const soci::row& r) { n = col_int(r, 0); });
  return n;
}

} // namespace

// --- migrations ------------------------------------------------------------------------------

NC_BOTH_BACKENDS(migrations_are_idempotent) {
  BOOST_TEST(count(t, "SELECT MAX(version) FROM schema_migrations") == latest_schema_version());
  add_node(t, "n1");
  // Re-running finds the current version and changes nothing.
  BOOST_TEST(t.db().migrate() == latest_schema_version());
  BOOST_TEST(t.db().migrate() == latest_schema_version());
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM schema_migrations") == latest_schema_version());
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM nodes") == 1);
}

NC_BOTH_BACKENDS(newer_schema_is_refused) {
  t.exec_sql("INSERT INTO schema_migrations (version, description, applied_at) VALUES "
             "(999, 'from the future', '2030-01-01T00:00:00.000Z')");
  try {
    t.db().migrate();
    BOOST_FAIL("expected schema_too_new");
  } catch (const schema_too_new& e) {
    BOOST_TEST(std::string(e.what()).find("version 999") != std::string::npos);
    BOOST_TEST(std::string(e.what()).find("newer than this nodecoordd") != std::string::npos);
  }
}

// --- nodes -----------------------------------------------------------------------------------

NC_BOTH_BACKENDS(node_create_lookup_list) {
  auto a = add_node(t, "alpha");
  BOOST_TEST(is_uuid(a.id));
  BOOST_TEST(a.status == "offline");
  BOOST_TEST(a.session_epoch == 0);
  BOOST_TEST(a.created_at == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(a.key_hash == sha256_hex("secret-alpha"));
  // A taken name or key id creates nothing.
  BOOST_TEST(!t.run(node_create{"alpha", "", "other", "h"}).created);
  BOOST_TEST(!t.run(node_create{"beta", "", "kid-alpha", "h"}).created);
  add_node(t, "beta");
  auto by_key = t.run(node_lookup_by_key{"kid-alpha"});
  BOOST_TEST(by_key.found);
  BOOST_TEST(by_key.node.id == a.id);
  BOOST_TEST(!t.run(node_lookup_by_key{"nope"}).found);
  BOOST_TEST(t.run(node_lookup_by_name{"beta"}).node.name == "beta");
  auto all = t.run(node_list{});
  BOOST_REQUIRE_EQUAL(all.size(), 2u);
  BOOST_TEST(all[0].name == "alpha");
  BOOST_TEST(all[1].name == "beta");
}

NC_BOTH_BACKENDS(node_disable_enable_and_rotate_key) {
  auto a = add_node(t, "alpha");
  auto d = t.run(node_disable{"alpha"});
  BOOST_TEST(d.found);
  BOOST_TEST(d.node.status == "disabled");
  BOOST_TEST(d.node.disabled_at == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(!t.run(node_disable{"nobody"}).found);
  // A disabled node cannot start a session.
  BOOST_TEST(!t.run(node_begin_session{a.id, 0}).ok);
  auto e = t.run(node_enable{"alpha"});
  BOOST_TEST(e.node.status == "offline");
  BOOST_TEST(e.node.disabled_at.empty());
  auto k = t.run(node_set_key{"alpha", "kid-new", "hash-new"});
  BOOST_TEST(k.found);
  BOOST_TEST(!t.run(node_lookup_by_key{"kid-alpha"}).found);
  BOOST_TEST(t.run(node_lookup_by_key{"kid-new"}).node.key_hash == "hash-new");
}

NC_BOTH_BACKENDS(session_epoch_cas_and_end_only_for_current_epoch) {
  auto a = add_node(t, "alpha");
  auto s1 = t.run(node_begin_session{a.id, 0});
  BOOST_TEST(s1.ok);
  BOOST_TEST(s1.epoch == 1);
  // A racing begin with the stale expectation loses and learns the current epoch.
  auto lost = t.run(node_begin_session{a.id, 0});
  BOOST_TEST(!lost.ok);
  BOOST_TEST(lost.epoch == 1);
  t.clock.advance(std::chrono::seconds(5));
  auto s2 = t.run(node_begin_session{a.id, 1, R"({"gpu": true})"}); // reconnected: supersedes epoch 1
  BOOST_TEST(s2.epoch == 2);
  auto n = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(n.capabilities.find("gpu") != std::string::npos); // the hello's capabilities are kept
  BOOST_TEST(n.status == "online");
  BOOST_TEST(n.connected_at == "2026-01-09T12:00:05.000Z");
  // The old session's cleanup arrives late: it must not touch the new session (reconnect clobber).
  BOOST_TEST(!t.run(node_end_session{a.id, 1, "socket_closed"}).applied);
  n = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(n.status == "online");
  BOOST_TEST(n.disconnect_reason.empty());
  t.clock.advance(std::chrono::seconds(5));
  BOOST_TEST(t.run(node_end_session{a.id, 2, "bye"}).applied);
  n = t.run(node_lookup_by_name{"alpha"}).node;
  BOOST_TEST(n.status == "offline");
  BOOST_TEST(n.disconnect_reason == "bye");
  BOOST_TEST(n.disconnected_at == "2026-01-09T12:00:10.000Z");
  // A disconnect does not refresh last_seen_at (lessons.md).
  BOOST_TEST(n.last_seen_at == "2026-01-09T12:00:05.000Z");
  // A hello without capabilities keeps the stored ones.
  BOOST_TEST(t.run(node_begin_session{a.id, 2}).ok);
  BOOST_TEST(t.run(node_lookup_by_name{"alpha"}).node.capabilities.find("gpu") != std::string::npos);
  BOOST_TEST(t.run(node_end_session{a.id, 3, "bye"}).applied);
}

NC_BOTH_BACKENDS(node_touch_is_batched_and_monotonic) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto r = t.run(node_touch{{{a.id, "2026-01-09T12:01:00.000Z"}, {b.id, "2026-01-09T12:02:00.000Z"}}});
  BOOST_TEST(r.updated == 2);
  // An older time never moves last_seen_at back.
  r = t.run(node_touch{{{a.id, "2026-01-09T12:00:30.000Z"}, {b.id, "2026-01-09T12:03:00.000Z"}}});
  BOOST_TEST(r.updated == 1);
  BOOST_TEST(t.run(node_lookup_by_name{"alpha"}).node.last_seen_at == "2026-01-09T12:01:00.000Z");
  BOOST_TEST(t.run(node_lookup_by_name{"beta"}).node.last_seen_at == "2026-01-09T12:03:00.000Z");
  BOOST_TEST(t.run(node_touch{}).updated == 0);
}

// --- attempts and logs -----------------------------------------------------------------------

NC_BOTH_BACKENDS(attempt_upsert_with_owner_check) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  auto id = new_uuid();
  auto r = t.run(attempt_upsert{a.id, id, "task-7", "running", "2026-01-09T11:00:00.000Z", "", R"({"exit": null})"});
  BOOST_TEST(r.created);
  auto at = get(t, id);
  BOOST_TEST(at.sync_state == "partial");
  BOOST_TEST(at.started_at == "2026-01-09T11:00:00.000Z");
  BOOST_TEST(at.finished_at.empty());
  // An update keeps what it leaves out and does not change sync_state.
  t.clock.advance(std::chrono::seconds(1));
  r = t.run(attempt_upsert{a.id, id, "task-7", "succeeded", "", "2026-01-09T11:05:00.000Z", ""});
  BOOST_TEST(!r.created);
  at = get(t, id);
  BOOST_TEST(at.state == "succeeded");
  BOOST_TEST(at.started_at == "2026-01-09T11:00:00.000Z");
  BOOST_TEST(at.finished_at == "2026-01-09T11:05:00.000Z");
  BOOST_TEST(at.meta.find("exit") != std::string::npos);
  BOOST_TEST(at.updated_at == "2026-01-09T12:00:01.000Z");
  // The same frame again (an agent re-sends its attempts with a backfill) writes nothing.
  t.clock.advance(std::chrono::seconds(1));
  r = t.run(attempt_upsert{a.id, id, "task-7", "succeeded", "", "2026-01-09T11:05:00.000Z", ""});
  BOOST_TEST(r.status == write_status::ok);
  BOOST_TEST(get(t, id).updated_at == "2026-01-09T12:00:01.000Z");
  r = t.run(attempt_upsert{a.id, id, "task-7", "succeeded", "2026-01-09T11:00:00.000Z", "", R"({"exit": null})"});
  BOOST_TEST(get(t, id).updated_at == "2026-01-09T12:00:01.000Z");
  // Another node may not write it.
  r = t.run(attempt_upsert{b.id, id, "task-x", "failed", "", "", ""});
  BOOST_TEST(r.status == write_status::forbidden);
  BOOST_TEST(get(t, id).state == "succeeded");
  BOOST_TEST(get(t, id).node_id == a.id);
}

NC_BOTH_BACKENDS(logs_insert_or_ignore_owner_and_reopen) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  BOOST_TEST(t.run(logs_insert{a.id, new_uuid(), lines(0, 1)}).status == write_status::unknown_attempt);
  auto id = add_attempt(t, a);
  BOOST_TEST(t.run(logs_insert{b.id, id, lines(0, 3)}).status == write_status::forbidden);
  auto r = t.run(logs_insert{a.id, id, lines(0, 3)});
  BOOST_TEST(r.inserted == 3);
  // Resending is harmless: nothing is inserted twice.
  r = t.run(logs_insert{a.id, id, lines(0, 5)});
  BOOST_TEST(r.inserted == 2);
  auto at = get(t, id);
  BOOST_TEST(at.log_count == 5);
  BOOST_TEST(at.log_max_seq == 4);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM attempt_logs") == 5);
  auto got = t.run(logs_get{id, 1, 2});
  BOOST_REQUIRE_EQUAL(got.size(), 2u);
  BOOST_TEST(got[0].seq == 2);
  BOOST_TEST(got[1].line == "line 3");
  BOOST_TEST(got[0].ts == "2026-01-09T12:00:00.000Z");
  // Reopen: new lines for a complete attempt move it back to partial; old lines do not.
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete'");
  r = t.run(logs_insert{a.id, id, lines(3, 5)});
  BOOST_TEST(!r.reopened);
  BOOST_TEST(get(t, id).sync_state == "complete");
  r = t.run(logs_insert{a.id, id, lines(5, 6)});
  BOOST_TEST(r.reopened);
  BOOST_TEST(get(t, id).sync_state == "partial");
}

NC_BOTH_BACKENDS(logs_insert_large_frame_with_repeats_and_gaps) {
  // One frame spans several multi-row statements, repeats a line, and overlaps stored lines.
  auto a = add_node(t, "alpha");
  auto id = add_attempt(t, a);
  BOOST_TEST(t.run(logs_insert{a.id, id, lines(100, 120)}).inserted == 20);
  auto frame = lines(0, 450);
  frame.push_back(frame[7]);              // the same line twice in one frame
  frame.back().line = "a different text"; // the first copy wins: seq is the identity
  auto more = lines(460, 470);
  frame.insert(frame.begin(), more.begin(), more.end()); // out of order, with a gap 450..459
  auto r = t.run(logs_insert{a.id, id, frame});
  BOOST_TEST(r.inserted == 450 - 20 + 10);
  auto at = get(t, id);
  BOOST_TEST(at.log_count == 460);
  BOOST_TEST(at.log_max_seq == 469);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM attempt_logs") == 460);
  BOOST_TEST(t.run(logs_get{id, 6, 1}).at(0).line == "line 7");
  // Only repeats: nothing inserted, counters unchanged.
  BOOST_TEST(t.run(logs_insert{a.id, id, lines(0, 300)}).inserted == 0);
  BOOST_TEST(get(t, id).log_count == 460);
  BOOST_TEST(get(t, id).log_max_seq == 469);
}

NC_BOTH_BACKENDS(nodes_end_sessions_batched_with_the_epoch_rule) {
  // More sessions than one statement takes, two reasons, a superseded session, a disabled node.
  std::vector<node_record> nodes;
  nodes_end_sessions op;
  for (int i = 0; i < 450; ++i) {
    nodes.push_back(add_node(t, "n" + std::to_string(i)));
    auto e = begin_session(t, nodes.back());
    op.sessions.push_back({nodes.back().id, e, i % 2 ? "socket_closed" : "bye"});
  }
  auto again = begin_session(t, nodes[3]); // reconnected: epoch 1 is stale now
  BOOST_TEST(again == 2);
  t.run(node_disable{"n4"});
  t.clock.advance(std::chrono::seconds(3));
  auto r = t.run(op);
  BOOST_TEST(r.applied == 449);
  BOOST_TEST(t.run(node_lookup_by_name{"n3"}).node.status == "online");
  BOOST_TEST(t.run(node_lookup_by_name{"n3"}).node.disconnect_reason.empty());
  auto n4 = t.run(node_lookup_by_name{"n4"}).node;
  BOOST_TEST(n4.status == "disabled");
  BOOST_TEST(n4.disconnect_reason == "bye");
  auto n5 = t.run(node_lookup_by_name{"n5"}).node;
  BOOST_TEST(n5.status == "offline");
  BOOST_TEST(n5.disconnect_reason == "socket_closed");
  BOOST_TEST(n5.disconnected_at == "2026-01-09T12:00:03.000Z");
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM nodes WHERE status = 'offline'") == 448);
  BOOST_TEST(t.run(nodes_end_sessions{}).applied == 0);
}

NC_BOTH_BACKENDS(partial_attempts_oldest_first) {
  auto a = add_node(t, "alpha");
  auto b = add_node(t, "beta");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(add_attempt(t, a));
    t.clock.advance(std::chrono::seconds(1));
  }
  add_attempt(t, b);
  t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete' WHERE id = '" + ids[1] + "'");
  auto got = t.run(attempts_partial_of_node{a.id, 2});
  BOOST_TEST(got == (std::vector<std::string>{ids[0], ids[2]}), boost::test_tools::per_element());
}

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

namespace {

/// Completes `id` through a one-attempt backfill (mark, then an ok with `log_count` lines).
void complete(test_database& t, const node_record& n, int64_t epoch, const std::string& id, int64_t log_count = 0) {
  auto req = new_uuid();
  BOOST_REQUIRE_EQUAL(t.run(mark_pending{req, n.id, epoch, {id}}).marked.size(), 1u);
  BOOST_REQUIRE_EQUAL(t.run(apply_backfill{req, n.id, {{id, true, log_count, ""}}, 5}).completed, 1);
  BOOST_REQUIRE_EQUAL(get(t, id).sync_state, "complete");
}

} // namespace

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
  // Startup: every pending row back to partial, open jobs abandoned, online nodes offline.
  auto all = t.run(reset_all_pending{});
  BOOST_TEST(all.attempts_reset == 1);
  BOOST_TEST(all.jobs_abandoned == 1);
  BOOST_TEST(all.nodes_offlined == 1);
  BOOST_TEST(get(t, y).sync_state == "partial");
  BOOST_TEST(job_status_of(t, r2) == "abandoned");
  BOOST_TEST(t.run(node_lookup_by_name{"alpha"}).node.disconnect_reason == "restart");
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'") == 0);
  BOOST_TEST(t.run(reset_all_pending{}).attempts_reset == 0);
}

// --- jobs ------------------------------------------------------------------------------------

NC_BOTH_BACKENDS(jobs_insert_update_query) {
  auto a = add_node(t, "alpha");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    job_record j;
    j.id = new_uuid();
    j.type = i % 2 ? "reconcile" : "bundle_export";
    j.status = "queued";
    j.node_id = i == 4 ? a.id : "";
    BOOST_TEST(t.run(job_insert{j}).inserted);
    ids.push_back(j.id);
    t.clock.advance(std::chrono::seconds(1));
  }
  job_record dup;
  dup.id = ids[0];
  dup.type = "reconcile";
  dup.status = "queued";
  BOOST_TEST(!t.run(job_insert{dup}).inserted);
  BOOST_TEST(t.run(job_update{ids[0], "running", "", ""}).updated);
  BOOST_TEST(t.run(job_update{ids[0], "succeeded", R"({"n": 3})", ""}).updated);
  // A final job never changes again.
  BOOST_TEST(!t.run(job_update{ids[0], "failed", "", "late"}).updated);
  auto all = t.run(job_query{});
  BOOST_REQUIRE_EQUAL(all.size(), 5u);
  BOOST_TEST(all[0].id == ids[4]); // newest first
  auto done = t.run(job_query{{"succeeded"}, {}, "", "", "", 10});
  BOOST_REQUIRE_EQUAL(done.size(), 1u);
  BOOST_TEST(done[0].started_at == "2026-01-09T12:00:05.000Z");
  BOOST_TEST(done[0].finished_at == "2026-01-09T12:00:05.000Z");
  BOOST_TEST(done[0].detail.find("\"n\"") != std::string::npos);
  BOOST_TEST(t.run(job_query{{}, {"reconcile"}, "", "", "", 10}).size() == 2u);
  BOOST_TEST(t.run(job_query{{}, {}, a.id, "", "", 10}).size() == 1u);
  // Keyset paging: two pages of two, then the rest.
  auto p1 = t.run(job_query{{}, {}, "", "", "", 2});
  auto p2 = t.run(job_query{{}, {}, "", p1.back().created_at, p1.back().id, 2});
  auto p3 = t.run(job_query{{}, {}, "", p2.back().created_at, p2.back().id, 2});
  BOOST_TEST(p1[0].id == ids[4]);
  BOOST_TEST(p2[0].id == ids[2]);
  BOOST_REQUIRE_EQUAL(p3.size(), 1u);
  BOOST_TEST(p3[0].id == ids[0]);
}

NC_BOTH_BACKENDS(count_summary_counts) {
  auto a = add_node(t, "alpha");
  add_node(t, "beta");
  t.run(node_disable{"beta"});
  auto x = add_attempt(t, a);
  add_attempt(t, a);
  t.run(logs_insert{a.id, x, lines(0, 4)});
  auto s = t.run(count_summary{});
  using kv = std::vector<std::pair<std::string, int64_t>>;
  BOOST_TEST((s.nodes_by_status == kv{{"disabled", 1}, {"offline", 1}}));
  BOOST_TEST((s.attempts_by_sync_state == kv{{"partial", 2}}));
  BOOST_TEST(s.log_lines == 4);
}

// --- group commit ----------------------------------------------------------------------------

namespace {

/// A random but reproducible stream of operations over a small world of nodes and attempts,
/// including operations that are refused (forbidden, stale, CAS misses).
struct op_stream {
  std::mt19937 rng;
  std::vector<std::string> node_ids, attempt_ids, request_ids;
  explicit op_stream(unsigned seed) : rng(seed) {
    for (int i = 0; i < 2; ++i)
      node_ids.push_back("00000000-0000-4000-8000-00000000000" + std::to_string(i));
    for (int i = 0; i < 5; ++i)
      attempt_ids.push_back("10000000-0000-4000-8000-00000000000" + std::to_string(i));
    for (int i = 0; i < 3; ++i)
      request_ids.push_back("20000000-0000-4000-8000-00000000000" + std::to_string(i));
  }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
  }
  int64_t num(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }

  /// Appends one operation as a batch item (made as the storage actor makes it, so adjacent
  /// operations of a group kind run together); its `deliver` renders the result into `out`.
  /// Half of the time it repeats the previous kind, so runs of one kind are common.
  int last_kind = 0;
  void next(std::vector<batch_item>& items, std::vector<std::string>& out) {
    auto slot = out.size();
    out.emplace_back();
    auto set = [&out, slot](std::string s) { out[slot] = std::move(s); };
    batch_item it;
    // Weighted towards the data and backfill paths, which have the most state to get right.
    static const std::vector<int> kinds{0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5, 6, 7, 8, 9, 10};
    auto kind = num(0, 1) ? last_kind : pick(kinds);
    last_kind = kind;
    switch (kind) {
      case 0: {
        auto i = num(0, 1);
        auto m = bind_item(it, node_create{"node" + std::to_string(i), node_ids[i], "kid" + std::to_string(i), "h"});
        it.deliver = [m, set] { set("create " + std::to_string(m->result.created)); };
        break;
      }
      case 1: {
        auto m = bind_item(it, node_begin_session{pick(node_ids), num(0, 2), num(0, 1) ? R"({"os": "linux"})" : ""});
        it.deliver = [m, set] { set("begin " + std::to_string(m->result.ok) + " " + std::to_string(m->result.epoch)); };
        break;
      }
      case 2: {
        auto m =
          bind_item(it, attempt_upsert{pick(node_ids), pick(attempt_ids), "task", num(0, 1) ? "running" : "succeeded",
                                       num(0, 1) ? "2026-01-09T11:00:00.000Z" : "",
                                       num(0, 1) ? "2026-01-09T11:0" + std::to_string(num(1, 9)) + ":00.000Z" : "",
                                       num(0, 1) ? R"({"n": )" + std::to_string(num(0, 9)) + "}" : ""});
        it.deliver = [m, set] {
          set(std::string("upsert ") + to_string(m->result.status) + " " + std::to_string(m->result.created) + " "
              + std::to_string(m->result.reopened));
        };
        break;
      }
      case 3: {
        auto from = num(0, 6);
        auto m = bind_item(it, logs_insert{pick(node_ids), pick(attempt_ids), lines(from, from + num(0, 4))});
        if (num(0, 3) == 0 && !m->op.entries.empty())
          m->op.entries.push_back(m->op.entries.front()); // a repeat inside the frame
        it.deliver = [m, set] {
          set(std::string("logs ") + to_string(m->result.status) + " " + std::to_string(m->result.inserted) + " "
              + std::to_string(m->result.reopened));
        };
        break;
      }
      case 4: {
        mark_pending op{pick(request_ids), pick(node_ids), num(1, 3), {}};
        if (num(0, 2) == 0)
          op.attempt_ids = {pick(attempt_ids), pick(attempt_ids), pick(attempt_ids)};
        else
          op.limit = num(0, 3);
        op.max_failures = 3; // suspects (failures > 0) go in smaller groups
        auto m = bind_item(it, std::move(op));
        it.deliver = [m, set] {
          std::string s = "mark";
          for (auto& a : m->result.marked)
            s += " " + a.attempt_id + ":" + std::to_string(a.logs_after);
          set(s);
        };
        break;
      }
      case 5: {
        auto req = pick(request_ids);
        auto node = pick(node_ids);
        std::vector<backfill_item> results;
        if (num(0, 1))
          for (auto& id : attempt_ids) // answers for everything: whatever is pending gets one
            results.push_back({id, num(0, 3) > 0, num(0, 3), ""});
        else
          for (auto n = num(0, 3); n > 0; --n)
            results.push_back({pick(attempt_ids), num(0, 2) > 0, num(0, 6), ""});
        auto m = bind_item(it, apply_backfill{req, node, results, 2});
        it.deliver = [m, set] {
          auto& r = m->result;
          std::string s = "apply " + r.job_status + " " + std::to_string(r.completed) + "/" + std::to_string(r.reset)
                          + "/" + std::to_string(r.failed) + "/" + std::to_string(r.stale);
          for (auto& a : r.attempts)
            s += " " + a.attempt_id + ":" + to_string(a.outcome);
          set(s);
        };
        break;
      }
      case 6: {
        reset_requests op{{pick(request_ids)}, num(0, 1) ? "cancelled" : "expired", "test"};
        op.count_failure = op.job_status == "expired";
        op.max_failures = 2;
        auto m = bind_item(it, std::move(op));
        it.deliver = [m, set] {
          set("reset " + std::to_string(m->result.attempts_reset) + " " + std::to_string(m->result.attempts_failed)
              + " " + std::to_string(m->result.jobs_finished));
        };
        break;
      }
      case 7: {
        auto m = bind_item(it, node_end_session{pick(node_ids), num(1, 3), "gone"});
        it.deliver = [m, set] { set("end " + std::to_string(m->result.applied)); };
        break;
      }
      case 9: {
        auto m = bind_item(it, node_lookup_by_key{"kid" + std::to_string(num(0, 2))});
        it.deliver = [m, set] {
          set("lookup " + std::to_string(m->result.found) + " " + m->result.node.id + " "
              + std::to_string(m->result.node.session_epoch));
        };
        break;
      }
      case 10: {
        node_touch op;
        for (auto n = num(0, 3); n > 0; --n)
          op.nodes.push_back({pick(node_ids), "2026-01-09T12:0" + std::to_string(num(0, 9)) + ":00.000Z"});
        auto m = bind_item(it, std::move(op));
        it.deliver = [m, set] { set("touch"); };
        break;
      }
      default: {
        auto m = bind_item(it, attempt_requeue{pick(attempt_ids)});
        it.deliver = [m, set] { set("requeue " + std::to_string(m->result.requeued)); };
      }
    }
    items.push_back(std::move(it));
  }
};

/// Runs items as one batch on t and delivers the settled ones; returns "" or "error" per item.
std::vector<std::string> run_and_deliver(test_database& t, std::span<batch_item> items) {
  std::vector<std::string> out;
  auto errors = t.run_items(items);
  for (size_t i = 0; i < items.size(); ++i) {
    if (errors[i].empty())
      items[i].deliver();
    out.push_back(errors[i].empty() ? "" : "error");
  }
  return out;
}

} // namespace

// Batches run adjacent attempt_upsert/logs_insert, mark_pending (limit) and apply_backfill
// operations as set-based statements (storage/grouped.cpp); one by one, each runs alone. Results
// and every row must be the same.
NC_BOTH_BACKENDS(batching_equals_one_by_one) {
  executor_stats before = t.executor().stats();
  std::vector<std::string> all_results;
  int64_t log_rows = 0, job_rows = 0;
  for (unsigned seed = 1; seed <= 12; ++seed) {
    test_database other(t.kind(), t.clock);
    std::vector<batch_item> items;
    std::vector<std::string> batched, single;
    op_stream a(seed), b(seed);
    for (int i = 0; i < 300; ++i) {
      a.next(items, batched);
    }
    // Same operations, applied in random-size batches on t and one by one on other. Some fail
    // on their own (e.g. an attempt of a node not created yet): the same ones in both modes.
    std::mt19937 rng(seed);
    std::vector<std::string> batched_errors, single_errors;
    for (size_t i = 0; i < items.size();) {
      size_t n = std::min<size_t>(items.size() - i, std::uniform_int_distribution<size_t>(1, 60)(rng));
      for (auto& e : run_and_deliver(t, std::span<batch_item>(items).subspan(i, n)))
        batched_errors.push_back(e);
      i += n;
    }
    std::vector<batch_item> one;
    for (int i = 0; i < 300; ++i) {
      one.clear();
      b.next(one, single);
      single_errors.push_back(run_and_deliver(other, one)[0]);
    }
    BOOST_TEST_INFO("seed " << seed);
    BOOST_TEST(batched_errors == single_errors, boost::test_tools::per_element());
    BOOST_TEST(std::count(single_errors.begin(), single_errors.end(), "") > 200);
    BOOST_TEST(batched == single, boost::test_tools::per_element());
    BOOST_TEST(t.dump() == other.dump());
    log_rows += count(t, "SELECT COUNT(*) FROM attempt_logs");
    job_rows += count(t, "SELECT COUNT(*) FROM jobs");
    all_results.insert(all_results.end(), batched.begin(), batched.end());
    t.exec_sql("DELETE FROM attempt_logs");
    t.exec_sql("DELETE FROM jobs");
    t.exec_sql("DELETE FROM node_task_attempts");
    t.exec_sql("DELETE FROM nodes");
  }
  // Over all seeds, the streams reached every outcome (so the equalities above mean something).
  BOOST_TEST(log_rows > 0);
  BOOST_TEST(job_rows > 0);
  auto has = [&](const std::string& what) {
    return std::count_if(all_results.begin(), all_results.end(),
                         [&](const std::string& r) { return r.find(what) != std::string::npos; });
  };
  for (auto what : {":completed", ":reset", ":failed", ":stale", "apply succeeded", "apply failed", "logs ok",
                    "logs forbidden", "logs unknown_attempt", "upsert forbidden", "upsert ok 1", "requeue 1", "begin 1",
                    "begin 0", "lookup 1", "lookup 0"}) {
    BOOST_TEST_INFO(what);
    BOOST_TEST(has(what) > 0);
  }
  BOOST_TEST(std::count_if(all_results.begin(), all_results.end(),
                           [](const std::string& r) {
                             return r.starts_with("logs ok") && r.ends_with(" 1"); // reopened
                           })
             > 0);
  BOOST_TEST(std::count_if(all_results.begin(), all_results.end(),
                           [](const std::string& r) {
                             return r.starts_with("upsert ok 0 1"); // a change reopened a complete or failed attempt
                           })
             > 0);
  BOOST_TEST(std::count_if(all_results.begin(), all_results.end(),
                           [](const std::string& r) {
                             return r.starts_with("reset ")
                                    && r.substr(r.find(' ', 6) + 1, 1) != "0"; // an expiry failed some
                           })
             > 0);
  BOOST_TEST(std::count_if(all_results.begin(), all_results.end(),
                           [](const std::string& r) {
                             return r.starts_with("mark ") && r.find(":-1") == std::string::npos; // logs_after >= 0
                           })
             > 0);
  // Groups did run (and not only one-operation runs).
  BOOST_TEST(t.executor().stats().groups - before.groups > 100);
  BOOST_TEST(t.executor().stats().grouped_items - before.grouped_items > 400);
}

NC_BOTH_BACKENDS(statement_error_is_isolated_to_its_operation) {
  auto a = add_node(t, "alpha");
  std::vector<batch_item> items;
  std::vector<std::string> results(3);
  auto x = new_uuid();
  items.push_back({[&, x](op_context& c) {
    results[0] = to_string(execute(c, attempt_upsert{a.id, x, "t", "running", "", "", ""}).status);
  }});
  // 'exploded' violates the CHECK constraint on state: a statement error of this op alone.
  items.push_back({[&](op_context& c) {
    results[1] = to_string(execute(c, attempt_upsert{a.id, new_uuid(), "t", "exploded", "", "", ""}).status);
  }});
  items.push_back({[&, x](op_context& c) {
    results[2] = std::to_string(execute(c, logs_insert{a.id, x, lines(0, 2)}).inserted);
  }});
  auto errors = t.run_items(items);
  BOOST_TEST(errors[0].empty());
  BOOST_TEST(!errors[1].empty());
  BOOST_TEST(errors[2].empty());
  BOOST_TEST(results[0] == "ok");
  BOOST_TEST(results[2] == "2");
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM node_task_attempts") == 1);
  BOOST_TEST(get(t, x).log_count == 2);
  BOOST_TEST(t.executor().stats().isolations == 1u);
}

// A batch that changes nothing writes no token and flushes nothing; a lost acknowledgement of
// it simply runs it again.
NC_BOTH_BACKENDS(a_batch_that_changes_nothing_commits_without_a_token) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto token = [&] { return count(t, "SELECT COALESCE(MAX(token), 0) FROM storage_commits"); };
  auto before_token = token();
  auto before = t.executor().stats();
  int runs = 0;
  size_t marked = 99;
  std::vector<batch_item> probe{{[&](op_context& c) {
    ++runs;
    marked = execute(c, mark_pending{new_uuid(), a.id, epoch, {}, 100}).marked.size(); // nothing partial
    execute(c, node_lookup_by_name{"alpha"});
  }}};
  BOOST_TEST(t.run_items(probe)[0].empty());
  BOOST_TEST(marked == 0u);
  BOOST_TEST(token() == before_token);
  BOOST_TEST(t.executor().stats().read_only_transactions - before.read_only_transactions == 1u);
  BOOST_TEST(t.executor().stats().transactions - before.transactions == 1u);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM jobs") == 0); // a mark of nothing leaves no job

  // Lost acknowledgement: not in doubt, so it runs again on the new connection.
  t.executor().fault_hook = [](batch_executor::fault_point p) {
    if (p == batch_executor::fault_point::after_commit)
      throw simulated_connection_loss("connection lost after COMMIT");
  };
  auto rep = t.executor().execute(probe);
  BOOST_TEST((rep.stop == stop_reason::connection));
  t.executor().fault_hook = nullptr;
  t.db().connect();
  rep = t.executor().execute(probe);
  BOOST_TEST(rep.done == 1u);
  BOOST_TEST(runs == 3);
  BOOST_TEST(t.executor().stats().in_doubt_committed == before.in_doubt_committed);

  // A batch that writes still takes a token.
  add_attempt(t, a);
  BOOST_TEST(token() > before_token);
  BOOST_TEST(t.executor().stats().read_only_transactions - before.read_only_transactions == 2u);
}

// Exactly once: the connection dies while COMMIT is in flight.
NC_BOTH_BACKENDS(lost_commit_acknowledgement_is_not_applied_twice) {
  auto a = add_node(t, "alpha");
  auto epoch = begin_session(t, a);
  auto x = add_attempt(t, a);
  auto req = new_uuid();
  t.run(mark_pending{req, a.id, epoch, {x}});
  int runs = 0;
  std::string outcome;
  std::vector<batch_item> items{{[&](op_context& c) {
    ++runs;
    auto r = execute(c, apply_backfill{req, a.id, {{x, false, 0, "gone"}}, 5});
    outcome = r.attempts.empty() ? "none" : to_string(r.attempts[0].outcome);
  }}};
  // The COMMIT reached the database, but the acknowledgement was lost.
  t.executor().fault_hook = [](batch_executor::fault_point p) {
    if (p == batch_executor::fault_point::after_commit)
      throw simulated_connection_loss("connection lost after COMMIT");
  };
  auto rep = t.executor().execute(items);
  BOOST_TEST(rep.done == 0u);
  BOOST_TEST((rep.stop == stop_reason::connection));
  BOOST_TEST(!t.db().connected());
  t.executor().fault_hook = nullptr;
  t.db().connect();
  rep = t.executor().execute(items);
  BOOST_TEST(rep.done == 1u);
  BOOST_TEST(runs == 1); // not re-run: the token says it committed
  BOOST_TEST(outcome == "reset");
  BOOST_TEST(get(t, x).backfill_failures == 1);
  BOOST_TEST(t.executor().stats().in_doubt_committed == 1u);

  // The connection dies before COMMIT: the batch did not happen, so it runs again, once.
  auto req2 = new_uuid();
  t.run(mark_pending{req2, a.id, epoch, {x}});
  runs = 0;
  std::vector<batch_item> again{{[&](op_context& c) {
    ++runs;
    execute(c, apply_backfill{req2, a.id, {{x, false, 0, "gone"}}, 5});
  }}};
  t.executor().fault_hook = [](batch_executor::fault_point p) {
    if (p == batch_executor::fault_point::before_commit)
      throw simulated_connection_loss("connection lost before COMMIT");
  };
  rep = t.executor().execute(again);
  BOOST_TEST((rep.stop == stop_reason::connection));
  t.executor().fault_hook = nullptr;
  t.db().connect();
  rep = t.executor().execute(again);
  BOOST_TEST(rep.done == 1u);
  BOOST_TEST(runs == 2);
  BOOST_TEST(get(t, x).backfill_failures == 2); // applied exactly once
}
