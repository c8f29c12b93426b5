#include <boost/test/unit_test.hpp>

// Durable acknowledgement (issue 14): an ack waits for the commit of every frame before it, an
// error answer comes first, a crash before the commit leaves everything with the agent; the
// orderly shutdown commits what was accepted.

#include "session_test_support.hpp"

using namespace session_test;

// DESIGN §2: heartbeat_ack{seq} means every frame before the heartbeat is committed. While the
// database does not commit, acks wait (the node keeps everything and resends after a reconnect),
// the node hears ack_delayed instead of silence, and the session is not closed for idleness.
BOOST_AUTO_TEST_CASE(heartbeat_ack_waits_for_the_commit_of_the_frames_before_it) {
  held_commits held;
  session_fixture f(100, nullptr, held.hook());
  auto n = f.add_node("alpha");
  auto [c, w] = f.login(n);
  f.send(c, protocol::encode_heartbeat(1));
  BOOST_TEST(types_of(f.frames(c)) == strings{"ack:1"}, "nothing outstanding: answered at once");
  *held.hold = true;
  auto a = new_uuid();
  const std::string ts = "2026-01-09T12:00:00.000Z";
  f.send(c, protocol::encode_attempt({a, "task-a", "running", "", "", ""})
              + protocol::encode_logs({a, {{0, ts, "stdout", "x"}, {1, ts, "stdout", "y"}}})
              + protocol::encode_heartbeat(2));
  BOOST_TEST(f.frames(c).empty(), "no ack before the frames before it are committed");
  BOOST_TEST(!f.t.run(storage::attempt_get{a}).found);
  // A heartbeat interval later the node hears why, instead of silence; no protocol error.
  f.advance(10s);
  f.send(c, protocol::encode_heartbeat(3));
  auto notice = f.frames(c);
  BOOST_TEST_REQUIRE(types_of(notice) == strings{"error:ack_delayed"}, "frames: " << json(notice).dump());
  BOOST_TEST(notice[0]["ref"] == "heartbeat");
  f.advance(5s);
  f.send(c, protocol::encode_heartbeat(4));
  BOOST_TEST(f.frames(c).empty(), "at most one notice per heartbeat interval");
  // Well past idle_timeout (30 s) of waiting: the session stays, its heartbeats keep coming.
  for (int i = 5; i < 9; ++i) {
    f.advance(10s);
    f.send(c, protocol::encode_heartbeat(i));
    BOOST_TEST(types_of(f.frames(c)) == strings{"error:ack_delayed"});
  }
  BOOST_TEST(!f.closed(c));
  BOOST_TEST(f.row(n).status == "online");
  // The database commits again: every held ack, in order, and the rows are there.
  *held.hold = false;
  f.advance(2s); // storage's reconnect backoff (at most 1 s here)
  BOOST_TEST(types_of(f.frames(c)) == (strings{"ack:2", "ack:3", "ack:4", "ack:5", "ack:6", "ack:7", "ack:8"}));
  auto got = f.t.run(storage::attempt_get{a});
  BOOST_TEST_REQUIRE(got.found);
  BOOST_TEST(got.attempt.log_count == 2);
  BOOST_TEST(stored_lines(f.t, a) == (strings{"0 x", "1 y"}), boost::test_tools::per_element());
  // A backfill_response is acknowledged only once it is applied.
  auto r = f.order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  BOOST_TEST(types_of(f.frames(c)) == strings{"backfill_request"});
  *held.hold = true;
  f.send(c, protocol::encode_backfill_response({r.request_id, {{a, true, 2, ""}}}) + protocol::encode_heartbeat(9));
  BOOST_TEST(f.frames(c).empty());
  BOOST_TEST(f.t.run(storage::attempt_get{a}).attempt.sync_state == "pending_backfill");
  *held.hold = false;
  f.advance(2s);
  BOOST_TEST(types_of(f.frames(c)) == strings{"ack:9"});
  BOOST_TEST(f.t.run(storage::attempt_get{a}).attempt.sync_state == "complete");
}

// "…or has been answered with an error frame": the error comes first, then the ack.
BOOST_FIXTURE_TEST_CASE(an_error_answer_comes_before_the_ack, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  auto ghost = new_uuid();
  send(c, protocol::encode_logs({ghost, {{0, "2026-01-09T12:00:00.000Z", "stdout", "x"}}})
            + protocol::encode_heartbeat(5));
  auto f = frames(c);
  BOOST_TEST(types_of(f) == (strings{"error:unknown_attempt", "ack:5"}));
  BOOST_TEST(f.at(0)["ref"] == ghost);
}

// The node began a session elsewhere (another instance, DESIGN §9): this session's next write
// fails its epoch fence. Nothing of it is stored, the session is closed as superseded and no ack
// covers the refused frame (the agent keeps it and sends it to the newer session).
BOOST_FIXTURE_TEST_CASE(a_write_refused_by_the_epoch_fence_closes_the_session_without_an_ack, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  auto a = new_uuid();
  const std::string ts = "2026-01-09T12:00:00.000Z";
  send(c, protocol::encode_attempt({a, "task-a", "running", "", "", ""}) + protocol::encode_heartbeat(1));
  BOOST_TEST(types_of(frames(c)) == strings{"ack:1"});
  auto fenced_before = metrics::daemon().fenced_writes.load();
  t.exec_sql("UPDATE nodes SET session_epoch = session_epoch + 1 WHERE name = 'alpha'");
  send(c, protocol::encode_logs({a, {{0, ts, "stdout", "x"}}}) + protocol::encode_heartbeat(2));
  auto f = frames(c);
  BOOST_TEST_REQUIRE(types_of(f) == strings{"close"}, "frames: " << json(f).dump());
  BOOST_TEST(f[0]["reason"] == "superseded");
  BOOST_TEST(closed(c));
  BOOST_TEST(stored_lines(t, a).empty());
  BOOST_TEST(metrics::daemon().fenced_writes.load() == fenced_before + 1);
}

// The same for a backfill_response: nothing applied, and the request's rows go back to partial at
// once (the tracker has let go of the request), so the newer session is asked again.
BOOST_FIXTURE_TEST_CASE(a_response_refused_by_the_epoch_fence_releases_its_rows, session_fixture) {
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  auto a = new_uuid();
  send(c, protocol::encode_attempt({a, "task-a", "succeeded", "", "", ""}) + protocol::encode_heartbeat(1));
  BOOST_TEST(types_of(frames(c)) == strings{"ack:1"});
  auto r = order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  BOOST_TEST(types_of(frames(c)) == strings{"backfill_request"});
  t.exec_sql("UPDATE nodes SET session_epoch = session_epoch + 1 WHERE name = 'alpha'");
  send(c, protocol::encode_backfill_response({r.request_id, {{a, true, 0, ""}}}) + protocol::encode_heartbeat(2));
  auto f = frames(c);
  BOOST_TEST_REQUIRE(types_of(f) == strings{"close"}, "frames: " << json(f).dump());
  BOOST_TEST(f[0]["reason"] == "superseded");
  advance(1s); // the tracker's coalesced reset
  auto got = t.run(storage::attempt_get{a}).attempt;
  BOOST_TEST(got.sync_state == "partial");
  BOOST_TEST(got.backfill_failures == 0);
}

// The database refuses one frame (a statement error of that frame alone): the node hears
// `refused` naming the attempt, once, before the ack of the heartbeat after it; the frames around
// it are stored. Not `unavailable`: resending the same values would fail forever (issue 15).
BOOST_FIXTURE_TEST_CASE(a_frame_the_database_refuses_is_answered_refused_before_the_ack, session_fixture) {
  t.exec_sql("CREATE TRIGGER refuse_poison BEFORE INSERT ON attempt_logs WHEN NEW.line = 'poison' "
             "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
  auto n = add_node("alpha");
  auto [c, w] = login(n);
  auto a = new_uuid();
  const std::string ts = "2026-01-09T12:00:00.000Z";
  send(c, protocol::encode_attempt({a, "task-a", "running", "", "", ""})
            + protocol::encode_logs({a, {{0, ts, "stdout", "fine"}}})
            + protocol::encode_logs({a, {{1, ts, "stdout", "poison"}}})
            + protocol::encode_logs({a, {{2, ts, "stdout", "also fine"}}}) + protocol::encode_heartbeat(3));
  auto f = frames(c);
  BOOST_TEST(types_of(f) == (strings{"error:refused", "ack:3"}));
  BOOST_TEST(f.at(0)["ref"] == a);
  BOOST_TEST(f.at(0)["message"].get<std::string>().find("refused by the test") != std::string::npos, f.at(0).dump());
  strings stored;
  for (auto& l : t.run(storage::logs_get{a, -1, 10}))
    stored.push_back(std::to_string(l.seq) + " " + l.line);
  BOOST_TEST(stored == (strings{"0 fine", "2 also fine"}), boost::test_tools::per_element());
  BOOST_TEST(!closed(c), "one refusal is within max_protocol_errors");
}

// The failure issue 14 found: the daemon acknowledged frames it had not committed, and died.
// Now a crash before the commit leaves the agent holding everything, and it sends it again; an
// attempt completed while running is reopened by its final frame and verified again.
BOOST_AUTO_TEST_CASE(a_crash_before_the_commit_leaves_everything_with_the_agent) {
  auto db = std::make_shared<test::test_database>(storage::backend::sqlite);
  test::temp_dir dir("session-agent");
  agent::store st(dir.file("agent.db"));
  auto a = st.start_attempt("build-1");
  st.append_logs(a, "stdout", {"one", "two", "three"});
  held_commits held;
  session_fixture::node n;
  {
    session_fixture f(100, db, held.hook());
    n = f.add_node("alpha");
    agent::coordinator_link link(st, {n.name, n.key});
    auto c = f.connect();
    converse(f, c, link, link.start());
    BOOST_TEST_REQUIRE(link.welcomed());
    *held.hold = true; // the commit will not happen: the daemon dies first
    std::string out;
    link.poll_store(out);
    f.send(c, out);
    BOOST_TEST(f.frames(c).empty(), "no ack for frames that are not committed");
    BOOST_TEST(st.attempt(a)->delivered_logs == 0);
    BOOST_TEST(st.attempt(a)->announced_version == 0);
  } // SIGKILL: the coordinator is gone, nothing of the frames was committed
  BOOST_TEST(!db->run(storage::attempt_get{a}).found);
  {
    session_fixture f(100, db); // restarted on the same database
    agent::coordinator_link link(st, {n.name, n.key});
    auto c = agent_connects(f, link);
    auto row = f.t.run(storage::attempt_get{a});
    BOOST_TEST_REQUIRE(row.found, "the agent sent it again");
    BOOST_TEST(row.attempt.log_count == 3);
    BOOST_TEST(st.attempt(a)->delivered_logs == 3, "confirmed once committed");
    // Completed while running: provisional.
    BOOST_TEST_REQUIRE(f.order(n).status == order_status::requested);
    converse(f, c, link);
    row = f.t.run(storage::attempt_get{a});
    BOOST_TEST(row.attempt.sync_state == "complete");
    BOOST_TEST(row.attempt.state == "running");
    // The final frame alone (no new line) reopens it; the next backfill verifies it again.
    st.set_state(a, "failed", R"({"exit_code":2})");
    std::string out;
    link.poll_store(out);
    converse(f, c, link, out);
    row = f.t.run(storage::attempt_get{a});
    BOOST_TEST(row.attempt.state == "failed");
    BOOST_TEST(row.attempt.sync_state == "partial", "a change reopens a complete attempt");
    BOOST_TEST_REQUIRE(f.order(n).status == order_status::requested);
    converse(f, c, link);
    row = f.t.run(storage::attempt_get{a});
    BOOST_TEST(row.attempt.sync_state == "complete");
    BOOST_TEST(row.attempt.finished_at == st.attempt(a)->finished_at);
    auto lines = f.t.run(storage::logs_get{a, -1, 10});
    strings texts;
    for (auto& l : lines)
      texts.push_back(std::to_string(l.seq) + " " + l.stream + " " + l.line);
    BOOST_TEST(texts == (strings{"0 stdout one", "1 stdout two", "2 stdout three"}), boost::test_tools::per_element());
    auto held_by_agent = st.attempt(a);
    BOOST_TEST(held_by_agent->announced_version == held_by_agent->version);
  }
}

// The orderly shutdown (actors/shutdown.hpp, what the supervisor runs on SIGTERM): sessions are
// closed with close{shutdown}, the node goes offline with reason shutdown, the request in flight
// is reset (its attempt partial again, no failure counted, its job cancelled), and a frame that
// was accepted but not committed yet is committed before the sequence reports done.
BOOST_AUTO_TEST_CASE(the_shutdown_sequence_commits_what_was_accepted_and_resets_requests) {
  held_commits held;
  session_fixture f(100, nullptr, held.hook());
  auto n = f.add_node("alpha");
  auto [c, w] = f.login(n);
  auto a = new_uuid();
  f.send(c, protocol::encode_attempt({a, "t", "running", "", "", ""}) + protocol::encode_heartbeat(1));
  BOOST_TEST_REQUIRE(types_of(f.frames(c)) == strings{"ack:1"});
  auto ordered = f.order(n, {a});
  BOOST_TEST_REQUIRE(ordered.status == order_status::requested);
  BOOST_TEST_REQUIRE(types_of(f.frames(c)) == strings{"backfill_request"});
  *held.hold = true; // the next frame is accepted, not committed
  auto b = new_uuid();
  f.send(c, protocol::encode_attempt({b, "t", "running", "", "", ""}));
  BOOST_TEST_REQUIRE(!f.t.run(storage::attempt_get{b}).found);

  std::optional<shutdown_report> report;
  auto runner = f.start_shutdown(report);
  f.run();
  BOOST_TEST(!report.has_value(), "done before storage committed what it accepted");
  BOOST_TEST(types_of(f.frames(c)) == strings{"close"});
  *held.hold = false;
  f.advance(5s); // storage's reconnect backoff, then the drain
  BOOST_TEST_REQUIRE(report.has_value());
  BOOST_TEST(report->sessions_closed == 1u);
  // The session's end (stage 2) already reset its request, before the tracker's own stage ran.
  BOOST_TEST(report->requests_reset == 0u);
  BOOST_TEST(report->drained);
  BOOST_TEST(f.t.run(storage::attempt_get{b}).found, "the accepted frame is committed");
  auto ra = f.t.run(storage::attempt_get{a}).attempt;
  BOOST_TEST(ra.sync_state == "partial");
  BOOST_TEST(ra.backfill_failures == 0); // a shutdown is nobody's failure
  auto job = f.t.run(storage::job_query{{}, {"backfill"}, "", "", "", 10});
  BOOST_TEST_REQUIRE(job.size() == 1u);
  BOOST_TEST(job[0].status == "cancelled");
  BOOST_TEST(f.row(n).status == "offline");
  BOOST_TEST(f.row(n).disconnect_reason == "shutdown");
  (void)runner;
}

// A stage that is gone does not stop the sequence: storage still drains.
BOOST_AUTO_TEST_CASE(the_shutdown_sequence_goes_on_past_a_stage_that_is_gone) {
  session_fixture f;
  auto n = f.add_node("alpha");
  auto [c, w] = f.login(n);
  caf::anon_send_exit(f.registry, caf::exit_reason::kill);
  f.run();
  std::optional<shutdown_report> report;
  auto runner = f.start_shutdown(report);
  f.run();
  BOOST_TEST_REQUIRE(report.has_value());
  BOOST_TEST(report->sessions_closed == 1u);
  BOOST_TEST(report->drained);
  (void)runner;
}
