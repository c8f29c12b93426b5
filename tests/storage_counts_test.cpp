// The counters the overview reads (schema v3, issue 19): kept by triggers in the same transaction
// as every change, on both backends. A randomized run of every operation that creates, moves or
// deletes nodes, attempts, log lines and jobs, checked against a full scan after every step.

#include <boost/test/unit_test.hpp>

#include "storage/admin_ops.hpp"
#include "storage_test_support.hpp"

#include <random>
#include <set>
#include <sstream>

using namespace storage_test;

namespace {

std::string render(const count_summary::result_type& r) {
  std::ostringstream o;
  o << "nodes{";
  for (auto& [k, v] : r.nodes_by_status)
    o << k << ":" << v << " ";
  o << "} attempts{";
  for (auto& [k, v] : r.attempts_by_sync_state)
    o << k << ":" << v << " ";
  o << "} jobs{";
  for (auto& [k, v] : r.jobs_by_status_type)
    o << k << ":" << v << " ";
  o << "} lines " << r.log_lines;
  return o.str();
}

void counts_match_scan(test_database& t, const std::string& step) {
  auto kept = render(t.run(count_summary{}));
  auto scanned = render(t.run(count_summary{true}));
  BOOST_TEST_REQUIRE(kept == scanned, "after " << step << ": counters " << kept << " but a scan finds " << scanned);
}

} // namespace

NC_BOTH_BACKENDS(the_counters_equal_a_full_scan_after_every_kind_of_change) {
  std::mt19937 rng(20261207);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<node_record> nodes;
  std::map<std::string, int64_t> epoch;                      // node id -> its session's epoch (0: none)
  std::vector<std::pair<std::string, std::string>> attempts; // (node id, attempt id)
  std::vector<std::string> requests;                         // marked, not answered yet
  std::map<std::string, std::string> request_node;
  std::map<std::string, int64_t> next_seq;
  for (int i = 0; i < 6; ++i) {
    nodes.push_back(add_node(t, "n" + std::to_string(i)));
    epoch[nodes.back().id] = 0;
  }
  counts_match_scan(t, "creating nodes");
  std::map<std::string, int> kinds;
  std::set<std::string> states_seen; // sync states the counters held at some step
  for (int step = 0; step < 400; ++step) {
    auto& n = nodes[pick(nodes.size())];
    std::string what;
    switch (pick(11)) {
      case 0: { // a session begins (status online)
        auto cur = t.run(node_lookup_by_name{n.name}).node;
        auto r = t.run(node_begin_session{n.id, cur.session_epoch});
        if (r.ok)
          epoch[n.id] = r.epoch;
        what = "begin_session";
        break;
      }
      case 1: // ends (offline)
        t.run(node_end_session{n.id, epoch[n.id], "socket_closed"});
        what = "end_session";
        break;
      case 2: // an attempt, new or again
        if (attempts.empty() || pick(3) != 0)
          attempts.emplace_back(n.id, add_attempt(t, n));
        else
          t.run(attempt_upsert{attempts[pick(attempts.size())].first, attempts[pick(attempts.size())].second, "task-1",
                               "succeeded", "", "", ""});
        what = "attempt_upsert";
        break;
      case 3: { // lines (log_count grows; reopens a complete attempt)
        if (attempts.empty())
          continue;
        auto& [node_id, id] = attempts[pick(attempts.size())];
        auto from = next_seq[id];
        auto to = from + 1 + static_cast<int64_t>(pick(20));
        t.run(logs_insert{node_id, id, lines(from, to)});
        next_seq[id] = to;
        what = "logs_insert";
        break;
      }
      case 4: { // mark by limit (pending_backfill, a backfill job)
        if (!epoch[n.id])
          continue;
        auto rid = new_uuid();
        mark_pending op{rid, n.id, epoch[n.id], {}};
        op.limit = 1 + static_cast<int64_t>(pick(4));
        if (!t.run(op).marked.empty()) {
          requests.push_back(rid);
          request_node[rid] = n.id;
        }
        what = "mark_pending";
        break;
      }
      case 5: { // an answer: some complete, some fail
        if (requests.empty())
          continue;
        auto at = pick(requests.size());
        auto rid = requests[at];
        requests.erase(requests.begin() + static_cast<std::ptrdiff_t>(at));
        std::vector<backfill_item> items;
        query(t.db().session(), "SELECT id, log_count FROM node_task_attempts WHERE backfill_request_id = :r")
          .bind("r", rid)
          .each([&](const soci::row& r) {
            items.push_back({col_str(r, 0), pick(4) != 0, col_int(r, 1), pick(2) ? "" : "gone"});
          });
        t.run(apply_backfill{rid, request_node[rid], items, 2});
        what = "apply_backfill";
        break;
      }
      case 6: { // a reset (expired or cancelled), counted as a failure or not
        if (requests.empty())
          continue;
        auto rid = requests.back();
        requests.pop_back();
        reset_requests op{{rid}, pick(2) ? "expired" : "cancelled", "test"};
        op.count_failure = pick(2) == 0;
        op.max_failures = 2;
        t.run(op);
        what = "reset_requests";
        break;
      }
      case 7: // requeue a failed attempt
        if (attempts.empty())
          continue;
        t.run(attempt_requeue{attempts[pick(attempts.size())].second});
        what = "attempt_requeue";
        break;
      case 8: { // jobs of the other kinds, and their updates
        job_record j;
        j.id = new_uuid();
        j.type = pick(2) ? "reconcile" : "bundle_export";
        j.status = "running";
        t.run(job_insert{j});
        t.run(job_update{j.id, pick(2) ? "succeeded" : "failed", "{}", ""});
        what = "job_insert+update";
        break;
      }
      case 9: // disable and enable (status disabled, offline)
        if (pick(2))
          t.run(node_disable{n.name});
        else
          t.run(node_enable{n.name});
        what = "disable/enable";
        break;
      case 10: // prune finished jobs
        t.run(jobs_prune{});
        what = "jobs_prune";
        break;
    }
    ++kinds[what];
    counts_match_scan(t, "step " + std::to_string(step) + " (" + what + ")");
    for (auto& [state, how_many] : t.run(count_summary{}).attempts_by_sync_state)
      states_seen.insert(state);
  }
  // Every sync state at least once, whatever the random walk reached: pending, then failed after
  // two counted failures (max_failures 2), and complete.
  auto& last = nodes.front();
  t.run(node_enable{last.name});
  auto e = begin_session(t, last);
  auto doomed = add_attempt(t, last);
  for (int round = 0; round < 2; ++round) {
    auto rid = new_uuid();
    BOOST_REQUIRE_EQUAL(t.run(mark_pending{rid, last.id, e, {doomed}}).marked.size(), 1u);
    counts_match_scan(t, "a mark by id");
    for (auto& [state, how_many] : t.run(count_summary{}).attempts_by_sync_state)
      states_seen.insert(state);
    reset_requests op{{rid}, "expired", "test"};
    op.count_failure = true;
    op.max_failures = 2;
    t.run(op);
    counts_match_scan(t, "a counted reset");
  }
  BOOST_REQUIRE_EQUAL(get(t, doomed).sync_state, "failed");
  complete(t, last, e, add_attempt(t, last), 0);
  counts_match_scan(t, "a completed backfill");
  for (auto& [state, how_many] : t.run(count_summary{}).attempts_by_sync_state)
    states_seen.insert(state);
  // Deleting rows, as an operator's SQL would.
  t.exec_sql("DELETE FROM jobs WHERE type = 'backfill'");
  counts_match_scan(t, "a DELETE of jobs");
  // Startup folds the shards of gone backends (a pid no backend has) into shard 0; the sums stay.
  t.exec_sql("INSERT INTO attempt_counts (shard, sync_state, attempts, log_lines) VALUES (999999999, 'partial', 5, 7)");
  t.exec_sql(
    "INSERT INTO attempt_counts (shard, sync_state, attempts, log_lines) VALUES (999999998, 'partial', -5, -7)");
  counts_match_scan(t, "adding shards that sum to nothing");
  t.run(instance_start{"test", ""});
  counts_match_scan(t, "instance_start");
  if (t.kind() == backend::postgresql)
    BOOST_TEST(count(t, "SELECT COUNT(*) FROM attempt_counts WHERE shard >= 999999998") == 0, "gone shards folded");
  for (auto& [k, v] : kinds)
    BOOST_TEST_MESSAGE(k << ": " << v);
  BOOST_TEST(kinds.size() >= 10u, "the run reached every kind of change");
  auto c = t.run(count_summary{});
  BOOST_TEST(c.log_lines > 0);
  BOOST_TEST(states_seen.size() == 4u, "every sync state was counted at some step; seen " << states_seen.size());
}
