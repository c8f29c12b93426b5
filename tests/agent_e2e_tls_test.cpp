// nodecoord-agent over TLS end to end (issue 17): the real daemon with [server.tls] (mutual TLS)
// and real agents. One agent with the right CA, certificate and key syncs everything; agents with
// the wrong settings (plain, another CA, no client certificate, a wrong name, another node's
// certificate, an expired one) fail with a message that says why; a certificate rotation by SIGHUP keeps the
// live agent's session.
#include <boost/test/unit_test.hpp>

#include "e2e_daemon.hpp"
#include "test_certs.hpp"
#include "tools/agent/store.hpp"

#include <csignal>
#include <fstream>
#include <sstream>

using namespace nodecoord;
using namespace nodecoord::test;

namespace {

const std::string tls_agent_path = NODECOORD_AGENT_PATH;

/// Three attempts with `lines` lines each, finished, in the store at `path`.
void record(const std::string& path, const std::string& tag, int lines) {
  agent::store st(path);
  for (int i = 0; i < 3; ++i) {
    auto a = st.start_attempt(tag + "-" + std::to_string(i));
    std::vector<std::string> text;
    for (int j = 0; j < lines; ++j)
      text.push_back(tag + " line " + std::to_string(j));
    st.append_logs(a, "stdout", text);
    st.set_state(a, "succeeded");
  }
}

std::string tls_table(const test_certs& c, const std::string& server) {
  return "[server.tls]\ncert_file = \"" + c.crt(server) + "\"\nkey_file = \"" + c.key(server)
         + "\"\nclient_ca_file = \"" + c.crt("ca") + "\"\n";
}

} // namespace

BOOST_AUTO_TEST_CASE(agents_over_mutual_tls_sync_and_wrong_settings_fail_clearly) {
  const auto& certs = test_certs::get();
  const std::string backfill = "[backfill]\nreconnect_rate = 1000\nreconcile_interval = \"1s\"\n";
  daemon_under_test d(base_settings(), "", backfill + tls_table(certs, "server"));
  d.start();
  BOOST_TEST(d.process().stderr_text().find("tls=required,mutual") != std::string::npos);
  temp_dir work("agent-tls");
  auto n = d.add_node("node-a");
  auto other = d.add_node("node-b");
  auto key_a = work.write("a.key", n.key + "\n");
  auto key_b = work.write("b.key", other.key + "\n");
  auto store = work.file("a.db");
  record(store, "before", 200);
  const std::string by_name = "localhost:" + std::to_string(d.port());
  auto agent_args = [&](const std::string& coordinator, const std::string& node, const std::string& key_file,
                        const std::string& store_path, std::vector<std::string> tls) {
    std::vector<std::string> args{
      "--store",    store_path, "connect",          "--coordinator", coordinator,          "--node", node,
      "--key-file", key_file,   "--backoff-max-ms", "500",           "--poll-interval-ms", "50"};
    args.insert(args.end(), tls.begin(), tls.end());
    return args;
  };
  const std::vector<std::string> good_tls{
    "--tls",          "--ca-file",        certs.crt("ca"), "--tls-cert-file", certs.crt("node-a"),
    "--tls-key-file", certs.key("node-a")};
  child_process agent(tls_agent_path, agent_args(by_name, "node-a", key_a, store, good_tls), clean_env());
  auto complete = [&](int64_t want) {
    return eventually(
      [&] { return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == want; }, 60s);
  };
  BOOST_TEST_REQUIRE(complete(3), agent.stderr_tail());
  BOOST_TEST(d.count("SELECT COUNT(*) FROM attempt_logs") == 600);
  auto epoch = d.node("node-a").epoch;

  // Wrong settings, each on its own store: the message says why, and the daemon is unharmed.
  struct wrong {
    std::string what;
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<wrong> cases = {
    {"plain", agent_args(by_name, "node-b", key_b, work.file("b1.db"), {}), "the coordinator requires TLS"},
    {"another CA",
     agent_args(by_name, "node-b", key_b, work.file("b2.db"), {"--tls", "--ca-file", certs.crt("other-ca")}),
     "certificate verification failed"},
    {"no client certificate",
     agent_args(by_name, "node-b", key_b, work.file("b3.db"), {"--tls", "--ca-file", certs.crt("ca")}), "TLS failed"},
    {"a name the certificate lacks",
     agent_args(by_name, "node-b", key_b, work.file("b4.db"),
                {"--tls", "--ca-file", certs.crt("ca"), "--server-name", "coord.example.org"}),
     "hostname mismatch"},
    // node-a's key (stolen) with a valid certificate of another name.
    {"a certificate of another node",
     agent_args(by_name, "node-a", key_a, work.file("b5.db"),
                {"--tls", "--ca-file", certs.crt("ca"), "--tls-cert-file", certs.crt("wrong-cn"), "--tls-key-file",
                 certs.key("wrong-cn")}),
     "does not name node 'node-a'"},
  };
  for (auto& c : cases) {
    child_process bad(tls_agent_path, c.args, clean_env());
    BOOST_TEST(bad.wait_for_stderr(c.message, 20s), c.what << ":\n" << bad.stderr_tail());
    bad.send_signal(SIGTERM);
    BOOST_TEST(bad.wait_exit(15s) == 0, c.what);
  }
  // node-a's own certificate, expired: the agent refuses to start with it (exit 1, saying so);
  // the daemon's side of an expired client certificate is in tls_test.
  {
    child_process expired(tls_agent_path,
                          agent_args(by_name, "node-a", key_a, work.file("b6.db"),
                                     {"--tls", "--ca-file", certs.crt("ca"), "--tls-cert-file",
                                      certs.crt("expired-node-a"), "--tls-key-file", certs.key("expired-node-a")}),
                          clean_env());
    BOOST_TEST(expired.wait_exit(15s) == 1, expired.stderr_tail());
    BOOST_TEST(expired.stderr_text().find("expired at 2020-01-02T00:00:00Z") != std::string::npos,
               expired.stderr_tail());
  }
  BOOST_TEST(d.node("node-b").status == "offline");
  // The good agent was never superseded by the stolen key: same session.
  BOOST_TEST(d.node("node-a").epoch == epoch);

  // Rotation: a new certificate by SIGHUP; the live session stays, new records still arrive.
  {
    std::ifstream in(d.config());
    std::stringstream text;
    text << in.rdbuf();
    auto s = text.str();
    auto at = s.find(certs.crt("server"));
    BOOST_TEST_REQUIRE(at != std::string::npos);
    s.replace(at, certs.crt("server").size(), certs.crt("server2"));
    at = s.find(certs.key("server"));
    s.replace(at, certs.key("server").size(), certs.key("server2"));
    std::ofstream(d.config()) << s;
  }
  d.process().send_signal(SIGHUP);
  BOOST_TEST(d.process().wait_for_stderr("TLS reloaded", 10s), d.process().stderr_tail());
  record(store, "after", 50);
  BOOST_TEST_REQUIRE(complete(6), agent.stderr_tail());
  BOOST_TEST(d.count("SELECT COUNT(*) FROM attempt_logs") == 750);
  BOOST_TEST(d.node("node-a").epoch == epoch, "the rotation dropped the session");
  // A new connection gets the new certificate (and resumes nothing: another server key).
  child_process again(
    tls_agent_path, agent_args("127.0.0.1:" + std::to_string(d.port()), "node-a", key_a, work.file("a2.db"), good_tls),
    clean_env());
  d.wait_node(
    "node-a", [&](const node_row& r) { return r.status == "online" && r.epoch == epoch + 1; }, "taken over by IP");
  again.send_signal(SIGTERM);
  BOOST_TEST(again.wait_exit(15s) == 0, again.stderr_tail());
  agent.send_signal(SIGTERM);
  BOOST_TEST(agent.wait_exit(15s) == 0, agent.stderr_tail());
  d.stop();
}
