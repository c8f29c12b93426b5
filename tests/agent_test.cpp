// nodecoord-agent without sockets: its store (numbering, states, confirmation, concurrent
// writers) and its link (what it sends live, how it answers backfill requests, what a
// heartbeat ack confirms, what an `unavailable` undoes). Frames are checked by decoding them with
// the coordinator's own decoder.
#define BOOST_TEST_MODULE agent_test
#include <boost/test/unit_test.hpp>

#include "process.hpp"
#include "protocol/codec.hpp"
#include "tools/agent/connection.hpp"
#include "tools/agent/link.hpp"
#include "tools/agent/store.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <sstream>
#include <thread>

using namespace nodecoord;
using namespace nodecoord::agent;
using nodecoord::test::temp_dir;
using json = nlohmann::json;

namespace {

std::vector<protocol::node_message> decode_all(const std::string& out) {
  std::vector<protocol::node_message> msgs;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    auto r = protocol::decode(line);
    auto* m = std::get_if<protocol::node_message>(&r);
    BOOST_REQUIRE_MESSAGE(m, "the coordinator would refuse: " << line);
    msgs.push_back(*m);
  }
  return msgs;
}

/// What a batch of frames carried: attempt frames and lines per attempt, heartbeats, responses.
struct sent {
  std::vector<std::string> attempts;                 // attempt frames, in order
  std::map<std::string, std::vector<int64_t>> lines; // seqs per attempt, in order
  std::vector<int64_t> heartbeats;
  std::vector<protocol::backfill_response> responses;
  std::vector<std::string> order; // "attempt:<id>", "logs:<id>", "response", "heartbeat"
};

sent parse(const std::string& out) {
  sent s;
  for (auto& m : decode_all(out)) {
    if (auto* a = std::get_if<protocol::attempt>(&m)) {
      s.attempts.push_back(a->attempt_id);
      s.order.push_back("attempt:" + a->attempt_id);
    } else if (auto* l = std::get_if<protocol::logs>(&m)) {
      for (auto& e : l->entries)
        s.lines[l->attempt_id].push_back(e.seq);
      s.order.push_back("logs:" + l->attempt_id);
    } else if (auto* h = std::get_if<protocol::heartbeat>(&m)) {
      s.heartbeats.push_back(h->seq);
      s.order.push_back("heartbeat");
    } else if (auto* r = std::get_if<protocol::backfill_response>(&m)) {
      s.responses.push_back(*r);
      s.order.push_back("response");
    }
  }
  return s;
}

std::vector<int64_t> range(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (auto i = from; i < to; ++i)
    v.push_back(i);
  return v;
}

std::vector<std::string> numbered(int n, const std::string& prefix = "line ") {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i)
    v.push_back(prefix + std::to_string(i));
  return v;
}

struct fixture {
  temp_dir dir{"agent-test"};
  store st{dir.file("agent.db")};
  link_options opts() {
    link_options o;
    o.node = "build-07";
    o.key = "nck_0123456789abcdef_secret";
    return o;
  }
  coordinator_link l{st, opts()};
  /// A connection up to the welcome.
  void connect() {
    auto hello = l.start();
    auto msgs = decode_all(hello);
    BOOST_REQUIRE_EQUAL(msgs.size(), 1u);
    BOOST_REQUIRE(std::holds_alternative<protocol::hello>(msgs[0]));
    std::string out;
    auto ev = l.on_line(
      R"({"type":"welcome","protocol":1,"node_id":"n1","session":1,"heartbeat_interval_ms":5000,"server_time":"2026-01-09T12:00:00.000Z"})",
      out);
    BOOST_REQUIRE(ev.what == link_event::kind::welcome);
    BOOST_TEST(l.heartbeat_interval_ms() == 5000);
  }
  std::string poll() {
    std::string out;
    l.poll_store(out);
    return out;
  }
  std::string line(const std::string& text) {
    std::string out;
    l.on_line(text, out);
    return out;
  }
  void ack(int64_t seq) {
    line(R"({"type":"heartbeat_ack","seq":)" + std::to_string(seq) + R"(,"server_time":"2026-01-09T12:00:00.000Z"})");
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(store_numbers_lines_from_zero_without_gaps) {
  temp_dir dir{"agent-test"};
  store st(dir.file("a.db"));
  auto id = st.start_attempt("build-1");
  BOOST_TEST(st.append_logs(id, "stdout", numbered(3)) == 0);
  BOOST_TEST(st.append_logs(id, "stderr", numbered(2, "err ")) == 3);
  BOOST_TEST(st.append_logs(id, "system", {}) == 5);
  auto a = st.attempt(id);
  BOOST_REQUIRE(a);
  BOOST_TEST(a->log_count == 5);
  BOOST_TEST(a->state == "running");
  BOOST_TEST(!a->started_at.empty());
  auto lines = st.logs(id, 0, 100);
  BOOST_REQUIRE_EQUAL(lines.size(), 5u);
  for (size_t i = 0; i < lines.size(); ++i)
    BOOST_TEST(lines[i].seq == static_cast<int64_t>(i));
  BOOST_TEST(lines[3].stream == "stderr");
  BOOST_TEST(lines[4].line == "err 1");
  BOOST_TEST(st.logs(id, 2, 4).size() == 2u);
}

BOOST_AUTO_TEST_CASE(store_refuses_bad_input_and_changes_nothing) {
  temp_dir dir{"agent-test"};
  store st(dir.file("a.db"));
  BOOST_CHECK_THROW(st.start_attempt(""), store_error);
  BOOST_CHECK_THROW(st.start_attempt("t", "done"), store_error);
  BOOST_CHECK_THROW(st.start_attempt("t", "running", "[1]"), store_error);
  auto id = st.start_attempt("t");
  BOOST_CHECK_THROW(st.append_logs(id, "stdin", {"x"}), store_error);
  BOOST_CHECK_THROW(st.append_logs("no-such-attempt", "stdout", {"x"}), store_error);
  BOOST_CHECK_THROW(st.set_state("no-such-attempt", "failed"), store_error);
  BOOST_CHECK_THROW(st.set_state(id, "finished"), store_error);
  BOOST_TEST(st.all_attempts().size() == 1u);
  BOOST_TEST(st.attempt(id)->log_count == 0);
  BOOST_TEST(st.attempt(id)->version == 1);
}

BOOST_AUTO_TEST_CASE(store_final_state_sets_finished_at_and_bumps_version) {
  temp_dir dir{"agent-test"};
  store st(dir.file("a.db"));
  auto id = st.start_attempt("t", "queued");
  BOOST_TEST(st.attempt(id)->started_at.empty());
  st.set_state(id, "running");
  auto running = *st.attempt(id);
  BOOST_TEST(!running.started_at.empty());
  BOOST_TEST(running.finished_at.empty());
  st.set_state(id, "failed", R"({"exit_code":3})");
  auto done = *st.attempt(id);
  BOOST_TEST(done.state == "failed");
  BOOST_TEST(!done.finished_at.empty());
  BOOST_TEST(done.meta == R"({"exit_code":3})");
  BOOST_TEST(done.version == 3);
}

BOOST_AUTO_TEST_CASE(store_replaces_invalid_utf8) {
  temp_dir dir{"agent-test"};
  store st(dir.file("a.db"));
  auto id = st.start_attempt("t");
  st.append_logs(id, "stdout", {std::string("ok \xff\xfe end")});
  auto l = st.logs(id, 0, 1);
  BOOST_REQUIRE_EQUAL(l.size(), 1u);
  BOOST_TEST(l[0].line == "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
}

BOOST_AUTO_TEST_CASE(concurrent_writers_never_reuse_a_seq) {
  temp_dir dir{"agent-test"};
  std::string id;
  {
    store st(dir.file("a.db"));
    id = st.start_attempt("t");
  }
  // Two processes' worth of writers (separate connections) appending at once.
  auto writer = [&](const std::string& prefix) {
    store st(dir.file("a.db"));
    for (int i = 0; i < 50; ++i)
      st.append_logs(id, "stdout", {prefix + std::to_string(i), prefix + std::to_string(i) + "b"});
  };
  std::thread a(writer, "a"), b(writer, "b");
  a.join();
  b.join();
  store st(dir.file("a.db"));
  BOOST_TEST(st.attempt(id)->log_count == 200);
  auto lines = st.logs(id, 0, 1000);
  BOOST_REQUIRE_EQUAL(lines.size(), 200u);
  for (size_t i = 0; i < lines.size(); ++i)
    BOOST_TEST(lines[i].seq == static_cast<int64_t>(i));
}

BOOST_FIXTURE_TEST_CASE(nothing_is_sent_before_the_welcome, fixture) {
  st.start_attempt("t");
  l.start();
  BOOST_TEST(poll().empty());
}

BOOST_FIXTURE_TEST_CASE(live_stream_sends_the_attempt_before_its_lines_then_a_confirming_heartbeat, fixture) {
  auto id = st.start_attempt("t");
  st.append_logs(id, "stdout", numbered(1200));
  connect();
  auto s = parse(poll());
  BOOST_REQUIRE_EQUAL(s.attempts.size(), 1u);
  BOOST_TEST(s.order.front() == "attempt:" + id);
  BOOST_TEST(s.lines[id] == range(0, 1200), boost::test_tools::per_element());
  BOOST_TEST(s.order.back() == "heartbeat");
  // 500 lines a frame at most.
  BOOST_TEST(std::count(s.order.begin(), s.order.end(), "logs:" + id) == 3);
  // Sent but not confirmed: not sent again on this connection.
  BOOST_TEST(poll().empty());
  BOOST_TEST(st.attempt(id)->delivered_logs == 0);
  ack(s.heartbeats.back());
  auto a = st.attempt(id);
  BOOST_TEST(a->delivered_logs == 1200);
  BOOST_TEST(a->announced_version == a->version);
  // New lines and a new state: only those go out.
  st.append_logs(id, "stdout", numbered(2, "more "));
  auto s2 = parse(poll());
  BOOST_TEST(s2.lines[id] == range(1200, 1202), boost::test_tools::per_element());
  BOOST_TEST(s2.attempts.size() == 1u); // logs always follow their attempt frame
  st.set_state(id, "succeeded");
  auto s3 = parse(poll());
  BOOST_TEST(s3.attempts.size() == 1u);
  BOOST_TEST(s3.lines.empty());
}

BOOST_FIXTURE_TEST_CASE(an_ack_confirms_only_what_was_sent_before_its_heartbeat, fixture) {
  auto id = st.start_attempt("t");
  st.append_logs(id, "stdout", numbered(3));
  connect();
  auto first = parse(poll());
  st.append_logs(id, "stdout", numbered(2, "late "));
  auto second = parse(poll());
  BOOST_REQUIRE_EQUAL(first.heartbeats.size(), 1u);
  BOOST_REQUIRE_EQUAL(second.heartbeats.size(), 1u);
  ack(first.heartbeats[0]);
  BOOST_TEST(st.attempt(id)->delivered_logs == 3);
  ack(second.heartbeats[0]);
  BOOST_TEST(st.attempt(id)->delivered_logs == 5);
}

BOOST_FIXTURE_TEST_CASE(a_reconnect_sends_only_what_was_not_confirmed, fixture) {
  auto done = st.start_attempt("t1");
  st.append_logs(done, "stdout", numbered(4));
  connect();
  auto s = parse(poll());
  ack(s.heartbeats.back());
  auto lost = st.start_attempt("t2");
  st.append_logs(lost, "stdout", numbered(3));
  parse(poll());                                           // sent, but the connection dies before the ack
  st.append_logs(done, "stdout", numbered(1, "offline ")); // written while disconnected
  connect();
  auto again = parse(poll());
  BOOST_TEST(again.lines[lost] == range(0, 3), boost::test_tools::per_element());
  BOOST_TEST(again.lines[done] == range(4, 5), boost::test_tools::per_element());
  BOOST_TEST(again.attempts.size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(unavailable_after_the_ack_sends_the_attempt_again_in_full, fixture) {
  auto id = st.start_attempt("t");
  st.append_logs(id, "stdout", numbered(3));
  connect();
  auto s = parse(poll());
  ack(s.heartbeats.back());
  BOOST_TEST(st.attempt(id)->delivered_logs == 3);
  line(R"({"type":"error","code":"unavailable","message":"try again","ref":")" + id + R"("})");
  BOOST_TEST(st.attempt(id)->delivered_logs == 0);
  auto again = parse(poll());
  BOOST_TEST(again.attempts.size() == 1u);
  BOOST_TEST(again.lines[id] == range(0, 3), boost::test_tools::per_element());
}

BOOST_FIXTURE_TEST_CASE(unavailable_before_the_ack_keeps_the_ack_from_confirming_it, fixture) {
  auto id = st.start_attempt("t");
  st.append_logs(id, "stdout", numbered(3));
  connect();
  auto s = parse(poll());
  line(R"({"type":"error","code":"unavailable","message":"try again","ref":")" + id + R"("})");
  ack(s.heartbeats.back());
  BOOST_TEST(st.attempt(id)->delivered_logs == 0);
  BOOST_TEST(st.attempt(id)->announced_version == 0);
}

// While the coordinator's database does not commit, acks wait and the coordinator says so:
// that is neither an error nor a reason to resend, and nothing is confirmed until the ack.
BOOST_FIXTURE_TEST_CASE(ack_delayed_is_no_error_and_confirms_nothing, fixture) {
  connect();
  auto id = st.start_attempt("t");
  st.append_logs(id, "stdout", numbered(3));
  auto s = parse(poll());
  std::string out;
  auto ev = l.on_line(
    R"({"type":"error","code":"ack_delayed","message":"acknowledgements wait for the database","ref":"heartbeat"})",
    out);
  BOOST_TEST((ev.what == link_event::kind::delayed));
  BOOST_TEST(out.empty());
  BOOST_TEST(l.counters().errors == 0u);
  BOOST_TEST(l.counters().acks_delayed == 1u);
  BOOST_TEST(st.attempt(id)->delivered_logs == 0);
  BOOST_TEST(poll().empty(), "sent on this connection already: not sent again while the ack waits");
  ack(s.heartbeats.back());
  BOOST_TEST(st.attempt(id)->delivered_logs == 3);
}

BOOST_FIXTURE_TEST_CASE(a_forbidden_attempt_does_not_block_the_ones_behind_it, fixture) {
  link_options o = opts();
  o.poll_attempts = 1; // one attempt a poll: a stuck first one would block the second for ever
  coordinator_link one{st, o};
  auto t1 = st.start_attempt("t1");
  auto t2 = st.start_attempt("t2");
  one.start();
  std::string out;
  one.on_line(
    R"({"type":"welcome","protocol":1,"node_id":"n1","session":1,"heartbeat_interval_ms":5000,"server_time":"2026-01-09T12:00:00.000Z"})",
    out);
  out.clear();
  one.poll_store(out);
  auto first = parse(out).attempts;
  BOOST_REQUIRE_EQUAL(first.size(), 1u);
  auto taken = first[0]; // whichever comes first is the one another node owns
  auto mine = taken == t1 ? t2 : t1;
  out.clear();
  one.on_line(R"({"type":"error","code":"forbidden","message":"another node's attempt","ref":")" + taken + R"("})",
              out);
  one.poll_store(out);
  BOOST_TEST(parse(out).attempts == std::vector<std::string>{mine}, boost::test_tools::per_element());
}

BOOST_FIXTURE_TEST_CASE(backfill_answer_honours_logs_after_and_reports_what_the_agent_holds, fixture) {
  auto a = st.start_attempt("t1");
  st.append_logs(a, "stdout", numbered(10));
  auto b = st.start_attempt("t2");
  st.append_logs(b, "stdout", numbered(4));
  auto empty = st.start_attempt("t3");
  connect();
  ack(parse(poll()).heartbeats.back());
  std::string missing = "7d3c2e1a-5b4f-4c6e-9a8b-1f2e3d4c5b6a";
  auto s =
    parse(line(R"({"type":"backfill_request","request_id":"c0ffee00-1234-4abc-8def-0123456789ab","attempt_ids":[")" + a
               + R"(",")" + b + R"(",")" + empty + R"(",")" + missing + R"("],"logs_after":{")" + a + R"(":6}})"));
  BOOST_TEST(s.lines[a] == range(7, 10), boost::test_tools::per_element());
  BOOST_TEST(s.lines[b] == range(0, 4), boost::test_tools::per_element());
  BOOST_TEST(s.lines.count(empty) == 0u);
  BOOST_TEST(s.attempts.size() == 3u);
  BOOST_REQUIRE_EQUAL(s.responses.size(), 1u);
  // The response comes after every data frame it vouches for.
  auto resp = std::find(s.order.begin(), s.order.end(), "response");
  BOOST_TEST_REQUIRE((resp != s.order.end()));
  BOOST_TEST(std::count(s.order.begin(), resp, "logs:" + a) == 1);
  BOOST_TEST(std::count(s.order.begin(), resp, "logs:" + b) == 1);
  for (auto it = resp + 1; it != s.order.end(); ++it)
    BOOST_TEST(*it == "heartbeat", "a frame after the response: " << *it);
  auto& r = s.responses[0];
  BOOST_TEST(r.request_id == "c0ffee00-1234-4abc-8def-0123456789ab");
  BOOST_REQUIRE_EQUAL(r.results.size(), 4u);
  BOOST_TEST(r.results[0].ok);
  BOOST_TEST(r.results[0].log_count == 10);
  BOOST_TEST(r.results[1].log_count == 4);
  BOOST_TEST(r.results[2].ok);
  BOOST_TEST(r.results[2].log_count == 0);
  BOOST_TEST(!r.results[3].ok);
  BOOST_TEST(r.results[3].attempt_id == missing);
  BOOST_TEST(!r.results[3].error.empty());
}

BOOST_FIXTURE_TEST_CASE(handshake_errors_and_close_frames_are_reported, fixture) {
  l.start();
  std::string out;
  auto ev = l.on_line(R"({"type":"error","code":"auth_failed","message":"authentication failed"})", out);
  BOOST_TEST((ev.what == link_event::kind::refused));
  BOOST_TEST(ev.detail == "auth_failed");
  connect();
  ev = l.on_line(R"({"type":"close","reason":"superseded"})", out);
  BOOST_TEST((ev.what == link_event::kind::closing));
  BOOST_TEST(ev.detail == "superseded");
  // Garbage and frames of a newer protocol are ignored, not fatal.
  ev = l.on_line("not json", out);
  BOOST_TEST((ev.what == link_event::kind::none));
  ev = l.on_line(R"({"type":"something_new","x":1})", out);
  BOOST_TEST((ev.what == link_event::kind::none));
  BOOST_TEST(out.empty());
}

BOOST_AUTO_TEST_CASE(endpoints_parse) {
  std::string host;
  uint16_t port = 0;
  BOOST_TEST(parse_endpoint("127.0.0.1:7400", host, port));
  BOOST_TEST(host == "127.0.0.1");
  BOOST_TEST(port == 7400);
  BOOST_TEST(parse_endpoint("[::1]:9", host, port));
  BOOST_TEST(host == "::1");
  BOOST_TEST(parse_endpoint("coord.example:65535", host, port));
  BOOST_TEST(!parse_endpoint("coord.example", host, port));
  BOOST_TEST(!parse_endpoint("coord.example:0", host, port));
  BOOST_TEST(!parse_endpoint("coord.example:65536", host, port));
  BOOST_TEST(!parse_endpoint(":7400", host, port));
  BOOST_TEST(!parse_endpoint("host:7a", host, port));
}
