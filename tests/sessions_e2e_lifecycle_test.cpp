#include <boost/test/unit_test.hpp>

// Sessions end to end over their lifetime: ownership of attempts and requests, supersession,
// idle timeout, disable, max_connections, a thousand sessions, SIGTERM.

#include "sessions_e2e_support.hpp"

using namespace sessions_e2e;

// --- ownership and references ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(foreign_attempts_unknown_attempts_and_unknown_requests_change_nothing) {
  daemon_under_test d(with(base_settings(), {{"max_protocol_errors", "10"}}));
  auto alpha = d.add_node("alpha");
  auto beta = d.add_node("beta");
  d.start();

  auto ca = connect_node(d, alpha, 1);
  auto cb = connect_node(d, beta, 1);
  d.wait_reconnect_trigger(alpha.id); // it must not mark alpha's attempt after the snapshot below
  const auto a = new_uuid();
  ca.send_line(attempt_frame(a, "task-a", "running", "2026-01-09T11:40:00.000Z"));
  ca.send_line(logs_frame(a, 0, 1));
  // alpha's data is stored before beta touches it.
  BOOST_TEST_REQUIRE(
    eventually([&] { return d.count("SELECT log_count FROM node_task_attempts WHERE id = '" + a + "'") == 2; }),
    d.process().stderr_tail());

  const std::string tables[] = {
    "SELECT * FROM node_task_attempts ORDER BY id",
    "SELECT * FROM attempt_logs ORDER BY attempt_id, seq",
    "SELECT * FROM jobs ORDER BY id",
  };
  std::vector<std::vector<std::string>> before;
  for (auto& t : tables)
    before.push_back(d.rows(t));

  // beta writes alpha's attempt: forbidden, for the attempt and for its logs (new and old seqs).
  cb.send_line(attempt_frame(a, "task-b", "succeeded", "", "2026-01-09T12:00:00.000Z"));
  auto f = cb.read_frame(frame_bound);
  require_error(f, "forbidden");
  BOOST_TEST(f.value("ref", "") == a, f.dump());
  cb.send_line(logs_frame(a, 0, 3, " (from beta)"));
  f = cb.read_frame(frame_bound);
  require_error(f, "forbidden");
  BOOST_TEST(f.value("ref", "") == a, f.dump());

  // Logs for an attempt nobody reported.
  const auto z = new_uuid();
  cb.send_line(logs_frame(z, 0, 0));
  f = cb.read_frame(frame_bound);
  require_error(f, "unknown_attempt");
  BOOST_TEST(f.value("ref", "") == z, f.dump());

  // A backfill_response for a request that was never made.
  protocol::backfill_response resp;
  resp.request_id = new_uuid();
  resp.results.push_back({a, true, 2, ""});
  cb.send_line(protocol::encode_backfill_response(resp));
  f = cb.read_frame(frame_bound);
  require_error(f, "unknown_request");
  BOOST_TEST(f.value("ref", "") == resp.request_id, f.dump());
  // alpha's own response to an unknown request is refused the same way.
  ca.send_line(protocol::encode_backfill_response(resp));
  f = ca.read_frame(frame_bound);
  require_error(f, "unknown_request");

  // Each error was sent after its frame was handled: nothing changed.
  cb.heartbeat_roundtrip(1);
  ca.heartbeat_roundtrip(1);
  for (std::size_t i = 0; i < std::size(tables); ++i)
    BOOST_TEST(d.rows(tables[i]) == before[i], boost::test_tools::per_element());
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE id = '" + z + "'") == 0);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM attempt_logs WHERE attempt_id = '" + z + "'") == 0);

  // Both connections are still open and usable.
  cb.send_line(protocol::encode_bye(""));
  require_closed(cb);
  d.wait_offline("beta", "bye");
  BOOST_TEST(d.node("alpha").status == "online");
  d.stop();
}

// --- supersede ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_second_hello_supersedes_the_first_session_without_taking_the_node_offline) {
  daemon_under_test d;
  auto alpha = d.add_node("alpha");
  auto gamma = d.add_node("gamma");
  d.start();

  auto first = connect_node(d, alpha, 1);
  first.heartbeat_roundtrip(0);
  auto second = connect_node(d, alpha, 2);
  require_close(first.read_frame(frame_bound), "superseded");
  require_closed(first);

  // A barrier: the first session reported its end to the registry before its socket closed; a
  // later hello goes through the registry and storage after that report, so once gamma is
  // welcomed, anything the old session's end would have written is committed.
  auto barrier = connect_node(d, gamma, 1);
  auto r = d.node("alpha");
  BOOST_TEST(r.status == "online", r);
  BOOST_TEST(r.epoch == 2, r);
  BOOST_TEST(r.disconnect_reason.empty(), r);
  BOOST_TEST(r.disconnected_at.empty(), r);

  // Our end of the old socket goes away too: still nothing changes for the new session.
  first.close();
  second.heartbeat_roundtrip(1);
  auto barrier2 = node_client(d.port());
  require_welcome(barrier2.hello(gamma.name, gamma.key), gamma.id, 2);
  r = d.node("alpha");
  BOOST_TEST(r.status == "online", r);
  BOOST_TEST(r.epoch == 2, r);

  // The registry still knows the second session: its bye takes the node offline.
  second.send_line(protocol::encode_bye(""));
  require_closed(second);
  r = d.wait_offline("alpha", "bye");
  BOOST_TEST(r.epoch == 2, r);
  d.stop();
}

BOOST_AUTO_TEST_CASE(concurrent_hellos_of_one_node_each_get_a_session_and_the_newest_wins) {
  // A node that reconnects several times before the coordinator noticed (or several agents
  // misconfigured with one key): every hello with the right key is welcomed with its own epoch,
  // each newer session supersedes the older, and the newest one stays.
  daemon_under_test d;
  auto alpha = d.add_node("alpha");
  d.start();

  constexpr int n = 8;
  std::vector<node_client> cs;
  for (int i = 0; i < n; ++i)
    cs.emplace_back(d.port());
  protocol::hello h{1, alpha.name, alpha.key, "sessions_e2e_test/1", ""};
  for (auto& c : cs)
    c.send_raw(protocol::encode_hello(h)); // back to back: the registry sees them together
  std::vector<json> replies;
  std::set<int64_t> sessions;
  for (auto& c : cs) {
    replies.push_back(c.read_frame(frame_bound));
    if (replies.back().value("type", "") == "welcome")
      sessions.insert(replies.back().value("session", int64_t{-1}));
  }
  std::string all;
  for (auto& r : replies)
    all += "\n  " + r.dump();
  BOOST_TEST(sessions.size() == std::size_t(n),
             n << " hellos with the right key, " << sessions.size() << " distinct welcomes:" << all
               << "\ndaemon:" << lines_with(d.process().stderr_text(), "session refused"));
  int64_t newest = sessions.empty() ? -1 : *sessions.rbegin();
  for (int i = 0; i < n; ++i) {
    BOOST_TEST_CONTEXT("connection " << i << ": " << replies[i].dump()) {
      if (replies[i].value("type", "") != "welcome") {
        require_closed(cs[i]);
        continue;
      }
      if (replies[i].value("session", int64_t{-1}) == newest) {
        cs[i].heartbeat_roundtrip(0);
      } else {
        require_close(cs[i].read_frame(frame_bound), "superseded");
        require_closed(cs[i]);
      }
    }
  }
  auto r = d.node("alpha");
  BOOST_TEST(r.status == "online", r);
  BOOST_TEST(r.epoch == newest, r);
  d.stop();
}

// --- idle timeout ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_silent_node_is_closed_after_idle_timeout_and_a_talking_one_is_not) {
  daemon_under_test d(with(base_settings(), {{"idle_timeout", "\"1s\""}, {"heartbeat_interval", "\"200ms\""}}));
  auto alpha = d.add_node("alpha");
  auto beta = d.add_node("beta");
  d.start();

  auto silent = connect_node(d, alpha, 1);
  auto talking = connect_node(d, beta, 1);
  // beta heartbeats while we wait (bounded) for alpha's close.
  std::optional<json> f;
  int64_t seq = 0;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!f && std::chrono::steady_clock::now() < deadline) {
    talking.heartbeat_roundtrip(seq++);
    f = silent.try_read_frame(200ms);
    if (!f && silent.peer_closed())
      break;
  }
  BOOST_TEST_REQUIRE(f.has_value(), "no close{idle_timeout} for the silent node within 20 s"
                                      << (silent.peer_closed() ? " (the socket closed without it)" : ""));
  require_close(*f, "idle_timeout");
  require_closed(silent);
  auto r = d.wait_offline("alpha", "idle_timeout");
  BOOST_TEST(r.epoch == 1, r);

  talking.heartbeat_roundtrip(seq++);
  auto b = d.node("beta");
  BOOST_TEST(b.status == "online", b);
  d.stop();
}

// --- disable -----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(disabling_a_connected_node_closes_its_session) {
  daemon_under_test d;
  auto alpha = d.add_node("alpha");
  d.start();

  auto c = connect_node(d, alpha, 1);
  c.heartbeat_roundtrip(0);
  d.disable_node("alpha");
  // The registry looks for disabled nodes every 2 s.
  require_close(c.read_frame(10s), "disabled");
  require_closed(c);
  auto r = d.wait_node(
    "alpha", [](const node_row& row) { return row.disconnect_reason == "disabled"; }, "disconnect_reason disabled");
  BOOST_TEST(r.status == "disabled", r);
  BOOST_TEST(!r.disabled_at.empty(), r);

  node_client again(d.port());
  require_error(again.hello(alpha.name, alpha.key), "auth_failed");
  require_closed(again);
  r = d.node("alpha");
  BOOST_TEST(r.status == "disabled", r);
  BOOST_TEST(r.epoch == 1, r);
  d.stop();
}

// --- max_connections ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(max_connections_refuses_the_sixth_and_frees_a_slot_when_one_closes) {
  daemon_under_test d(with(base_settings(), {{"max_connections", "5"}, {"hello_timeout", "\"60s\""}}));
  std::vector<node_info> nodes;
  for (int i = 0; i < 5; ++i)
    nodes.push_back(d.add_node("n" + std::to_string(i)));
  d.start();

  std::vector<node_client> open;
  for (int i = 0; i < 5; ++i)
    open.emplace_back(d.port());
  node_client sixth(d.port());
  BOOST_TEST_REQUIRE(sixth.wait_closed(close_bound), "the 6th connection was not closed by the server");
  BOOST_TEST(sixth.buffered().empty(), sixth.buffered());
  // The refusal is logged (after the close, so wait for it).
  BOOST_TEST(d.process().wait_for_stderr("max_connections reached", close_bound), d.process().stderr_tail());

  // The five are served.
  for (int i = 0; i < 5; ++i)
    require_welcome(open[i].hello(nodes[i].name, nodes[i].key), nodes[i].id, 1);

  // Closing one frees a slot. The acceptor learns of the close asynchronously, so a connection
  // made right after it may still be refused: retry (bounded) until one is accepted.
  open[0].close();
  std::optional<json> welcome;
  int refused = 0;
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (!welcome && std::chrono::steady_clock::now() < deadline) {
    node_client c(d.port());
    protocol::hello h{1, nodes[0].name, nodes[0].key, "sessions_e2e_test/1", ""};
    c.send_until_closed(protocol::encode_hello(h), frame_bound);
    auto f = c.try_read_frame(frame_bound);
    if (f) {
      require_welcome(*f, nodes[0].id, 2);
      welcome = f;
      c.heartbeat_roundtrip(0);
      open[0] = std::move(c);
    } else {
      BOOST_TEST_REQUIRE(c.peer_closed(), "no answer to hello within the bound, and not closed");
      ++refused;
    }
  }
  BOOST_TEST_REQUIRE(welcome.has_value(),
                     "no connection was accepted after closing one of five (" << refused << " refused)");
  BOOST_TEST_MESSAGE("refused before the slot was free: " << refused);
  // Still five: another one is refused.
  node_client extra(d.port());
  BOOST_TEST(extra.wait_closed(close_bound), "a 6th connection was accepted after the slot was reused");
  d.stop();
}

// --- many sessions -----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_thousand_concurrent_sessions) {
  constexpr std::size_t n = 1000;
  auto limit = raise_nofile();
  BOOST_TEST_REQUIRE(limit >= n + 200, "RLIMIT_NOFILE hard limit " << limit << " is too low for " << n << " sockets");
  daemon_under_test d(with(base_settings(), {{"max_connections", "2000"},
                                             {"hello_timeout", "\"60s\""},
                                             {"heartbeat_interval", "\"30s\""},
                                             {"idle_timeout", "\"120s\""}}));
  auto nodes = provision_directly(d, n);
  d.start();

  std::vector<node_client> clients;
  clients.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    clients.emplace_back(d.port());
  for (std::size_t i = 0; i < n; ++i) {
    protocol::hello h{1, nodes[i].name, nodes[i].key, "sessions_e2e_test/1", ""};
    clients[i].send_raw(protocol::encode_hello(h));
  }

  // Read every welcome, poll()-driven over all sockets, bounded overall.
  std::vector<std::optional<json>> replies(n);
  std::size_t answered = 0;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  std::vector<pollfd> fds;
  std::vector<std::size_t> index;
  while (answered < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      break;
    fds.clear();
    index.clear();
    for (std::size_t i = 0; i < n; ++i)
      if (!replies[i]) {
        fds.push_back({clients[i].fd(), POLLIN, 0});
        index.push_back(i);
      }
    int ready = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()) + 1);
    if (ready <= 0)
      continue;
    for (std::size_t k = 0; k < fds.size(); ++k) {
      if (!fds[k].revents)
        continue;
      auto i = index[k];
      bool open = clients[i].read_available();
      if (auto f = clients[i].take_frame()) {
        replies[i] = std::move(f);
        ++answered;
      } else if (!open) {
        BOOST_FAIL(nodes[i].name << ": the connection closed without an answer to hello; stderr:\n"
                                 << d.process().stderr_tail());
      }
    }
  }
  BOOST_TEST_REQUIRE(answered == n, "only " << answered << " of " << n << " hellos were answered within 60 s");
  std::size_t welcomes = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto& f = *replies[i];
    bool ok =
      f.value("type", "") == "welcome" && f.value("session", int64_t{-1}) == 1 && f.value("node_id", "") == nodes[i].id;
    welcomes += ok;
    if (!ok)
      BOOST_TEST_MESSAGE(nodes[i].name << ": " << f.dump());
  }
  BOOST_TEST_REQUIRE(welcomes == n, welcomes << " of " << n << " got the right welcome");

  // Every welcome follows the committed epoch: all rows are online now.
  BOOST_TEST(d.count("SELECT COUNT(*) FROM nodes WHERE status = 'online' AND session_epoch = 1") == int64_t(n));

  // They are all live sessions: a sample heartbeats.
  for (std::size_t i = 0; i < n; i += 97)
    clients[i].heartbeat_roundtrip(int64_t(i));

  for (auto& c : clients)
    c.close();
  bool all_offline =
    eventually([&] { return d.count("SELECT COUNT(*) FROM nodes WHERE status = 'online'") == 0; }, 60s);
  BOOST_TEST_REQUIRE(all_offline, d.count("SELECT COUNT(*) FROM nodes WHERE status = 'online'")
                                    << " nodes still online 60 s after all sockets closed");
  BOOST_TEST(d.count("SELECT COUNT(*) FROM nodes WHERE status = 'offline' AND session_epoch = 1 "
                     "AND disconnected_at IS NOT NULL AND disconnect_reason = 'socket_closed'")
             == int64_t(n));
  d.stop();
}

// --- shutdown ----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(sigterm_closes_every_session_with_shutdown_and_takes_the_nodes_offline) {
  daemon_under_test d;
  std::vector<node_info> nodes;
  for (auto* name : {"alpha", "beta", "gamma"})
    nodes.push_back(d.add_node(name));
  d.start();

  std::vector<node_client> clients;
  for (auto& n : nodes)
    clients.push_back(connect_node(d, n, 1));
  node_client anonymous(d.port()); // connected, no hello yet
  clients[0].heartbeat_roundtrip(0);

  d.process().send_signal(SIGTERM);
  for (std::size_t i = 0; i < clients.size(); ++i) {
    BOOST_TEST_CONTEXT(nodes[i].name) {
      require_close(clients[i].read_frame(frame_bound), "shutdown");
      require_closed(clients[i]);
    }
  }
  BOOST_TEST(anonymous.wait_closed(close_bound), "the connection without hello was not closed");
  int code = d.process().wait_exit(exit_bound);
  BOOST_TEST(code == 0, "exit code " << code << "; stderr:\n" << d.process().stderr_tail());

  for (auto& n : nodes) {
    auto r = d.node(n.name);
    BOOST_TEST(r.status == "offline", n.name << ": " << r);
    BOOST_TEST(r.disconnect_reason == "shutdown", n.name << ": " << r);
    BOOST_TEST(r.epoch == 1, n.name << ": " << r);
  }
}
