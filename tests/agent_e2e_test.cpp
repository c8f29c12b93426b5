// nodecoord-agent end to end: the real daemon, two real agents (child processes) recording through
// their CLI, and a TCP relay between each agent and the daemon that cuts the connection in the
// middle of the agent's first backfill answer. Afterwards every attempt must be `complete` on the
// coordinator with exactly the lines the agent holds, each once.
#define BOOST_TEST_MODULE agent_e2e_test
#include "agent_e2e_support.hpp"
#include "e2e_daemon.hpp"
#include "test_db.hpp"
#include "tools/agent/store.hpp"

#include <arpa/inet.h>
#include <atomic>
#include <fstream>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace nodecoord;
using namespace nodecoord::test;
using namespace agent_e2e;

namespace {

constexpr auto sync_bound = 90s; // every attempt complete (several reconnects and reconcile passes)

/// A TCP relay on 127.0.0.1:0 to the daemon. In its first connection that carries a
/// `backfill_request`, it passes the request to the agent, then passes only the first line the
/// agent sends after it (the first frame of the answer) and closes both sockets: the network cut
/// in the middle of a backfill.
class cutting_relay {
public:
  /// `blackhole`: instead, the first connection goes silent (nothing passes either way, nothing
  /// is closed) once the coordinator has sent anything — a peer that vanished without a FIN.
  explicit cutting_relay(uint16_t target, bool blackhole = false) : target_(target), blackhole_(blackhole) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    BOOST_REQUIRE(listen(listen_fd_, 16) == 0);
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~cutting_relay() {
    stop_ = true;
    thread_.join();
    close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  int cuts() const { return cuts_; }
  int connections() const { return connections_; }

private:
  struct pair {
    int agent = -1, daemon = -1;
    bool request_seen = false; // a backfill_request went to the agent
    std::string from_agent;    // after the request: bytes held until a whole line is there
    bool silent = false;       // blackholed
  };

  void loop() {
    std::vector<pair> pairs;
    while (!stop_) {
      std::vector<pollfd> p{{listen_fd_, POLLIN, 0}};
      for (auto& c : pairs) {
        p.push_back({c.agent, POLLIN, 0});
        p.push_back({c.daemon, POLLIN, 0});
      }
      if (poll(p.data(), p.size(), 50) <= 0)
        continue;
      const size_t polled = pairs.size(); // a pair accepted below has no entry in `p` yet
      if (p[0].revents & POLLIN) {
        int a = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        int d = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in t{};
        t.sin_family = AF_INET;
        t.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        t.sin_port = htons(target_);
        if (a >= 0 && connect(d, reinterpret_cast<sockaddr*>(&t), sizeof t) == 0) {
          pairs.push_back({a, d});
          ++connections_;
        } else {
          close(a);
          close(d);
        }
      }
      std::vector<bool> dead(pairs.size(), false);
      for (size_t i = 0; i < polled; ++i) {
        auto& c = pairs[i];
        char buf[65536];
        if (p[1 + 2 * i + 1].revents & (POLLIN | POLLHUP | POLLERR)) { // daemon -> agent
          auto n = read(c.daemon, buf, sizeof buf);
          if (n <= 0) {
            dead[i] = true;
            continue;
          }
          std::string_view chunk(buf, static_cast<size_t>(n));
          if (c.silent)
            continue;
          send(c.agent, chunk.data(), chunk.size(), MSG_NOSIGNAL);
          if (blackhole_ && cuts_ == 0) {
            c.silent = true;
            ++cuts_;
            continue;
          }
          if (!blackhole_ && cuts_ == armed_cuts_ && chunk.find("\"backfill_request\"") != std::string_view::npos)
            c.request_seen = true;
        }
        if (p[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) { // agent -> daemon
          auto n = read(c.agent, buf, sizeof buf);
          if (n <= 0) {
            dead[i] = true;
            continue;
          }
          std::string_view chunk(buf, static_cast<size_t>(n));
          if (c.silent)
            continue;
          if (!c.request_seen) {
            send(c.daemon, chunk.data(), chunk.size(), MSG_NOSIGNAL);
            continue;
          }
          c.from_agent.append(chunk);
          auto nl = c.from_agent.find('\n');
          if (nl != std::string::npos) {
            send(c.daemon, c.from_agent.data(), nl + 1, MSG_NOSIGNAL);
            ++cuts_;
            dead[i] = true; // the rest of the answer is lost with the connection
          }
        }
      }
      for (size_t i = pairs.size(); i-- > 0;)
        if (dead[i]) {
          close(pairs[i].agent);
          close(pairs[i].daemon);
          pairs.erase(pairs.begin() + static_cast<long>(i));
        }
    }
    for (auto& c : pairs) {
      close(c.agent);
      close(c.daemon);
    }
  }

  uint16_t target_;
  bool blackhole_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> cuts_{0};
  int armed_cuts_ = 0; // cut once
  std::atomic<int> connections_{0};
};

/// Records a few attempts through the CLI: lines from stdin, an empty one, one from `run`.
void record_some(const std::string& store, const std::string& tag, int lines) {
  auto a = agent_cli(store, {"record", "start", "--task", tag + "-build"});
  agent_cli(store, {"record", "log", a}, lines_text(lines, tag));
  agent_cli(store, {"record", "log", a, "--stream", "stderr"}, "warning: " + tag + "\n");
  agent_cli(store, {"record", "finish", a, "--state", "succeeded"});
  agent_cli(store, {"record", "start", "--task", tag + "-queued", "--state", "queued"});
  agent_cli(
    store,
    {"run", "--task", tag + "-run", "--", "/bin/sh", "-c", "echo out-" + tag + "; echo err-" + tag + " >&2; exit 3"},
    "", 3); // run exits with the command's code
}

struct agent_proc {
  std::string name;
  std::string store;
  std::unique_ptr<cutting_relay> relay;
  std::unique_ptr<child_process> proc;
};

} // namespace

BOOST_AUTO_TEST_CASE(two_agents_cut_mid_backfill_end_with_every_line_exactly_once) {
  // Reconcile every second, so attempts streamed live (they start partial) are asked for soon.
  daemon_under_test d(base_settings(), "",
                      "[backfill]\nreconnect_rate = 1000\nbatch_size = 100\nrequest_timeout = \"20s\"\n"
                      "reconcile_interval = \"1s\"\n");
  d.start();
  temp_dir work("agent-e2e");
  std::vector<agent_proc> agents;
  for (auto name : {"edge-1", "edge-2"}) {
    auto n = d.add_node(name);
    agent_proc a;
    a.name = name;
    a.store = work.file(std::string(name) + ".db");
    auto key_file = work.write(std::string(name) + ".key", n.key + "\n");
    // Recorded while no agent runs: the agent catches up when it connects.
    record_some(a.store, std::string(name) + "-offline", 1500);
    a.relay = std::make_unique<cutting_relay>(d.port());
    auto coordinator = "127.0.0.1:" + std::to_string(a.relay->port());
    std::vector<std::string> args{"--log-level", "debug", "connect"};
    if (agents.empty()) {
      args.insert(args.begin(), {"--store", a.store});
      args.insert(args.end(), {"--coordinator", coordinator, "--node", name, "--key-file", key_file, "--backoff-max-ms",
                               "1000", "--poll-interval-ms", "50"});
    } else {
      // The second agent takes everything from its TOML file.
      auto cfg = work.write(std::string(name) + ".toml", "coordinator = \"" + coordinator + "\"\nnode = \"" + name
                                                           + "\"\nkey_file = \"" + key_file + "\"\nstore = \"" + a.store
                                                           + "\"\nbackoff_max_ms = 1000\npoll_interval_ms = 50\n"
                                                             "[capabilities]\nslots = 4\n");
      args.insert(args.end(), {"--config", cfg});
    }
    a.proc = std::make_unique<child_process>(agent_path, args, clean_env());
    agents.push_back(std::move(a));
  }
  // Recorded while connected: streamed live.
  for (auto& a : agents)
    record_some(a.store, a.name + "-live", 300);

  // Expected: every attempt and every line of both stores.
  auto expected_attempts = [&] {
    int64_t n = 0;
    for (auto& a : agents)
      n += static_cast<int64_t>(agent::store(a.store).all_attempts().size());
    return n;
  }();
  BOOST_TEST(expected_attempts == 12);
  bool synced = eventually(
    [&] {
      return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'") == expected_attempts;
    },
    sync_bound);
  for (auto& a : agents)
    BOOST_TEST_MESSAGE(a.name << ": relay connections " << a.relay->connections() << ", cuts " << a.relay->cuts());
  auto by_state = [&] {
    std::string out;
    for (auto& r : d.rows("SELECT sync_state, COUNT(*) FROM node_task_attempts GROUP BY sync_state"))
      out += r + "; ";
    return out;
  };
  BOOST_TEST_REQUIRE(synced, "not every attempt complete; by state: " << by_state() << "; agent 1 stderr:\n"
                                                                      << agents[0].proc->stderr_tail()
                                                                      << "\nagent 2 stderr:\n"
                                                                      << agents[1].proc->stderr_tail());
  for (auto& a : agents) {
    BOOST_TEST(a.relay->cuts() == 1, a.name << ": the relay did not cut a backfill");
    BOOST_TEST(a.relay->connections() >= 2, a.name << ": the agent did not reconnect");
    agent::store st(a.store);
    auto node_id = d.node(a.name).id;
    for (auto& at : st.all_attempts()) {
      // Each line exactly once (the primary key), and exactly the agent's lines.
      auto stored =
        d.rows("SELECT seq, stream, line FROM attempt_logs WHERE attempt_id = '" + at.id + "' ORDER BY seq");
      std::vector<std::string> mine;
      for (auto& l : st.logs(at.id, 0, at.log_count + 1))
        mine.push_back(std::to_string(l.seq) + " | " + l.stream + " | " + l.line);
      BOOST_TEST(stored == mine, boost::test_tools::per_element());
      auto row = d.rows(
        "SELECT CAST(node_id AS TEXT), task_id, state, sync_state, log_count FROM node_task_attempts WHERE id = '"
        + at.id + "'");
      BOOST_REQUIRE_EQUAL(row.size(), 1u);
      BOOST_TEST(row[0]
                 == node_id + " | " + at.task_id + " | " + at.state + " | complete | " + std::to_string(at.log_count));
    }
  }
  auto caps = d.rows("SELECT capabilities FROM nodes WHERE name = 'edge-2'");
  BOOST_REQUIRE_EQUAL(caps.size(), 1u);
  BOOST_TEST(json::parse(caps[0], nullptr, false).value("slots", 0) == 4, caps[0]);
  // SIGTERM: the agent says bye and exits 0; the node goes offline at once.
  agents[0].proc->send_signal(SIGTERM);
  BOOST_TEST(agents[0].proc->wait_exit(15s) == 0, agents[0].proc->stderr_tail());
  auto row = d.wait_offline(agents[0].name, "bye");
  BOOST_TEST(row.status == "offline");
  agents[1].proc->send_signal(SIGTERM);
  BOOST_TEST(agents[1].proc->wait_exit(15s) == 0, agents[1].proc->stderr_tail());
  d.stop();
}

BOOST_AUTO_TEST_CASE(bad_settings_and_records_are_refused_clearly) {
  temp_dir work("agent-cli");
  auto store = work.file("s.db");
  auto key = work.write("k", "nck_0123456789abcdef_x\n");
  auto unknown =
    work.write("u.toml", "coordinator = \"127.0.0.1:1\"\nnode = \"n\"\nkey_file = \"" + key + "\"\ncolour = 1\n");
  auto wrong_type = work.write("t.toml", "coordinator = 7400\n");
  auto syntax = work.write("s.toml", "coordinator = \n");
  auto bad_list = work.write("l.toml", "coordinator = [\"127.0.0.1:1\", 7400]\n");
  auto empty_list = work.write("m.toml", "coordinator = []\n");
  // toml++ 3.3.0 cannot read U+00E9 outside a comment safely (config/toml_guard.hpp).
  auto unsafe = work.write("e.toml", "# caf\xc3\xa9\ncoordinator = \"127.0.0.1:1\"\nnode = \"n\xc3\xa9\"\n");
  auto id = agent_cli(store, {"record", "start", "--task", "t"});
  struct refusal {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  std::vector<refusal> cases{
    {{"connect", "--coordinator", "nohost", "--node", "n", "--key-file", key}, 2, "HOST:PORT"},
    {{"connect", "--coordinator", "127.0.0.1:1", "--node", "n", "--key-file", work.file("missing")},
     1,
     "cannot read the key file"},
    {{"connect", "--coordinator", "127.0.0.1:1", "--node", "n"}, 2, "are required"},
    {{"connect", "--coordinator", "127.0.0.1:1,nohost", "--node", "n", "--key-file", key}, 2, "comma-separated list"},
    {{"connect", "--coordinator", "127.0.0.1:1,", "--node", "n", "--key-file", key}, 2, "comma-separated list"},
    {{"connect", "--config", bad_list}, 1, "coordinator must be a string or a list of strings"},
    {{"connect", "--config", empty_list}, 1, "coordinator is an empty list"},
    {{"connect", "--config", unknown}, 1, "unknown setting 'colour'"},
    {{"connect", "--config", wrong_type}, 1, "coordinator must be a string"},
    {{"connect", "--config", syntax}, 1, syntax + ":"},
    {{"connect", "--config", unsafe}, 1, unsafe + ":3:10: the character U+00E9 is only allowed in comments"},
    {{"connect", "--config", work.file("none.toml")}, 1, "none.toml"},
    {{"record", "finish", "0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e", "--state", "succeeded"}, 1, "no attempt"},
    {{"record", "finish", id, "--state", "running"}, 2, "--state must be"},
    {{"record", "start", "--task", "t", "--state", "weird"}, 1, "unknown attempt state"},
    {{"record", "log", id, "--stream", "stdin"}, 1, "unknown stream"},
    // Says nothing on its own stderr: the child's "cannot run" becomes the attempt's line (below).
    {{"run", "--task", "t", "--", work.file("no-such-program")}, 127, ""},
  };
  for (auto& c : cases) {
    std::vector<std::string> argv{"--store", store};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    child_process p(agent_path, argv, clean_env());
    int code = p.wait_exit(30s);
    BOOST_TEST(code == c.code, c.args[0] << " " << c.args[1] << ": exit " << code << "; stderr: " << p.stderr_text());
    if (!c.message.empty())
      BOOST_TEST(p.stderr_text().find(c.message) != std::string::npos,
                 c.args[0] << " " << c.args[1] << ": no '" << c.message << "' in: " << p.stderr_text());
  }
  // Nothing the refusals touched changed: one attempt (plus the run's, which did start), no lines
  // but the run's own system line.
  agent::store st(store);
  auto all = st.all_attempts();
  BOOST_REQUIRE_EQUAL(all.size(), 2u);
  for (auto& a : all) {
    if (a.id == id) {
      BOOST_TEST(a.state == "running");
      BOOST_TEST(a.log_count == 0);
    } else {
      BOOST_TEST(a.state == "failed");
      BOOST_TEST(a.meta == R"({"exit_code":127})");
      auto lines = st.logs(a.id, 0, 10);
      BOOST_REQUIRE_EQUAL(lines.size(), 2u);
      BOOST_TEST(lines[0].stream == "stderr");
      BOOST_TEST(lines[0].line.find("cannot run " + work.file("no-such-program")) != std::string::npos, lines[0].line);
      BOOST_TEST(lines[1].line == "exit code 127");
    }
  }
}

BOOST_AUTO_TEST_CASE(a_silent_coordinator_is_left_and_reconnected) {
  daemon_under_test d; // heartbeat_interval 200 ms
  d.start();
  temp_dir work("agent-e2e");
  auto n = d.add_node("quiet-1");
  auto key_file = work.write("k", n.key + "\n");
  cutting_relay relay(d.port(), true);
  child_process agent(agent_path,
                      {"--store", work.file("s.db"), "connect", "--coordinator",
                       "127.0.0.1:" + std::to_string(relay.port()), "--node", "quiet-1", "--key-file", key_file,
                       "--backoff-max-ms", "500"},
                      clean_env());
  // After the welcome nothing passes either way: the agent hears no heartbeat ack, gives up on the
  // connection after its silence bound (3 heartbeat intervals + 5 s) and connects again.
  BOOST_TEST(agent.wait_for_stderr("no answer from the coordinator", 30s), agent.stderr_tail());
  BOOST_TEST(eventually([&] { return relay.connections() >= 2; }, 10s));
  d.wait_node(
    "quiet-1", [](const node_row& r) { return r.status == "online" && r.epoch >= 2; }, "online again");
  agent.send_signal(SIGTERM);
  BOOST_TEST(agent.wait_exit(15s) == 0);
  d.stop();
}

BOOST_AUTO_TEST_CASE(connect_and_record_open_a_fresh_store_together) {
  // A unit starts `connect` while a job runner starts `record start`, both on a store that does
  // not exist yet: both must open it (it was "database is locked" about half the time).
  temp_dir work("agent-open");
  auto key = work.write("k", "nck_0123456789abcdef_" + std::string(64, 'a') + "\n");
  int failures = 0;
  for (int round = 0; round < 50; ++round) {
    auto store = work.file("s" + std::to_string(round) + ".db");
    // Nothing listens on port 1: connect opens the store, then retries the coordinator.
    child_process conn(agent_path,
                       {"--store", store, "connect", "--coordinator", "127.0.0.1:1", "--node", "n", "--key-file", key},
                       clean_env());
    child_process rec(agent_path, {"--store", store, "record", "start", "--task", "t"}, clean_env());
    child_process rec2(agent_path, {"--store", store, "record", "start", "--task", "u", "--state", "queued"},
                       clean_env());
    int rc = rec.wait_exit(30s);
    int rc2 = rec2.wait_exit(30s);
    bool started = conn.wait_for_stderr("nodecoord-agent starting", 30s);
    if (!started || rc != 0 || rc2 != 0) {
      ++failures;
      BOOST_TEST_MESSAGE("round " << round << ": record " << rc << " " << rec.stderr_text() << "; record " << rc2 << " "
                                  << rec2.stderr_text() << "; connect " << conn.stderr_tail());
    }
    if (!conn.reaped()) {
      conn.send_signal(SIGTERM);
      BOOST_TEST(conn.wait_exit(15s) == 0, conn.stderr_tail());
    }
    if (rc == 0 && rc2 == 0)
      BOOST_TEST(agent::store(store).all_attempts().size() == 2u);
  }
  BOOST_TEST(failures == 0, failures << " of 50 rounds failed to open the fresh store (messages above)");
}

// Several instances on one PostgreSQL (DESIGN §9): an agent given both addresses is served by one;
// when that instance dies, the agent moves to the other, which takes the node (a newer epoch, its
// own instance as owner). The dead instance's lease is recovered by the live one.
BOOST_AUTO_TEST_CASE(an_agent_with_two_coordinators_moves_to_the_live_one) {
  test_database pg(storage::backend::postgresql); // fails without NODECOORD_TEST_PG_URL
  auto server = with(base_settings(), {{"lease_interval", "\"200ms\""}, {"lease_expiry", "\"1s\""}});
  daemon_under_test a(server, pg.url()), b(server, pg.url());
  a.start();
  b.start();
  temp_dir work("agent-two");
  auto n = a.add_node("roamer-1");
  auto key_file = work.write("k", n.key + "\n");
  auto list = "127.0.0.1:" + std::to_string(a.port()) + ",127.0.0.1:" + std::to_string(b.port());
  child_process agent(agent_path,
                      {"--store", work.file("s.db"), "connect", "--coordinator", list, "--node", "roamer-1",
                       "--key-file", key_file, "--backoff-max-ms", "300"},
                      clean_env());
  auto first = a.wait_node(
    "roamer-1", [](const node_row& r) { return r.status == "online"; }, "online");
  auto owner = [&] {
    auto rows = a.rows("SELECT COALESCE(owner_instance, '') FROM nodes WHERE name = 'roamer-1'");
    return rows.empty() ? std::string() : rows[0];
  };
  auto instance_of = [](daemon_under_test& d) {
    std::ifstream in(d.state_dir() + "/instance_id");
    std::string id;
    std::getline(in, id);
    return id;
  };
  auto id_a = instance_of(a), id_b = instance_of(b);
  BOOST_TEST_REQUIRE(!id_a.empty());
  BOOST_TEST_REQUIRE(id_a != id_b);
  BOOST_TEST_REQUIRE((owner() == id_a || owner() == id_b), "owner " << owner());
  auto& serving = owner() == id_a ? a : b;
  auto& other = owner() == id_a ? b : a;
  auto other_id = owner() == id_a ? id_b : id_a;
  serving.process().send_signal(SIGKILL);
  serving.process().wait_exit(15s);
  auto moved = other.wait_node(
    "roamer-1", [&](const node_row& r) { return r.status == "online" && r.epoch > first.epoch; }, "online again");
  BOOST_TEST(owner() == other_id);
  // The live instance recovers the dead one's lease (lease_expiry 1 s, renewals every 200 ms).
  BOOST_TEST(
    eventually(
      [&] { return other.count("SELECT COUNT(*) FROM instances WHERE recovered_by = '" + other_id + "'") == 1; }, 10s),
    other.process().stderr_tail());
  BOOST_TEST(other.process().wait_for_stderr("recovered an instance whose lease expired", 10s));
  BOOST_TEST(other.node("roamer-1").epoch == moved.epoch, "the recovery left the live session alone");
  agent.send_signal(SIGTERM);
  BOOST_TEST(agent.wait_exit(15s) == 0);
  other.stop();
}
