// The admin API's storage operations (storage/admin_ops.hpp) on SQLite and on PostgreSQL.
#define BOOST_TEST_MODULE admin_ops_test
#include <boost/test/unit_test.hpp>

#include "common/ids.hpp"
#include "storage/admin_ops.hpp"
#include "storage/query.hpp"
#include "test_db.hpp"

#include <algorithm>
#include <map>
#include <set>

using namespace nodecoord;
using namespace nodecoord::storage;
using nodecoord::test::test_database;

namespace {

node_record add_node(test_database& t, const std::string& name) {
  auto r = t.run(node_create{name, "", "kid-" + name, sha256_hex("secret-" + name)});
  BOOST_REQUIRE(r.created);
  return r.node;
}

std::vector<std::string> ids_of(const std::vector<attempt_record>& v) {
  std::vector<std::string> out;
  for (auto& a : v)
    out.push_back(a.id);
  return out;
}

/// Pages through attempt_list with `op`'s filters, `limit` a page; checks every page is in
/// ascending id order and continues the previous one.
std::vector<attempt_record> all_pages(test_database& t, attempt_list op, int64_t limit, size_t* pages = nullptr) {
  std::vector<attempt_record> out;
  op.limit = limit;
  op.after_id.clear();
  size_t n = 0;
  while (true) {
    auto page = t.run(op);
    BOOST_REQUIRE_LE(page.size(), static_cast<size_t>(limit));
    ++n;
    BOOST_REQUIRE_LE(n, 1000u);
    for (auto& a : page) {
      BOOST_TEST(a.id > op.after_id);
      op.after_id = a.id;
      out.push_back(a);
    }
    if (page.size() < static_cast<size_t>(limit))
      break;
  }
  if (pages)
    *pages = n;
  return out;
}

std::set<std::string> job_ids(test_database& t) {
  std::set<std::string> out;
  query(t.db().session(), "SELECT id FROM jobs").each([&](const soci::row& r) { out.insert(col_str(r, 0)); });
  return out;
}

const std::vector<std::string> all_statuses{"queued",    "running", "succeeded", "failed",
                                            "cancelled", "expired", "abandoned"};
const std::vector<std::string> all_types{"backfill", "reconcile", "bundle_export", "bundle_import"};

std::string add_job(test_database& t, const std::string& status, const std::string& type,
                    const std::string& created_at) {
  job_record j;
  j.id = new_uuid();
  j.type = type;
  j.status = status;
  j.created_at = created_at;
  BOOST_REQUIRE(t.run(job_insert{j}).inserted);
  return j.id;
}

} // namespace

NC_BOTH_BACKENDS(attempt_list_filters_and_keyset_paging) {
  auto n1 = add_node(t, "n1");
  auto n2 = add_node(t, "n2");
  const char* states[] = {"queued", "running", "succeeded", "failed", "cancelled"};
  const char* syncs[] = {"partial", "complete", "failed"};
  std::map<std::string, attempt_record> expected; // by id: what each attempt must look like
  for (int i = 0; i < 53; ++i) {
    auto& n = i % 3 == 0 ? n2 : n1;
    auto id = new_uuid();
    auto r = t.run(attempt_upsert{n.id, id, "task-" + std::to_string(i), states[i % 5], "2026-01-09T11:00:00.000Z", "",
                                  i % 4 == 0 ? R"({"k":1})" : ""});
    BOOST_REQUIRE(r.created);
    t.exec_sql(std::string("UPDATE node_task_attempts SET sync_state = '") + syncs[i % 3] + "' WHERE id = '" + id
               + "'");
    auto got = t.run(attempt_get{id});
    BOOST_REQUIRE(got.found);
    BOOST_REQUIRE(got.attempt.sync_state == syncs[i % 3]);
    expected[id] = got.attempt;
  }
  // Logs so the counters are not all defaults.
  auto first = expected.begin()->first;
  BOOST_REQUIRE(
    t.run(logs_insert{expected.begin()->second.node_id,
                      first,
                      {{0, "2026-01-09T12:00:00.000Z", "stdout", "a"}, {1, "2026-01-09T12:00:00.000Z", "stderr", "b"}}})
      .inserted
    == 2);
  expected[first] = t.run(attempt_get{first}).attempt;

  // No filter: several pages, each id once, none missing, rows as attempt_get reads them.
  size_t pages = 0;
  auto all = all_pages(t, {}, 7, &pages);
  BOOST_TEST(pages == 8u); // 53 = 7 * 7 + 4
  BOOST_REQUIRE_EQUAL(all.size(), expected.size());
  size_t i = 0;
  for (auto& [id, want] : expected) { // std::map: ascending id, the order asked for
    auto& got = all[i++];
    BOOST_TEST(got.id == id);
    BOOST_TEST(got.node_id == want.node_id);
    BOOST_TEST(got.task_id == want.task_id);
    BOOST_TEST(got.state == want.state);
    BOOST_TEST(got.sync_state == want.sync_state);
    BOOST_TEST(got.log_count == want.log_count);
    BOOST_TEST(got.log_max_seq == want.log_max_seq);
    BOOST_TEST(got.started_at == want.started_at);
    BOOST_TEST(got.meta == want.meta);
    BOOST_TEST(got.created_at == want.created_at);
    BOOST_TEST(got.updated_at == want.updated_at);
  }
  BOOST_TEST(all.front().log_count == 2);
  BOOST_TEST(all.front().log_max_seq == 1);
  // A page exactly as large as what is left, then an empty one.
  BOOST_TEST(all_pages(t, {}, 53, &pages).size() == 53u);
  BOOST_TEST(pages == 2u);

  // Each filter alone and combined: exactly the matching rows, in order, across pages.
  auto check = [&](attempt_list filter, int64_t limit) {
    std::vector<std::string> want;
    for (auto& [id, a] : expected)
      if ((filter.node_id.empty() || a.node_id == filter.node_id)
          && (filter.sync_state.empty() || a.sync_state == filter.sync_state)
          && (filter.state.empty() || a.state == filter.state))
        want.push_back(id);
    auto got = ids_of(all_pages(t, filter, limit));
    BOOST_TEST(got == want,
               "filter node=" << filter.node_id << " sync=" << filter.sync_state << " state=" << filter.state);
    return want.size();
  };
  BOOST_TEST(check({n2.id}, 4) == 18u);
  BOOST_TEST(check({n1.id}, 5) == 35u);
  BOOST_TEST(check({"", "complete"}, 3) >= 17u); // the lines above may have reopened one
  BOOST_TEST(check({"", "", "failed"}, 2) == 10u);
  BOOST_TEST(check({n1.id, "failed", ""}, 2) > 0u);
  check({n1.id, "partial", ""}, 2); // n1's attempts are partial only if the lines reopened one
  BOOST_TEST(check({n2.id, "partial", "running"}, 1) > 0u);
  BOOST_TEST(check({n1.id, "complete", "queued"}, 3) > 0u);
  BOOST_TEST(check({"", "pending_backfill"}, 10) == 0u);
  BOOST_TEST(check({new_uuid()}, 10) == 0u);

  // After the last id: nothing. limit 0: nothing. A cursor that is not a UUID is refused alike on
  // both backends.
  BOOST_TEST(t.run(attempt_list{"", "", "", expected.rbegin()->first, 10}).empty());
  BOOST_TEST(t.run(attempt_list{"", "", "", "", 0}).empty());
  BOOST_CHECK_THROW(t.run(attempt_list{"", "", "", "not-a-uuid", 10}), std::runtime_error);
  BOOST_CHECK_THROW(t.run(attempt_list{"n1", "", "", "", 10}), std::runtime_error);
}

NC_BOTH_BACKENDS(jobs_prune_never_deletes_queued_or_running) {
  std::map<std::string, std::string> status_of;
  for (auto& s : all_statuses)
    for (auto& ty : all_types)
      status_of[add_job(t, s, ty, "2026-01-01T00:00:00.000Z")] = s;
  BOOST_REQUIRE_EQUAL(job_ids(t).size(), 28u);

  // Naming only queued and running deletes nothing.
  BOOST_TEST(t.run(jobs_prune{{"queued", "running"}, {}, ""}).deleted == 0);
  BOOST_TEST(t.run(jobs_prune{{"running"}, all_types, "2030-01-01T00:00:00.000Z"}).deleted == 0);
  BOOST_TEST(job_ids(t).size() == 28u);

  // Every status, every type, any age: only the final ones go.
  BOOST_TEST(t.run(jobs_prune{all_statuses, all_types, "2030-01-01T00:00:00.000Z"}).deleted == 20);
  auto left = job_ids(t);
  BOOST_TEST(left.size() == 8u);
  for (auto& id : left)
    BOOST_TEST((status_of[id] == "queued" || status_of[id] == "running"), id << " " << status_of[id]);
  // A type-only filter does not reach them either.
  BOOST_TEST(t.run(jobs_prune{{}, {"backfill"}, ""}).deleted == 0);
  BOOST_TEST(job_ids(t).size() == 8u);
}

NC_BOTH_BACKENDS(jobs_prune_by_status_type_and_age) {
  struct row {
    std::string id, status, type, created_at;
  };
  std::vector<row> rows;
  const char* times[] = {"2026-01-08T00:00:00.000Z", "2026-01-09T11:59:59.999Z", "2026-01-09T12:00:00.000Z",
                         "2026-01-10T00:00:00.000Z"};
  for (auto& s : all_statuses)
    for (auto& ty : all_types)
      for (auto* at : times)
        rows.push_back({add_job(t, s, ty, at), s, ty, at});
  BOOST_REQUIRE_EQUAL(job_ids(t).size(), rows.size());

  auto prune = [&](jobs_prune op, const std::string& cutoff_normalised, const std::string& failed_cutoff = "") {
    std::set<std::string> want = job_ids(t);
    int64_t expected = 0;
    for (auto& r : rows) {
      bool match =
        r.status != "queued" && r.status != "running"
        && (op.statuses.empty() || std::count(op.statuses.begin(), op.statuses.end(), r.status))
        && (op.types.empty() || std::count(op.types.begin(), op.types.end(), r.type))
        && (cutoff_normalised.empty()
            || r.created_at < (r.status == "failed" && !failed_cutoff.empty() ? failed_cutoff : cutoff_normalised));
      if (match && want.erase(r.id))
        ++expected;
    }
    BOOST_REQUIRE_GT(expected, 0); // every case below deletes something
    BOOST_TEST(t.run(op).deleted == expected);
    BOOST_TEST(job_ids(t) == want);
  };
  // Status + type + age. The cutoff is exclusive: a job created at 12:00:00.000 stays.
  prune({{"failed", "succeeded", "running"}, {"backfill"}, "2026-01-09T12:00:00.000Z"}, "2026-01-09T12:00:00.000Z");
  // The same instant written without milliseconds, and with an offset: the same cutoff.
  prune({{"expired"}, {"reconcile", "bundle_import"}, "2026-01-09T12:00:00Z"}, "2026-01-09T12:00:00.000Z");
  prune({{"cancelled"}, {"bundle_export"}, "2026-01-09T13:00:00+01:00"}, "2026-01-09T12:00:00.000Z");
  // Default retention in one statement: failed jobs by a cutoff of their own.
  jobs_prune retention{{"failed", "succeeded"}, {"reconcile"}, "2026-01-10T00:00:00Z"};
  retention.failed_older_than = "2026-01-09T12:00:00Z";
  prune(retention, "2026-01-10T00:00:00.000Z", "2026-01-09T12:00:00.000Z");
  jobs_prune half{{"failed"}, {}, ""};
  half.failed_older_than = "2026-01-09T12:00:00Z";
  BOOST_CHECK_THROW(t.run(half), std::runtime_error); // it needs older_than
  // Status alone, type alone, age alone.
  prune({{"abandoned"}, {}, ""}, "");
  prune({{}, {"bundle_export"}, ""}, "");
  prune({{}, {}, "2026-01-09T12:00:00.001Z"}, "2026-01-09T12:00:00.001Z");
  // Not a time: refused, nothing deleted.
  auto before = job_ids(t);
  BOOST_CHECK_THROW(t.run(jobs_prune{{"failed"}, {}, "yesterday"}), std::runtime_error);
  BOOST_TEST(job_ids(t) == before);
}

NC_BOTH_BACKENDS(database_size_reports_the_four_tables) {
  auto empty = t.run(database_size{});
  BOOST_TEST(empty.total_bytes > 0);
  BOOST_REQUIRE_EQUAL(empty.tables.size(), 4u);
  const char* names[] = {"nodes", "node_task_attempts", "attempt_logs", "jobs"};
  for (size_t i = 0; i < 4; ++i) {
    BOOST_TEST(empty.tables[i].first == names[i]);
    // Every table has a primary key index (and SQLite a root page): found through the search
    // path, it is never 0.
    BOOST_TEST(empty.tables[i].second > 0, names[i]);
  }
  // A few thousand log lines make attempt_logs (and the database) larger.
  auto n = add_node(t, "n1");
  auto a = new_uuid();
  BOOST_REQUIRE(t.run(attempt_upsert{n.id, a, "task", "running", "", "", ""}).created);
  std::vector<log_entry> lines;
  for (int64_t s = 0; s < 3000; ++s)
    lines.push_back({s, "2026-01-09T12:00:00.000Z", "stdout", std::string(100, 'x') + std::to_string(s)});
  BOOST_REQUIRE(t.run(logs_insert{n.id, a, lines}).inserted == 3000);
  auto full = t.run(database_size{});
  BOOST_TEST(full.tables[2].first == "attempt_logs");
  BOOST_TEST(full.tables[2].second > empty.tables[2].second + 300000);
  BOOST_TEST(full.total_bytes > empty.total_bytes);
  int64_t sum = 0;
  for (auto& [name, bytes] : full.tables)
    sum += bytes;
  BOOST_TEST(sum <= full.total_bytes);
}

NC_BOTH_BACKENDS(ping_answers) { BOOST_TEST(t.run(ping{}) == true); }
