// Backfill end to end (issue 4): the real nodecoordd, nodes played over real sockets on
// loopback, on SQLite and on PostgreSQL. A node reports attempts with log lines missing,
// reconnects, is asked, backfills, and every attempt ends complete with exactly the lines the
// node has. Waits are bounded polls; nothing is timed.
#define BOOST_TEST_MODULE backfill_e2e_test
#include <boost/test/unit_test.hpp>

#include "e2e_daemon.hpp"
#include "e2e_node.hpp"
#include "node_client.hpp"
#include "protocol/codec.hpp"
#include "test_db.hpp"

#include <algorithm>
#include <map>
#include <set>

using namespace nodecoord;
using namespace nodecoord::test;

namespace {

const std::string backfill_toml = "[backfill]\n"
                                  "reconnect_rate = 1000\n"
                                  "batch_size = 100\n"
                                  "request_timeout = \"60s\"\n"
                                  "reconcile_interval = \"1h\"\n";

/// The node's own copy of one attempt: every line it produced.
struct node_attempt {
  std::string id;
  std::vector<protocol::log_line> lines;
};

std::vector<protocol::log_line> make_lines(int n, const std::string& tag) {
  std::vector<protocol::log_line> out;
  for (int s = 0; s < n; ++s)
    out.push_back({s, "2026-01-09T12:00:0" + std::to_string(s % 10) + ".000Z", s % 3 ? "stdout" : "stderr",
                   tag + " line " + std::to_string(s)});
  return out;
}

/// Answers a backfill_request as a correct agent does: resend the lines after logs_after, then
/// report each attempt with the number of lines it has.
void answer(node_client& c, const json& req, const std::map<std::string, node_attempt>& have) {
  protocol::backfill_response resp;
  resp.request_id = req.at("request_id").get<std::string>();
  for (auto& id : req.at("attempt_ids")) {
    auto a = have.find(id.get<std::string>());
    if (a == have.end()) {
      resp.results.push_back({id.get<std::string>(), false, 0, "unknown attempt"});
      continue;
    }
    int64_t after = req.contains("logs_after") ? req["logs_after"].value(a->first, int64_t{-1}) : -1;
    protocol::logs frame{a->first, {}};
    for (auto& l : a->second.lines)
      if (l.seq > after)
        frame.entries.push_back(l);
    if (!frame.entries.empty())
      c.send_line(protocol::encode_logs(frame));
    resp.results.push_back({a->first, true, int64_t(a->second.lines.size()), ""});
  }
  c.send_line(protocol::encode_backfill_response(resp));
}

std::string sync_state_of(daemon_under_test& d, const std::string& attempt) {
  auto rows = d.rows("SELECT sync_state FROM node_task_attempts WHERE id = '" + attempt + "'");
  return rows.empty() ? "(none)" : rows[0];
}

void reports_with_gaps_then_reconnect_backfills_everything(const std::string& storage_url) {
  daemon_under_test d(base_settings(), storage_url, backfill_toml);
  auto n = d.add_node("alpha");
  d.start();
  std::map<std::string, node_attempt> have;
  for (auto [tag, count] : {std::pair{"gappy", 6}, std::pair{"silent", 3}, std::pair{"whole", 2}}) {
    auto id = new_uuid();
    have[id] = {id, make_lines(count, tag)};
  }
  {
    // First session: attempts and some of their lines; the rest is lost in transit.
    auto c = connect_and_hello(d, n);
    c.aside_types = {"backfill_request"}; // this session does not answer
    for (auto& [id, a] : have) {
      c.send_line(protocol::encode_attempt({id, "task-" + id.substr(0, 8), "succeeded", "", "", ""}));
      protocol::logs frame{id, {}};
      for (auto& l : a.lines) {
        bool lost = (a.lines[0].line.rfind("gappy", 0) == 0 && (l.seq == 2 || l.seq == 4))
                    || a.lines[0].line.rfind("silent", 0) == 0;
        if (!lost)
          frame.entries.push_back(l);
      }
      if (!frame.entries.empty())
        c.send_line(protocol::encode_logs(frame));
    }
    c.heartbeat_roundtrip(1); // everything before it was read
    BOOST_TEST_REQUIRE(eventually([&] { return d.count("SELECT COUNT(*) FROM node_task_attempts") == 3; }));
    // A request may already be out for these attempts (the reconnect trigger of this session):
    // leaving without answering puts them back to partial.
  }
  d.wait_offline("alpha", "socket_closed");
  BOOST_TEST_REQUIRE(eventually([&] {
                       return d.count("SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'")
                              == 0;
                     }),
                     "a disconnect left rows pending; stderr:\n"
                       << d.process().stderr_tail());

  // Second session: asked for all three, answers, and they complete.
  auto c = connect_and_hello(d, n);
  std::set<std::string> asked;
  while (asked.size() < have.size()) {
    auto req = next_request(c);
    for (auto& id : req["attempt_ids"])
      asked.insert(id.get<std::string>());
    answer(c, req, have);
  }
  for (auto& [id, a] : have)
    BOOST_TEST_REQUIRE(eventually([&] { return sync_state_of(d, id) == "complete"; }),
                       "attempt " << id << " is " << sync_state_of(d, id) << "; stderr:\n"
                                  << d.process().stderr_tail());
  // Exactly the node's lines, each once.
  for (auto& [id, a] : have) {
    auto stored = d.rows("SELECT seq, stream, line FROM attempt_logs WHERE attempt_id = '" + id + "' ORDER BY seq");
    std::vector<std::string> expected;
    for (auto& l : a.lines)
      expected.push_back(std::to_string(l.seq) + " | " + l.stream + " | " + l.line);
    BOOST_TEST(stored == expected, boost::test_tools::per_element());
  }
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'backfill' AND status = 'succeeded'") >= 1);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'backfill' AND status = 'running'") == 0);
  c.close();
  d.stop();
}

void a_request_in_flight_at_a_crash_is_recovered_at_restart(const std::string& storage_url) {
  daemon_under_test d(base_settings(), storage_url, backfill_toml);
  auto n = d.add_node("alpha");
  d.start();
  auto id = new_uuid();
  auto c = connect_and_hello(d, n);
  c.aside_types = {"backfill_request"};
  c.send_line(protocol::encode_attempt({id, "task", "running", "", "", ""}));
  c.heartbeat_roundtrip(1);
  // Whatever this session was asked is reset when it leaves; reconnect to be asked.
  c.close();
  d.wait_offline("alpha", "socket_closed");
  BOOST_TEST_REQUIRE(eventually([&] { return sync_state_of(d, id) == "partial"; }));
  auto c2 = connect_and_hello(d, n);
  auto req = next_request(c2);
  BOOST_TEST_REQUIRE(req["attempt_ids"] == json::array({id}));
  BOOST_TEST_REQUIRE(sync_state_of(d, id) == "pending_backfill");
  d.process().send_signal(SIGKILL);
  d.process().wait_exit(exit_bound);
  c2.close();
  // The restarted daemon resets before it listens: by "ready" the row is partial again.
  d.start();
  BOOST_TEST(sync_state_of(d, id) == "partial");
  auto job = d.rows("SELECT status FROM jobs WHERE id = '" + req["request_id"].get<std::string>() + "'");
  BOOST_TEST_REQUIRE(job.size() == 1u);
  BOOST_TEST(job[0] == "abandoned");
  // And the node is asked again when it comes back.
  auto c3 = connect_and_hello(d, n);
  auto again = next_request(c3);
  BOOST_TEST(again["attempt_ids"] == json::array({id}));
  BOOST_TEST(again["request_id"] != req["request_id"]);
  std::map<std::string, node_attempt> have{{id, {id, make_lines(2, "x")}}};
  answer(c3, again, have);
  BOOST_TEST(eventually([&] { return sync_state_of(d, id) == "complete"; }));
  c3.close();
  d.stop();
}

/// Issue 14's livelock: a node that never answers a request holding one poison attempt. Each
/// expired request counts a failure for its attempts, suspects are asked in smaller groups, so
/// the others complete and the poison alone ends `failed`; the session is never closed for it.
void a_node_that_never_answers_one_attempt_does_not_hold_up_the_others(const std::string& storage_url) {
  daemon_under_test d(with(base_settings(), {{"idle_timeout", "\"120s\""}}), storage_url,
                      "[backfill]\nreconnect_rate = 1000\nbatch_size = 8\nrequest_timeout = \"3s\"\n"
                      "reconcile_interval = \"500ms\"\nmax_failures = 3\n");
  auto n = d.add_node("alpha");
  d.start();
  auto c = connect_and_hello(d, n);
  std::map<std::string, node_attempt> have;
  std::vector<std::string> order; // oldest first: the poison is the oldest
  for (int i = 0; i < 8; ++i) {
    auto id = new_uuid();
    have[id] = {id, make_lines(2, "a" + std::to_string(i))};
    order.push_back(id);
    c.send_line(protocol::encode_attempt({id, "task-" + std::to_string(i), "succeeded", "", "", ""}));
  }
  auto poison = order[0];
  int poison_requests = 0, answered = 0;
  auto settled = [&] {
    if (sync_state_of(d, poison) != "failed")
      return false;
    for (auto& id : order)
      if (id != poison && sync_state_of(d, id) != "complete")
        return false;
    return true;
  };
  auto deadline = std::chrono::steady_clock::now() + 90s;
  while (!settled() && std::chrono::steady_clock::now() < deadline) {
    auto f = c.try_read_frame(1s);
    if (!f || f->value("type", "") != "backfill_request")
      continue;
    auto ids = (*f)["attempt_ids"].get<std::vector<std::string>>();
    if (std::find(ids.begin(), ids.end(), poison) != ids.end()) {
      ++poison_requests; // never answered: it expires
      continue;
    }
    answer(c, *f, have);
    ++answered;
  }
  BOOST_TEST_REQUIRE(settled(), "poison " << sync_state_of(d, poison) << ", requests with it " << poison_requests
                                          << ", answered " << answered << "; stderr:\n"
                                          << d.process().stderr_tail());
  BOOST_TEST(poison_requests == 3, "8, then 2, then the poison alone");
  auto failures = d.rows("SELECT backfill_failures FROM node_task_attempts WHERE id = '" + poison + "'");
  BOOST_TEST(failures == std::vector<std::string>{"3"});
  BOOST_TEST(d.count("SELECT COUNT(*) FROM jobs WHERE type = 'backfill' AND status = 'expired'") == 3);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts WHERE backfill_failures > 0 AND sync_state <> 'failed'")
             == 0);
  BOOST_TEST(d.node("alpha").status == "online", "the session was never closed for it");
  c.close();
  d.stop();
}

} // namespace

BOOST_AUTO_TEST_CASE(a_node_that_never_answers_one_attempt_does_not_hold_up_the_others_sqlite) {
  a_node_that_never_answers_one_attempt_does_not_hold_up_the_others("");
}

BOOST_AUTO_TEST_CASE(a_node_that_never_answers_one_attempt_does_not_hold_up_the_others_postgresql) {
  test_database t(storage::backend::postgresql);
  a_node_that_never_answers_one_attempt_does_not_hold_up_the_others(t.url());
}

BOOST_AUTO_TEST_CASE(reports_with_gaps_then_reconnect_backfills_everything_sqlite) {
  reports_with_gaps_then_reconnect_backfills_everything("");
}

BOOST_AUTO_TEST_CASE(reports_with_gaps_then_reconnect_backfills_everything_postgresql) {
  test_database t(storage::backend::postgresql);
  reports_with_gaps_then_reconnect_backfills_everything(t.url());
}

BOOST_AUTO_TEST_CASE(a_request_in_flight_at_a_crash_is_recovered_at_restart_sqlite) {
  a_request_in_flight_at_a_crash_is_recovered_at_restart("");
}

BOOST_AUTO_TEST_CASE(a_request_in_flight_at_a_crash_is_recovered_at_restart_postgresql) {
  test_database t(storage::backend::postgresql);
  a_request_in_flight_at_a_crash_is_recovered_at_restart(t.url());
}
