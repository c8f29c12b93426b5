#include <boost/test/unit_test.hpp>

// Jobs and counts; group commit: batched equals one by one, an error stays in its operation, an
// empty batch, a lost commit acknowledgement (both backends).

#include "storage_test_support.hpp"

using namespace storage_test;

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
  // One job by id (GET /api/jobs/{id}), and none for an id no job has.
  auto by_id = t.run(job_query{{}, {}, "", "", "", 10, all[1].id});
  BOOST_TEST_REQUIRE(by_id.size() == 1u);
  BOOST_TEST(by_id[0].id == all[1].id);
  BOOST_TEST(by_id[0].type == all[1].type);
  BOOST_TEST(t.run(job_query{{}, {}, "", "", "", 10, new_uuid()}).empty());
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
