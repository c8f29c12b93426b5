// Allow-listed checks end to end (issue 20; docs/protocol.md, checks): the real daemon on each
// backend, a real agent and nodecoordctl. A check runs only if the coordinator's config names it
// and the agent's own config allows the same name and argv; each run is a `check` job with its
// outcome: exited 0, a failing exit code, refused by the agent (not allowed, argv differs), timed
// out, output truncated. Refused by the coordinator: an unknown name (no job), an agent that did
// not name the feature (an older agent), a node without a session. On a filtered set, planned and
// applied (nodecoordctl bulk nodes.check), a job per node. Every call is in the ledger.
#include <boost/test/unit_test.hpp>

#include "admin_e2e_support.hpp"
#include "agent_e2e_support.hpp"
#include "e2e_node.hpp"

#include <csignal>

using namespace agent_e2e;
using admin_e2e::ctl_any;
using admin_e2e::ctl_result;

namespace {

// The coordinator's allow-list. `not-on-agent` is missing from the agent's; `argv-differs` has
// another argv there.
const std::string coordinator_checks = R"(
[checks.hello]
argv = ["echo", "hello", "world"]

[checks.fails]
argv = ["sh", "-c", "echo broken; echo on stderr >&2; exit 3"]

[checks.slow]
argv = ["sleep", "30"]
timeout = "500ms"

[checks.chatty]
argv = ["sh", "-c", "head -c 5000 /dev/zero | tr '\\000' x"]
output_max = 100

[checks.not-on-agent]
argv = ["uname", "-a"]

[checks.argv-differs]
argv = ["id"]
)";

const std::string agent_checks = R"(
[checks.hello]
argv = ["echo", "hello", "world"]

[checks.fails]
argv = ["sh", "-c", "echo broken; echo on stderr >&2; exit 3"]

[checks.slow]
argv = ["sleep", "30"]

[checks.chatty]
argv = ["sh", "-c", "head -c 5000 /dev/zero | tr '\\000' x"]

[checks.argv-differs]
argv = ["id", "-u"]
)";

void checks_end_to_end(daemon_under_test& d) {
  d.start();
  auto admin = d.admin_url();
  temp_dir work("checks-e2e");
  auto n = d.add_node("edge-a");
  auto store = work.file("edge-a.db");
  auto key_file = work.write("edge-a.key", n.key + "\n");
  auto agent_config = work.write("agent.toml", agent_checks);
  child_process agent(agent_path,
                      {"--store", store, "connect", "--config", agent_config, "--coordinator",
                       "127.0.0.1:" + std::to_string(d.port()), "--node", "edge-a", "--key-file", key_file,
                       "--backoff-max-ms", "500", "--poll-interval-ms", "50"},
                      clean_env());
  BOOST_TEST_REQUIRE(eventually([&] { return d.node("edge-a").status == "online"; }),
                     "the agent did not connect; stderr:\n"
                       << agent.stderr_tail());
  auto check = [&](const std::string& node, const std::string& name) {
    return ctl_any({"--admin", admin, "node", "check", node, name});
  };

  // The list the operator picks from.
  auto listed = ctl_any({"--admin", admin, "--json", "checks"});
  BOOST_TEST(listed.code == 0, listed.err);
  auto list = json::parse(listed.out, nullptr, false);
  BOOST_TEST_REQUIRE(list.is_object(), listed.out);
  BOOST_TEST_REQUIRE(list["checks"].size() == 6u);
  std::vector<std::string> names;
  for (auto& c : list["checks"])
    names.push_back(c["name"]);
  // By name (TOML tables have no order).
  BOOST_TEST((names == std::vector<std::string>{"argv-differs", "chatty", "fails", "hello", "not-on-agent", "slow"}),
             boost::test_tools::per_element());
  BOOST_TEST(list["checks"][5]["timeout_ms"] == 500);
  BOOST_TEST(list["checks"][1]["output_max"] == 100);

  // Allowed on both sides, exit 0: succeeded, with the program's output.
  auto hello = check("edge-a", "hello");
  BOOST_TEST(hello.code == 0, hello.err);
  BOOST_TEST(hello.out == "check hello on edge-a: succeeded\nhello world\n", hello.out);

  // A failing exit code: failed, with stdout and stderr as they came.
  auto fails = check("edge-a", "fails");
  BOOST_TEST(fails.code == 1, fails.err);
  BOOST_TEST(fails.out.find("check fails on edge-a: failed (exit code 3)\n") == 0, fails.out);
  BOOST_TEST(fails.out.find("broken\n") != std::string::npos, fails.out);
  BOOST_TEST(fails.out.find("on stderr\n") != std::string::npos, fails.out);

  // The coordinator's timeout travels with the request; the agent kills the program.
  auto slow = check("edge-a", "slow");
  BOOST_TEST(slow.code == 1, slow.err);
  BOOST_TEST(slow.out.find("check slow on edge-a: failed (timed out on the node after 500 ms)") == 0, slow.out);

  // The coordinator's output cap travels with it too: 100 of 5,000 bytes, marked.
  auto chatty = check("edge-a", "chatty");
  BOOST_TEST(chatty.code == 0, chatty.err);
  BOOST_TEST(chatty.out == "check chatty on edge-a: succeeded\n" + std::string(100, 'x') + "\n[output truncated]\n",
             chatty.out);

  // Refused by the agent: a name its config does not have, and an argv that is not its own.
  auto not_on_agent = check("edge-a", "not-on-agent");
  BOOST_TEST(not_on_agent.code == 1, not_on_agent.err);
  BOOST_TEST(not_on_agent.out.find("refused by the agent: check 'not-on-agent' is not allowed by this agent's config")
               != std::string::npos,
             not_on_agent.out);
  auto differs = check("edge-a", "argv-differs");
  BOOST_TEST(differs.code == 1, differs.err);
  BOOST_TEST(differs.out.find("refused by the agent: check 'argv-differs': the coordinator's argv differs")
               != std::string::npos,
             differs.out);

  // Refused by the coordinator: a name its config does not have (no job is made, nothing is sent).
  auto unknown = check("edge-a", "rm-everything");
  BOOST_TEST(unknown.code == 4, unknown.err);
  BOOST_TEST(unknown.err.find("no check named 'rm-everything'") != std::string::npos, unknown.err);

  // An agent that did not name the feature (node_client says hello as protocol v1 agents did).
  auto old = d.add_node("old-b");
  auto old_client = connect_and_hello(d, old);
  auto unsupported = check("old-b", "hello");
  BOOST_TEST(unsupported.code == 3, unsupported.err);
  BOOST_TEST(unsupported.err.find("does not take checks") != std::string::npos, unsupported.err);
  // No session at all.
  d.add_node("idle-c");
  auto offline = check("idle-c", "hello");
  BOOST_TEST(offline.code == 3, offline.err);
  BOOST_TEST(offline.err.find("no session") != std::string::npos, offline.err);

  // On a filtered set, planned then applied: a job for each online node (edge-a runs it, old-b's
  // agent does not take checks); idle-c is offline, so not in the set.
  auto bulk = ctl_any({"--admin", admin, "bulk", "nodes.check", "--check", "hello", "--all", "--yes"});
  BOOST_TEST(bulk.code == 0, bulk.err);
  BOOST_TEST(bulk.out.find("2 rows match") != std::string::npos, bulk.out);
  BOOST_TEST(bulk.out.find(R"({"checks_unsupported":1,"node_not_connected":0,"nodes":2,"sent":1})")
               != std::string::npos,
             bulk.out);
  BOOST_TEST(eventually(
    [&] { return d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND status = 'succeeded'") == 3; }));
  auto unknown_bulk = ctl_any({"--admin", admin, "bulk", "nodes.check", "--check", "nope", "--all", "--yes"});
  BOOST_TEST(unknown_bulk.code == 4, unknown_bulk.err);

  // The jobs: one per call (or node) that got past the name, all finished, with their outcome.
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check'") == 10);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND finished_at IS NULL") == 0);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND status = 'succeeded'") == 3);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND error LIKE 'checks_unsupported:%'") == 2);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND error LIKE 'node_not_connected:%'") == 1);
  auto jobs = ctl_any({"--admin", admin, "--json", "jobs", "list", "--type", "check", "--node", "edge-a"});
  BOOST_TEST_REQUIRE(jobs.code == 0, jobs.err);
  auto page = json::parse(jobs.out, nullptr, false);
  BOOST_TEST_REQUIRE(page.is_object(), jobs.out);
  int seen = 0;
  for (auto& j : page["jobs"])
    if (j["detail"]["check"] == "chatty") {
      ++seen;
      BOOST_TEST(j["detail"]["truncated"] == true);
      BOOST_TEST(j["detail"]["exit_code"] == 0);
      BOOST_TEST(j["detail"]["output"].get<std::string>().size() == 100u);
    } else if (j["detail"]["check"] == "slow") {
      ++seen;
      BOOST_TEST(j["detail"]["status"] == "timed_out");
      BOOST_TEST(j["detail"]["exit_code"].is_null());
    }
  BOOST_TEST(seen == 2);

  // The ledger: every call, refused ones included.
  BOOST_TEST(d.count("SELECT COUNT(*) FROM audit_log WHERE action = 'node.check' AND result = 'succeeded'") == 6);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM audit_log WHERE action = 'node.check' AND result = 'refused'") == 3);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM audit_log WHERE action = 'node.check' AND target = 'edge-a'") == 7);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM audit_log WHERE action = 'nodes.check' AND result = 'succeeded'") == 1);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM audit_log WHERE action = 'nodes.check.plan' AND result = 'refused'") == 1);

  // The agent is still connected and syncing after all that.
  BOOST_TEST(d.node("edge-a").status == "online");
  agent.send_signal(SIGTERM);
  BOOST_TEST(agent.wait_exit(exit_bound) == 0, agent.stderr_tail());
}

/// A node that names the feature but answers as the test says (node_client): the check's job ends
/// at the deadline without an answer, a late answer is unknown, more output than allowed is cut,
/// and a session that ends before its answer fails the job.
void checks_the_node_does_not_answer(daemon_under_test& d) {
  d.start();
  auto admin = d.admin_url();
  auto n = d.add_node("raw-a");
  node_client c(d.port());
  c.send_line(
    json{{"type", "hello"}, {"protocol", 1}, {"node", "raw-a"}, {"key", n.key}, {"features", {"checks"}}}.dump());
  BOOST_TEST_REQUIRE(c.read_frame().value("type", "") == "welcome");
  auto job_of = [&](const std::string& id) {
    auto page = ctl_any({"--admin", admin, "--json", "jobs", "list", "--type", "check", "--node", "raw-a"});
    BOOST_TEST_REQUIRE(page.code == 0, page.err);
    auto parsed = json::parse(page.out);
    for (auto& j : parsed["jobs"])
      if (j["id"] == id)
        return j;
    return json();
  };
  auto started = [&](const std::string& check) {
    auto r = ctl_any({"--admin", admin, "--json", "node", "check", "raw-a", check, "--no-wait"});
    BOOST_TEST_REQUIRE(r.code == 0, r.err);
    return json::parse(r.out)["job"]["id"].get<std::string>();
  };

  // No answer: failed at the check's timeout plus the grace (500 ms + 5 s).
  auto silent = ctl_any({"--admin", admin, "node", "check", "raw-a", "slow"});
  BOOST_TEST(silent.code == 1, silent.err);
  BOOST_TEST(silent.out.find("failed (no answer from the node within 5500 ms)") != std::string::npos, silent.out);
  auto req = c.read_frame();
  BOOST_TEST(req["type"] == "check_request");
  BOOST_TEST(req["name"] == "slow");
  BOOST_TEST(req["argv"] == json({"sleep", "30"}));
  BOOST_TEST(req["timeout_ms"] == 500);
  BOOST_TEST(req["output_max"] == 65536);
  // Answered after that: unknown, and the job stays as it ended.
  c.send_line(
    json{{"type", "check_result"}, {"request_id", req["request_id"]}, {"status", "exited"}, {"exit_code", 0}}.dump());
  auto late = c.read_frame();
  BOOST_TEST(late["type"] == "error");
  BOOST_TEST(late["code"] == "unknown_request");
  BOOST_TEST(late["ref"] == req["request_id"]);
  BOOST_TEST(job_of(req["request_id"])["status"] == "failed");

  // More output than the check allows (100 bytes): the coordinator cuts it and says so.
  auto chatty = started("chatty");
  auto req2 = c.read_frame();
  BOOST_TEST(req2["request_id"] == chatty);
  c.send_line(json{
    {"type", "check_result"},
    {"request_id", chatty},
    {"status", "exited"},
    {"exit_code", 0},
    {"output", std::string(500, 'y')},
    {"truncated",
     false}}.dump());
  BOOST_TEST_REQUIRE(eventually([&] { return job_of(chatty)["status"] == "succeeded"; }));
  auto done = job_of(chatty);
  BOOST_TEST(done["detail"]["output"] == std::string(100, 'y'));
  BOOST_TEST(done["detail"]["truncated"] == true);

  // The session ends before the answer: failed at once, saying so.
  auto cut = started("hello");
  BOOST_TEST(c.read_frame()["request_id"] == cut);
  c.close();
  BOOST_TEST_REQUIRE(eventually([&] { return job_of(cut)["status"] == "failed"; }));
  BOOST_TEST(job_of(cut)["error"] == "the node's session ended before it answered (socket_closed)");
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND finished_at IS NULL") == 0);
}

} // namespace

BOOST_AUTO_TEST_CASE(checks_the_node_does_not_answer_sqlite) {
  daemon_under_test d(base_settings(), "", coordinator_checks);
  checks_the_node_does_not_answer(d);
}

BOOST_AUTO_TEST_CASE(checks_the_node_does_not_answer_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), coordinator_checks);
  checks_the_node_does_not_answer(d);
}

BOOST_AUTO_TEST_CASE(checks_end_to_end_sqlite) {
  daemon_under_test d(base_settings(), "", coordinator_checks);
  checks_end_to_end(d);
}

BOOST_AUTO_TEST_CASE(checks_end_to_end_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), coordinator_checks);
  checks_end_to_end(d);
}
