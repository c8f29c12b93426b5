// The audit ledger (schema v4, issue 20): an audited operation writes its row in the same
// transaction as its effect, with the outcome it had; the ledger pages newest first by id and
// filters, on both backends.

#include <boost/test/unit_test.hpp>

#include "storage/admin_ops.hpp"
#include "storage/audit.hpp"
#include "storage/snapshot.hpp"
#include "storage_test_support.hpp"

#include <set>
#include <stdexcept>

using namespace storage_test;

namespace {

audit_entry by(const std::string& action, const std::string& target = "") {
  audit_entry e;
  e.actor = "token:0123abcd";
  e.action = action;
  e.target = target;
  e.filter = target.empty() ? "" : R"({"name":")" + target + R"("})";
  return e;
}

std::vector<audit_record> ledger(test_database& t, audit_query q = {}) {
  q.limit = q.limit == 100 ? 1000 : q.limit;
  return t.run(q);
}

/// The JSON documents as the backend spells them back (JSONB adds spaces).
std::string compact(const std::string& json) {
  std::string out;
  for (char ch : json)
    if (ch != ' ')
      out += ch;
  return out;
}

} // namespace

NC_BOTH_BACKENDS(audited_operations_write_their_outcome_with_their_effect) {
  BOOST_TEST(t.run(node_create{"n1", "", "kid-n1", "hash", by("node.create", "n1")}).created);
  BOOST_TEST(!t.run(node_create{"n1", "", "kid-other", "hash", by("node.create", "n1")}).created);
  BOOST_TEST(t.run(node_disable{"n1", by("node.disable", "n1")}).found);
  BOOST_TEST(t.run(node_disable{"n1", by("node.disable", "n1")}).found); // already disabled
  BOOST_TEST(!t.run(node_disable{"ghost", by("node.disable", "ghost")}).found);
  BOOST_TEST(t.run(node_enable{"n1", by("node.enable", "n1")}).found);
  BOOST_TEST(t.run(node_set_key{"n1", "kid-2", "hash-2", by("node.rotate_key", "n1")}).found);
  auto n = t.run(node_lookup_by_name{"n1"}).node;
  auto a = add_attempt(t, n);
  BOOST_TEST(!t.run(attempt_requeue{a, by("attempt.requeue", a)}).requeued); // partial, not failed
  BOOST_TEST(t.run(jobs_prune{{"failed"}, {}, "", by("jobs.prune")}).deleted == 0);
  BOOST_TEST(t.run(node_disable{"n1"}).found); // not audited: no row

  auto rows = ledger(t);
  BOOST_TEST_REQUIRE(rows.size() == 9u);
  struct expected {
    const char* action;
    const char* target;
    const char* result;
    const char* counts;
    const char* error;
  };
  // Newest first.
  std::vector<expected> want{
    {"jobs.prune", "", "succeeded", R"({"jobs":0})", ""},
    {"attempt.requeue", a.c_str(), "failed", R"({"attempts":0})", "the attempt is not failed"},
    {"node.rotate_key", "n1", "succeeded", R"({"nodes":1})", ""},
    {"node.enable", "n1", "succeeded", R"({"nodes":1})", ""},
    {"node.disable", "ghost", "failed", R"({"nodes":0})", "no node named ghost"},
    {"node.disable", "n1", "succeeded", R"({"nodes":0})", ""},
    {"node.disable", "n1", "succeeded", R"({"nodes":1})", ""},
    {"node.create", "n1", "failed", R"({"nodes":0})", "the name or the key id is taken"},
    {"node.create", "n1", "succeeded", R"({"nodes":1})", ""},
  };
  for (size_t i = 0; i < want.size(); ++i) {
    auto& r = rows[i];
    BOOST_TEST_CONTEXT("row " << i) {
      BOOST_TEST(r.entry.action == want[i].action);
      BOOST_TEST(r.entry.target == want[i].target);
      BOOST_TEST(r.entry.result == want[i].result);
      BOOST_TEST(compact(r.entry.counts) == want[i].counts);
      BOOST_TEST(r.entry.error == want[i].error);
      BOOST_TEST(r.entry.actor == "token:0123abcd");
      BOOST_TEST(r.at == format_time(t.clock.fn()()));
      if (i > 0)
        BOOST_TEST(r.id < rows[i - 1].id);
    }
  }
  BOOST_TEST(compact(rows.back().entry.filter) == R"({"name":"n1"})");
  BOOST_TEST(rows.front().entry.filter == "");

  // The same transaction: undone with it. The change and its row go together, or neither.
  auto before = ledger(t).size();
  write_transaction(t.parsed_url(), t.clock.fn(), /*rollback=*/true, [&](op_context& c) {
    BOOST_TEST(execute(c, node_disable{"n1", by("node.disable", "n1")}).found);
  });
  BOOST_TEST(ledger(t).size() == before);
  BOOST_TEST(t.run(node_lookup_by_name{"n1"}).node.status == "disabled"); // as the unaudited disable left it
  BOOST_CHECK_THROW(write_transaction(t.parsed_url(), t.clock.fn(), false,
                                      [&](op_context& c) {
                                        execute(c, node_enable{"n1", by("node.enable", "n1")});
                                        throw std::logic_error("after the effect");
                                      }),
                    std::logic_error);
  BOOST_TEST(ledger(t).size() == before);
  BOOST_TEST(t.run(node_lookup_by_name{"n1"}).node.status == "disabled");
}

NC_BOTH_BACKENDS(the_ledger_pages_newest_first_and_filters) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 25; ++i) {
    audit_entry e;
    e.actor = i % 3 ? "local" : "token:aa";
    e.action = i % 2 ? "node.disable" : "attempts.requeue";
    e.target = i % 5 == 0 ? "n" + std::to_string(i) : "";
    e.result = i % 4 == 0 ? "refused" : "succeeded";
    e.error = e.result == "refused" ? "filter_required" : "";
    e.filter = R"({"i":)" + std::to_string(i) + "}";
    if (i == 10)
      t.clock.advance(std::chrono::hours(1));
    ids.push_back(t.run(audit_append{e}));
  }
  BOOST_TEST(std::set<int64_t>(ids.begin(), ids.end()).size() == 25u);
  // Pages of 10 after each last id: every row once, newest first.
  std::vector<int64_t> seen;
  int64_t before = 0;
  for (int page = 0; page < 5; ++page) {
    audit_query q;
    q.before_id = before;
    q.limit = 10;
    auto rows = t.run(q);
    for (auto& r : rows)
      seen.push_back(r.id);
    if (rows.size() < 10u)
      break;
    before = rows.back().id;
  }
  std::vector<int64_t> newest_first(ids.rbegin(), ids.rend());
  BOOST_TEST(seen == newest_first);

  auto count = [&](audit_query q) { return ledger(t, q).size(); };
  audit_query q;
  q.actor = "token:aa";
  BOOST_TEST(count(q) == 9u); // i = 0, 3, …, 24
  q = {};
  q.action = "node.disable";
  BOOST_TEST(count(q) == 12u);
  q = {};
  q.result = "refused";
  BOOST_TEST(count(q) == 7u); // i = 0, 4, …, 24
  for (auto& r : ledger(t, q))
    BOOST_TEST(r.entry.error == "filter_required");
  q = {};
  q.target = "n10";
  BOOST_TEST_REQUIRE(count(q) == 1u);
  BOOST_TEST(ledger(t, q)[0].id == ids[10]);
  // Time bounds: ten rows before the clock moved, fifteen after.
  auto moved = format_time(t.clock.fn()());
  q = {};
  q.since = moved;
  BOOST_TEST(count(q) == 15u);
  q = {};
  q.until = moved;
  BOOST_TEST(count(q) == 10u);
  q = {};
  q.limit = 0;
  BOOST_TEST(count(q) == 0u);

  // What the ledger refuses to hold or to be asked.
  audit_entry bad;
  bad.actor = "local";
  bad.action = "node.disable";
  bad.result = "maybe";
  BOOST_CHECK_THROW(t.run(audit_append{bad}), std::exception);
  bad.result = "failed";
  bad.counts = "[1]";
  BOOST_CHECK_THROW(t.run(audit_append{bad}), std::exception);
  bad.counts = "";
  bad.action = "";
  BOOST_CHECK_THROW(t.run(audit_append{bad}), std::exception);
  q = {};
  q.since = "yesterday";
  BOOST_CHECK_THROW(t.run(q), std::exception);
  BOOST_TEST(ledger(t).size() == 25u);
  // Bytes that are not UTF-8 (a request's path) are replaced, not refused by PostgreSQL: the
  // change the row goes with must not fail because of it.
  audit_entry odd;
  odd.actor = "local";
  odd.action = "request";
  odd.target = "POST /api/\xa5";
  odd.result = "refused";
  odd.error = "not_found: no route /api/\xa5";
  t.run(audit_append{odd});
  auto back = ledger(t).front();
  BOOST_TEST(back.entry.target == "POST /api/\xef\xbf\xbd");
  BOOST_TEST(back.entry.error == "not_found: no route /api/\xef\xbf\xbd");
}
