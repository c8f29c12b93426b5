// Bulk actions by filter (issue 20, storage/bulk.hpp) on both backends: a plan counts and names
// the matched set without changing it; an apply changes exactly the planned set, with its audit
// row, or nothing when the set changed (stale) or is over the budget; every filter field matches
// what it says and no more; a node delete takes the node's attempts and lines, and is refused
// while one of them is not complete.

#include <boost/test/unit_test.hpp>

#include "storage/audit.hpp"
#include "storage/bulk.hpp"
#include "storage_test_support.hpp"

#include <set>
#include <stdexcept>

using namespace storage_test;

namespace {

void set_sync(test_database& t, const std::string& id, const std::string& state) {
  query(t.db().session(), "UPDATE node_task_attempts SET sync_state = :s, backfill_failures = :f WHERE id = :id")
    .bind("s", state)
    .bind("f", int64_t{state == "failed" ? 5 : 0})
    .bind("id", id)
    .exec();
}

std::string add(test_database& t, const node_record& n, const std::string& task, const std::string& sync) {
  auto id = new_uuid();
  BOOST_REQUIRE(t.run(attempt_upsert{n.id, id, task, "succeeded", "", "", ""}).status == write_status::ok);
  set_sync(t, id, sync);
  return id;
}

bulk_action plan(const std::string& action, bulk_filter f, int64_t limit = 100) {
  bulk_action op;
  op.action = action;
  op.filter = std::move(f);
  op.limit = limit;
  return op;
}

bulk_action applied(bulk_action op, const std::string& token) {
  op.apply = true;
  op.token = token;
  op.audit.actor = "local";
  op.audit.action = op.action;
  op.audit.filter = op.filter.canonical();
  return op;
}

std::set<std::string> ids_in(test_database& t, const std::string& sync) {
  std::set<std::string> out;
  query(t.db().session(), "SELECT id FROM node_task_attempts WHERE sync_state = :s")
    .bind("s", sync)
    .each([&](const soci::row& r) { out.insert(col_str(r, 0)); });
  return out;
}

int64_t ledger_rows(test_database& t) { return count(t, "SELECT COUNT(*) FROM audit_log"); }

void counters_match_scan(test_database& t) {
  auto kept = t.run(count_summary{});
  auto scanned = t.run(count_summary{true});
  BOOST_TEST(kept.attempts_by_sync_state == scanned.attempts_by_sync_state);
  BOOST_TEST(kept.nodes_by_status == scanned.nodes_by_status);
  BOOST_TEST(kept.log_lines == scanned.log_lines);
}

} // namespace

NC_BOTH_BACKENDS(an_apply_changes_exactly_the_planned_set_or_nothing) {
  auto a = add_node(t, "rack1-a"), b = add_node(t, "rack1-b"), c = add_node(t, "rack2-c");
  auto a1 = add(t, a, "build/1", "failed"), a2 = add(t, a, "build/2", "failed"), a3 = add(t, a, "test/1", "failed");
  auto a4 = add(t, a, "build/5", "complete");
  add(t, a, "build/6", "partial");
  auto b1 = add(t, b, "build/3", "failed"), b2 = add(t, b, "build/4", "failed");
  auto c1 = add(t, c, "Build/7", "failed");

  // A plan reads: the count, a sample in id order, a token that names the set. Nothing changes.
  auto p = t.run(plan("attempts.requeue", {.task_prefix = "build/"}));
  BOOST_TEST(p.matched == 4);
  BOOST_TEST(!p.over_budget);
  BOOST_TEST_REQUIRE(p.sample.size() == 4u);
  std::set<std::string> sampled;
  for (auto& r : p.sample) {
    sampled.insert(r.id);
    BOOST_TEST(r.status == "failed");
    BOOST_TEST(r.label.rfind("build/", 0) == 0u);
  }
  BOOST_TEST((sampled == std::set<std::string>{a1, a2, b1, b2}));
  BOOST_TEST(std::is_sorted(p.sample.begin(), p.sample.end(), [](auto& x, auto& y) { return x.id < y.id; }));
  BOOST_TEST(p.token.size() == 64u);
  BOOST_TEST(t.run(plan("attempts.requeue", {.task_prefix = "build/"})).token == p.token); // deterministic
  BOOST_TEST(t.run(plan("attempts.reset", {.task_prefix = "build/"})).token != p.token);   // the action is in it
  BOOST_TEST(ids_in(t, "failed").size() == 6u);
  // The prefix is case-sensitive and literal.
  BOOST_TEST(t.run(plan("attempts.requeue", {.task_prefix = "Build/"})).matched == 1);
  BOOST_TEST(t.run(plan("attempts.requeue", {.task_prefix = "build_"})).matched == 0);
  BOOST_TEST(t.run(plan("attempts.requeue", {.task_prefix = "build%"})).matched == 0);
  BOOST_TEST(t.run(plan("attempts.requeue", {.node = "rack1-a", .task_prefix = "build/"})).matched == 2);
  BOOST_TEST(t.run(plan("attempts.requeue", {.node = "nobody"})).matched == 0);

  // A wrong token changes nothing and writes no row (the API writes the refusal).
  auto rows_before = ledger_rows(t);
  auto wrong = t.run(applied(plan("attempts.requeue", {.task_prefix = "build/"}), std::string(64, '0')));
  BOOST_TEST(wrong.stale);
  BOOST_TEST(ids_in(t, "failed").size() == 6u);
  // The set changes between plan and apply (one more failed attempt matches): stale, nothing.
  auto a9 = add(t, a, "build/9", "failed");
  auto stale = t.run(applied(plan("attempts.requeue", {.task_prefix = "build/"}), p.token));
  BOOST_TEST(stale.stale);
  BOOST_TEST(stale.matched == 5);
  BOOST_TEST(ids_in(t, "failed").size() == 7u);
  // So does one that leaves the set (it was requeued by someone else).
  set_sync(t, a9, "partial");
  auto again = t.run(plan("attempts.requeue", {.task_prefix = "build/"}));
  BOOST_TEST(again.token == p.token); // the same set again: the same token
  set_sync(t, a1, "partial");
  BOOST_TEST(t.run(applied(plan("attempts.requeue", {.task_prefix = "build/"}), p.token)).stale);
  set_sync(t, a1, "failed");
  BOOST_TEST(ledger_rows(t) == rows_before);

  // The planned set, applied: exactly those rows, the failure counter cleared, one ledger row.
  auto done = t.run(applied(plan("attempts.requeue", {.task_prefix = "build/"}), p.token));
  BOOST_TEST(!done.stale);
  BOOST_TEST(done.matched == 4);
  BOOST_TEST(done.counts == R"({"attempts":4})");
  for (auto& id : {a1, a2, b1, b2}) {
    BOOST_TEST(get(t, id).sync_state == "partial");
    BOOST_TEST(get(t, id).backfill_failures == 0);
  }
  BOOST_TEST((ids_in(t, "failed") == std::set<std::string>{a3, c1}));
  BOOST_TEST(get(t, a4).sync_state == "complete");
  auto rows = t.run(audit_query{});
  BOOST_TEST_REQUIRE(ledger_rows(t) == rows_before + 1);
  BOOST_TEST(rows[0].entry.action == "attempts.requeue");
  BOOST_TEST(rows[0].entry.result == "succeeded");
  BOOST_TEST(rows[0].entry.counts.find("4") != std::string::npos);
  BOOST_TEST(rows[0].entry.filter.find("build/") != std::string::npos);
  // Applied twice: the set is gone, so the token is stale.
  BOOST_TEST(t.run(applied(plan("attempts.requeue", {.task_prefix = "build/"}), p.token)).stale);

  // Budgets: a plan over it reads the count and nothing else; an apply over it changes nothing.
  auto all_reset = plan("attempts.reset", {.all = true}, 2);
  auto over = t.run(all_reset);
  BOOST_TEST(over.over_budget);
  BOOST_TEST(over.matched == 3); // a3, c1 failed; a4 complete
  BOOST_TEST(over.token.empty());
  BOOST_TEST(over.sample.empty());
  auto full = t.run(plan("attempts.reset", {.all = true}, 3));
  BOOST_TEST(!full.over_budget);
  auto refused = t.run(applied(all_reset, full.token)); // the budget of 2 again
  BOOST_TEST(refused.over_budget);
  BOOST_TEST(refused.matched == 3);
  BOOST_TEST(get(t, a4).sync_state == "complete");
  // Reset: complete and failed to partial (re-verification); pending ones are the tracker's.
  auto reset = t.run(applied(plan("attempts.reset", {.all = true}, 3), full.token));
  BOOST_TEST(reset.counts == R"({"attempts":3})");
  BOOST_TEST(ids_in(t, "complete").empty());
  BOOST_TEST(ids_in(t, "failed").empty());
  counters_match_scan(t);
}

NC_BOTH_BACKENDS(every_filter_field_matches_what_it_says) {
  auto a = add_node(t, "rack1-a"), b = add_node(t, "rack1-b");
  add(t, a, "x/1", "failed");
  auto old_one = add(t, b, "x/2", "failed");
  query(t.db().session(),
        "UPDATE node_task_attempts SET state = 'failed', updated_at = '2026-01-01T00:00:00.000Z' WHERE id = :id")
    .bind("id", old_one)
    .exec();
  begin_session(t, a); // a online, b offline
  auto matched = [&](bulk_filter f) { return t.run(plan("attempts.requeue", std::move(f))).matched; };
  BOOST_TEST(matched({.node_status = "online"}) == 1);
  BOOST_TEST(matched({.node_status = "offline"}) == 1);
  BOOST_TEST(matched({.node_status = "disabled"}) == 0);
  BOOST_TEST(matched({.sync_state = "failed"}) == 2);
  BOOST_TEST(matched({.state = "failed"}) == 1);
  BOOST_TEST(matched({.state = "succeeded"}) == 1);
  BOOST_TEST(matched({.older_than = "2026-01-02T00:00:00.000Z"}) == 1);
  BOOST_TEST(matched({.older_than = "2025-12-31T00:00:00.000Z"}) == 0);
  BOOST_TEST(matched({.all = true}) == 2);
  BOOST_TEST(matched({.node = "rack1-b", .state = "succeeded"}) == 0); // every field must hold

  auto nodes = [&](const std::string& action, bulk_filter f) { return t.run(plan(action, std::move(f))).matched; };
  BOOST_TEST(nodes("nodes.disable", {.name_prefix = "rack1-"}) == 2);
  BOOST_TEST(nodes("nodes.disable", {.name_prefix = "RACK1-"}) == 0);
  BOOST_TEST(nodes("nodes.disable", {.node_status = "online"}) == 1);
  BOOST_TEST(nodes("nodes.disable", {.older_than = "2100-01-01T00:00:00.000Z"}) == 2);
  BOOST_TEST(nodes("nodes.disable", {.older_than = "2000-01-01T00:00:00.000Z"}) == 0);
  BOOST_TEST(nodes("nodes.enable", {.all = true}) == 0); // none is disabled

  // What storage refuses outright (the API answers 400 before it gets here).
  BOOST_CHECK_THROW(t.run(plan("attempts.requeue", {})), std::runtime_error);
  BOOST_CHECK_THROW(t.run(plan("attempts.requeue", {.name_prefix = "x"})), std::runtime_error);
  BOOST_CHECK_THROW(t.run(plan("nodes.disable", {.task_prefix = "x"})), std::runtime_error);
  BOOST_CHECK_THROW(t.run(plan("nodes.explode", {.all = true})), std::runtime_error);
}

NC_BOTH_BACKENDS(node_actions_and_a_delete_that_takes_attempts_and_lines) {
  auto a = add_node(t, "rack1-a"), b = add_node(t, "rack1-b"), c = add_node(t, "rack2-c");
  auto epoch = begin_session(t, a);
  auto a1 = add(t, a, "t/1", "partial");
  BOOST_REQUIRE(t.run(logs_insert{a.id, a1, lines(0, 7), epoch}).inserted == 7);
  set_sync(t, a1, "complete");
  auto a2 = add(t, a, "t/2", "failed");
  add(t, c, "t/3", "partial");
  auto job = new_uuid();
  BOOST_REQUIRE(t.run(job_insert{{job, "backfill", "succeeded", a.id}}).inserted);

  // Disable by prefix: both rack1 nodes, their ids and names returned (their sessions close).
  auto p = t.run(plan("nodes.disable", {.name_prefix = "rack1-"}));
  BOOST_TEST(p.matched == 2);
  auto d = t.run(applied(plan("nodes.disable", {.name_prefix = "rack1-"}), p.token));
  BOOST_TEST(d.counts == R"({"nodes":2})");
  BOOST_TEST((std::set<std::string>(d.node_ids.begin(), d.node_ids.end()) == std::set<std::string>{a.id, b.id}));
  BOOST_TEST(
    (std::set<std::string>(d.node_names.begin(), d.node_names.end()) == std::set<std::string>{"rack1-a", "rack1-b"}));
  BOOST_TEST(t.run(node_lookup_by_name{"rack1-a"}).node.status == "disabled");
  BOOST_TEST(t.run(node_lookup_by_name{"rack2-c"}).node.status == "offline");
  // Delete acts on disabled nodes only, and not while an attempt is not complete (a2 failed).
  BOOST_TEST(t.run(plan("nodes.delete", {.name_prefix = "rack2-"})).matched == 0);
  auto blocked = t.run(plan("nodes.delete", {.name_prefix = "rack1-"}));
  BOOST_TEST(blocked.matched == 2);
  BOOST_TEST(blocked.blocked == 1);
  auto refused = t.run(applied(plan("nodes.delete", {.name_prefix = "rack1-"}), blocked.token));
  BOOST_TEST(refused.blocked == 1);
  BOOST_TEST(refused.counts.empty());
  BOOST_TEST(t.run(node_lookup_by_name{"rack1-a"}).found);
  set_sync(t, a2, "complete");
  auto del = t.run(plan("nodes.delete", {.name_prefix = "rack1-"}));
  BOOST_TEST(del.blocked == 0);
  BOOST_TEST(del.attempts == 2);
  BOOST_TEST(del.log_lines == 7);
  auto gone = t.run(applied(plan("nodes.delete", {.name_prefix = "rack1-"}), del.token));
  BOOST_TEST(gone.counts == R"({"attempts":2,"log_lines":7,"nodes":2})");
  BOOST_TEST(!t.run(node_lookup_by_name{"rack1-a"}).found);
  BOOST_TEST(!t.run(node_lookup_by_name{"rack1-b"}).found);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM attempt_logs") == 0);
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM node_task_attempts") == 1);         // c's
  BOOST_TEST(count(t, "SELECT COUNT(*) FROM jobs WHERE node_id IS NULL") == 1); // the job is kept
  // Enable: disabled back to offline.
  query(t.db().session(), "UPDATE nodes SET status = 'disabled' WHERE name = 'rack2-c'").exec();
  auto e = t.run(plan("nodes.enable", {.node = "rack2-c"}));
  BOOST_TEST(t.run(applied(plan("nodes.enable", {.node = "rack2-c"}), e.token)).counts == R"({"nodes":1})");
  BOOST_TEST(t.run(node_lookup_by_name{"rack2-c"}).node.status == "offline");
  counters_match_scan(t);
}

// nodes.check: the online nodes a filter matches, for the API to send a check to each. Nothing
// changes in the database; the check's name is part of the token (a plan of one check cannot be
// applied as another), and only nodes.check may name one.
NC_BOTH_BACKENDS(a_check_plan_names_online_nodes_and_its_check) {
  auto a = add_node(t, "edge-a"), b = add_node(t, "edge-b");
  add_node(t, "edge-c"); // offline
  begin_session(t, a);
  begin_session(t, b);
  query(t.db().session(), "UPDATE nodes SET status = 'disabled' WHERE name = 'edge-b'").exec();
  auto f = bulk_filter{.name_prefix = "edge-", .check = "disk"};
  auto p = t.run(plan("nodes.check", f));
  BOOST_TEST(p.matched == 1);
  BOOST_TEST_REQUIRE(p.sample.size() == 1u);
  BOOST_TEST(p.sample[0].label == "edge-a");
  // Its token is not the same set's token for another check.
  auto other = bulk_filter{.name_prefix = "edge-", .check = "uptime"};
  BOOST_TEST(t.run(plan("nodes.check", other)).token != p.token);
  BOOST_TEST(t.run(applied(plan("nodes.check", other), p.token)).stale);
  auto before = t.dump();
  auto rows = ledger_rows(t);
  // Applied: the node, nothing written (the audit entry it carries is written, as for any apply).
  auto r = t.run(applied(plan("nodes.check", f), p.token));
  BOOST_TEST(!r.stale);
  BOOST_TEST(r.counts == R"({"nodes":1})");
  BOOST_TEST((r.node_ids == std::vector<std::string>{a.id}));
  BOOST_TEST((r.node_names == std::vector<std::string>{"edge-a"}));
  BOOST_TEST(ledger_rows(t) == rows + 1);
  query(t.db().session(), "DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)").exec();
  BOOST_TEST(t.dump() == before); // nothing else written
  BOOST_TEST(t.run(node_lookup_by_name{"edge-a"}).node.status == "online");
  for (auto* action : {"nodes.disable", "nodes.enable", "attempts.reset"})
    BOOST_CHECK_THROW(t.run(plan(action, {.all = true, .check = "disk"})), std::exception);
  BOOST_CHECK_THROW(t.run(plan("nodes.check", {.all = true})), std::exception);
}

// attempts.prune_logs: the lines of complete attempts last updated before a bound are deleted;
// log_count and log_max_seq keep saying what the node delivered (the evidence of DESIGN §3 rule
// 2), logs_pruned counts the deleted lines, and a line at or below logs_pruned_through is not
// stored again: a node that sends its pruned lines again changes nothing, a new line reopens the
// attempt as any change does, and a request asks only for what follows the pruned lines.
NC_BOTH_BACKENDS(pruning_logs_deletes_the_lines_and_keeps_the_evidence) {
  auto a = add_node(t, "rack1-a");
  auto epoch = begin_session(t, a);
  auto with_lines = [&](const std::string& task, int64_t n, const std::string& sync, const std::string& updated) {
    auto id = add(t, a, task, "partial");
    if (n > 0)
      BOOST_REQUIRE(t.run(logs_insert{a.id, id, lines(0, n), epoch}).inserted == n);
    set_sync(t, id, sync);
    query(t.db().session(), "UPDATE node_task_attempts SET updated_at = :u WHERE id = :id")
      .bind("u", updated)
      .bind("id", id)
      .exec();
    return id;
  };
  const std::string old = "2026-01-01T00:00:00.000Z", recent = "2026-03-01T00:00:00.000Z";
  const std::string bound = "2026-02-01T00:00:00.000Z";
  auto a1 = with_lines("t/1", 10, "complete", old);
  auto a2 = with_lines("t/2", 4, "complete", recent); // too recent
  auto a3 = with_lines("t/3", 5, "partial", old);     // not complete
  auto a4 = with_lines("t/4", 6, "failed", old);      // not complete
  with_lines("t/5", 0, "complete", old);              // nothing to prune
  auto lines_of = [&](const std::string& id) {
    return count(t, "SELECT COUNT(*) FROM attempt_logs WHERE attempt_id = '" + id + "'");
  };

  // The bound is required: storage refuses a prune without one, even with all.
  BOOST_CHECK_THROW(t.run(plan("attempts.prune_logs", {.all = true})), std::exception);
  auto p = t.run(plan("attempts.prune_logs", {.older_than = bound}));
  BOOST_TEST(p.matched == 1);
  BOOST_TEST(p.log_lines == 10);
  BOOST_TEST_REQUIRE(p.sample.size() == 1u);
  BOOST_TEST(p.sample[0].id == a1);
  BOOST_TEST(t.run(plan("attempts.prune_logs", {.older_than = "2026-04-01T00:00:00.000Z"})).matched == 2);
  BOOST_TEST(lines_of(a1) == 10); // a plan changes nothing

  auto rows = ledger_rows(t);
  auto before = get(t, a1);
  auto r = t.run(applied(plan("attempts.prune_logs", {.older_than = bound}), p.token));
  BOOST_TEST(!r.stale);
  BOOST_TEST(r.counts == R"({"attempts":1,"log_lines":10})");
  BOOST_TEST(ledger_rows(t) == rows + 1);
  auto after = get(t, a1);
  BOOST_TEST(lines_of(a1) == 0);
  BOOST_TEST(after.log_count == 10);
  BOOST_TEST(after.log_max_seq == 9);
  BOOST_TEST(after.logs_pruned == 10);
  BOOST_TEST(after.logs_pruned_through == 9);
  BOOST_TEST(after.sync_state == "complete");        // not a change of the attempt:
  BOOST_TEST(after.updated_at == before.updated_at); // not reopened, not touched
  BOOST_TEST(lines_of(a2) == 4);
  BOOST_TEST(lines_of(a3) == 5);
  BOOST_TEST(lines_of(a4) == 6);
  BOOST_TEST(get(t, a2).logs_pruned == 0);
  BOOST_TEST(get(t, a2).logs_pruned_through == -1);
  BOOST_TEST(t.run(plan("attempts.prune_logs", {.older_than = bound})).matched == 0); // nothing left
  counters_match_scan(t);

  // The node sends its pruned lines again (a reconnect, a backfill): nothing is stored, nothing
  // reopens, the counters stay.
  auto again = t.run(logs_insert{a.id, a1, lines(0, 10), epoch});
  BOOST_TEST(again.inserted == 0);
  BOOST_TEST(!again.reopened);
  BOOST_TEST(lines_of(a1) == 0);
  BOOST_TEST(get(t, a1).log_count == 10);
  BOOST_TEST(get(t, a1).sync_state == "complete");

  // A new line (12, after a gap) is a change: stored, counted, the attempt reopened.
  auto more = t.run(logs_insert{a.id, a1, lines(12, 13), epoch});
  BOOST_TEST(more.inserted == 1);
  BOOST_TEST(more.reopened);
  BOOST_TEST(get(t, a1).sync_state == "partial");
  BOOST_TEST(get(t, a1).log_count == 11);
  BOOST_TEST(get(t, a1).log_max_seq == 12);
  // A request asks for what follows the pruned lines (9), not for everything (-1).
  auto m = t.run(mark_pending{new_uuid(), a.id, epoch, {a1}});
  BOOST_TEST_REQUIRE(m.marked.size() == 1u);
  BOOST_TEST(m.marked[0].logs_after == 9);
  // The node answers with its lines 0..12: the pruned ones are not stored again, 10 and 11 are,
  // and the evidence (13 lines) holds with the pruned ones counted.
  auto request = get(t, a1).backfill_request_id;
  BOOST_TEST(t.run(logs_insert{a.id, a1, lines(0, 13), epoch}).inserted == 2);
  BOOST_TEST(lines_of(a1) == 3);
  auto done = t.run(apply_backfill{request, a.id, {{a1, true, 13, ""}}, 5, epoch});
  BOOST_TEST(done.completed == 1);
  BOOST_TEST(get(t, a1).sync_state == "complete");
  BOOST_TEST(get(t, a1).log_count == 13);
  // Pruned again: the three stored lines go; the count says all 13 are pruned now.
  auto p2 = t.run(plan("attempts.prune_logs", {.older_than = "2100-01-01T00:00:00.000Z"}));
  BOOST_TEST(p2.log_lines == 3 + 4);
  t.run(applied(plan("attempts.prune_logs", {.older_than = "2100-01-01T00:00:00.000Z"}), p2.token));
  BOOST_TEST(get(t, a1).logs_pruned == 13);
  BOOST_TEST(get(t, a1).logs_pruned_through == 12);
  BOOST_TEST(lines_of(a1) == 0);
  // A node delete's plan counts the lines it deletes, not the ones already pruned.
  query(t.db().session(), "UPDATE nodes SET status = 'disabled' WHERE name = 'rack1-a'").exec();
  set_sync(t, a3, "complete");
  set_sync(t, a4, "complete");
  auto del = t.run(plan("nodes.delete", {.node = "rack1-a"}));
  BOOST_TEST(del.log_lines == 5 + 6);
  counters_match_scan(t);
}
