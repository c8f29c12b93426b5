// The scheduler (DESIGN §4: the three triggers and their limits) under CAF's deterministic
// scheduler, with the tracker and a storage actor on SQLite; node sessions are fake actors
// (tests/support/backfill_fixture.hpp).
#define BOOST_TEST_MODULE scheduler_test
#include <boost/test/unit_test.hpp>

#include "backfill_fixture.hpp"
#include "common/log.hpp"

#include <set>

using namespace nodecoord;
using namespace nodecoord::test::backfill;
using namespace std::chrono_literals;

// --- scheduler -------------------------------------------------------------------------------

namespace {

scheduler_options sched_opts(uint32_t rate = 50, uint32_t batch = 10, uint32_t page = 500,
                             std::chrono::milliseconds interval = std::chrono::hours(1)) {
  scheduler_options o;
  o.reconnect_rate = rate;
  o.batch_size = batch;
  o.page_size = page;
  o.reconcile_interval = interval;
  return o;
}

reconcile_report reconcile(fixture& f) {
  reconcile_report out;
  auto rh = f.self->request(f.scheduler, caf::infinite, reconcile_atom::value);
  f.run();
  rh.receive([&](reconcile_report& r) { out = std::move(r); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  return out;
}

order_result on_demand(fixture& f, const std::string& attempt_id) {
  order_result out;
  auto rh = f.self->request(f.scheduler, caf::infinite, backfill_atom::value, attempt_id);
  f.run();
  rh.receive([&](order_result& r) { out = std::move(r); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  return out;
}

} // namespace

BOOST_AUTO_TEST_CASE(a_thousand_nodes_reconnecting_at_once_honour_reconnect_rate) {
  constexpr int nodes = 1000;
  constexpr uint32_t rate = 50;
  fixture f(storage::backend::sqlite, opts(5, 2, std::chrono::hours(1)), sched_opts(rate, 10));
  std::vector<fixture::node> ns;
  for (int i = 0; i < nodes; ++i) {
    ns.push_back(f.add_node("n" + std::to_string(i)));
    f.attempt(ns.back(), 0);
  }
  for (auto& n : ns)
    f.connect(n); // welcome for everyone at the same simulated instant
  BOOST_TEST(f.status().requested == 0u, "nothing before the first paced slot");
  // 100 ms steps: in every window since the start, at most rate * t + 2 requests.
  uint64_t requested = 0;
  int steps = 0;
  while (requested < uint64_t(nodes) && steps < 400) {
    f.advance(100ms);
    ++steps;
    requested = f.status().requested;
    double t = steps * 0.1;
    BOOST_TEST_REQUIRE(requested <= uint64_t(rate * t + 2), "at " << t << " s: " << requested << " requests");
  }
  BOOST_TEST(requested == uint64_t(nodes), "every node was asked");
  BOOST_TEST(steps >= (nodes - 2) * 10 / int(rate), "the fleet was not asked faster than the rate");
  BOOST_TEST(steps <= nodes * 10 / int(rate) + 2, "the pacer did not fall behind its rate");
  BOOST_TEST(f.pending_rows() == nodes);
  for (auto& n : ns)
    BOOST_TEST_REQUIRE(n.log->requests.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_session_that_ends_in_the_reconnect_queue_uses_no_slot) {
  fixture f(storage::backend::sqlite, opts(), sched_opts(1, 10));
  auto gone = f.add_node("gone");
  auto stays = f.add_node("stays");
  f.attempt(gone, 0);
  f.attempt(stays, 0);
  f.connect(gone);
  f.connect(stays);
  f.disconnect(gone);
  f.advance(1s); // one slot at 1/s: it goes to the session still up
  BOOST_TEST(gone.log->requests.empty());
  BOOST_TEST(stays.log->requests.size() == 1u);
}

BOOST_AUTO_TEST_CASE(an_idle_fleet_uses_no_reconnect_slot_and_is_probed_a_page_per_statement) {
  // 1,000 nodes reconnect at once; only every 100th has partial attempts. The probe finds those 10
  // in at most 1 + ceil(999 / 500) statements, and only they are queued: at 50 requests a second
  // they are all asked within a second, where pacing the whole fleet would take 20 s.
  constexpr int nodes = 1000;
  fixture f(storage::backend::sqlite, opts(5, 2, std::chrono::hours(1)), sched_opts(50, 10, 500));
  std::vector<fixture::node> ns;
  std::set<std::string> busy;
  for (int i = 0; i < nodes; ++i) {
    ns.push_back(f.add_node("n" + std::to_string(i)));
    if (i % 100 == 7) {
      f.attempt(ns.back(), 0);
      busy.insert(ns.back().id);
    }
  }
  f.connect_all(ns);
  auto c = f.scheduler_counters();
  BOOST_TEST(c.connected == uint64_t(nodes));
  BOOST_TEST(c.probe_waiting == 0u);
  BOOST_TEST(c.reconnect_probes >= 2u, "a storm is probed in pages, not in one unbounded statement");
  BOOST_TEST(c.reconnect_probes <= 3u, c.reconnect_probes << " probe statements for " << nodes << " sessions");
  BOOST_TEST(c.reconnect_idle == uint64_t(nodes) - busy.size());
  BOOST_TEST(c.reconnect_queue + c.reconnect_requests == busy.size());
  f.advance(1s);
  c = f.scheduler_counters();
  BOOST_TEST(c.reconnect_requests == busy.size(), "every node with partial attempts was asked within a second");
  BOOST_TEST(c.reconnect_queue == 0u);
  for (auto& n : ns)
    BOOST_TEST_REQUIRE(n.log->requests.size() == (busy.count(n.id) ? 1u : 0u), n.name);
  BOOST_TEST(f.pending_rows() == int(busy.size()));
}

BOOST_AUTO_TEST_CASE(a_session_that_ends_or_is_replaced_before_its_probe_answers_is_not_queued) {
  fixture f(storage::backend::sqlite, opts(), sched_opts(1000, 10));
  auto gone = f.add_node("gone");
  auto again = f.add_node("again");
  f.attempt(gone, 0);
  f.attempt(again, 0);
  std::vector<fixture::node> both{gone, again};
  for (auto& n : both)
    f.announce(n);
  // Before anything runs: one session ends, the other is replaced by a newer one.
  caf::anon_send(f.scheduler, node_down_atom::value, session_ref{both[0].id, both[0].epoch},
                 std::string("socket_closed"));
  auto old_epoch = both[1].epoch;
  f.announce(both[1]);
  BOOST_REQUIRE(both[1].epoch > old_epoch);
  f.run();
  f.advance(1s);
  auto c = f.scheduler_counters();
  BOOST_TEST(c.reconnect_requests == 1u, "only the newer session of `again` is asked");
  BOOST_TEST(f.pending_rows() == 1);
  BOOST_TEST(f.row(f.t.run(storage::attempts_partial_of_node{both[0].id, 10}).at(0)).sync_state == "partial");
}

TRACKER_CASE(reconcile_pages_through_connected_nodes_with_partial_attempts) {
  fixture f(b, opts(), sched_opts(1000, 2, 3));
  std::vector<fixture::node> ns;
  for (int i = 0; i < 7; ++i) {
    ns.push_back(f.add_node("p" + std::to_string(i)));
    f.attempt(ns.back(), 0);
    f.attempt(ns.back(), 0);
    f.attempt(ns.back(), 0);
  }
  auto idle = f.add_node("idle");           // connected, nothing partial
  auto elsewhere = f.add_node("elsewhere"); // online in the table, not connected here
  f.attempt(elsewhere, 0);
  BOOST_REQUIRE(f.t.run(storage::node_begin_session{elsewhere.id, 0, ""}).ok);
  for (auto& n : ns) {
    f.connect(n);
    n.log->requests.clear();
  }
  f.connect(idle);
  // The reconnect trigger asked for 2 of 3 each (batch_size 2); answer none of them.
  f.advance(1s);
  BOOST_TEST(f.pending_rows() == 14);
  auto r = reconcile(f);
  BOOST_TEST(r.error.empty(), r.error);
  BOOST_TEST(r.nodes == 7u, "the 7 connected nodes with a partial attempt");
  BOOST_TEST(r.requested == 7u);
  BOOST_TEST(r.attempts == 7u, "the third attempt of each");
  BOOST_TEST(r.pages >= 3u, "keyset pages of 3");
  auto j = f.job(r.job_id);
  BOOST_TEST_REQUIRE(j.has_value());
  BOOST_TEST(j->type == "reconcile");
  BOOST_TEST(j->status == "succeeded");
  BOOST_TEST(json::parse(j->detail)["requested"] == 7);
  BOOST_TEST(f.pending_rows() == 21);
  BOOST_TEST(f.row(f.t.run(storage::attempts_partial_of_node{elsewhere.id, 10}).at(0)).sync_state == "partial");
  // Nothing partial is left among connected nodes: the next pass asks for nothing.
  auto again = reconcile(f);
  BOOST_TEST(again.requested == 0u);
  BOOST_TEST(f.job(again.job_id)->status == "succeeded");
}

BOOST_AUTO_TEST_CASE(reconcile_runs_every_interval_and_expires_overdue_requests_first) {
  fixture f(storage::backend::sqlite, opts(5, 2, 30s), sched_opts(1000, 10, 500, 60s));
  auto n = f.add_node("alpha");
  auto a = f.attempt(n, 0);
  f.connect(n);
  f.advance(10ms);
  BOOST_TEST_REQUIRE(n.log->requests.size() == 1u, "the reconnect request");
  auto first = n.log->requests[0]["request_id"].get<std::string>();
  BOOST_TEST(f.count_jobs("reconcile") == 0);
  f.advance(60s); // expired at 30 s by the tracker's own timer; the pass at 60 s asks again
  BOOST_TEST(f.count_jobs("reconcile") == 1);
  BOOST_TEST(f.job(first)->status == "expired");
  BOOST_TEST_REQUIRE(n.log->requests.size() == 2u);
  BOOST_TEST(f.row(a).backfill_request_id == n.log->requests[1]["request_id"].get<std::string>());
  f.advance(60s);
  BOOST_TEST(f.count_jobs("reconcile") == 2);
}

// A clean stop at any point of a reconcile pass leaves its job final: `abandoned` when the pass
// was still going (the scheduler says so), `succeeded` when it had ended; never `running`. After
// it, no tick starts another pass and no node is asked again.
BOOST_AUTO_TEST_CASE(shutdown_at_any_step_of_a_reconcile_pass_leaves_its_job_final) {
  int abandoned = 0, finished = 0;
  for (int steps = 0; steps < 400 && finished == 0; ++steps) {
    fixture f(storage::backend::sqlite, opts(), sched_opts(1, 10, 1, 60s));
    std::vector<fixture::node> ns;
    for (int i = 0; i < 3; ++i) {
      ns.push_back(f.add_node("n" + std::to_string(i)));
      f.attempt(ns.back(), 0);
      f.connect(ns.back()); // its reconnect request waits for a paced slot that never comes here
    }
    auto pass = f.self->request(f.scheduler, caf::infinite, reconcile_atom::value);
    for (int i = 0; i < steps; ++i)
      f.sched.run_once();
    auto stop = f.self->request(f.scheduler, caf::infinite, shutdown_atom::value);
    f.run();
    uint64_t stopped = 99;
    stop.receive([&](uint64_t n) { stopped = n; }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    reconcile_report report;
    pass.receive([&](reconcile_report& r) { report = std::move(r); },
                 [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    BOOST_TEST_REQUIRE(stopped <= 1u);
    auto job = f.job(report.job_id);
    BOOST_TEST_REQUIRE(job.has_value(), "step " << steps << ": the pass's job is recorded");
    BOOST_TEST_REQUIRE(job->type == "reconcile");
    if (stopped == 1) {
      ++abandoned;
      BOOST_TEST(job->status == "abandoned", "step " << steps);
      BOOST_TEST(report.error == "shutting down");
    } else {
      ++finished;
      BOOST_TEST(job->status == "succeeded", "step " << steps);
      BOOST_TEST(report.error.empty());
      BOOST_TEST(report.nodes == 3u);
    }
    BOOST_TEST(job->finished_at != "", "step " << steps);
    size_t asked = 0;
    for (auto& n : ns)
      asked += n.log->requests.size();
    f.advance(180s); // three intervals, and paced reconnect slots
    BOOST_TEST(f.count_jobs("reconcile") == 1, "step " << steps << ": no pass after shutdown");
    size_t asked_after = 0;
    for (auto& n : ns)
      asked_after += n.log->requests.size();
    BOOST_TEST(asked_after == asked, "step " << steps << ": nobody asked after shutdown");
    auto late = f.self->request(f.scheduler, caf::infinite, reconcile_atom::value);
    f.run();
    late.receive([](reconcile_report& r) { BOOST_TEST(r.error == "shutting down"); },
                 [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  }
  BOOST_TEST(abandoned > 0, "some step stopped the pass in flight");
  BOOST_TEST(finished > 0, "the pass ends on its own within 400 steps");
}

TRACKER_CASE(on_demand_requests_one_attempt_now) {
  fixture f(b, opts(), sched_opts(1000, 10));
  auto n = f.add_node("alpha");
  auto a = f.attempt(n, 1);
  BOOST_TEST(on_demand(f, a).status == order_status::offline);
  BOOST_TEST(on_demand(f, new_uuid()).status == order_status::not_found);
  f.connect(n);
  f.advance(10ms); // the reconnect request takes it
  auto pending = on_demand(f, a);
  BOOST_TEST(pending.status == order_status::not_partial);
  BOOST_TEST(pending.request_id == f.row(a).backfill_request_id);
  f.disconnect(n);
  f.connect(n);
  auto r = on_demand(f, a);
  BOOST_TEST_REQUIRE(r.status == order_status::requested, r.message);
  BOOST_TEST(r.attempts == 1);
  BOOST_TEST(f.respond(n, r.request_id, {ok(a, 1)}));
  BOOST_TEST(on_demand(f, a).status == order_status::not_partial);
  BOOST_TEST(f.row(a).sync_state == "complete");
}

// --- randomized interleavings ----------------------------------------------------------------
