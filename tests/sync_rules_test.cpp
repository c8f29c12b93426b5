// The sync state machine of DESIGN §3 as plain functions (storage/sync_rules.hpp), one table per
// rule: every starting state against every event. tests/storage_test.cpp runs the same table
// through the SQL of both backends (sql_agrees_with_sync_rules).
#define BOOST_TEST_MODULE sync_rules_test
#include <boost/test/unit_test.hpp>

#include "storage/sync_rules.hpp"

#include <ostream>
#include <set>
#include <string>
#include <vector>

using namespace nodecoord;
using namespace nodecoord::storage;
namespace rules = nodecoord::storage::sync_rules;

namespace nodecoord {
std::ostream& operator<<(std::ostream& os, sync_state s) { return os << to_string(s); }
} // namespace nodecoord
namespace nodecoord::storage {
std::ostream& operator<<(std::ostream& os, backfill_outcome o) { return os << to_string(o); }
std::ostream& operator<<(std::ostream& os, const sync_row& r) {
  return os << "{" << r.state << " req=" << (r.request_id.empty() ? "-" : r.request_id) << " owner=" << r.owner
            << " logs=" << r.log_count << " failures=" << r.failures << "}";
}
} // namespace nodecoord::storage

namespace {

constexpr int64_t max_failures = 3;

sync_row row(sync_state s, int64_t failures = 0, int64_t logs = 0) {
  sync_row r;
  r.state = s;
  r.owner = "node-a";
  r.failures = failures;
  r.log_count = logs;
  if (s == sync_state::pending_backfill)
    r.request_id = "req-1";
  return r;
}

const sync_state all_states[] = {sync_state::partial, sync_state::pending_backfill, sync_state::complete,
                                 sync_state::failed};

} // namespace

BOOST_AUTO_TEST_CASE(sync_state_spellings_round_trip) {
  for (auto s : all_states)
    BOOST_TEST((parse<sync_state>(to_string(s)) == s));
  BOOST_TEST(std::string(to_string(sync_state::pending_backfill)) == "pending_backfill");
  for (auto bad : {"", "Partial", "pending", "complete ", "done"})
    BOOST_TEST(!parse<sync_state>(bad).has_value(), bad);
}

// Every status enum: one spelling each, parsed back, nothing else parsed.
template <class E>
void round_trips() {
  std::set<std::string> seen;
  for (auto name : names_of<E>()) {
    auto e = parse<E>(name);
    BOOST_TEST_REQUIRE(e.has_value(), name);
    BOOST_TEST(std::string(to_string(*e)) == std::string(name));
    BOOST_TEST(seen.insert(std::string(name)).second, "spelled twice: " << name);
    BOOST_TEST(is(name, *e));
  }
  BOOST_TEST(!parse<E>("").has_value());
  BOOST_TEST(!parse<E>("RUNNING").has_value());
}

BOOST_AUTO_TEST_CASE(every_status_enum_round_trips) {
  round_trips<sync_state>();
  round_trips<attempt_state>();
  round_trips<node_status>();
  round_trips<job_type>();
  round_trips<job_status>();
  BOOST_TEST(names_of<job_status>().size() == 7u);
  BOOST_TEST(std::string(to_string(node_status::disabled)) == "disabled");
  // Final states: what never changes again.
  for (auto s : {job_status::queued, job_status::running})
    BOOST_TEST(!is_final(s));
  for (auto s :
       {job_status::succeeded, job_status::failed, job_status::cancelled, job_status::expired, job_status::abandoned})
    BOOST_TEST(is_final(s));
  for (auto s : {attempt_state::queued, attempt_state::running})
    BOOST_TEST(!is_final(s));
  for (auto s : {attempt_state::succeeded, attempt_state::failed, attempt_state::cancelled})
    BOOST_TEST(is_final(s));
}

BOOST_AUTO_TEST_CASE(a_new_attempt_starts_partial) {
  auto r = rules::created("node-a");
  BOOST_TEST(r == row(sync_state::partial));
}

// Any change reopens a complete or failed attempt, its failures forgotten; partial and pending
// rows are left as they are (the pending one's answer decides).
BOOST_AUTO_TEST_CASE(reopen_table) {
  struct {
    sync_row before;
    bool reopened;
    sync_row after;
  } table[] = {
    {row(sync_state::partial, 2), false, row(sync_state::partial, 2)},
    {row(sync_state::pending_backfill, 2), false, row(sync_state::pending_backfill, 2)},
    {row(sync_state::complete, 0, 5), true, row(sync_state::partial, 0, 5)},
    {row(sync_state::failed, 3, 5), true, row(sync_state::partial, 0, 5)},
  };
  for (auto& t : table) {
    auto r = t.before;
    BOOST_TEST(rules::reopen(r) == t.reopened, t.before);
    BOOST_TEST(r == t.after, t.before << " -> " << r);
  }
}

// Rule 4: only a partial attempt is marked, and never under two requests.
BOOST_AUTO_TEST_CASE(mark_table) {
  for (auto s : all_states) {
    auto r = row(s, 1);
    auto before = r;
    bool marked = rules::mark(r, "req-2");
    BOOST_TEST(marked == (s == sync_state::partial), to_string(s));
    if (marked) {
      BOOST_TEST(r.state == sync_state::pending_backfill);
      BOOST_TEST(r.request_id == "req-2");
      BOOST_TEST(r.failures == 1);
    } else {
      BOOST_TEST(r == before);
    }
  }
  auto r = row(sync_state::partial);
  BOOST_TEST(!rules::mark(r, "")); // a request has an id
  BOOST_TEST(r == row(sync_state::partial));
}

// Rule 1: only the sender's rows pending under exactly that request.
BOOST_AUTO_TEST_CASE(pending_under_table) {
  auto pending = row(sync_state::pending_backfill);
  BOOST_TEST(rules::pending_under(pending, "req-1", "node-a"));
  BOOST_TEST(!rules::pending_under(pending, "req-2", "node-a")); // another request (late, duplicate)
  BOOST_TEST(!rules::pending_under(pending, "req-1", "node-b")); // a foreign sender
  BOOST_TEST(!rules::pending_under(pending, "", "node-a"));
  for (auto s : {sync_state::partial, sync_state::complete, sync_state::failed}) {
    auto r = row(s);
    r.request_id = "req-1"; // not a state the schema allows; the state still decides
    BOOST_TEST(!rules::pending_under(r, "req-1", "node-a"), to_string(s));
  }
}

// Rules 2 and 3 for a row pending under the answered request.
BOOST_AUTO_TEST_CASE(answer_table) {
  struct {
    int64_t failures, stored;
    std::optional<node_answer> answer;
    backfill_outcome outcome;
    sync_state state;
    int64_t failures_after;
  } table[] = {
    // ok with evidence completes, failures forgotten
    {0, 5, node_answer{true, 5}, backfill_outcome::completed, sync_state::complete, 0},
    {2, 7, node_answer{true, 5}, backfill_outcome::completed, sync_state::complete, 0},
    {0, 0, node_answer{true, 0}, backfill_outcome::completed, sync_state::complete, 0},
    // rule 2: ok without evidence is a failure
    {0, 4, node_answer{true, 5}, backfill_outcome::reset, sync_state::partial, 1},
    // rule 3: a failure result, or no result for the attempt at all
    {0, 5, node_answer{false, 5}, backfill_outcome::reset, sync_state::partial, 1},
    {1, 5, std::nullopt, backfill_outcome::reset, sync_state::partial, 2},
    // ... up to max_failures, then failed
    {max_failures - 1, 5, node_answer{false, 0}, backfill_outcome::failed, sync_state::failed, max_failures},
    {max_failures - 1, 4, node_answer{true, 5}, backfill_outcome::failed, sync_state::failed, max_failures},
    {max_failures - 1, 5, std::nullopt, backfill_outcome::failed, sync_state::failed, max_failures},
  };
  for (auto& t : table) {
    auto r = row(sync_state::pending_backfill, t.failures, t.stored);
    auto outcome = rules::answer(r, t.answer, max_failures);
    BOOST_TEST(outcome == t.outcome, "failures " << t.failures << " stored " << t.stored);
    BOOST_TEST(r.state == t.state);
    BOOST_TEST(r.failures == t.failures_after);
    BOOST_TEST(r.request_id.empty()); // out of pending, the request is gone
    BOOST_TEST(r.log_count == t.stored);
  }
  // A row not pending is stale: nothing changes.
  for (auto s : {sync_state::partial, sync_state::complete, sync_state::failed}) {
    auto r = row(s, 1, 5);
    BOOST_TEST(rules::answer(r, node_answer{true, 5}, max_failures) == backfill_outcome::stale);
    BOOST_TEST(r == row(s, 1, 5));
  }
}

// Rule 3: an expired request counts a failure, a session that ended does not.
BOOST_AUTO_TEST_CASE(end_request_table) {
  struct {
    bool count_failure;
    int64_t failures;
    backfill_outcome outcome;
    sync_state state;
    int64_t failures_after;
  } table[] = {
    {false, 0, backfill_outcome::reset, sync_state::partial, 0},
    {false, max_failures - 1, backfill_outcome::reset, sync_state::partial, max_failures - 1},
    {true, 0, backfill_outcome::reset, sync_state::partial, 1},
    {true, max_failures - 2, backfill_outcome::reset, sync_state::partial, max_failures - 1},
    {true, max_failures - 1, backfill_outcome::failed, sync_state::failed, max_failures},
  };
  for (auto& t : table) {
    auto r = row(sync_state::pending_backfill, t.failures);
    BOOST_TEST(rules::end_request(r, t.count_failure, max_failures) == t.outcome);
    BOOST_TEST(r.state == t.state);
    BOOST_TEST(r.failures == t.failures_after);
    BOOST_TEST(r.request_id.empty());
  }
  for (auto s : {sync_state::partial, sync_state::complete, sync_state::failed}) {
    auto r = row(s, 1);
    BOOST_TEST(rules::end_request(r, true, max_failures) == backfill_outcome::stale);
    BOOST_TEST(r == row(s, 1));
  }
}

BOOST_AUTO_TEST_CASE(requeue_and_recover_tables) {
  for (auto s : all_states) {
    auto r = row(s, 2, 3);
    BOOST_TEST(rules::requeue(r) == (s == sync_state::failed), to_string(s));
    BOOST_TEST(r == (s == sync_state::failed ? row(sync_state::partial, 0, 3) : row(s, 2, 3)));
    auto q = row(s, 2, 3);
    BOOST_TEST(rules::recover(q) == (s == sync_state::pending_backfill), to_string(s));
    // A restart is nobody's failure: the counter stays.
    BOOST_TEST(q == (s == sync_state::pending_backfill ? row(sync_state::partial, 2, 3) : row(s, 2, 3)));
  }
}

// A poison attempt in a batch: the walk of rule 3 with request_size, as the tracker drives it.
// Ten partial attempts, one of which never answers: the others complete, the poison ends failed
// after exactly max_failures requests, and no other attempt is ever failed.
BOOST_AUTO_TEST_CASE(a_poison_attempt_is_isolated_by_shrinking_requests) {
  const int64_t limit = 8, max = 4;
  std::vector<sync_row> rows(10, rules::created("node-a"));
  const size_t poison = 0; // the oldest
  for (int round = 0; round < 50; ++round) {
    // The oldest partial attempts with as many failures as the oldest one, request_size of them.
    std::vector<size_t> picked;
    int64_t lead = -1;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].state != sync_state::partial)
        continue;
      if (lead < 0)
        lead = rows[i].failures;
      if (rows[i].failures == lead && static_cast<int64_t>(picked.size()) < rules::request_size(limit, lead, max))
        picked.push_back(i);
    }
    if (picked.empty())
      break;
    auto req = "req-" + std::to_string(round);
    for (auto i : picked)
      BOOST_TEST_REQUIRE(rules::mark(rows[i], req));
    bool has_poison = false;
    for (auto i : picked)
      has_poison = has_poison || i == poison;
    for (auto i : picked) {
      if (has_poison) // the node times out: the request expires
        rules::end_request(rows[i], true, max);
      else
        rules::answer(rows[i], node_answer{true, 0}, max);
    }
  }
  BOOST_TEST(rows[poison].state == sync_state::failed);
  BOOST_TEST(rows[poison].failures == max);
  for (size_t i = 1; i < rows.size(); ++i)
    BOOST_TEST(rows[i].state == sync_state::complete, "attempt " << i << ": " << rows[i]);
}

BOOST_AUTO_TEST_CASE(request_size_falls_to_one_before_the_last_failure) {
  using rules::request_size;
  BOOST_TEST(request_size(100, 0, 5) == 100);
  BOOST_TEST(request_size(100, 1, 5) == 31);
  BOOST_TEST(request_size(100, 2, 5) == 10);
  BOOST_TEST(request_size(100, 3, 5) == 3);
  BOOST_TEST(request_size(100, 4, 5) == 1);
  BOOST_TEST(request_size(100, 9, 5) == 1);
  BOOST_TEST(request_size(8, 1, 3) == 2);
  BOOST_TEST(request_size(8, 2, 3) == 1);
  BOOST_TEST(request_size(100, 1, 2) == 1);
  BOOST_TEST(request_size(100, 1, 1) == 1);
  BOOST_TEST(request_size(1, 0, 5) == 1);
  BOOST_TEST(request_size(0, 0, 5) == 1);
  for (int64_t limit : {1, 2, 7, 100, 1000})
    for (int64_t max = 1; max <= 8; ++max)
      for (int64_t f = 1; f < max; ++f) {
        BOOST_TEST(request_size(limit, f, max) <= request_size(limit, f - 1, max));
        BOOST_TEST(request_size(limit, f, max) >= 1);
      }
}
