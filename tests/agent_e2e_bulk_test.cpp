// Fleet operations end to end (issue 20): a node drain, and bulk actions: the real daemon on each backend, two real
// agents and nodecoordctl. Each action applied by filter changes what it says (a reset is re-verified by the agents
// until every attempt is complete with exactly its lines again); a call over its budget and an apply whose set changed
// since the plan change nothing; nodecoordctl asks before applying; every call is one row in the ledger.
#include <boost/test/unit_test.hpp>

#include "admin_e2e_support.hpp"
#include "agent_e2e_support.hpp"
#include "e2e_node.hpp"
#include "protocol/codec.hpp"
#include "tools/agent/store.hpp"

using namespace agent_e2e;
using admin_e2e::ctl_any;
using admin_e2e::ctl_result;
using admin_e2e::http;
using admin_e2e::ok_data;

namespace {

constexpr auto settle_bound = 90s; // every attempt complete again (reconcile passes, backfills)
// Partial attempts of connected nodes are asked for every second.
const std::string fast_reconcile = "[backfill]\nreconnect_rate = 1000\nbatch_size = 100\nrequest_timeout = \"20s\"\n"
                                   "reconcile_interval = \"1s\"\n";

struct running_agent {
  std::string name, store;
  std::unique_ptr<child_process> proc;
};

/// nodecoordctl with `input` on its standard input (the confirmation prompt).
ctl_result ctl_with_input(const std::vector<std::string>& args, const std::string& input) {
  return run_with_stdin(ctl_path, args, input);
}

/// Every attempt of every agent is complete on the coordinator with exactly the agent's lines.
void wait_all_complete(daemon_under_test& d, std::vector<running_agent>& agents, const std::string& step) {
  int64_t expected = 0;
  for (auto& a : agents)
    expected += static_cast<int64_t>(agent::store(a.store).all_attempts().size());
  bool done = eventually(
    [&] { return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == expected; },
    settle_bound);
  BOOST_TEST_REQUIRE(done, step << ": not every attempt is complete again; agent stderr:\n"
                                << agents[0].proc->stderr_tail());
  for (auto& a : agents) {
    agent::store st(a.store);
    for (auto& at : st.all_attempts()) {
      auto stored = d.rows("SELECT seq, line FROM attempt_logs WHERE attempt_id = '" + at.id + "' ORDER BY seq");
      std::vector<std::string> mine;
      for (auto& l : st.logs(at.id, 0, at.log_count + 1))
        mine.push_back(std::to_string(l.seq) + " | " + l.line);
      BOOST_TEST(stored == mine, step << ": " << at.id);
    }
  }
}

void bulk_actions_end_to_end(daemon_under_test& d) {
  d.start();
  auto admin = d.admin_url();
  temp_dir work("bulk-e2e");
  std::vector<running_agent> agents;
  for (auto* name : {"edge-a", "edge-b"}) {
    auto n = d.add_node(name);
    running_agent a{name, work.file(std::string(name) + ".db"), nullptr};
    for (auto* task : {"build-1", "build-2", "test-1"}) {
      auto id = agent_cli(a.store, {"record", "start", "--task", std::string(task)});
      agent_cli(a.store, {"record", "log", id}, lines_text(40, std::string(name) + task));
      agent_cli(a.store, {"record", "finish", id, "--state", "succeeded"});
    }
    auto key_file = work.write(std::string(name) + ".key", n.key + "\n");
    a.proc = std::make_unique<child_process>(agent_path,
                                             std::vector<std::string>{"--store", a.store, "connect", "--coordinator",
                                                                      "127.0.0.1:" + std::to_string(d.port()), "--node",
                                                                      name, "--key-file", key_file, "--backoff-max-ms",
                                                                      "500", "--poll-interval-ms", "50"},
                                             clean_env());
    agents.push_back(std::move(a));
  }
  d.add_node("idle-c");
  wait_all_complete(d, agents, "first sync");
  auto ledger_rows = [&] { return d.count("SELECT COUNT(*) FROM audit_log"); };
  auto bulk = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"--admin", admin};
    if (auto j = std::find(args.begin(), args.end(), "--json"); j != args.end()) { // a global flag
      args.erase(j);
      argv.push_back("--json");
    }
    argv.push_back("bulk");
    argv.insert(argv.end(), args.begin(), args.end());
    return ctl_any(argv);
  };

  // No filter: refused (exit 2), nothing planned.
  auto no_filter = bulk({"attempts.reset", "--yes"});
  BOOST_TEST(no_filter.code == 2, no_filter.err);
  BOOST_TEST(no_filter.err.find("filter") != std::string::npos, no_filter.err);

  // Over the budget: refused with the numbers, nothing changed.
  auto over = bulk({"attempts.reset", "--all", "--max-rows", "5", "--yes"});
  BOOST_TEST(over.code == 2, over.err);
  BOOST_TEST(over.err.find("matches 6 rows, over this call's budget of 5") != std::string::npos, over.err);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == 6);

  // Asked, and not confirmed: nothing changed.
  auto declined = ctl_with_input({"--admin", admin, "bulk", "attempts.reset", "--task-prefix", "build-"}, "no\n");
  BOOST_TEST(declined.code == 1, declined.err);
  BOOST_TEST(declined.out.find("4 rows match") != std::string::npos, declined.out);
  BOOST_TEST(declined.err.find("not applied") != std::string::npos, declined.err);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == 6);

  // Confirmed: the four build attempts go back to partial, and the agents verify them again (a
  // new last_full_sync_at for those four, the same for the others).
  auto synced_at = [&] {
    std::map<std::string, std::string> out;
    for (auto& r : d.rows("SELECT task_id, CAST(id AS TEXT), CAST(last_full_sync_at AS TEXT) FROM node_task_attempts"))
      out[r.substr(r.find(" | ") + 3, 36)] = r;
    return out;
  };
  auto before = synced_at();
  auto reset = ctl_with_input({"--admin", admin, "bulk", "attempts.reset", "--task-prefix", "build-"}, "yes\n");
  BOOST_TEST_REQUIRE(reset.code == 0, reset.err);
  BOOST_TEST(reset.out.find(R"(applied attempts.reset: {"attempts":4})") != std::string::npos, reset.out);
  wait_all_complete(d, agents, "after the reset");
  auto after = synced_at();
  BOOST_TEST_REQUIRE(after.size() == 6u);
  for (auto& [id, row] : after)
    BOOST_TEST((row != before[id]) == (row.rfind("build-", 0) == 0), row << " was " << before[id]);

  // A failed attempt (as max_failures would leave it), requeued by filter, is verified again.
  auto victim = d.rows("SELECT CAST(a.id AS TEXT) FROM node_task_attempts a JOIN nodes n ON n.id = a.node_id "
                       "WHERE n.name = 'edge-a' AND a.task_id = 'test-1'")
                  .at(0);
  {
    auto db = d.db();
    *db << "UPDATE node_task_attempts SET sync_state = 'failed', backfill_failures = 5 WHERE id = '" + victim + "'";
  }
  auto requeue = bulk({"attempts.requeue", "--sync-state", "failed", "--yes", "--json"});
  BOOST_TEST_REQUIRE(requeue.code == 0, requeue.err);
  BOOST_TEST(json::parse(requeue.out)["counts"] == json({{"attempts", 1}}), requeue.out);
  wait_all_complete(d, agents, "after the requeue");

  // Prune the lines of edge-a's complete attempts: a bound is required; applied, the lines go and
  // the counters stay, the attempts stay complete. Verified again (a reset), the agent's answer
  // holds with the pruned lines counted, and nothing is stored again.
  auto no_bound = bulk({"attempts.prune_logs", "--all", "--yes"});
  BOOST_TEST(no_bound.code == 2, no_bound.err);
  BOOST_TEST(no_bound.err.find("older_than") != std::string::npos, no_bound.err);
  auto edge_a_lines = [&] {
    return d.count("SELECT COUNT(*) FROM attempt_logs l JOIN node_task_attempts a ON a.id = l.attempt_id "
                   "JOIN nodes n ON n.id = a.node_id WHERE n.name = 'edge-a'");
  };
  BOOST_TEST_REQUIRE(edge_a_lines() == 120);
  auto prune =
    bulk({"attempts.prune_logs", "--node", "edge-a", "--older-than", "2100-01-01T00:00:00Z", "--yes", "--json"});
  BOOST_TEST_REQUIRE(prune.code == 0, prune.err);
  BOOST_TEST(json::parse(prune.out)["counts"] == json({{"attempts", 3}, {"log_lines", 120}}), prune.out);
  BOOST_TEST(edge_a_lines() == 0);
  auto edge_a_count = [&](const std::string& where) {
    return d.count("SELECT COUNT(*) FROM node_task_attempts a JOIN nodes n ON n.id = a.node_id WHERE n.name = "
                   "'edge-a' AND "
                   + where);
  };
  BOOST_TEST(edge_a_count("a.sync_state = 'complete' AND a.log_count = 40 AND a.logs_pruned = 40 AND "
                          "a.logs_pruned_through = 39")
             == 3);
  auto recheck = bulk({"attempts.reset", "--node", "edge-a", "--task-prefix", "test-", "--yes", "--json"});
  BOOST_TEST_REQUIRE(recheck.code == 0, recheck.err);
  BOOST_TEST(json::parse(recheck.out)["counts"] == json({{"attempts", 1}}), recheck.out);
  BOOST_TEST_REQUIRE(eventually([&] { return edge_a_count("a.sync_state = 'complete'") == 3; }, settle_bound),
                     "the pruned attempt was not verified again");
  BOOST_TEST(edge_a_lines() == 0);
  BOOST_TEST(edge_a_count("a.log_count = 40 AND a.logs_pruned = 40 AND a.backfill_failures = 0") == 3);

  // Plan, then the set changes (a new node matches), then apply: 409 plan_stale, nothing changed.
  auto plan = ok_data(http(d, "POST", "/api/bulk/nodes.disable/plan", R"({"filter":{"name_prefix":"idle-"}})"));
  BOOST_TEST(plan["matched"] == 1);
  d.add_node("idle-d");
  auto stale =
    http(d, "POST", "/api/bulk/nodes.disable/apply", json{{"filter", plan["filter"]}, {"token", plan["token"]}}.dump());
  BOOST_TEST(stale.status == 409, stale.body);
  BOOST_TEST(stale.j["error"]["code"] == "plan_stale");
  BOOST_TEST(d.node("idle-c").status == "offline");
  // Planned again: the new set, applied.
  auto replan = ok_data(http(d, "POST", "/api/bulk/nodes.disable/plan", R"({"filter":{"name_prefix":"idle-"}})"));
  auto applied = ok_data(http(d, "POST", "/api/bulk/nodes.disable/apply",
                              json{{"filter", replan["filter"]}, {"token", replan["token"]}}.dump()));
  BOOST_TEST(applied["counts"] == json({{"nodes", 2}}));
  BOOST_TEST(d.node("idle-d").status == "disabled");

  // Disable a connected node by filter: its session is closed.
  auto off = bulk({"nodes.disable", "--node", "edge-b", "--yes", "--json"});
  BOOST_TEST_REQUIRE(off.code == 0, off.err);
  BOOST_TEST(json::parse(off.out)["closed_sessions"] == 1, off.out);
  d.wait_node(
    "edge-b", [](const node_row& r) { return r.status == "disabled"; }, "edge-b disabled");
  // Delete it with its attempts and lines (all complete).
  auto lines_b = d.count("SELECT COALESCE(SUM(log_count), 0) FROM node_task_attempts a JOIN nodes n ON n.id = "
                         "a.node_id WHERE n.name = 'edge-b'");
  auto del = bulk({"nodes.delete", "--node", "edge-b", "--yes", "--json"});
  BOOST_TEST_REQUIRE(del.code == 0, del.err);
  BOOST_TEST(json::parse(del.out)["counts"] == json({{"nodes", 1}, {"attempts", 3}, {"log_lines", lines_b}}), del.out);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM nodes WHERE name = 'edge-b'") == 0);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts") == 3);
  // A delete while a matched node holds an attempt that is not complete: 409, nothing deleted.
  {
    auto db = d.db();
    *db << "UPDATE node_task_attempts SET sync_state = 'failed' WHERE id = '" + victim + "'";
  }
  d.disable_node("edge-a");
  auto refused = bulk({"nodes.delete", "--node", "edge-a", "--yes"});
  BOOST_TEST(refused.code == 3, refused.err);
  BOOST_TEST(refused.err.find("not complete") != std::string::npos, refused.err);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts") == 3);
  // Enable every disabled node (idle-c, idle-d, edge-a).
  auto on = bulk({"nodes.enable", "--node-status", "disabled", "--yes", "--json"});
  BOOST_TEST_REQUIRE(on.code == 0, on.err);
  BOOST_TEST(json::parse(on.out)["counts"] == json({{"nodes", 3}}), on.out);

  // The ledger: each apply one row with its counts, each refusal one row.
  auto ledger = d.ctl({"audit", "--limit", "1000"});
  std::map<std::string, int> by;
  for (auto& e : ledger["entries"])
    ++by[e["action"].get<std::string>() + "/" + e["result"].get<std::string>()];
  BOOST_TEST(by["attempts.reset.plan/refused"] == 2);   // no filter; over budget
  BOOST_TEST(by["attempts.reset.plan/succeeded"] == 3); // declined; confirmed; the pruned one
  BOOST_TEST(by["attempts.reset/succeeded"] == 2);
  BOOST_TEST(by["attempts.prune_logs.plan/refused"] == 1); // no bound
  BOOST_TEST(by["attempts.prune_logs/succeeded"] == 1);
  BOOST_TEST(by["attempts.requeue/succeeded"] == 1);
  BOOST_TEST(by["nodes.disable/refused"] == 1); // plan_stale
  BOOST_TEST(by["nodes.disable/succeeded"] == 2);
  BOOST_TEST(by["nodes.delete/succeeded"] == 1);
  BOOST_TEST(by["nodes.delete.plan/refused"] == 1); // attempts not complete
  BOOST_TEST(by["nodes.enable/succeeded"] == 1);
  BOOST_TEST(ledger_rows() == static_cast<int64_t>(ledger["entries"].size()));
  for (auto& a : agents) {
    a.proc->send_signal(SIGTERM);
    a.proc->wait_exit(15s);
  }
  d.stop();
}

/// A drain with a real agent: the session closes with `drained`, the agent exits instead of
/// reconnecting, the node stays disabled with the counts in the ledger; enabled and started
/// again, it syncs what it recorded meanwhile.
void drain_end_to_end(daemon_under_test& d) {
  d.start();
  temp_dir work("drain-e2e");
  auto n = d.add_node("edge-a");
  std::vector<running_agent> agents;
  running_agent a{"edge-a", work.file("edge-a.db"), nullptr};
  auto id = agent_cli(a.store, {"record", "start", "--task", "build-1"});
  agent_cli(a.store, {"record", "log", id}, lines_text(25, "drain"));
  agent_cli(a.store, {"record", "finish", id, "--state", "succeeded"});
  auto key_file = work.write("edge-a.key", n.key + "\n");
  std::vector<std::string> args{"--store",
                                a.store,
                                "connect",
                                "--coordinator",
                                "127.0.0.1:" + std::to_string(d.port()),
                                "--node",
                                "edge-a",
                                "--key-file",
                                key_file,
                                "--backoff-max-ms",
                                "300",
                                "--poll-interval-ms",
                                "50"};
  a.proc = std::make_unique<child_process>(agent_path, args, clean_env());
  agents.push_back(std::move(a));
  wait_all_complete(d, agents, "first sync");

  auto drained = d.ctl({"node", "drain", "edge-a", "--deadline", "5s"});
  BOOST_TEST(drained["closed_session"] == true, drained.dump());
  BOOST_TEST(drained["requests_reset"] == 0);
  BOOST_TEST(drained["attempts_partial"] == 0);
  BOOST_TEST(drained["node"]["status"] == "disabled");
  // The agent stops instead of reconnecting (exit 0), and says why.
  BOOST_TEST(agents[0].proc->wait_exit(15s) == 0, agents[0].proc->stderr_tail());
  BOOST_TEST(agents[0].proc->stderr_text().find("drained") != std::string::npos, agents[0].proc->stderr_tail());
  d.wait_node(
    "edge-a", [](const node_row& r) { return r.status == "disabled" && r.disconnect_reason == "drained"; },
    "edge-a drained and disabled");
  auto ledger = d.ctl({"audit", "--action", "node.drain"});
  BOOST_TEST_REQUIRE(ledger["entries"].size() == 1u);
  BOOST_TEST(ledger["entries"][0]["result"] == "succeeded");
  BOOST_TEST(ledger["entries"][0]["counts"]
             == json({{"requests_finished", 0}, {"requests_reset", 0}, {"attempts_partial", 0}}));
  // Recorded while drained; then told otherwise: enabled and started again, it syncs.
  auto later = agent_cli(agents[0].store, {"record", "start", "--task", "build-2"});
  agent_cli(agents[0].store, {"record", "log", later}, lines_text(10, "later"));
  agent_cli(agents[0].store, {"record", "finish", later, "--state", "failed"});
  d.ctl({"node", "enable", "edge-a"});
  agents[0].proc = std::make_unique<child_process>(agent_path, args, clean_env());
  wait_all_complete(d, agents, "after the drain");
  agents[0].proc->send_signal(SIGTERM);
  BOOST_TEST(agents[0].proc->wait_exit(15s) == 0);
  d.stop();
}

} // namespace

BOOST_AUTO_TEST_CASE(drain_end_to_end_sqlite) {
  daemon_under_test d(base_settings(), "", fast_reconcile);
  drain_end_to_end(d);
}

BOOST_AUTO_TEST_CASE(drain_end_to_end_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), fast_reconcile);
  drain_end_to_end(d);
}

/// requests.cancel with nodes played by the test (node_client), which never answer unless told:
/// planned by filter, applied with nodecoordctl, exactly the matched request ends `cancelled`,
/// its attempts partial with no failure counted, the other node's untouched; a late answer is
/// unknown; a plan whose request was answered meanwhile is stale; asked again, the node answers
/// and the attempts complete. No reconcile runs (1 h), so nothing asks behind the test's back.
void cancel_requests_end_to_end(daemon_under_test& d) {
  d.start();
  auto admin = d.admin_url();
  auto a = d.add_node("rack1-a"), b = d.add_node("rack2-b");
  std::map<std::string, std::vector<std::string>> attempts; // node -> attempt ids
  // First sessions: the attempts, no lines; leaving puts whatever was asked back to partial.
  for (auto* n : {&a, &b}) {
    auto c = connect_and_hello(d, *n);
    c.aside_types = {"backfill_request"};
    for (int i = 0; i < (n == &a ? 2 : 1); ++i) {
      auto id = new_uuid();
      attempts[n->name].push_back(id);
      c.send_line(protocol::encode_attempt({id, "task-" + std::to_string(i), "succeeded", "", "", ""}));
    }
    c.heartbeat_roundtrip(1);
    c.close();
    d.wait_offline(n->name, "socket_closed");
  }
  BOOST_TEST_REQUIRE(
    eventually([&] { return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'partial'") == 3; }));
  // Second sessions: each is asked (the reconnect trigger) and does not answer.
  auto ca = connect_and_hello(d, a);
  auto cb = connect_and_hello(d, b);
  auto ra = next_request(ca), rb = next_request(cb);
  BOOST_TEST_REQUIRE(ra["attempt_ids"].size() == 2u);
  BOOST_TEST_REQUIRE(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'") == 3);

  auto bulk = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"--admin", admin, "--json", "bulk", "requests.cancel"};
    argv.insert(argv.end(), args.begin(), args.end());
    return ctl_any(argv);
  };
  auto plan = bulk({"--name-prefix", "rack1-", "--plan-only"});
  BOOST_TEST_REQUIRE(plan.code == 0, plan.err);
  auto p = json::parse(plan.out);
  BOOST_TEST(p["matched"] == 1, plan.out);
  BOOST_TEST(p["attempts"] == 2);
  BOOST_TEST(p["sample"][0]["id"] == ra["request_id"]);
  BOOST_TEST(p["sample"][0]["node"] == "rack1-a");
  auto done = bulk({"--name-prefix", "rack1-", "--yes"});
  BOOST_TEST_REQUIRE(done.code == 0, done.err);
  BOOST_TEST(json::parse(done.out)["counts"] == json({{"requests", 1}, {"attempts", 2}}), done.out);
  auto ra_id = ra["request_id"].get<std::string>();
  // In storage before the answer: partial, no failure counted, the job cancelled.
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts a JOIN nodes n ON n.id = a.node_id WHERE n.name = "
                     "'rack1-a' AND a.sync_state = 'partial' AND a.backfill_failures = 0")
             == 2);
  BOOST_TEST(d.rows("SELECT status FROM jobs WHERE id = '" + ra_id + "'") == std::vector<std::string>{"cancelled"});
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'") == 1);
  // The node's late answer: unknown, nothing changes.
  protocol::backfill_response late{ra_id, {}};
  for (auto& id : attempts["rack1-a"])
    late.results.push_back({id, true, 0, ""});
  ca.send_line(protocol::encode_backfill_response(late));
  auto refused = ca.read_frame();
  BOOST_TEST(refused["type"] == "error", refused.dump());
  BOOST_TEST(refused["code"] == "unknown_request", refused.dump());
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == 0);

  // A plan of rack2-b's request, which is answered before the apply: plan_stale, nothing else.
  auto pb = ok_data(http(d, "POST", "/api/bulk/requests.cancel/plan", R"({"filter":{"node":"rack2-b"}})"));
  BOOST_TEST_REQUIRE(pb["matched"] == 1);
  protocol::backfill_response answered{rb["request_id"].get<std::string>(), {{attempts["rack2-b"][0], true, 0, ""}}};
  cb.send_line(protocol::encode_backfill_response(answered));
  BOOST_TEST_REQUIRE(
    eventually([&] { return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == 1; }));
  auto stale =
    http(d, "POST", "/api/bulk/requests.cancel/apply", json{{"filter", pb["filter"]}, {"token", pb["token"]}}.dump());
  BOOST_TEST(stale.status == 409, stale.body);
  BOOST_TEST(stale.j["error"]["code"] == "plan_stale");

  // Asked again (a new session), rack1-a answers and its attempts complete.
  ca.close();
  d.wait_offline("rack1-a", "socket_closed");
  auto again = connect_and_hello(d, a);
  auto r2 = next_request(again);
  BOOST_TEST(r2["request_id"] != ra["request_id"]);
  protocol::backfill_response ok{r2["request_id"].get<std::string>(), {}};
  for (auto& id : r2["attempt_ids"])
    ok.results.push_back({id.get<std::string>(), true, 0, ""});
  again.send_line(protocol::encode_backfill_response(ok));
  BOOST_TEST_REQUIRE(
    eventually([&] { return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == 3; }));

  // The ledger: the plan-only, the --yes plan and apply, the API's plan and its stale apply.
  auto ledger = d.ctl({"audit", "--limit", "1000"});
  std::map<std::string, int> by;
  for (auto& e : ledger["entries"])
    ++by[e["action"].get<std::string>() + "/" + e["result"].get<std::string>()];
  BOOST_TEST(by["requests.cancel.plan/succeeded"] == 3);
  BOOST_TEST(by["requests.cancel/succeeded"] == 1);
  BOOST_TEST(by["requests.cancel/refused"] == 1);
  again.close();
  cb.close();
  d.stop();
}

BOOST_AUTO_TEST_CASE(cancel_requests_end_to_end_sqlite) {
  daemon_under_test d(base_settings(), "", admin_e2e::backfill_toml);
  cancel_requests_end_to_end(d);
}

BOOST_AUTO_TEST_CASE(cancel_requests_end_to_end_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), admin_e2e::backfill_toml);
  cancel_requests_end_to_end(d);
}

BOOST_AUTO_TEST_CASE(bulk_actions_by_filter_end_to_end_sqlite) {
  daemon_under_test d(base_settings(), "", fast_reconcile);
  bulk_actions_end_to_end(d);
}

BOOST_AUTO_TEST_CASE(bulk_actions_by_filter_end_to_end_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), fast_reconcile);
  bulk_actions_end_to_end(d);
}
