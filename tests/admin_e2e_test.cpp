#define BOOST_TEST_MODULE admin_e2e_test
#include <boost/test/unit_test.hpp>

// The admin API end to end: the real nodecoordd on loopback, nodecoordctl against it, a node
// played by node_client, the token, /metrics, on-demand backfill, requeue, and bundles moved
// between two daemons (SQLite -> PostgreSQL). The routes' every status is in admin_api_test; ids
// in any case, bad parameters and oversized bodies in admin_e2e_input_test.cpp (one binary).

#include "admin_e2e_support.hpp"

using namespace admin_e2e;

BOOST_AUTO_TEST_CASE(nodecoordctl_provisions_and_reports_through_the_api) {
  daemon_under_test d;
  d.start();
  auto admin = d.admin_url();
  auto alpha = d.add_node("alpha");
  // Human output and exit codes scripts rely on.
  auto dup = ctl_any({"--admin", admin, "node", "add", "alpha"});
  BOOST_TEST(dup.code == 3, dup.err);
  BOOST_TEST(dup.err.find("already exists") != std::string::npos, dup.err);
  auto bad_name = ctl_any({"--admin", admin, "node", "add", "no spaces"});
  BOOST_TEST(bad_name.code == 2, bad_name.err);
  auto missing = ctl_any({"--admin", admin, "node", "show", "ghost"});
  BOOST_TEST(missing.code == 4, missing.err);
  auto list = ctl_any({"--admin", admin, "node", "list"});
  BOOST_TEST(list.code == 0);
  BOOST_TEST(list.out.find("NAME") != std::string::npos);
  BOOST_TEST(list.out.find("alpha") != std::string::npos);
  auto status = ctl_any({"--admin", admin, "status"});
  BOOST_TEST(status.code == 0, status.err);
  BOOST_TEST(status.out.find("1 offline") != std::string::npos, status.out);
  auto bad_filter = ctl_any({"--admin", admin, "jobs", "list", "--status", "done"});
  BOOST_TEST(bad_filter.code == 2);
  BOOST_TEST(bad_filter.err.find("abandoned") != std::string::npos, bad_filter.err);
  auto no_filter = ctl_any({"--admin", admin, "jobs", "prune"});
  BOOST_TEST(no_filter.code == 2, no_filter.err);
  auto unreachable = ctl_any({"--admin", "http://127.0.0.1:1", "status"});
  BOOST_TEST(unreachable.code == 1);
  BOOST_TEST(unreachable.err.find("cannot reach") != std::string::npos, unreachable.err);
  auto bad_url = ctl_any({"--admin", "ftp://x:1", "status"});
  BOOST_TEST(bad_url.code == 2, bad_url.err);

  // The key it printed authenticates; show reports the live session.
  auto c = connect_and_hello(d, alpha);
  c.heartbeat_roundtrip(1);
  auto shown = d.ctl({"node", "show", "alpha"});
  BOOST_TEST(shown["node"]["connected"] == true);
  BOOST_TEST(shown["node"]["session_epoch"] == 1);
  // disable closes the session at once (through the registry, no polling).
  auto disabled = d.ctl({"node", "disable", "alpha"});
  BOOST_TEST(disabled["closed_session"] == true);
  BOOST_TEST(c.wait_closed(close_bound));
  d.wait_node(
    "alpha", [](const node_row& r) { return r.status == "disabled" && r.disconnect_reason == "disabled"; },
    "disabled with reason disabled");
  // rotate-key with the node connected (test-gaps 5): the old key stops authenticating new
  // handshakes, the live session goes on (DESIGN §8: rotation does not close it), and the new key
  // takes over the node, superseding it.
  d.ctl({"node", "enable", "alpha"});
  auto live = connect_and_hello(d, alpha);
  live.heartbeat_roundtrip(1);
  auto rotated = d.ctl({"node", "rotate-key", "alpha"});
  BOOST_TEST(rotated["node"]["connected"] == true, rotated.dump());
  live.heartbeat_roundtrip(2);
  node_client old_key(d.port());
  BOOST_TEST(old_key.hello("alpha", alpha.key).value("code", "") == "auth_failed");
  live.heartbeat_roundtrip(3);
  node_info renewed{"alpha", alpha.id, rotated["key"].get<std::string>()};
  auto c2 = connect_and_hello(d, renewed);
  auto superseded = live.read_frame();
  BOOST_TEST(superseded["type"] == "close", superseded.dump());
  BOOST_TEST(superseded["reason"] == "superseded", superseded.dump());
  BOOST_TEST(live.wait_closed(close_bound));
  auto listed = d.ctl({"node", "list"});
  BOOST_TEST_REQUIRE(listed.size() == 1u);
  BOOST_TEST(listed[0]["session_epoch"] == 3);
  c2.close();
  d.stop();
}

BOOST_AUTO_TEST_CASE(a_configured_token_is_required_and_checked) {
  temp_dir secrets("nodecoord-token");
  const std::string token = "0123456789abcdef0123456789abcdef";
  auto token_file = secrets.write("admin.token", token + "\n");
  daemon_under_test d(base_settings(), "", "");
  // The same configuration plus the token file: rewrite the admin table.
  {
    std::ifstream in(d.config());
    std::stringstream text;
    text << in.rdbuf();
    auto t = text.str();
    auto at = t.find("[admin]\n");
    t.insert(at + 8, "token_file = \"" + token_file + "\"\n");
    std::ofstream(d.config()) << t;
  }
  d.start();
  BOOST_TEST(http(d, "GET", "/healthz").status == 200);
  auto none = http(d, "GET", "/api/overview");
  BOOST_TEST(none.status == 401);
  BOOST_TEST(none.j["error"]["code"] == "unauthorized");
  BOOST_TEST(http(d, "GET", "/api/overview", "", "wrong-token").status == 403);
  BOOST_TEST(http(d, "GET", "/metrics").status == 401);
  BOOST_TEST(http(d, "GET", "/api/overview", "", token).status == 200);
  BOOST_TEST(http(d, "GET", "/readyz", "", token).status == 200);
  // nodecoordctl: without the token exit 5; with --token-file or the environment it works.
  auto refused = ctl_any({"--admin", d.admin_url(), "status"});
  BOOST_TEST(refused.code == 5, refused.err);
  auto with_file = ctl_any({"--admin", d.admin_url(), "--token-file", token_file, "--json", "node", "add", "n1"});
  BOOST_TEST(with_file.code == 0, with_file.err);
  auto env = clean_env();
  env["NODECOORD_ADMIN_TOKEN"] = token;
  env["NODECOORD_ADMIN"] = d.admin_url();
  auto with_env = ctl_any({"node", "list"}, env);
  BOOST_TEST(with_env.code == 0, with_env.err);
  BOOST_TEST(with_env.out.find("n1") != std::string::npos);
  // The configuration file names the token file: --config is enough.
  auto with_config = ctl_any({"--config", d.config(), "--admin", d.admin_url(), "status"});
  BOOST_TEST(with_config.code == 0, with_config.err);

  // A rotated token takes effect on SIGHUP; an unusable file keeps the token in effect.
  secrets.write("admin.token", "short\n");
  d.process().send_signal(SIGHUP);
  BOOST_TEST_REQUIRE(d.process().wait_for_stderr("reload: admin token not changed", 10s), d.process().stderr_tail());
  BOOST_TEST(http(d, "GET", "/api/overview", "", token).status == 200);
  const std::string rotated = "fedcba9876543210fedcba9876543210";
  secrets.write("admin.token", rotated);
  d.process().send_signal(SIGHUP);
  BOOST_TEST_REQUIRE(d.process().wait_for_stderr("admin token reloaded", 10s), d.process().stderr_tail());
  // (The admin actor takes the new token just after that line is written.)
  BOOST_TEST(eventually([&] { return http(d, "GET", "/api/overview", "", token).status == 403; }));
  BOOST_TEST(http(d, "GET", "/api/overview", "", rotated).status == 200);
  d.stop();
}

BOOST_AUTO_TEST_CASE(the_daemon_refuses_to_start_with_an_unusable_token_file) {
  temp_dir dir("nodecoord-token");
  auto short_token = dir.write("short.token", "abc\n");
  for (auto& file : {short_token, dir.file("absent.token")}) {
    auto cfg = dir.write("nodecoord.toml", "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
                                           "token_file = \""
                                             + file + "\"\n");
    child_process p(daemon_path, {"--config", cfg, "--state-dir", dir.path()}, clean_env());
    int code = p.wait_exit(exit_bound);
    BOOST_TEST(code == 1, file << ": exit " << code << "\n" << p.stderr_text());
    BOOST_TEST(p.stderr_text().find("admin.token_file") != std::string::npos, p.stderr_text());
  }
}

BOOST_AUTO_TEST_CASE(on_demand_backfill_requeue_and_metrics) {
  daemon_under_test d(base_settings(), "", backfill_toml);
  auto n = d.add_node("alpha");
  auto c = connect_and_hello(d, n);
  c.aside_types = {};
  // Only the POST below may ask for the attempt: the session's reconnect trigger runs first.
  d.wait_reconnect_trigger(n.id);
  auto id = new_uuid();
  c.send_line(protocol::encode_attempt({id, "task", "running", "", "", ""}));
  c.heartbeat_roundtrip(1);
  BOOST_TEST_REQUIRE(eventually([&] { return sync_state_of(d, id) == "partial"; }));
  auto attempt = ok_data(http(d, "GET", "/api/attempts/" + id));
  BOOST_TEST(attempt["attempt"]["sync_state"] == "partial");
  // Reading it asked nothing (issue 17: no side effects on GET); asking is a POST.
  auto first = http(d, "POST", "/api/attempts/" + id + "/backfill");
  BOOST_TEST_REQUIRE(first.status == 202, first.body);
  auto req = next_request(c);
  BOOST_TEST(req["request_id"] == ok_data(first)["job_id"]);
  BOOST_TEST(req["attempt_ids"] == json::array({id}));
  // While that request is live, another on-demand request for it is a conflict.
  auto again = http(d, "POST", "/api/attempts/" + id + "/backfill");
  BOOST_TEST(again.status == 409, again.body);
  // Answer with a failure: back to partial, one failure counted.
  refuse(c, req, id);
  BOOST_TEST_REQUIRE(eventually([&] { return sync_state_of(d, id) == "partial"; }));
  auto posted = http(d, "POST", "/api/attempts/" + id + "/backfill");
  BOOST_TEST_REQUIRE(posted.status == 202, posted.body);
  auto job_id = ok_data(posted)["job_id"].get<std::string>();
  auto req2 = next_request(c);
  BOOST_TEST(req2["request_id"] == job_id);
  // The job is in the ledger, running, for this node.
  auto jobs = d.ctl({"jobs", "list", "--type", "backfill", "--node", "alpha"});
  bool found = false;
  for (auto& j : jobs["jobs"])
    found = found || (j["id"] == job_id && j["status"] == "running");
  BOOST_TEST(found, jobs.dump());
  // requeue: only a failed attempt.
  auto not_failed = ctl_any({"--admin", d.admin_url(), "requeue", id});
  BOOST_TEST(not_failed.code == 3, not_failed.err);
  BOOST_TEST(ctl_any({"--admin", d.admin_url(), "requeue", new_uuid()}).code == 4);
  c.close();
  d.wait_offline("alpha", "socket_closed");
  BOOST_TEST_REQUIRE(eventually([&] { return sync_state_of(d, id) == "partial"; }));
  // Offline node: 409.
  auto offline = http(d, "POST", "/api/attempts/" + id + "/backfill");
  BOOST_TEST(offline.status == 409, offline.body);
  auto backfill_cli = ctl_any({"--admin", d.admin_url(), "backfill", id});
  BOOST_TEST(backfill_cli.code == 3, backfill_cli.err);
  {
    auto s = d.db();
    *s << "UPDATE node_task_attempts SET sync_state = 'failed', backfill_failures = 5 WHERE id = '" + id + "'";
  }
  auto requeued = d.ctl({"requeue", id});
  BOOST_TEST(requeued["attempt"]["sync_state"] == "partial");
  BOOST_TEST(requeued["attempt"]["backfill_failures"] == 0);
  BOOST_TEST(requeued["attempt"]["sync_state"] == "partial");
  BOOST_TEST(sync_state_of(d, id) == "partial");
  auto listed = d.ctl({"attempts", "list", "--node", "alpha", "--sync-state", "partial"});
  BOOST_TEST_REQUIRE(listed["attempts"].size() == 1u);
  BOOST_TEST(listed["attempts"][0]["id"] == id);

  // Metrics saw this session: its frames, its end, the requests.
  auto m = http(d, "GET", "/metrics");
  BOOST_TEST(m.status == 200);
  BOOST_TEST(metric(m.body, "nodecoord_connects_total{result=\"ok\"}") >= 1);
  BOOST_TEST(metric(m.body, "nodecoord_frames_total{type=\"attempt\"}") >= 1);
  BOOST_TEST(metric(m.body, "nodecoord_frames_total{type=\"heartbeat\"}") >= 1);
  BOOST_TEST(metric(m.body, "nodecoord_frames_total{type=\"backfill_response\"}") >= 1);
  BOOST_TEST(metric(m.body, "nodecoord_disconnects_total{reason=\"socket_closed\"}") >= 1);
  BOOST_TEST(metric(m.body, "nodecoord_backfill_requests_total{outcome=\"created\"}") >= 2);
  BOOST_TEST(metric(m.body, "nodecoord_backfill_requests_total{outcome=\"cancelled\"}") >= 1);
  BOOST_TEST(metric(m.body, "nodecoord_sessions") == 0);
  BOOST_TEST(metric(m.body, "nodecoord_storage_commit_seconds_count") > 0);
  BOOST_TEST(ok_data(http(d, "GET", "/readyz"))["database"] == true);
  d.stop();
}

namespace {

std::string first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

/// The data rows a bundle carries, as text, for "identical" and "unchanged" checks (not the
/// ledger, which gains the import's own jobs, and not key hashes, which a bundle never carries).
std::vector<std::string> data_rows(daemon_under_test& d) {
  std::vector<std::string> out;
  for (auto& q : {"SELECT CAST(id AS TEXT), name, session_epoch FROM nodes ORDER BY name",
                  "SELECT CAST(id AS TEXT), CAST(node_id AS TEXT), task_id, state, log_count, log_max_seq "
                  "FROM node_task_attempts ORDER BY CAST(id AS TEXT)",
                  "SELECT CAST(attempt_id AS TEXT), seq, stream, line FROM attempt_logs "
                  "ORDER BY CAST(attempt_id AS TEXT), seq"})
    for (auto& r : d.rows(q))
      out.push_back(r);
  return out;
}

} // namespace

BOOST_AUTO_TEST_CASE(bundle_round_trip_sqlite_to_postgresql) {
  daemon_under_test a(base_settings(), "", backfill_toml);
  auto alpha = a.add_node("alpha");
  a.add_node("beta");
  {
    auto c = connect_and_hello(a, alpha);
    c.aside_types = {"backfill_request"};
    for (int i = 0; i < 3; ++i) {
      auto id = new_uuid();
      c.send_line(protocol::encode_attempt({id, "task-" + std::to_string(i), "succeeded", "", "", "{\"exit\":0}"}));
      protocol::logs frame{id, {}};
      for (int s = 0; s < 4; ++s)
        frame.entries.push_back({s, "2026-01-09T12:00:0" + std::to_string(s) + ".000Z", "stdout",
                                 "line " + std::to_string(s) + " \"quoted\" \\ tab\t"});
      c.send_line(protocol::encode_logs(frame));
    }
    c.heartbeat_roundtrip(1);
    BOOST_TEST_REQUIRE(eventually([&] { return a.count("SELECT COUNT(*) FROM attempt_logs") == 12; }));
    c.close();
    a.wait_offline("alpha", "socket_closed");
  }
  temp_dir files("nodecoord-bundle");
  auto path = files.file("fleet.ndjson");
  auto exported = a.ctl({"bundle", "export", path});
  BOOST_TEST(exported["file"] == path);
  auto manifest = json::parse(first_line(path));
  BOOST_TEST(manifest["format"] == "nodecoord-bundle");
  BOOST_TEST(manifest["version"] == 2);
  auto& declared = manifest["counts"];
  BOOST_TEST(declared["nodes"] == 2);
  BOOST_TEST(declared["attempts"] == 3);
  BOOST_TEST(declared["logs"] == 12);
  auto jobs_in_a = declared["jobs"].get<int64_t>();
  // The export is in A's ledger, finished, and not inside its own bundle.
  auto export_jobs = a.ctl({"jobs", "list", "--type", "bundle_export"});
  BOOST_TEST_REQUIRE(export_jobs["jobs"].size() == 1u);
  BOOST_TEST(export_jobs["jobs"][0]["status"] == "succeeded");
  BOOST_TEST(export_jobs["jobs"][0]["detail"]["counts"]["logs"] == 12);
  auto rows_a = data_rows(a);

  test_database pg(storage::backend::postgresql);
  daemon_under_test b(base_settings(), pg.url(), backfill_toml);
  b.start();
  // Dry run: the counts of a real run, nothing written.
  auto dry = b.ctl({"bundle", "import", path, "--dry-run"});
  BOOST_TEST(dry["dry_run"] == true);
  BOOST_TEST(dry["counts"]["logs"]["inserted"] == 12);
  BOOST_TEST(b.count("SELECT COUNT(*) FROM nodes") == 0);
  auto imported = b.ctl({"bundle", "import", path});
  BOOST_TEST(imported["counts"] == dry["counts"]);
  BOOST_TEST(imported["counts"]["nodes"]["inserted"] == 2);
  BOOST_TEST(imported["counts"]["attempts"]["inserted"] == 3);
  BOOST_TEST(imported["counts"]["logs"]["inserted"] == 12);
  BOOST_TEST(imported["counts"]["jobs"]["inserted"] == jobs_in_a);
  // Identical data on the other backend.
  auto rows_b = data_rows(b);
  BOOST_TEST(rows_b == rows_a, "SQLite and PostgreSQL rows differ");
  BOOST_TEST(b.count("SELECT COUNT(*) FROM jobs WHERE type <> 'bundle_import'") == jobs_in_a);
  // The overview of B shows A's counts (its cache refreshes within 5 s).
  auto a_attempts = ok_data(http(a, "GET", "/api/overview"));
  BOOST_TEST(eventually(
    [&] {
      auto o = ok_data(http(b, "GET", "/api/overview"));
      return o["nodes"]["offline"] == 2 && o["attempts"] == a_attempts["attempts"];
    },
    15s));
  // An imported node cannot authenticate with its old key (bundles carry no key hashes).
  node_client old_key(b.port());
  BOOST_TEST(old_key.hello("alpha", alpha.key).value("code", "") == "auth_failed");

  // B's export (PostgreSQL: a REPEATABLE READ snapshot on the admin API's own connection) holds
  // the same rows: every node, attempt and line, and A's jobs (with the import's own job).
  auto path_b = files.file("fleet-b.ndjson");
  b.ctl({"bundle", "export", path_b});
  auto manifest_b = json::parse(first_line(path_b));
  BOOST_TEST(manifest_b["counts"]["nodes"] == 2);
  BOOST_TEST(manifest_b["counts"]["attempts"] == 3);
  BOOST_TEST(manifest_b["counts"]["logs"] == 12);
  BOOST_TEST(manifest_b["counts"]["jobs"].get<int64_t>() == jobs_in_a + 2, "A's jobs, the dry run's and the import's");

  // Importing twice changes nothing.
  auto twice = b.ctl({"bundle", "import", path});
  BOOST_TEST(twice["counts"]["nodes"]["skipped"] == 2);
  BOOST_TEST(twice["counts"]["logs"]["skipped"] == 12);
  BOOST_TEST(twice["counts"]["logs"]["inserted"] == 0);
  BOOST_TEST(data_rows(b) == rows_b);

  // A corrupted bundle changes nothing and names the line.
  std::ifstream in(path);
  std::string text, l;
  int n = 0;
  while (std::getline(in, l)) {
    ++n;
    if (n == 4)
      l = l.substr(0, l.size() / 2); // cut in the middle: not JSON
    text += l + "\n";
  }
  auto bad = files.write("bad.ndjson", text);
  auto rejected = ctl_any({"--admin", b.admin_url(), "bundle", "import", bad});
  BOOST_TEST(rejected.code == 2, rejected.err);
  BOOST_TEST(rejected.err.find("line 4") != std::string::npos, rejected.err);
  BOOST_TEST(data_rows(b) == rows_b);
  // So does one that parses but names an attempt that exists nowhere, after lines that would be
  // new: the import (on PostgreSQL in a transaction of its own, beside the storage actor) stores
  // none of them.
  {
    std::ifstream orig(path);
    std::vector<std::string> ls;
    for (std::string x; std::getline(orig, x);)
      ls.push_back(x);
    auto m = json::parse(ls[0]);
    m["counts"]["nodes"] = m["counts"]["nodes"].get<int64_t>() + 1;
    m["counts"]["logs"] = m["counts"]["logs"].get<int64_t>() + 1;
    ls[0] = m.dump();
    auto fresh_node = json::parse(ls[1]);
    fresh_node["id"] = "0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e";
    fresh_node["name"] = "never-stored";
    ls.insert(ls.begin() + 1, fresh_node.dump());
    ls.push_back(R"({"type":"log","attempt_id":"3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d","seq":0,)"
                 R"("ts":"2026-01-09T12:00:00.000Z","stream":"stdout","line":"orphan"})");
    std::string body;
    for (auto& x : ls)
      body += x + "\n";
    auto orphan = files.write("orphan.ndjson", body);
    auto refused = ctl_any({"--admin", b.admin_url(), "bundle", "import", orphan});
    BOOST_TEST(refused.code == 2, refused.err);
    BOOST_TEST(refused.err.find("line " + std::to_string(ls.size())) != std::string::npos, refused.err);
    BOOST_TEST(refused.err.find("3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d") != std::string::npos, refused.err);
    BOOST_TEST(data_rows(b) == rows_b);
    BOOST_TEST(b.count("SELECT COUNT(*) FROM nodes WHERE name = 'never-stored'") == 0);
  }
  auto failed = b.ctl({"jobs", "list", "--type", "bundle_import", "--status", "failed"});
  BOOST_TEST(failed["jobs"].size() == 2u);
  b.stop();
  a.stop();
}

// Sizes and exports read on a connection of their own, except from SQLite's in-memory database,
// where another connection would open another, empty database.
BOOST_AUTO_TEST_CASE(an_in_memory_daemon_exports_what_it_holds) {
  daemon_under_test d(base_settings(), "sqlite::memory:");
  d.add_node("alpha");
  d.add_node("beta");
  temp_dir files("nodecoord-bundle-mem");
  auto path = files.file("mem.ndjson");
  d.ctl({"bundle", "export", path});
  BOOST_TEST(json::parse(first_line(path))["counts"]["nodes"] == 2);
  auto overview = ok_data(http(d, "GET", "/api/overview"));
  BOOST_TEST(overview["nodes"]["offline"] == 2);
  BOOST_TEST(overview["database"]["size_bytes"].get<int64_t>() > 0, overview.dump());
  d.stop();
}

BOOST_AUTO_TEST_CASE(readiness_follows_the_database_even_when_nothing_is_written) {
  const char* stop_cmd = std::getenv("NODECOORD_TEST_PG_STOP");
  const char* start_cmd = std::getenv("NODECOORD_TEST_PG_START");
  BOOST_REQUIRE_MESSAGE(stop_cmd && start_cmd,
                        "NODECOORD_TEST_PG_STOP/START are not set (run through scripts/run-tests.sh)");
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url());
  d.start();
  BOOST_TEST(http(d, "GET", "/readyz").status == 200);
  // The server goes away while the daemon is idle: no node, no write, only the probe notices.
  struct restart_guard {
    const char* cmd;
    bool stopped = false;
    ~restart_guard() {
      if (stopped) [[maybe_unused]]
        int rc = std::system(cmd);
    }
  } guard{start_cmd};
  BOOST_REQUIRE_EQUAL(std::system(stop_cmd), 0);
  guard.stopped = true;
  http_answer last;
  BOOST_TEST(eventually(
               [&] {
                 last = http(d, "GET", "/readyz");
                 return last.status == 503;
               },
               30s),
             "readyz stayed " << last.status << ": " << last.body);
  BOOST_TEST(last.j["error"]["detail"]["database"] == false);
  BOOST_TEST(last.j["error"]["detail"]["listening"] == true);
  // Liveness is not readiness: the process still answers.
  BOOST_TEST(http(d, "GET", "/healthz").status == 200);
  // Reading through the database fails with 503 and a message, not a hang.
  auto nodes = http(d, "GET", "/api/nodes");
  BOOST_TEST(nodes.status == 503, nodes.body);
  BOOST_REQUIRE_EQUAL(std::system(start_cmd), 0);
  guard.stopped = false;
  BOOST_TEST(eventually([&] { return http(d, "GET", "/readyz").status == 200; }, 30s));
  BOOST_TEST(http(d, "GET", "/api/nodes").status == 200);
  d.stop();
}
