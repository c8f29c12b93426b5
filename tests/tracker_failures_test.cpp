// The tracker's failure rules (DESIGN §3 rule 3, issue 14): expiries count, session ends do not,
// a poison attempt is isolated; marking limits, ended sessions, shutdown, reopening, restart.
#include <boost/test/unit_test.hpp>

#include "actors/scheduler.hpp"
#include "actors/storage.hpp"
#include "actors/tracker.hpp"
#include "common/api_key.hpp"
#include "common/ids.hpp"
#include "common/log.hpp"
#include "backfill_fixture.hpp"
#include "deterministic.hpp"
#include "test_db.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>

#include <soci/soci.h>

using namespace nodecoord;
using namespace std::chrono_literals;
using json = nlohmann::json;

using namespace nodecoord::test::backfill;

// Rule 3: an expired request counts a failure for each of its attempts; a session that ends
// counts nothing (it is not the attempt's fault).
TRACKER_CASE(an_expiry_counts_a_failure_a_session_end_does_not) {
  fixture f(b, opts(3, 2, 30s));
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 1);
  for (int i = 0; i < 4; ++i) {
    BOOST_TEST_REQUIRE(f.order(n, {a}).status == order_status::requested);
    f.disconnect(n);
    f.connect(n);
  }
  BOOST_TEST(f.row(a).backfill_failures == 0);
  BOOST_TEST(f.row(a).sync_state == "partial");
  for (int i = 1; i <= 3; ++i) {
    auto r = f.order(n, {a});
    BOOST_TEST_REQUIRE(r.status == order_status::requested);
    f.advance(30s);
    BOOST_TEST(f.job(r.request_id)->status == "expired");
    BOOST_TEST(f.row(a).backfill_failures == i);
    BOOST_TEST(f.row(a).sync_state == (i < 3 ? "partial" : "failed"));
  }
  BOOST_TEST(f.status().failed == 1u);
  BOOST_TEST(f.order(n, {}, 10).status == order_status::nothing_to_mark, "failed leaves the triggers");
}

// The livelock of issue 14: a node that never answers a request holding one poison attempt.
// Each expiry counts for every attempt in it, so the suspects are asked in ever smaller groups:
// the others complete, and the poison alone ends failed.
TRACKER_CASE(a_poison_that_times_out_is_isolated_and_the_others_complete) {
  fixture f(b, opts(3, 2, 30s));
  auto n = f.add_node("alpha");
  f.connect(n);
  auto poison = f.attempt(n, 1);
  std::vector<std::string> others;
  for (int i = 0; i < 7; ++i)
    others.push_back(f.attempt(n, 1));
  std::vector<size_t> poison_requests; // sizes of the requests that held the poison
  for (int round = 0; round < 30; ++round) {
    auto r = f.order(n, {}, 8);
    if (r.status == order_status::nothing_to_mark)
      break;
    BOOST_TEST_REQUIRE(r.status == order_status::requested, r.message);
    auto ids = ids_of(n.log->requests.back());
    if (std::count(ids.begin(), ids.end(), poison)) {
      poison_requests.push_back(ids.size());
      f.advance(30s); // never answered: expires
      BOOST_TEST(f.job(r.request_id)->status == "expired");
      continue;
    }
    std::vector<storage::backfill_item> items;
    for (auto& id : ids)
      items.push_back(ok(id, 1));
    BOOST_TEST(f.respond(n, r.request_id, items));
  }
  for (auto& id : others) {
    BOOST_TEST(f.row(id).sync_state == "complete", id);
    BOOST_TEST(f.row(id).backfill_failures == 0);
  }
  BOOST_TEST(f.row(poison).sync_state == "failed");
  BOOST_TEST(f.row(poison).backfill_failures == 3);
  // request_size(8, f, 3): 8, then 2, then 1 — failed by a request it was alone in.
  BOOST_TEST(poison_requests == (std::vector<size_t>{8, 2, 1}), boost::test_tools::per_element());
}

TRACKER_CASE(nothing_to_mark_sends_nothing_and_leaves_no_job) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 1);
  auto r = f.order(n, {a});
  BOOST_TEST(f.respond(n, r.request_id, {ok(a, 1)}));
  auto jobs_before = f.count_jobs("backfill");
  BOOST_TEST(f.order(n, {}, 10).status == order_status::nothing_to_mark);
  BOOST_TEST(f.order(n, {a}).status == order_status::nothing_to_mark, "complete is not marked");
  BOOST_TEST(f.order(n, {new_uuid()}).status == order_status::nothing_to_mark, "an unknown attempt");
  BOOST_TEST(n.log->requests.size() == 1u, "only the first order sent a frame");
  BOOST_TEST(f.count_jobs("backfill") == jobs_before);
  BOOST_TEST(f.status().requests.empty());
}

TRACKER_CASE(another_node_s_attempts_are_never_marked) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  auto m = f.add_node("beta");
  f.connect(n);
  f.connect(m);
  auto theirs = f.attempt(m, 0);
  BOOST_TEST(f.order(n, {theirs}).status == order_status::nothing_to_mark);
  BOOST_TEST(f.row(theirs).sync_state == "partial");
}

TRACKER_CASE(a_failed_send_resets_at_once) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 1);
  n.log->fail_sends = true;
  auto r = f.order(n, {a});
  BOOST_TEST(r.status == order_status::requested, "marked and handed over; the session then fails it");
  BOOST_TEST(f.row(a).sync_state == "partial");
  BOOST_TEST(f.row(a).backfill_failures == 0);
  auto j = f.job(r.request_id);
  BOOST_TEST(j->status == "cancelled");
  BOOST_TEST(j->error == "send failed");
  BOOST_TEST(f.status().requests.empty());
  BOOST_TEST(f.status().send_failures == 1u);
  BOOST_TEST(!f.respond(n, r.request_id, {ok(a, 1)}));
}

TRACKER_CASE(max_inflight_per_node_is_respected) {
  fixture f(b, opts(5, 2));
  auto n = f.add_node("alpha");
  f.connect(n);
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i)
    ids.push_back(f.attempt(n, 0));
  auto r1 = f.order(n, {ids[0]});
  auto r2 = f.order(n, {ids[1]});
  BOOST_TEST(r1.status == order_status::requested);
  BOOST_TEST(r2.status == order_status::requested);
  BOOST_TEST(f.order(n, {ids[2]}).status == order_status::busy);
  BOOST_TEST(f.row(ids[2]).sync_state == "partial");
  BOOST_TEST(f.respond(n, r1.request_id, {ok(ids[0], 0)}));
  BOOST_TEST(f.order(n, {ids[2]}).status == order_status::requested, "a slot is free again");
}

TRACKER_CASE(an_order_for_an_ended_session_is_refused) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  BOOST_TEST(f.order(n, {}, 10).status == order_status::offline, "never connected");
  f.connect(n);
  auto a = f.attempt(n, 0);
  BOOST_TEST(f.order(n, {a}, 0, n.epoch + 1).status == order_status::offline, "a session that does not exist");
  f.disconnect(n);
  BOOST_TEST(f.order(n, {a}).status == order_status::offline);
  BOOST_TEST(f.row(a).sync_state == "partial");
}

TRACKER_CASE(a_session_that_ends_while_marking_leaves_nothing_pending) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 0);
  // The order and the disconnect are both queued before anything runs: the mark reaches
  // storage first, the reset right after it.
  auto rh = f.self->request(f.tracker, caf::infinite, backfill_order{n.id, 0, {a}, 0, "test"});
  caf::anon_send(f.tracker, node_down_atom::value, session_ref{n.id, n.epoch}, std::string("socket_closed"));
  f.run();
  rh.receive([](order_result& r) { BOOST_TEST(r.status == order_status::offline); },
             [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(f.row(a).sync_state == "partial");
  BOOST_TEST(n.log->requests.empty());
  BOOST_TEST(f.pending_rows() == 0);
}

TRACKER_CASE(shutdown_applies_received_responses_then_resets_the_rest) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  auto m = f.add_node("beta");
  f.connect(n);
  f.connect(m);
  auto a = f.attempt(n, 1);
  auto c = f.attempt(m, 1);
  auto ra = f.order(n, {a});
  auto rc = f.order(m, {c});
  auto rh = f.self->request(f.tracker, caf::infinite, response_atom::value, session_ref{n.id, n.epoch}, ra.request_id,
                            std::vector<storage::backfill_item>{ok(a, 1)});
  auto sh = f.self->request(f.tracker, caf::infinite, shutdown_atom::value);
  f.run();
  rh.receive([](bool known) { BOOST_TEST(known); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  sh.receive([](uint64_t n_reset) { BOOST_TEST(n_reset == 1u); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(f.row(a).sync_state == "complete");
  BOOST_TEST(f.row(c).sync_state == "partial");
  BOOST_TEST(f.job(rc.request_id)->status == "cancelled");
  BOOST_TEST(f.job(rc.request_id)->error == "shutdown");
  BOOST_TEST(f.order(n, {}, 10).status == order_status::stopping);
}

TRACKER_CASE(new_logs_reopen_a_complete_attempt_and_it_is_asked_again) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 2);
  auto r = f.order(n, {a});
  BOOST_TEST(f.respond(n, r.request_id, {ok(a, 2)}));
  BOOST_TEST(f.row(a).sync_state == "complete");
  f.add_logs(n, a, 0, 2); // a resend of what is stored: nothing new
  BOOST_TEST(f.row(a).sync_state == "complete");
  f.add_logs(n, a, 2, 4); // live lines beyond the stored high-water
  BOOST_TEST(f.row(a).sync_state == "partial");
  auto again = f.order(n, {}, 10);
  BOOST_TEST_REQUIRE(again.status == order_status::requested);
  BOOST_TEST(n.log->requests.back()["logs_after"][a] == 3);
  BOOST_TEST(f.respond(n, again.request_id, {ok(a, 4)}));
  BOOST_TEST(f.row(a).sync_state == "complete");
}

TRACKER_CASE(restart_with_pending_rows_returns_them_to_partial) {
  std::string a, c, rid;
  storage::storage_url url;
  {
    fixture f(b, opts());
    auto n = f.add_node("alpha");
    f.connect(n);
    a = f.attempt(n, 1);
    c = f.attempt(n, 1);
    auto r = f.order(n, {a, c});
    BOOST_TEST_REQUIRE(r.status == order_status::requested);
    rid = r.request_id;
    // A crash: the actors stop, nothing is reset.
    auto before = f.pending_rows();
    BOOST_TEST(before == 2);
    // A second storage actor on the same database plays the restarted daemon.
    auto restarted = spawn_storage(f.sys, storage_options{f.t.parsed_url(), 100, 100ms, 1s, f.t.clock.fn(), {}}, false);
    auto rh = f.self->request(restarted, caf::infinite, startup_atom::value);
    f.run();
    rh.receive(
      [](const startup_report& rep) {
        BOOST_TEST(rep.recovery.attempts_reset == 2);
        BOOST_TEST(rep.recovery.jobs_abandoned == 1);
        BOOST_TEST(rep.recovery.nodes_offlined == 1);
      },
      [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    caf::anon_send_exit(restarted, caf::exit_reason::user_shutdown);
    f.run();
    BOOST_TEST(f.row(a).sync_state == "partial");
    BOOST_TEST(f.row(c).sync_state == "partial");
    BOOST_TEST(f.job(rid)->status == "abandoned");
    BOOST_TEST(f.pending_rows() == 0);
  }
}
