#define BOOST_TEST_MODULE session_test
#include <boost/test/unit_test.hpp>

// Node sessions under CAF's deterministic scheduler and test multiplexer (simulated time, no
// sockets): handshake, authentication, limits, supersession, disable, backfill through a session.
// Durable acknowledgements and the shutdown sequence are in session_ack_test.cpp, hostile peers in
// session_hostile_test.cpp; one binary.

#include "session_test_support.hpp"

using namespace session_test;

BOOST_FIXTURE_TEST_CASE(handshake_welcome_heartbeat_and_data, session_fixture) {
  auto n = add_node("alpha");
  auto [c, welcome] = login(n);
  BOOST_TEST(welcome["protocol"] == 1);
  BOOST_TEST(welcome["node_id"] == n.id);
  BOOST_TEST(welcome["session"] == 1);
  BOOST_TEST(welcome["heartbeat_interval_ms"] == 10000);
  BOOST_TEST(welcome["server_time"] == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(row(n).status == "online");
  BOOST_TEST(row(n).session_epoch == 1);
  send(c, protocol::encode_heartbeat(41));
  auto f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["type"] == "heartbeat_ack");
  BOOST_TEST(f[0]["seq"] == 41);
  auto a = new_uuid();
  // Data frames (attempt, then its logs, one resent) reach storage; nothing is written back.
  send(c, protocol::encode_attempt({a, "task-1", "running", "", "", ""})
            + protocol::encode_logs({a, {{0, "2026-01-09T12:00:00.000Z", "stdout", "x"}}})
            + protocol::encode_logs(
              {a, {{0, "2026-01-09T12:00:00.000Z", "stdout", "x"}, {1, "2026-01-09T12:00:01.000Z", "stderr", "y"}}}));
  BOOST_TEST(frames(c).empty());
  auto got = t.run(storage::attempt_get{a});
  BOOST_REQUIRE(got.found);
  BOOST_TEST(got.attempt.node_id == n.id);
  BOOST_TEST(got.attempt.log_count == 2);
  std::vector<std::string> stored;
  for (auto& l : t.run(storage::logs_get{a, -1, 10}))
    stored.push_back(std::to_string(l.seq) + " " + l.ts + " " + l.stream + " " + l.line);
  BOOST_TEST(
    stored == (std::vector<std::string>{"0 2026-01-09T12:00:00.000Z stdout x", "1 2026-01-09T12:00:01.000Z stderr y"}),
    boost::test_tools::per_element());
  send(c, protocol::encode_bye("done"));
  BOOST_TEST(closed(c));
  BOOST_TEST(row(n).status == "offline");
  BOOST_TEST(row(n).disconnect_reason == "bye");
  BOOST_TEST(connected().empty());
}

BOOST_FIXTURE_TEST_CASE(authentication_failures_look_the_same, session_fixture) {
  auto n = add_node("alpha");
  auto other = add_node("beta");
  auto k = parse_api_key(n.key);
  std::vector<std::string> bad_keys{
    "nck_" + k->key_id + "_" + std::string(64, '0'), // wrong secret
    "nck_0000000000000000_" + k->secret,             // unknown key id
    "not-a-key",                                     // malformed
    other.key,                                       // another node's key
  };
  std::vector<json> answers;
  for (auto& key : bad_keys) {
    auto c = connect();
    send(c, hello_line(n, key));
    auto f = frames(c);
    BOOST_REQUIRE_EQUAL(f.size(), 1u);
    answers.push_back(f[0]);
    BOOST_TEST(closed(c));
  }
  t.run(storage::node_disable{"alpha"});
  auto c = connect();
  send(c, hello_line(n));
  answers.push_back(frames(c).at(0));
  for (auto& a : answers) {
    BOOST_TEST(a["type"] == "error");
    BOOST_TEST(a["code"] == "auth_failed");
    BOOST_TEST(a == answers[0]); // a prober learns nothing from the answer
  }
  BOOST_TEST(row(n).session_epoch == 0);
  BOOST_TEST(row(n).status == "disabled");
}

BOOST_FIXTURE_TEST_CASE(failures_are_rate_limited_per_peer, session_fixture) {
  auto n = add_node("alpha");
  for (int i = 0; i < 5; ++i) {
    auto c = connect();
    send(c, hello_line(n, "nck_0000000000000000_00"));
    BOOST_TEST(frames(c).at(0)["code"] == "auth_failed");
  }
  // Over the limit, even the right key fails for this peer until the minute is over.
  auto c = connect();
  send(c, hello_line(n));
  BOOST_TEST(frames(c).at(0)["code"] == "auth_failed");
  t.clock.advance(61s);
  auto [c2, welcome] = login(n);
  BOOST_TEST(welcome["session"] == 1);
}

BOOST_FIXTURE_TEST_CASE(first_frame_must_be_hello_of_protocol_1, session_fixture) {
  auto n = add_node("alpha");
  auto c = connect();
  send(c, protocol::encode_heartbeat(1));
  auto f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["code"] == "hello_required");
  BOOST_TEST(closed(c));
  auto c2 = connect();
  send(c2, "not json\n");
  BOOST_TEST(frames(c2).at(0)["code"] == "hello_required");
  BOOST_TEST(closed(c2));
  auto c3 = connect();
  send(c3, protocol::encode_hello({2, n.name, n.key, "future", ""}));
  BOOST_TEST(frames(c3).at(0)["code"] == "unsupported_protocol");
  BOOST_TEST(closed(c3));
  BOOST_TEST(row(n).session_epoch == 0);
}

BOOST_FIXTURE_TEST_CASE(hello_timeout_closes_a_silent_connection, session_fixture) {
  auto c = connect();
  advance(4s);
  BOOST_TEST(!closed(c));
  advance(2s);
  auto f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["code"] == "hello_required");
  BOOST_TEST(closed(c));
}

BOOST_FIXTURE_TEST_CASE(idle_timeout_in_simulated_time, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  // Frames keep the session alive; silence for idle_timeout (30 s) ends it.
  for (int i = 0; i < 4; ++i) {
    advance(20s);
    send(c, protocol::encode_heartbeat(i));
    BOOST_TEST(frames(c).at(0)["type"] == "heartbeat_ack");
  }
  BOOST_TEST(!closed(c));
  advance(29s);
  BOOST_TEST(!closed(c));
  advance(2s);
  auto f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["type"] == "close");
  BOOST_TEST(f[0]["reason"] == "idle_timeout");
  BOOST_TEST(closed(c));
  BOOST_TEST(row(n).status == "offline");
  BOOST_TEST(row(n).disconnect_reason == "idle_timeout");
}

BOOST_FIXTURE_TEST_CASE(bad_frames_cost_budget_then_close, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  send(c, "[1,2]\n");
  auto f = frames(c);
  BOOST_TEST(f.at(0)["code"] == "bad_frame");
  send(c, R"({"type":"teleport"})"
          "\n");
  BOOST_TEST(frames(c).at(0)["code"] == "unknown_type");
  // The connection is kept between errors.
  send(c, protocol::encode_heartbeat(9));
  BOOST_TEST(frames(c).at(0)["type"] == "heartbeat_ack");
  send(c, R"({"type":"heartbeat"})"
          "\n");
  f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 2u);
  BOOST_TEST(f[0]["code"] == "bad_frame");
  BOOST_TEST(f[0]["ref"] == "heartbeat");
  BOOST_TEST(f[1]["type"] == "close");
  BOOST_TEST(f[1]["reason"] == "protocol_errors");
  BOOST_TEST(closed(c));
}

BOOST_FIXTURE_TEST_CASE(oversized_frame_closes_only_that_connection, session_fixture) {
  auto a = add_node("alpha");
  auto b = add_node("beta");
  auto [ca, wa] = login(a);
  auto [cb, wb] = login(b);
  send(ca, std::string(5000, 'x')); // over max_frame_bytes (4096) without a newline
  auto f = frames(ca);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["code"] == "frame_too_large");
  BOOST_TEST(closed(ca));
  send(cb, protocol::encode_heartbeat(1));
  BOOST_TEST(frames(cb).at(0)["type"] == "heartbeat_ack");
}

BOOST_FIXTURE_TEST_CASE(foreign_and_unknown_attempts_and_requests, session_fixture) {
  auto a = add_node("alpha");
  auto b = add_node("beta");
  auto [ca, wa] = login(a);
  auto [cb, wb] = login(b);
  auto x = new_uuid();
  send(ca, protocol::encode_attempt({x, "t", "running", "", "", ""}));
  send(cb, protocol::encode_attempt({x, "t", "failed", "", "", ""}));
  auto f = frames(cb);
  BOOST_TEST(f.at(0)["code"] == "forbidden");
  BOOST_TEST(f.at(0)["ref"] == x);
  send(cb, protocol::encode_logs({x, {{0, "2026-01-09T12:00:00.000Z", "stdout", "x"}}}));
  BOOST_TEST(frames(cb).at(0)["code"] == "forbidden");
  auto y = new_uuid();
  send(ca, protocol::encode_logs({y, {{0, "2026-01-09T12:00:00.000Z", "stdout", "x"}}}));
  BOOST_TEST(frames(ca).at(0)["code"] == "unknown_attempt");
  auto before = t.dump();
  send(ca, protocol::encode_backfill_response({new_uuid(), {{x, true, 0, ""}}}));
  BOOST_TEST(frames(ca).at(0)["code"] == "unknown_request");
  BOOST_TEST(t.dump() == before);
  BOOST_TEST(t.run(storage::attempt_get{x}).attempt.state == "running");
}

BOOST_FIXTURE_TEST_CASE(supersede_old_close_after_new_welcome_does_not_clobber, session_fixture) {
  auto n = add_node("alpha");
  auto [old_conn, w1] = login(n);
  BOOST_TEST(w1["session"] == 1);
  // The node reconnects before the old socket is noticed dead.
  auto [new_conn, w2] = login(n);
  BOOST_TEST(w2["session"] == 2);
  auto f = frames(old_conn);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["type"] == "close");
  BOOST_TEST(f[0]["reason"] == "superseded");
  BOOST_TEST(closed(old_conn));
  // The old session's cleanup arrived after the new welcome: the node is still online, epoch 2.
  auto r = row(n);
  BOOST_TEST(r.status == "online");
  BOOST_TEST(r.session_epoch == 2);
  auto live = connected();
  BOOST_REQUIRE_EQUAL(live.size(), 1u);
  BOOST_TEST(live[0].epoch == 2);
  // The new session works, and its own end does set the node offline.
  send(new_conn, protocol::encode_heartbeat(5));
  BOOST_TEST(frames(new_conn).at(0)["type"] == "heartbeat_ack");
  send(new_conn, protocol::encode_bye(""));
  BOOST_TEST(row(n).status == "offline");
}

BOOST_FIXTURE_TEST_CASE(late_cleanup_of_an_old_epoch_does_not_clobber, session_fixture) {
  auto n = add_node("alpha");
  auto [old_conn, w1] = login(n);
  auto [new_conn, w2] = login(n);
  // The old connection's cleanup is delivered only now (lessons.md: the server noticed the dead
  // socket minutes after the node had reconnected), twice, with a socket-closed reason.
  caf::anon_send(registry, ended_atom::value, session_ref{n.id, int64_t{1}}, std::string("socket_closed"));
  caf::anon_send(registry, ended_atom::value, session_ref{n.id, int64_t{1}}, std::string("idle_timeout"));
  run();
  auto r = row(n);
  BOOST_TEST(r.status == "online");
  BOOST_TEST(r.session_epoch == 2);
  BOOST_TEST(r.disconnect_reason.empty());
  auto live = connected();
  BOOST_REQUIRE_EQUAL(live.size(), 1u);
  BOOST_TEST(live[0].epoch == 2);
  send(new_conn, protocol::encode_heartbeat(1));
  BOOST_TEST(frames(new_conn).at(0)["type"] == "heartbeat_ack");
  // The current epoch's end does apply.
  caf::anon_send(registry, ended_atom::value, session_ref{n.id, int64_t{2}}, std::string("socket_closed"));
  run();
  BOOST_TEST(row(n).status == "offline");
  BOOST_TEST(row(n).disconnect_reason == "socket_closed");
}

BOOST_FIXTURE_TEST_CASE(disable_while_connected_closes_session, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  // An operator disables the node in the database; the registry's poll notices.
  t.clock.advance(1s);
  t.run(storage::node_disable{"alpha"});
  advance(3s); // past the 2 s poll interval
  auto f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 1u);
  BOOST_TEST(f[0]["type"] == "close");
  BOOST_TEST(f[0]["reason"] == "disabled");
  BOOST_TEST(closed(c));
  auto r = row(n);
  BOOST_TEST(r.status == "disabled"); // stays disabled, with the disconnect recorded
  BOOST_TEST(r.disconnect_reason == "disabled");
  auto c2 = connect();
  send(c2, hello_line(n));
  BOOST_TEST(frames(c2).at(0)["code"] == "auth_failed");
}

BOOST_FIXTURE_TEST_CASE(frames_pipelined_before_welcome_are_kept_in_order, session_fixture) {
  auto n = add_node("alpha");
  auto c = connect();
  auto a = new_uuid();
  send(c, hello_line(n) + protocol::encode_attempt({a, "t", "running", "", "", ""}) + protocol::encode_heartbeat(3));
  auto f = frames(c);
  BOOST_REQUIRE_EQUAL(f.size(), 2u);
  BOOST_TEST(f[0]["type"] == "welcome");
  BOOST_TEST(f[1]["type"] == "heartbeat_ack");
  BOOST_TEST(t.run(storage::attempt_get{a}).found);
}

BOOST_FIXTURE_TEST_CASE(last_seen_is_flushed_in_batches, session_fixture) {
  auto a = add_node("alpha");
  auto b = add_node("beta");
  auto [ca, wa] = login(a);
  auto [cb, wb] = login(b);
  auto before = row(a).last_seen_at;
  // Sessions report at most every 5 s (the registry's flush interval).
  t.clock.advance(6s);
  advance(6s);
  send(ca, protocol::encode_heartbeat(1));
  send(cb, protocol::encode_heartbeat(1));
  // Not written per heartbeat: nothing changes before the flush interval.
  BOOST_TEST(row(a).last_seen_at == before);
  advance(5s);
  BOOST_TEST(row(a).last_seen_at == "2026-01-09T12:00:06.000Z");
  BOOST_TEST(row(b).last_seen_at == "2026-01-09T12:00:06.000Z");
}

BOOST_FIXTURE_TEST_CASE(session_ends_received_before_the_registry_stops_are_written, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  BOOST_TEST(row(n).status == "online");
  // The end and the exit are both in the registry's mailbox before it runs: the end is gathered
  // for one batched write, and the exit must not drop it.
  caf::anon_send(registry, ended_atom::value, session_ref{row(n).id, row(n).session_epoch},
                 std::string("socket_closed"));
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  run();
  BOOST_TEST(row(n).status == "offline");
  BOOST_TEST(row(n).disconnect_reason == "socket_closed");
}

BOOST_FIXTURE_TEST_CASE(node_up_and_down_for_every_session_epoch, session_fixture) {
  caf::scoped_actor sub{sys};
  caf::anon_send(registry, subscribe_atom::value, caf::actor{sub});
  run();
  auto n = add_node("alpha");
  auto [c1, w1] = login(n);
  auto [c2, w2] = login(n); // supersedes epoch 1
  send(c2, protocol::encode_bye(""));
  std::vector<std::string> events;
  while (!sub->mailbox().empty())
    sub->receive(
      [&](node_up_atom, const session_ref& who, const caf::actor&) {
        const auto& id = who.node_id;
        auto epoch = who.epoch;
        BOOST_TEST(id == n.id);
        events.push_back("up " + std::to_string(epoch));
      },
      [&](node_down_atom, const session_ref& who, const std::string& reason) {
        const auto& id = who.node_id;
        auto epoch = who.epoch;
        BOOST_TEST(id == n.id);
        events.push_back("down " + std::to_string(epoch) + " " + reason);
      });
  std::vector<std::string> expected{"up 1", "up 2", "down 1 superseded", "down 2 bye"};
  BOOST_TEST(events == expected, boost::test_tools::per_element());
}

BOOST_FIXTURE_TEST_CASE(a_backfill_goes_through_a_real_session, session_fixture) {
  auto n = add_node("alpha");
  auto [c, welcome] = login(n);
  auto a = new_uuid();
  auto b = new_uuid();
  const std::string ts = "2026-01-09T12:00:00.000Z";
  send(c, protocol::encode_attempt({a, "task-a", "succeeded", "", "", ""})
            + protocol::encode_attempt({b, "task-b", "succeeded", "", "", ""})
            + protocol::encode_logs({a, {{0, ts, "stdout", "first"}}}));
  BOOST_TEST(frames(c).empty());
  auto r = order(n);
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  auto f = frames(c);
  BOOST_TEST_REQUIRE(f.size() == 1u);
  BOOST_TEST(f[0]["type"] == "backfill_request");
  BOOST_TEST(f[0]["request_id"] == r.request_id);
  auto ids = f[0]["attempt_ids"].get<std::vector<std::string>>();
  std::sort(ids.begin(), ids.end());
  BOOST_TEST((ids == (a < b ? std::vector<std::string>{a, b} : std::vector<std::string>{b, a})));
  BOOST_TEST(f[0]["logs_after"] == json::object({{a, 0}}));
  // The node resends what is missing, then answers; the evidence check sees the resent line.
  protocol::backfill_response resp{r.request_id, {{a, true, 2, ""}, {b, false, 0, "no such attempt here"}}};
  send(c, protocol::encode_logs({a, {{1, ts, "stdout", "second"}}}) + protocol::encode_backfill_response(resp));
  BOOST_TEST(frames(c).empty(), "an accepted response gets no answer");
  BOOST_TEST(t.run(storage::attempt_get{a}).attempt.sync_state == "complete");
  BOOST_TEST(t.run(storage::attempt_get{b}).attempt.sync_state == "partial");
  // The same response again: unknown_request, with the request id as ref, and no row changes.
  auto before = t.dump();
  send(c, protocol::encode_backfill_response(resp));
  f = frames(c);
  BOOST_TEST_REQUIRE(f.size() == 1u);
  BOOST_TEST(f[0]["code"] == "unknown_request");
  BOOST_TEST(f[0]["ref"] == r.request_id);
  BOOST_TEST(t.dump() == before);
  // A request in flight when the node says bye goes back to partial.
  auto again = order(n);
  BOOST_TEST_REQUIRE(again.status == order_status::requested);
  BOOST_TEST(frames(c).size() == 1u);
  BOOST_TEST(t.run(storage::attempt_get{b}).attempt.sync_state == "pending_backfill");
  send(c, protocol::encode_bye("maintenance"));
  BOOST_TEST(t.run(storage::attempt_get{b}).attempt.sync_state == "partial");
  auto jobs = t.run(storage::job_query{});
  auto j = std::find_if(jobs.begin(), jobs.end(), [&](auto& x) { return x.id == again.request_id; });
  BOOST_TEST_REQUIRE((j != jobs.end()));
  BOOST_TEST(j->status == "cancelled");
}

BOOST_FIXTURE_TEST_CASE(a_newer_session_gets_a_fresh_request_and_the_old_answer_is_refused, session_fixture) {
  auto n = add_node("alpha");
  auto [c1, w1] = login(n);
  auto a = new_uuid();
  send(c1, protocol::encode_attempt({a, "task-a", "succeeded", "", "", ""}));
  auto r = order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  BOOST_TEST(frames(c1).size() == 1u);
  // The node reconnects before the old socket is noticed dead.
  auto [c2, w2] = login(n);
  BOOST_TEST(w2["session"] == 2);
  auto f1 = frames(c1);
  BOOST_TEST_REQUIRE(f1.size() == 1u);
  BOOST_TEST(f1[0]["reason"] == "superseded");
  BOOST_TEST(t.run(storage::attempt_get{a}).attempt.sync_state == "partial");
  // Its answer on the new connection names the old request: refused, nothing changes.
  auto before = t.dump();
  send(c2, protocol::encode_backfill_response({r.request_id, {{a, true, 0, ""}}}));
  auto f2 = frames(c2);
  BOOST_TEST_REQUIRE(f2.size() == 1u);
  BOOST_TEST(f2[0]["code"] == "unknown_request");
  BOOST_TEST(t.dump() == before);
}
