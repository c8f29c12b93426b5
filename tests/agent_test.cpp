// nodecoord-agent without sockets: its store (numbering, states, confirmation, concurrent
// writers) and its link (what it sends live, how it answers backfill requests, what a
// heartbeat ack confirms, what an `unavailable` undoes), its checks (run_check on real programs,
// the link's allow-list, limits and results, the [checks] config). Frames are checked by decoding
// them with the coordinator's own decoder.
#define BOOST_TEST_MODULE agent_test
#include <boost/test/unit_test.hpp>

#include "process.hpp"
#include "protocol/codec.hpp"
#include "tools/agent/check_config.hpp"
#include "tools/agent/check_runner.hpp"
#include "tools/agent/connection.hpp"
#include "tools/agent/link.hpp"
#include "tools/agent/store.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <sys/wait.h>
#include <filesystem>
#include <fstream>
#include <functional>
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

// --- checks ---

namespace {

using std::chrono::milliseconds;

/// Polls `done` for up to 10 s; true once it holds.
bool wait_until(const std::function<bool()>& done) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until)
      return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

/// The process no longer runs: gone, or a zombie nobody reaped yet (an orphan's parent in a
/// container may be slow to). Polled, since a SIGKILLed orphan takes a moment to go.
bool process_ends(pid_t pid) {
  return wait_until([pid] {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto paren = stat.rfind(')');
    if (!in || paren == std::string::npos || paren + 2 >= stat.size())
      return true;
    return stat[paren + 2] == 'Z' || stat[paren + 2] == 'X';
  });
}

pid_t first_line_pid(const std::string& output) {
  auto pid = std::atoi(output.substr(0, output.find('\n')).c_str());
  BOOST_REQUIRE_MESSAGE(pid > 1, "no pid in the output: " << output);
  return pid;
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    ++n;
  return n;
}

check_outcome sh(const std::string& script, milliseconds timeout = milliseconds(10000), size_t output_max = 65536) {
  return run_check({"/bin/sh", "-c", script}, timeout, output_max);
}

} // namespace

BOOST_AUTO_TEST_CASE(run_check_returns_the_exact_output_and_exit_code_zero) {
  auto r = run_check({"printf", "a\\nb\\n"}, milliseconds(10000), 65536); // found in PATH
  BOOST_TEST(r.status == "exited");
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.output == "a\nb\n");
  BOOST_TEST(!r.truncated);
  BOOST_TEST(r.error.empty());
}

BOOST_AUTO_TEST_CASE(run_check_reports_a_non_zero_exit_code_and_a_signal) {
  auto r = sh("exit 3");
  BOOST_TEST(r.status == "exited");
  BOOST_TEST(r.exit_code == 3);
  auto killed = sh("kill -KILL $$");
  BOOST_TEST(killed.status == "exited");
  BOOST_TEST(killed.exit_code == 128 + SIGKILL);
}

BOOST_AUTO_TEST_CASE(run_check_captures_stderr_in_the_same_stream_in_order) {
  auto r = sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2");
  BOOST_TEST(r.status == "exited");
  BOOST_TEST(r.output == "out1\nerr1\nout2\nerr2\n");
}

BOOST_AUTO_TEST_CASE(run_check_gives_the_program_an_empty_stdin) {
  auto r = sh("cat; echo done");
  BOOST_TEST(r.status == "exited");
  BOOST_TEST(r.output == "done\n");
}

BOOST_AUTO_TEST_CASE(run_check_kills_the_group_at_the_timeout) {
  auto r = sh("echo $$; exec sleep 30", milliseconds(200));
  BOOST_TEST(r.status == "timed_out");
  BOOST_TEST(r.error == "timed out after 200 ms");
  BOOST_TEST(process_ends(first_line_pid(r.output)), "the check still runs after its timeout");
}

BOOST_AUTO_TEST_CASE(run_check_timeout_ends_a_grandchild_that_holds_the_output_open) {
  // sh exits at once, but its background sleep keeps the pipe open: the timeout ends it.
  auto r = sh("sleep 30 & echo $!", milliseconds(300));
  BOOST_TEST(r.status == "timed_out");
  BOOST_TEST(process_ends(first_line_pid(r.output)), "the grandchild still runs after the timeout");
}

BOOST_AUTO_TEST_CASE(run_check_ends_what_the_program_left_running_in_its_group) {
  auto r = sh("sleep 30 >/dev/null 2>&1 & echo $!");
  BOOST_TEST(r.status == "exited");
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(process_ends(first_line_pid(r.output)), "a background process of the check outlives it");
}

BOOST_AUTO_TEST_CASE(run_check_keeps_output_max_bytes_and_reads_the_rest) {
  auto r = sh("head -c 100000 /dev/zero | tr '\\0' x", milliseconds(10000), 1000);
  BOOST_TEST(r.status == "exited");
  BOOST_TEST(r.exit_code == 0); // not killed by SIGPIPE: the rest was read
  BOOST_TEST(r.output == std::string(1000, 'x'));
  BOOST_TEST(r.truncated);
  auto exact = sh("printf 12345", milliseconds(10000), 5);
  BOOST_TEST(exact.output == "12345");
  BOOST_TEST(!exact.truncated);
}

BOOST_AUTO_TEST_CASE(run_check_reports_a_program_that_cannot_start) {
  auto r = run_check({"nodecoord-no-such-program"}, milliseconds(10000), 100);
  BOOST_TEST(r.status == "failed_to_start");
  BOOST_TEST(r.error == std::string("cannot run nodecoord-no-such-program: ") + std::strerror(ENOENT));
  BOOST_TEST(r.output.empty());
  auto dir = run_check({"/"}, milliseconds(10000), 100);
  BOOST_TEST(dir.status == "failed_to_start");
  BOOST_TEST(dir.error == std::string("cannot run /: ") + std::strerror(EACCES));
  BOOST_TEST(run_check({}, milliseconds(10000), 100).status == "failed_to_start");
}

BOOST_AUTO_TEST_CASE(run_check_leaves_no_descriptors_or_children) {
  auto before = open_fds();
  sh("echo hi");
  run_check({"nodecoord-no-such-program"}, milliseconds(10000), 100);
  sh("sleep 30", milliseconds(100));
  sh("head -c 10000 /dev/zero", milliseconds(10000), 10);
  BOOST_TEST(open_fds() == before);
  errno = 0;
  BOOST_TEST(waitpid(-1, nullptr, WNOHANG) == -1, "a child of run_check was not reaped");
  BOOST_TEST(errno == ECHILD);
}

namespace {

const char* const request_a = "c0ffee00-1234-4abc-8def-0123456789ab";
const char* const request_b = "c0ffee00-1234-4abc-8def-0123456789ac";
const char* const request_c = "c0ffee00-1234-4abc-8def-0123456789ad";

struct checks_fixture {
  temp_dir dir{"agent-test"};
  store st{dir.file("agent.db")};
  std::string gate = dir.file("gate");
  // Runs until the test creates `gate` (20 s at most, should the test fail first).
  std::vector<std::string> wait_argv{"/bin/sh", "-c",
                                     "i=0; while [ ! -e '" + gate
                                       + "' ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done; echo released"};
  std::vector<std::string> greet_argv{"printf", "hi\\n"};
  link_options opts() {
    link_options o;
    o.node = "build-07";
    o.key = "nck_0123456789abcdef_secret";
    o.checks = {{"greet", greet_argv}, {"wait", wait_argv}, {"nul", {"printf", "a\\0b"}}};
    o.max_running_checks = 1;
    return o;
  }
  coordinator_link l{st, opts()};

  void connect() {
    l.start();
    std::string out;
    auto ev = l.on_line(
      R"({"type":"welcome","protocol":1,"node_id":"n1","session":1,"heartbeat_interval_ms":5000,"server_time":"2026-01-09T12:00:00.000Z"})",
      out);
    BOOST_REQUIRE(ev.what == link_event::kind::welcome);
  }
  /// Sends a check_request; returns what the link answered at once.
  std::string request(const std::string& id, const std::string& name, const std::vector<std::string>& argv) {
    auto line = protocol::encode_check_request({id, name, argv, 20000, 65536});
    line.pop_back(); // the '\n'
    std::string out;
    l.on_line(line, out);
    return out;
  }
  /// A check_request of the given request_id and other fields (JSON members); the answer at once.
  std::string line_of_request(const std::string& id, const std::string& rest) {
    std::string out;
    l.on_line(R"({"type":"check_request","request_id":")" + id + R"(",)" + rest + "}", out);
    return out;
  }
  /// Calls `send` (send_finished_checks or poll_store) until `n` results came, 10 s at most.
  std::vector<protocol::check_result> results(size_t n, const std::function<void(std::string&)>& send) {
    std::vector<protocol::check_result> got;
    wait_until([&] {
      std::string out;
      send(out);
      auto more = checks_in(out);
      got.insert(got.end(), more.begin(), more.end());
      return got.size() >= n;
    });
    BOOST_REQUIRE_EQUAL(got.size(), n);
    return got;
  }
  std::vector<protocol::check_result> finished(size_t n) {
    return results(n, [this](std::string& out) { l.send_finished_checks(out); });
  }
  static std::vector<protocol::check_result> checks_in(const std::string& out) {
    std::vector<protocol::check_result> r;
    for (auto& m : decode_all(out))
      if (auto* c = std::get_if<protocol::check_result>(&m))
        r.push_back(*c);
    return r;
  }
  ~checks_fixture() {
    // No check thread may outlive the test (it would run its program after the directory went).
    std::ofstream(gate).put('x');
    wait_until([this] { return l.checks_running() == 0; });
  }
};

} // namespace

BOOST_FIXTURE_TEST_CASE(hello_names_the_checks_feature_even_without_an_allow_list, fixture) {
  BOOST_REQUIRE(opts().checks.empty());
  auto msgs = decode_all(l.start());
  BOOST_REQUIRE_EQUAL(msgs.size(), 1u);
  auto* h = std::get_if<protocol::hello>(&msgs[0]);
  BOOST_REQUIRE(h);
  BOOST_TEST(h->features == std::vector<std::string>{"checks"}, boost::test_tools::per_element());
  // With no allow-list every check is refused.
  connect();
  auto out = line(R"({"type":"check_request","request_id":")" + std::string(request_a)
                  + R"(","name":"disk","argv":["df","-h","/"],"timeout_ms":10000,"output_max":65536})");
  auto msgs2 = decode_all(out);
  BOOST_REQUIRE_EQUAL(msgs2.size(), 1u);
  auto* r = std::get_if<protocol::check_result>(&msgs2[0]);
  BOOST_REQUIRE(r);
  BOOST_TEST(r->status == "refused");
}

BOOST_FIXTURE_TEST_CASE(a_check_not_in_the_allow_list_is_refused_at_once, checks_fixture) {
  connect();
  auto out = checks_in(request(request_a, "disk", {"df", "-h", "/"}));
  BOOST_REQUIRE_EQUAL(out.size(), 1u);
  BOOST_TEST(out[0].request_id == request_a);
  BOOST_TEST(out[0].status == "refused");
  BOOST_TEST(out[0].error == "check 'disk' is not allowed by this agent's config");
  BOOST_TEST(l.counters().checks_refused == 1u);
  BOOST_TEST(l.counters().checks_run == 0u);
  BOOST_TEST(l.checks_running() == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_check_whose_argv_differs_from_the_allow_list_is_refused, checks_fixture) {
  connect();
  for (auto argv : {std::vector<std::string>{"printf", "bye\\n"}, std::vector<std::string>{"printf"},
                    std::vector<std::string>{"printf", "hi\\n", "extra"}}) {
    auto out = checks_in(request(request_a, "greet", argv));
    BOOST_REQUIRE_EQUAL(out.size(), 1u);
    BOOST_TEST(out[0].status == "refused");
    BOOST_TEST(out[0].error == "check 'greet': the coordinator's argv differs from this agent's config");
  }
  BOOST_TEST(l.counters().checks_refused == 3u);
  BOOST_TEST(l.counters().checks_run == 0u);
}

BOOST_FIXTURE_TEST_CASE(an_allowed_check_runs_and_poll_store_sends_its_result, checks_fixture) {
  connect();
  BOOST_TEST(request(request_a, "greet", greet_argv).empty(), "the result comes later, from the thread");
  BOOST_TEST(l.counters().checks_run == 1u);
  auto r = results(1, [this](std::string& out) { l.poll_store(out); });
  BOOST_TEST(r[0].request_id == request_a);
  BOOST_TEST(r[0].status == "exited");
  BOOST_TEST(r[0].exit_code == 0);
  BOOST_TEST(r[0].output == "hi\n");
  BOOST_TEST(!r[0].truncated);
  std::string out;
  l.send_finished_checks(out);
  BOOST_TEST(out.empty(), "a result is sent once");
}

// The coordinator refuses a frame with U+0000 (its database cannot store it).
BOOST_FIXTURE_TEST_CASE(nul_bytes_of_the_output_are_sent_as_u_fffd, checks_fixture) {
  connect();
  BOOST_TEST(request(request_a, "nul", {"printf", "a\\0b"}).empty());
  auto r = finished(1); // decoded by the coordinator's decoder, or the test fails
  BOOST_TEST(r[0].status == "exited");
  BOOST_TEST(r[0].output
             == "a\xEF\xBF\xBD"
                "b");
}

BOOST_FIXTURE_TEST_CASE(a_check_beyond_max_running_checks_is_refused, checks_fixture) {
  connect();
  BOOST_TEST(request(request_a, "wait", wait_argv).empty());
  BOOST_TEST(l.checks_running() == 1u);
  auto busy = checks_in(request(request_b, "greet", greet_argv));
  BOOST_REQUIRE_EQUAL(busy.size(), 1u);
  BOOST_TEST(busy[0].request_id == request_b);
  BOOST_TEST(busy[0].status == "refused");
  BOOST_TEST(busy[0].error == "too many checks running (1)");
  std::ofstream(gate).put('x'); // the running one ends ...
  auto done = finished(1);
  BOOST_TEST(done[0].request_id == request_a);
  BOOST_TEST(done[0].status == "exited");
  BOOST_TEST(done[0].output == "released\n");
  BOOST_REQUIRE(wait_until([this] { return l.checks_running() == 0; }));
  BOOST_TEST(request(request_c, "greet", greet_argv).empty()); // ... and frees its place
  auto next = finished(1);
  BOOST_TEST(next[0].request_id == request_c);
  BOOST_TEST(next[0].status == "exited");
  BOOST_TEST(l.counters().checks_run == 2u);
  BOOST_TEST(l.counters().checks_refused == 1u);
}

BOOST_FIXTURE_TEST_CASE(results_of_a_previous_connection_are_dropped, checks_fixture) {
  connect();
  BOOST_TEST(request(request_a, "greet", greet_argv).empty());
  BOOST_REQUIRE(wait_until([this] { return l.checks_running() == 0; })); // finished, not sent
  connect();                                                             // a new connection
  std::string out;
  l.send_finished_checks(out);
  BOOST_TEST(out.empty(), "a result of the previous connection was sent: " << out);
  // This connection's own results do come.
  BOOST_TEST(request(request_b, "greet", greet_argv).empty());
  auto r = finished(1);
  BOOST_TEST(r[0].request_id == request_b);
}

BOOST_FIXTURE_TEST_CASE(an_unreadable_check_request_is_refused_if_it_names_its_request, checks_fixture) {
  connect();
  std::string upper = "C0FFEE00-1234-4ABC-8DEF-0123456789AB";
  auto out = checks_in(line_of_request(upper, R"("name":"greet","argv":[],"timeout_ms":1000,"output_max":10)"));
  BOOST_REQUIRE_EQUAL(out.size(), 1u);
  BOOST_TEST(out[0].request_id == request_a); // the lower-case spelling, as decoding gives it
  BOOST_TEST(out[0].status == "refused");
  BOOST_TEST(out[0].error.find("argv") != std::string::npos, out[0].error);
  BOOST_TEST(l.counters().errors == 1u);
  // Without a request id there is nobody to answer: counted, ignored.
  BOOST_TEST(
    line_of_request("not-a-uuid", R"("name":"greet","argv":["printf","hi\\n"],"timeout_ms":1000,"output_max":10)")
      .empty());
  BOOST_TEST(l.counters().errors == 2u);
  BOOST_TEST(l.counters().checks_run == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_check_result_always_fits_in_a_frame, checks_fixture) {
  link_options o = opts();
  o.max_frame_bytes = 2000;
  std::vector<std::string> ones{"/bin/sh", "-c", "head -c 1500 /dev/zero | tr '\\0' '\\1'"}; // \u0001 in JSON
  o.checks = {{"ones", ones}};
  coordinator_link small{st, o};
  small.start();
  std::string out;
  small.on_line(
    R"({"type":"welcome","protocol":1,"node_id":"n1","session":1,"heartbeat_interval_ms":5000,"server_time":"2026-01-09T12:00:00.000Z"})",
    out);
  auto req = protocol::encode_check_request({request_a, "ones", ones, 10000, 65536});
  small.on_line(req.substr(0, req.size() - 1), out);
  BOOST_TEST(out.empty());
  BOOST_REQUIRE(wait_until([&] {
    small.send_finished_checks(out);
    return !out.empty();
  }));
  BOOST_TEST(out.size() <= 2000u);
  auto r = checks_in(out);
  BOOST_REQUIRE_EQUAL(r.size(), 1u);
  BOOST_TEST(r[0].status == "exited");
  BOOST_TEST(r[0].truncated);
  BOOST_TEST(!r[0].output.empty());
  BOOST_TEST(r[0].output.size() < 1500u);
  BOOST_TEST(r[0].output == std::string(r[0].output.size(), '\1'));
}

namespace {

/// What read_check_allow_list says about `text`: its error, or "" if it took it.
std::string allow_list_error(const std::string& text) {
  try {
    read_check_allow_list(text, "agent.toml");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

} // namespace

BOOST_AUTO_TEST_CASE(config_checks_tables_are_read) {
  auto list = read_check_allow_list(R"(
node = "build-07"
[checks.disk]
argv = ["df", "-h", "/"]
[checks."mem.free_2"]
argv = ["free", "-m", ""]
)",
                                    "agent.toml");
  check_allow_list want{{"disk", {"df", "-h", "/"}}, {"mem.free_2", {"free", "-m", ""}}};
  BOOST_TEST((list == want));
  BOOST_TEST(read_check_allow_list("node = \"x\"\n", "agent.toml").empty());
}

BOOST_AUTO_TEST_CASE(config_bad_checks_tables_are_refused_with_the_setting_named) {
  auto argv_msg = std::string("agent.toml: checks.disk.argv must be a non-empty list of strings");
  BOOST_TEST(allow_list_error("[checks.disk]\nargv = []\n") == argv_msg);
  BOOST_TEST(allow_list_error("[checks.disk]\nargv = [\"df\", 1]\n") == argv_msg);
  BOOST_TEST(allow_list_error("[checks.disk]\nargv = \"df -h /\"\n") == argv_msg);
  BOOST_TEST(allow_list_error("[checks.disk]\n") == argv_msg);
  BOOST_TEST(allow_list_error("[checks.disk]\nargv = [\"\", \"-h\"]\n")
             == "agent.toml: checks.disk.argv[0] (the program) must not be empty");
  BOOST_TEST(allow_list_error("[checks.disk]\nargv = [\"df\"]\ntimeout_ms = 5\n")
             == "agent.toml: unknown setting 'checks.disk.timeout_ms' (a check has only argv)");
  BOOST_TEST(allow_list_error("checks = 1\n") == "agent.toml: checks must be a table of [checks.NAME] tables");
  BOOST_TEST(allow_list_error("[checks]\ndisk = \"df\"\n").find("agent.toml: checks.disk must be a table") == 0u);
  auto bad_name = allow_list_error("[checks.\"a b\"]\nargv = [\"df\"]\n");
  BOOST_TEST(bad_name.find("agent.toml: checks.a b: a check's name must be") == 0u, bad_name);
  BOOST_TEST(!allow_list_error("[checks." + std::string(65, 'a') + "]\nargv = [\"df\"]\n").empty());
  BOOST_TEST(allow_list_error("[checks." + std::string(64, 'a') + "]\nargv = [\"df\"]\n").empty());
  BOOST_TEST(allow_list_error("[checks.disk\n").find("agent.toml:") == 0u);
}
