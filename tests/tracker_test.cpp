// The tracker under CAF's deterministic scheduler (the scheduler: scheduler_test.cpp): simulated time, no sleeps,
// no sockets. The storage actor runs on a real database (each case on SQLite and PostgreSQL);
// node sessions are played by small fake actors that record the backfill_request frames they
// are given. Every case asserts the final rows (DESIGN §3 rules, lessons.md).
#define BOOST_TEST_MODULE tracker_test
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

// Rule 4 (test-gaps 4): an on-demand request names attempts some of which cannot be marked (one
// complete, one pending under another request, one of another node, one unknown); the frame the
// node gets names exactly the one that was marked, and the job counts one.
TRACKER_CASE(only_attempts_actually_marked_are_sent) {
  fixture f(b, opts(5, 4));
  auto n = f.add_node("alpha");
  auto other = f.add_node("beta");
  f.connect(n);
  f.connect(other);
  auto partial = f.attempt(n, 1);
  auto complete = f.attempt(n, 1);
  auto busy = f.attempt(n, 1);
  auto foreign = f.attempt(other, 1);
  f.t.exec_sql("UPDATE node_task_attempts SET sync_state = 'complete' WHERE id = '" + complete + "'");
  auto first = f.order(n, {busy});
  BOOST_TEST_REQUIRE(first.status == order_status::requested, first.message);
  BOOST_TEST_REQUIRE(n.log->requests.size() == 1u);
  auto r = f.order(n, {partial, complete, busy, foreign, new_uuid()});
  BOOST_TEST_REQUIRE(r.status == order_status::requested, r.message);
  BOOST_TEST(r.attempts == 1);
  BOOST_TEST_REQUIRE(n.log->requests.size() == 2u);
  BOOST_TEST((ids_of(n.log->requests[1]) == std::vector<std::string>{partial}));
  BOOST_TEST(f.job(r.request_id)->attempt_count == 1);
  BOOST_TEST(f.row(busy).backfill_request_id == first.request_id, "still under its first request");
  BOOST_TEST(f.row(complete).sync_state == "complete");
  BOOST_TEST(f.row(foreign).sync_state == "partial");
  BOOST_TEST(other.log->requests.empty());
}

TRACKER_CASE(a_request_marks_sends_and_a_response_completes) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a1 = f.attempt(n, 3);
  auto a2 = f.attempt(n, 0);
  auto r = f.order(n, {}, 10);
  BOOST_TEST_REQUIRE(r.status == order_status::requested, r.message);
  BOOST_TEST(r.attempts == 2);
  BOOST_TEST_REQUIRE(n.log->requests.size() == 1u);
  auto frame = n.log->requests[0];
  BOOST_TEST(frame["type"] == "backfill_request");
  BOOST_TEST(frame["request_id"] == r.request_id);
  BOOST_TEST((ids_of(frame) == std::vector<std::string>{a1, a2}), "oldest first");
  BOOST_TEST(frame["logs_after"][a1] == 2, "the highest contiguous stored seq");
  BOOST_TEST(!frame["logs_after"].contains(a2), "nothing stored: no logs_after");
  BOOST_TEST(f.row(a1).sync_state == "pending_backfill");
  BOOST_TEST(f.row(a1).backfill_request_id == r.request_id);
  auto j = f.job(r.request_id);
  BOOST_TEST_REQUIRE(j.has_value());
  BOOST_TEST(j->type == "backfill");
  BOOST_TEST(j->status == "running");
  BOOST_TEST(j->node_id == n.id);
  BOOST_TEST(j->attempt_count == 2);
  BOOST_TEST(f.status().requests.size() == 1u);

  f.add_logs(n, a2, 0, 2); // the node resends, then answers
  BOOST_TEST(f.respond(n, r.request_id, {ok(a1, 3), ok(a2, 2)}));
  BOOST_TEST(f.row(a1).sync_state == "complete");
  BOOST_TEST(f.row(a2).sync_state == "complete");
  BOOST_TEST(f.row(a1).backfill_request_id.empty());
  BOOST_TEST(!f.row(a1).last_full_sync_at.empty());
  BOOST_TEST(f.job(r.request_id)->status == "succeeded");
  BOOST_TEST(f.status().requests.empty());
  BOOST_TEST(f.status().completed == 2u);
}

TRACKER_CASE(response_then_disconnect_keeps_the_completion) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 2);
  auto r = f.order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  // Both in the tracker's mailbox before it runs: the response came first, so it is applied
  // first, and the disconnect finds nothing left to reset.
  auto rh = f.self->request(f.tracker, caf::infinite, response_atom::value, session_ref{n.id, n.epoch}, r.request_id,
                            std::vector<storage::backfill_item>{ok(a, 2)});
  caf::anon_send(f.tracker, node_down_atom::value, session_ref{n.id, n.epoch}, std::string("socket_closed"));
  f.run();
  rh.receive([](bool known) { BOOST_TEST(known); }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(f.row(a).sync_state == "complete");
  BOOST_TEST(f.job(r.request_id)->status == "succeeded");
  BOOST_TEST(f.pending_rows() == 0);
}

/// A storm: `nodes` sessions with one request each end; answers the storage operations it took.
/// With a window, the ends arrive in two waves inside it, and nothing is written before it ends.
void disconnect_storm(fixture& f, std::chrono::milliseconds window) {
  std::vector<fixture::node> nodes;
  std::vector<std::string> attempts, requests;
  for (int i = 0; i < 40; ++i) {
    nodes.push_back(f.add_node("n" + std::to_string(i)));
    f.connect(nodes.back());
    attempts.push_back(f.attempt(nodes.back(), 1));
    auto r = f.order(nodes.back(), {attempts.back()});
    BOOST_TEST_REQUIRE(r.status == order_status::requested);
    requests.push_back(r.request_id);
  }
  auto items = [&] {
    uint64_t n = 0;
    auto rh = f.self->request(f.storage, caf::infinite, status_atom::value);
    f.run();
    rh.receive([&](storage_status& s) { n = s.stats.items; }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
    return n;
  };
  auto before = items();
  auto down = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i)
      caf::anon_send(f.tracker, node_down_atom::value, session_ref{nodes[i].id, nodes[i].epoch},
                     std::string(i % 4 ? "socket_closed" : "heartbeat_timeout"));
  };
  if (window.count() == 0) {
    down(0, nodes.size()); // all in the mailbox before the tracker runs
    f.run();
  } else {
    down(0, nodes.size() / 2);
    f.run();
    f.advance(window / 2);
    BOOST_TEST(f.pending_rows() == static_cast<int64_t>(nodes.size()), "nothing written inside the window");
    down(nodes.size() / 2, nodes.size());
    f.advance(window);
  }
  // One reset_requests per reason; storage runs each as two items (attempts, then jobs).
  BOOST_TEST(items() - before == 4u, "one reset_requests per reason");
  BOOST_TEST(f.pending_rows() == 0);
  for (size_t i = 0; i < nodes.size(); ++i) {
    BOOST_TEST(f.row(attempts[i]).sync_state == "partial");
    auto j = f.job(requests[i]);
    BOOST_TEST(j->status == "cancelled");
    BOOST_TEST(j->error == (i % 4 ? "session ended: socket_closed" : "session ended: heartbeat_timeout"));
  }
  BOOST_TEST(f.status().cancelled == nodes.size());
}

TRACKER_CASE(a_disconnect_storm_is_reset_in_one_storage_operation) {
  fixture f(b, opts());
  disconnect_storm(f, 0ms);
}

TRACKER_CASE(a_disconnect_storm_within_the_window_is_reset_in_one_storage_operation) {
  auto o = opts();
  o.coalesce_window = 10ms;
  fixture f(b, o);
  disconnect_storm(f, 10ms);
}

TRACKER_CASE(resets_gathered_before_the_tracker_stops_are_sent) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 1);
  auto r = f.order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  caf::anon_send(f.tracker, node_down_atom::value, session_ref{n.id, n.epoch}, std::string("socket_closed"));
  caf::anon_send_exit(f.tracker, caf::exit_reason::user_shutdown);
  f.run();
  BOOST_TEST(f.row(a).sync_state == "partial");
  BOOST_TEST(f.job(r.request_id)->status == "cancelled");
  BOOST_TEST(f.pending_rows() == 0);
}

TRACKER_CASE(disconnect_then_late_response_changes_nothing) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 2);
  auto r = f.order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  f.disconnect(n);
  BOOST_TEST(f.row(a).sync_state == "partial");
  BOOST_TEST(f.row(a).backfill_failures == 0, "a disconnect is not the attempt's failure");
  auto j = f.job(r.request_id);
  BOOST_TEST(j->status == "cancelled");
  BOOST_TEST(j->error == "session ended: socket_closed");
  auto before = f.t.dump();
  BOOST_TEST(!f.respond(n, r.request_id, {ok(a, 2)}), "unknown_request");
  BOOST_TEST(f.t.dump() == before, "a late response never changes a row");
  BOOST_TEST(f.order(n, {a}).status == order_status::offline);
}

TRACKER_CASE(a_response_from_another_node_is_refused) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  auto m = f.add_node("beta");
  f.connect(n);
  f.connect(m);
  auto a = f.attempt(n, 1);
  auto r = f.order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  auto before = f.t.dump();
  BOOST_TEST(!f.respond(m, r.request_id, {ok(a, 1)}));
  BOOST_TEST(f.t.dump() == before);
  BOOST_TEST(f.row(a).sync_state == "pending_backfill", "still the owner's to answer");
  BOOST_TEST(f.respond(n, r.request_id, {ok(a, 1)}));
  BOOST_TEST(f.row(a).sync_state == "complete");
}

TRACKER_CASE(a_duplicate_response_is_refused_and_applies_once) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 1);
  auto c = f.attempt(n, 1);
  auto r = f.order(n, {a, c});
  BOOST_TEST(f.respond(n, r.request_id, {ok(a, 1), not_ok(c)}));
  BOOST_TEST(f.row(c).backfill_failures == 1);
  auto before = f.t.dump();
  BOOST_TEST(!f.respond(n, r.request_id, {ok(a, 1), not_ok(c)}));
  BOOST_TEST(f.t.dump() == before, "the failure is not counted twice");
  BOOST_TEST(f.status().refused == 1u);
}

TRACKER_CASE(a_deadline_expires_the_request_but_not_the_session) {
  fixture f(b, opts(5, 2, 30s));
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 1);
  auto r = f.order(n, {a});
  BOOST_TEST_REQUIRE(r.status == order_status::requested);
  f.advance(29s);
  BOOST_TEST(f.row(a).sync_state == "pending_backfill");
  f.advance(1s);
  BOOST_TEST(f.row(a).sync_state == "partial");
  BOOST_TEST(f.job(r.request_id)->status == "expired");
  BOOST_TEST(f.status().expired == 1u);
  auto before = f.t.dump();
  BOOST_TEST(!f.respond(n, r.request_id, {ok(a, 1)}), "a response after the deadline is unknown");
  BOOST_TEST(f.t.dump() == before);
  // The session is still up: the attempt can be asked for again.
  auto again = f.order(n, {a});
  BOOST_TEST_REQUIRE(again.status == order_status::requested);
  BOOST_TEST(again.request_id != r.request_id);
  BOOST_TEST(f.respond(n, again.request_id, {ok(a, 1)}));
  BOOST_TEST(f.row(a).sync_state == "complete");
}

TRACKER_CASE(supersede_while_a_request_is_in_flight) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 1);
  auto old = f.order(n, {}, 10);
  BOOST_TEST_REQUIRE(old.status == order_status::requested);
  auto old_epoch = n.epoch;
  f.connect(n); // a newer hello: the old session is superseded before its end is noticed
  BOOST_TEST(f.row(a).sync_state == "partial", "the old session's request is gone at once");
  BOOST_TEST(f.job(old.request_id)->status == "cancelled");
  BOOST_TEST(!f.respond(n.id, old_epoch, old.request_id, {ok(a, 1)}), "the old epoch's answer is refused");
  BOOST_TEST(f.row(a).sync_state == "partial");
  // The new session gets a fresh request; the old session's end changes nothing of it.
  auto fresh = f.order(n, {}, 10);
  BOOST_TEST_REQUIRE(fresh.status == order_status::requested);
  BOOST_TEST(fresh.request_id != old.request_id);
  f.disconnect(n, old_epoch, "superseded");
  BOOST_TEST(f.row(a).sync_state == "pending_backfill");
  BOOST_TEST(f.row(a).backfill_request_id == fresh.request_id);
  BOOST_TEST(f.respond(n, fresh.request_id, {ok(a, 1)}));
  BOOST_TEST(f.row(a).sync_state == "complete");
}

TRACKER_CASE(partial_results_are_applied_per_attempt) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto good = f.attempt(n, 2);
  auto missing = f.attempt(n, 0);
  auto unmentioned = f.attempt(n, 0);
  auto r = f.order(n, {good, missing, unmentioned});
  BOOST_TEST_REQUIRE(r.attempts == 3);
  BOOST_TEST(f.respond(n, r.request_id, {ok(good, 2), not_ok(missing, "attempt not found on node")}));
  BOOST_TEST(f.row(good).sync_state == "complete");
  BOOST_TEST(f.row(missing).sync_state == "partial");
  BOOST_TEST(f.row(missing).backfill_failures == 1);
  BOOST_TEST(f.row(unmentioned).sync_state == "partial");
  BOOST_TEST(f.row(unmentioned).backfill_failures == 1, "an attempt left out of the response counts as failed");
  auto j = f.job(r.request_id);
  BOOST_TEST(j->status == "failed");
  auto detail = json::parse(j->detail);
  BOOST_TEST(detail["completed"] == 1);
  BOOST_TEST(detail["reset"] == 2);
}

TRACKER_CASE(ok_without_enough_stored_logs_is_not_complete) {
  fixture f(b, opts());
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a = f.attempt(n, 2);
  auto r = f.order(n, {a});
  BOOST_TEST(f.respond(n, r.request_id, {ok(a, 5)}), "lines 2..4 never arrived");
  BOOST_TEST(f.row(a).sync_state == "partial");
  BOOST_TEST(f.row(a).backfill_failures == 1);
  // Asked again, with logs_after 1; this time the lines arrive first.
  auto again = f.order(n, {a});
  BOOST_TEST(n.log->requests.back()["logs_after"][a] == 1);
  f.add_logs(n, a, 2, 5);
  BOOST_TEST(f.respond(n, again.request_id, {ok(a, 5)}));
  BOOST_TEST(f.row(a).sync_state == "complete");
  BOOST_TEST(f.row(a).backfill_failures == 0, "a completion clears the counter");
}

TRACKER_CASE(an_attempt_failing_max_failures_times_is_failed_and_left_alone) {
  fixture f(b, opts(3));
  auto n = f.add_node("alpha");
  f.connect(n);
  auto poison = f.attempt(n, 0);
  auto fine = f.attempt(n, 1);
  for (int i = 1; i <= 3; ++i) {
    auto r = f.order(n, {}, 10);
    BOOST_TEST_REQUIRE(r.status == order_status::requested);
    auto ids = ids_of(n.log->requests.back());
    BOOST_TEST(std::count(ids.begin(), ids.end(), poison) == 1);
    std::vector<storage::backfill_item> items{not_ok(poison, "gone")};
    if (i == 1)
      items.push_back(ok(fine, 1));
    BOOST_TEST(f.respond(n, r.request_id, items));
    BOOST_TEST(f.row(poison).backfill_failures == i);
    BOOST_TEST(f.row(poison).sync_state == (i < 3 ? "partial" : "failed"));
  }
  BOOST_TEST(f.row(fine).sync_state == "complete", "one poison attempt does not hold the others back");
  BOOST_TEST(f.order(n, {}, 10).status == order_status::nothing_to_mark, "failed leaves the triggers");
  BOOST_TEST(f.order(n, {poison}).status == order_status::nothing_to_mark);
}

// A node drain (issue 20): from the drain on, no new request goes to the node; the one in flight
// finishes with its answer, and only then does the drain answer (with it counted). The node stays
// held back until its session ends.
TRACKER_CASE(a_drain_waits_for_the_request_in_flight_and_holds_new_ones_back) {
  fixture f(b, opts(5, 2, 60s));
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a1 = f.attempt(n, 2);
  auto a2 = f.attempt(n, 1);
  auto r = f.order(n, {a1});
  BOOST_TEST_REQUIRE(r.status == order_status::requested, r.message);
  auto drain = f.self->request(f.tracker, caf::infinite, node_drain_atom::value, n.id, caf::timespan{30s});
  f.run();
  auto held = f.order(n, {a2});
  BOOST_TEST((held.status == order_status::offline), held.message);
  BOOST_TEST(held.message.find("drained") != std::string::npos, held.message);
  BOOST_TEST(f.row(a2).sync_state == "partial");
  BOOST_TEST(f.respond(n, r.request_id, {ok(a1, 2)}));
  drain_result got;
  drain.receive([&](drain_result& d) { got = d; }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(got.requests_finished == 1); // answered after the drain began: it waited for it
  BOOST_TEST(got.requests_reset == 0);
  BOOST_TEST(f.row(a1).sync_state == "complete");
  BOOST_TEST((f.order(n, {a2}).status == order_status::offline)); // still held back
  // A drain of a node with nothing in flight answers at once.
  auto again = f.ask<drain_result>(f.tracker, node_drain_atom::value, n.id, caf::timespan{30s});
  BOOST_TEST(again.requests_finished == 1); // the counts of this drain so far
  // Its session ends (the drained close): the node is forgotten; a later session is a new start.
  f.disconnect(n, 0, "drained");
  BOOST_TEST(f.ask<drain_result>(f.tracker, node_drain_atom::value, n.id, caf::timespan{30s}).requests_finished
             == 0); // not connected: nothing to wait for
  f.connect(n);
  auto fresh = f.order(n, {a2});
  BOOST_TEST((fresh.status == order_status::requested), fresh.message);
}

// At its deadline a drain resets what is still in flight (the attempts back to partial, the job
// cancelled) before it answers; a request that expires meanwhile counts as reset too.
TRACKER_CASE(a_drain_resets_what_is_left_at_its_deadline) {
  fixture f(b, opts(5, 2, 60s));
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a1 = f.attempt(n, 1);
  auto a2 = f.attempt(n, 1);
  auto r1 = f.order(n, {a1});
  f.advance(50s);
  auto r2 = f.order(n, {a2});
  BOOST_TEST_REQUIRE(r1.status == order_status::requested);
  BOOST_TEST_REQUIRE(r2.status == order_status::requested);
  auto drain = f.self->request(f.tracker, caf::infinite, node_drain_atom::value, n.id, caf::timespan{30s});
  f.run();
  f.advance(10s); // r1 expires (request_timeout 60 s)
  BOOST_TEST(f.job(r1.request_id)->status == "expired");
  BOOST_TEST(f.row(a2).sync_state == "pending_backfill");
  f.advance(20s); // the drain's deadline
  drain_result got;
  drain.receive([&](drain_result& d) { got = d; }, [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(got.requests_finished == 0);
  BOOST_TEST(got.requests_reset == 2);
  f.run();
  BOOST_TEST(f.row(a2).sync_state == "partial");
  BOOST_TEST(f.job(r2.request_id)->status == "cancelled");
  BOOST_TEST(f.status().requests.empty());
  BOOST_TEST(!f.respond(n, r2.request_id, {ok(a2, 1)}), "an answer after the drain's deadline is unknown");
  BOOST_TEST(f.pending_rows() == 0);
}

// An operator's cancel (bulk requests.cancel): exactly the named requests end as cancelled, their
// attempts back to partial with no failure counted, before the answer; a set naming a request
// that has ended changes nothing; a late answer to a cancelled request is unknown, and the
// attempts can be asked for again.
TRACKER_CASE(a_cancel_ends_exactly_the_named_requests_or_none) {
  fixture f(b, opts(5, 4, 60s));
  auto n = f.add_node("alpha");
  f.connect(n);
  auto a1 = f.attempt(n, 1);
  auto a2 = f.attempt(n, 1);
  auto a3 = f.attempt(n, 1);
  auto r1 = f.order(n, {a1, a2});
  auto r2 = f.order(n, {a3});
  BOOST_TEST_REQUIRE(r1.status == order_status::requested);
  BOOST_TEST_REQUIRE(r2.status == order_status::requested);
  // A set with an unknown request: nothing is cancelled.
  auto stale = f.ask<cancel_result>(f.tracker, cancel_atom::value, std::vector<std::string>{r1.request_id, new_uuid()});
  BOOST_TEST(stale.stale);
  BOOST_TEST(stale.requests == 0);
  BOOST_TEST(f.status().requests.size() == 2u);
  BOOST_TEST(f.row(a1).sync_state == "pending_backfill");
  // r1 alone: its two attempts are partial when the answer comes, r2 is untouched.
  auto got = f.ask<cancel_result>(f.tracker, cancel_atom::value, std::vector<std::string>{r1.request_id});
  BOOST_TEST(!got.stale);
  BOOST_TEST(got.requests == 1);
  BOOST_TEST(got.attempts == 2);
  for (auto& a : {a1, a2}) {
    BOOST_TEST(f.row(a).sync_state == "partial");
    BOOST_TEST(f.row(a).backfill_failures == 0, "a cancel is not the node's failure");
  }
  BOOST_TEST(f.job(r1.request_id)->status == "cancelled");
  BOOST_TEST(f.row(a3).sync_state == "pending_backfill");
  BOOST_TEST(f.status().requests.size() == 1u);
  BOOST_TEST(f.status().cancelled == 1u);
  // Cancelled twice: stale, nothing changes.
  BOOST_TEST(f.ask<cancel_result>(f.tracker, cancel_atom::value, std::vector<std::string>{r1.request_id}).stale);
  // The node's late answer is unknown and changes nothing; the attempts can be asked for again.
  auto before = f.t.dump();
  BOOST_TEST(!f.respond(n, r1.request_id, {ok(a1, 1), ok(a2, 1)}));
  BOOST_TEST(f.t.dump() == before);
  auto again = f.order(n, {a1, a2});
  BOOST_TEST_REQUIRE(again.status == order_status::requested);
  BOOST_TEST(f.respond(n, again.request_id, {ok(a1, 1), ok(a2, 1)}));
  BOOST_TEST(f.row(a1).sync_state == "complete");
  // r2's deadline still holds: it expires as it would have.
  f.advance(60s);
  BOOST_TEST(f.job(r2.request_id)->status == "expired");
  BOOST_TEST(f.pending_rows() == 0);
}
