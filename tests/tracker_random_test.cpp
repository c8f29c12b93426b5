// Randomized interleavings of sessions, answers, expiries and ends under the deterministic
// scheduler, checked against a model: the promise holds whatever the order.
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

namespace {

/// Runs one ready actor, chosen at random, for one message. False when nothing is ready.
bool run_random_once(fixture& f, std::mt19937_64& rng) {
  auto& jobs = f.sched.jobs;
  if (jobs.empty())
    return false;
  std::swap(jobs[0], jobs[rng() % jobs.size()]);
  return f.sched.try_run_once();
}

// What the node knows when it answers, carried in the (otherwise unused) error text of an ok
// result: "complete" = every line it claims was sent before the response, so the attempt must
// complete if the response is accepted; "either" = it claims one line more than it sent (a
// later live line may still make the claim true by the time it is applied).
const std::string expect_complete = "expect:complete";
const std::string expect_either = "expect:either";

struct schedule_model {
  struct model_session {
    std::shared_ptr<session_log> log;
    caf::actor actor;
  };
  struct node_model {
    fixture::node n;
    bool connected = false;
    std::vector<model_session> sessions; // every session it ever had
  };
  std::vector<node_model> nodes;
  std::map<std::string, std::string> owner;           // attempt -> node_id
  std::map<std::string, std::set<int64_t>> sent_seqs; // attempt -> log seqs the node has sent
  std::vector<std::string> attempts;
};

std::string in_list(const std::vector<std::string>& ids) {
  std::string out = "(";
  for (auto& id : ids)
    out += (out.size() > 1 ? ",'" : "'") + id + "'";
  return out + ")";
}

/// The promise of lessons.md, checked when a schedule has come to rest.
void check_promise(fixture& f, schedule_model& m, int schedule) {
  auto& sql = f.t.db().session();
  std::map<std::string, inflight_request> live;
  for (auto& r : f.status().requests) {
    BOOST_TEST_REQUIRE(r.sent, "schedule " << schedule << ": request " << r.request_id << " still marking at rest");
    live[r.request_id] = r;
  }
  // 1. Every pending row has a live request of its node, and every live request's attempts
  // are exactly the rows pending under it.
  std::map<std::string, uint64_t> pending_under;
  soci::rowset<soci::row> rows = (sql.prepare << "SELECT id, node_id, sync_state, COALESCE(backfill_request_id, '') "
                                                 "FROM node_task_attempts WHERE id IN "
                                                   + in_list(m.attempts));
  for (auto& r : rows) {
    if (r.get<std::string>(2) != "pending_backfill")
      continue;
    auto rid = r.get<std::string>(3);
    auto it = live.find(rid);
    BOOST_TEST_REQUIRE((it != live.end()), "schedule " << schedule << ": attempt " << r.get<std::string>(0)
                                                       << " is pending under " << rid << ", which is not live");
    BOOST_TEST_REQUIRE(it->second.node_id == r.get<std::string>(1), "schedule " << schedule);
    ++pending_under[rid];
  }
  for (auto& [rid, r] : live)
    BOOST_TEST_REQUIRE(pending_under[rid] == r.attempts, "schedule " << schedule << ": live request " << rid << " has "
                                                                     << r.attempts << " attempts, "
                                                                     << pending_under[rid] << " pending under it");
  // 2. Every (attempt, request) enters pending at most once and leaves it exactly once unless
  // the request is still live: no reset or completion happens twice.
  std::map<std::pair<std::string, std::string>, int> in, out;
  std::map<std::pair<std::string, std::string>, std::string> left_to;
  soci::rowset<soci::row> tr = (sql.prepare << "SELECT attempt_id, old_state, new_state, COALESCE(old_req, ''), "
                                               "COALESCE(new_req, ''), synced FROM transitions WHERE attempt_id IN "
                                                 + in_list(m.attempts) + " ORDER BY n");
  for (auto& r : tr) {
    auto a = r.get<std::string>(0);
    if (r.get<std::string>(2) == "pending_backfill")
      ++in[{a, r.get<std::string>(4)}];
    if (r.get<std::string>(1) == "pending_backfill") {
      ++out[{a, r.get<std::string>(3)}];
      // Completed, even if a later frame of the same run reopened it already.
      bool synced = r.get_indicator(5) != soci::i_null && r.get<int>(5) != 0;
      left_to[{a, r.get<std::string>(3)}] = synced ? "complete" : r.get<std::string>(2);
    }
  }
  for (auto& [key, n] : in) {
    BOOST_TEST_REQUIRE(n == 1, "schedule " << schedule << ": " << key.first << " marked twice under " << key.second);
    int o = out.count(key) ? out[key] : 0;
    bool is_live = live.count(key.second) > 0;
    BOOST_TEST_REQUIRE(o == (is_live ? 0 : 1), "schedule " << schedule << ": attempt " << key.first << " left request "
                                                           << key.second << " " << o << " times (live " << is_live
                                                           << ")");
  }
  for (auto& [key, n] : out)
    BOOST_TEST_REQUIRE(in.count(key) == 1u, "schedule " << schedule << ": left a request it never entered");
  // 3. No completion lost, none invented: only an accepted response completes, and it
  // completes every attempt whose lines were all sent before it.
  std::map<std::string, const sent_response*> accepted;
  for (auto& nm : m.nodes)
    for (auto& sref : nm.sessions)
      for (auto& r : *sref.log->responses) {
        BOOST_TEST_REQUIRE(r.known.has_value(), "schedule " << schedule << ": a response got no answer");
        if (*r.known) {
          BOOST_TEST_REQUIRE(!accepted.count(r.request_id), "schedule " << schedule << ": accepted twice");
          accepted[r.request_id] = &r;
        }
      }
  for (auto& [key, n] : in) {
    auto& [a, rid] = key;
    auto left = left_to.find(key);
    auto acc = accepted.find(rid);
    if (acc == accepted.end()) {
      // Back to partial; or to failed when the request expired (rule 3: an expiry counts).
      std::string job;
      soci::rowset<soci::row> js = (sql.prepare << "SELECT status FROM jobs WHERE id = '" + rid + "'");
      for (auto& r : js)
        job = r.get<std::string>(0);
      BOOST_TEST_REQUIRE(
        (left == left_to.end() || left->second == "partial" || (left->second == "failed" && job == "expired")),
        "schedule " << schedule << ": " << a << " left " << rid << " for " << left->second
                    << " without an accepted response (job " << job << ")");
      continue;
    }
    BOOST_TEST_REQUIRE((left != left_to.end()),
                       "schedule " << schedule << ": accepted response left " << a << " pending");
    const storage::backfill_item* item = nullptr;
    for (auto& it : acc->second->items)
      if (it.attempt_id == a)
        item = &it;
    if (item && item->ok && item->error == expect_complete)
      BOOST_TEST_REQUIRE(left->second == "complete", "schedule " << schedule << ": completion of " << a << " under "
                                                                 << rid << " lost (went " << left->second << ")");
    else if (!item || !item->ok)
      BOOST_TEST_REQUIRE(left->second != "complete", "schedule " << schedule << ": " << a << " completed by a failure");
  }
}

void run_schedule(fixture& f, std::mt19937_64& rng, int schedule) {
  schedule_model m;
  auto pick = [&](size_t n) { return size_t(rng() % n); };
  for (int i = 0; i < 3; ++i) {
    schedule_model::node_model nm;
    nm.n = f.add_node("s" + std::to_string(schedule) + "n" + std::to_string(i));
    for (int k = 0; k < 4; ++k) {
      auto logs = int64_t(pick(3));
      auto a = f.attempt(nm.n, logs);
      m.attempts.push_back(a);
      m.owner[a] = nm.n.id;
      for (int64_t s = 0; s < logs; ++s)
        m.sent_seqs[a].insert(s);
    }
    m.nodes.push_back(std::move(nm));
  }
  auto begin = [&](schedule_model::node_model& nm) {
    auto expected = nm.n.epoch;
    nm.n.epoch = expected + 1;
    nm.n.log = std::make_shared<session_log>();
    nm.n.session = f.sys.spawn(fake_session, nm.n.log, f.tracker, nm.n.id, nm.n.epoch);
    f.sessions.push_back(nm.n.session);
    nm.sessions.push_back({nm.n.log, nm.n.session});
    // As the registry: the epoch compare-and-set through storage, then node_up; the older
    // session (if any) ends afterwards.
    caf::anon_send(f.storage, storage::node_begin_session{nm.n.id, expected, ""});
    caf::anon_send(f.tracker, node_up_atom::value, session_ref{nm.n.id, nm.n.epoch}, nm.n.session);
    if (nm.connected)
      caf::anon_send(f.tracker, node_down_atom::value, session_ref{nm.n.id, expected}, std::string("superseded"));
    nm.connected = true;
  };
  auto new_line = [&](const std::string& a, const char* text) {
    auto& seqs = m.sent_seqs[a];
    int64_t next = seqs.empty() ? 0 : *seqs.rbegin() + 1;
    seqs.insert(next);
    caf::anon_send(f.storage,
                   storage::logs_insert{m.owner[a], a, {{next, "2026-01-09T12:00:00.000Z", "stdout", text}}});
  };
  for (auto& nm : m.nodes)
    begin(nm);
  f.run();
  std::uniform_real_distribution<double> u(0, 1);
  for (int step = 0; step < 40; ++step) {
    auto& nm = m.nodes[pick(m.nodes.size())];
    double r = u(rng);
    if (r < 0.12) {
      begin(nm);
    } else if (r < 0.22) {
      if (nm.connected) {
        caf::anon_send(f.tracker, node_down_atom::value, session_ref{nm.n.id, nm.n.epoch},
                       std::string("socket_closed"));
        nm.connected = false;
      }
    } else if (r < 0.42) {
      backfill_order o{nm.n.id, 0, {}, int64_t(1 + pick(4)), "random"};
      if (pick(3) == 0)
        for (auto& a : m.attempts)
          if (pick(2) == 0)
            o.attempt_ids.push_back(a); // some of other nodes' too: never marked
      caf::anon_send(f.tracker, std::move(o));
    } else if (r < 0.72) {
      // Answer a request one of the node's sessions got: maybe an old session's, maybe again.
      std::vector<std::pair<schedule_model::model_session*, const json*>> frames;
      for (auto& sref : nm.sessions)
        for (auto& fr : sref.log->requests)
          frames.emplace_back(&sref, &fr);
      if (frames.empty())
        continue;
      auto [sref, fr] = frames[pick(frames.size())];
      std::vector<storage::backfill_item> items;
      for (auto& a : ids_of(*fr)) {
        switch (pick(5)) {
          case 0: break; // left out
          case 1: items.push_back(not_ok(a)); break;
          case 2: new_line(a, "resent"); [[fallthrough]]; // lines first, then the answer
          case 3: items.push_back({a, true, int64_t(m.sent_seqs[a].size()), expect_complete}); break;
          default: items.push_back({a, true, int64_t(m.sent_seqs[a].size()) + 1, expect_either}); break;
        }
      }
      caf::anon_send(sref->actor, respond_atom::value, (*fr)["request_id"].get<std::string>(), std::move(items));
    } else if (r < 0.84) {
      f.sched.clock().advance_time(std::chrono::milliseconds(pick(6000))); // deadlines come due
    } else {
      // A live line for one of the node's attempts (may reopen a complete one).
      std::vector<std::string> mine;
      for (auto& [a, owner] : m.owner)
        if (owner == nm.n.id)
          mine.push_back(a);
      new_line(mine[pick(mine.size())], "live");
    }
    for (auto k = pick(5); k > 0; --k)
      run_random_once(f, rng);
  }
  while (run_random_once(f, rng))
    ;
  check_promise(f, m, schedule);
  // Everyone leaves: nothing may stay pending.
  for (auto& nm : m.nodes)
    if (nm.connected)
      caf::anon_send(f.tracker, node_down_atom::value, session_ref{nm.n.id, nm.n.epoch}, std::string("socket_closed"));
  while (run_random_once(f, rng))
    ;
  check_promise(f, m, schedule);
  int64_t left = -1;
  f.t.db().session() << "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill' AND id IN "
                          + in_list(m.attempts),
    soci::into(left);
  BOOST_TEST_REQUIRE(left == 0, "schedule " << schedule << ": rows left pending after every session ended");
  for (auto& nm : m.nodes)
    for (auto& sref : nm.sessions)
      caf::anon_send_exit(sref.actor, caf::exit_reason::user_shutdown);
  f.sessions.clear();
  f.run();
}

} // namespace

BOOST_AUTO_TEST_CASE(randomized_interleavings_keep_the_promise) {
  int schedules = 2000;
  if (auto* env = std::getenv("NODECOORD_SCHEDULES"))
    schedules = std::atoi(env);
  fixture f(storage::backend::sqlite, opts(2, 2, 10s));
  // A run of operations writes each row once (storage/grouped.cpp): a completion that a later
  // frame of the same run reopens shows as pending -> partial with last_full_sync_at set, so the
  // change of last_full_sync_at is recorded too.
  f.t.exec_sql("CREATE TABLE transitions (n INTEGER PRIMARY KEY AUTOINCREMENT, attempt_id TEXT, old_state TEXT, "
               "new_state TEXT, old_req TEXT, new_req TEXT, synced INTEGER)");
  f.t.exec_sql("CREATE TRIGGER record_transition AFTER UPDATE ON node_task_attempts "
               "WHEN OLD.sync_state <> NEW.sync_state "
               "OR COALESCE(OLD.backfill_request_id, '') <> COALESCE(NEW.backfill_request_id, '') BEGIN "
               "INSERT INTO transitions (attempt_id, old_state, new_state, old_req, new_req, synced) VALUES "
               "(OLD.id, OLD.sync_state, NEW.sync_state, OLD.backfill_request_id, NEW.backfill_request_id, "
               "COALESCE(OLD.last_full_sync_at, '') <> COALESCE(NEW.last_full_sync_at, '')); END");
  int from = 0;
  if (auto* env = std::getenv("NODECOORD_SCHEDULE_FROM")) { // replay one failing schedule
    from = std::atoi(env);
    log::set_level(log::level::debug);
  }
  std::mt19937_64 rng;
  for (int s = from; s < from + schedules; ++s) {
    rng.seed(uint64_t(s) * 7919 + 1); // fixed seeds: a failure names its schedule and replays
    run_schedule(f, rng, s);
  }
  auto st = f.status();
  BOOST_TEST_MESSAGE("schedules: " << schedules << ", requests: " << st.requested << ", applied: " << st.answered
                                   << ", refused: " << st.refused << ", fenced: " << st.fenced
                                   << ", expired: " << st.expired << ", cancelled: " << st.cancelled
                                   << ", send failures: " << st.send_failures << ", completed: " << st.completed
                                   << ", reset: " << st.reset << ", failed: " << st.failed);
  // The schedules went down every path (a generator that never got there proves nothing).
  BOOST_TEST(st.answered > 0u);
  BOOST_TEST(st.refused > 0u);
  BOOST_TEST(st.fenced > 0u); // accepted, then refused by storage's epoch fence (a newer session began)
  BOOST_TEST(st.expired > 0u);
  BOOST_TEST(st.cancelled > 0u);
  BOOST_TEST(st.completed > 0u);
  BOOST_TEST(st.reset > 0u);
  BOOST_TEST(st.failed > 0u);
}
