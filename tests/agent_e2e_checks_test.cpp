// Allow-listed checks end to end (issue 20; docs/protocol.md, checks): the real daemon on each
// backend, a real agent and nodecoordctl. A check runs only if the coordinator's config names it
// and the agent's own config allows the same name and argv; each run is a `check` job with its
// outcome: exited 0, a failing exit code, refused by the agent (not allowed, argv differs), timed
// out, output truncated. Refused by the coordinator: an unknown name (no job), an agent that did
// not name the feature (an older agent), a node without a session. Every call is in the ledger.
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

  // The jobs: one per call that got past the name, all finished, with their outcome.
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check'") == 8);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND finished_at IS NULL") == 0);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND status = 'succeeded'") == 2);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'check' AND error LIKE 'checks_unsupported:%'") == 1);
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

  // The agent is still connected and syncing after all that.
  BOOST_TEST(d.node("edge-a").status == "online");
  agent.send_signal(SIGTERM);
  BOOST_TEST(agent.wait_exit(exit_bound) == 0, agent.stderr_tail());
}

} // namespace

BOOST_AUTO_TEST_CASE(checks_end_to_end_sqlite) {
  daemon_under_test d(base_settings(), "", coordinator_checks);
  checks_end_to_end(d);
}

BOOST_AUTO_TEST_CASE(checks_end_to_end_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url(), coordinator_checks);
  checks_end_to_end(d);
}
