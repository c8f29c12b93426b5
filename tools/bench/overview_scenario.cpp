// `overview`: what the admin API's overview costs the storage actor at a large history. Seeds
// --attempts attempts and --jobs jobs (set-based SQL, in chunks; kept between runs), then times
// count_summary as the daemon runs it — from the counter rows the triggers keep (schema v3) — and
// the full scan it replaced, each --samples times on one connection. Checks that both agree.
#include "common/clock.hpp"
#include "storage/admin_ops.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"
#include "tools/bench/db.hpp"
#include "tools/bench/scenarios.hpp"
#include "tools/bench/util.hpp"

#include <soci/soci.h>

#include <algorithm>
#include <sstream>

namespace nodecoord::bench {

namespace {

constexpr int64_t seed_chunk = 500'000; // rows per INSERT (bounds one transaction's size)

std::string summary_text(const storage::count_summary::result_type& s) {
  std::ostringstream o;
  for (auto& [k, v] : s.nodes_by_status)
    o << "nodes." << k << "=" << v << " ";
  for (auto& [k, v] : s.attempts_by_sync_state)
    o << "attempts." << k << "=" << v << " ";
  for (auto& [k, v] : s.jobs_by_status_type)
    o << "jobs." << k << "=" << v << " ";
  o << "log_lines=" << s.log_lines;
  return o.str();
}

/// Inserts `n` attempts spread over the nodes named PREFIX*: 10 % partial, 89 % complete, 1 %
/// failed, 10 lines counted each (no log rows: the overview reads counters).
void seed_attempts_sql(storage::database& db, const std::string& prefix, int64_t n) {
  bool pg = db.url().kind == storage::backend::postgresql;
  auto& sql = db.session();
  int64_t nodes = query_int(sql, "SELECT COUNT(*) FROM nodes WHERE name LIKE '" + prefix + "%'");
  for (int64_t done = 0; done < n; done += seed_chunk) {
    auto k = std::min(seed_chunk, n - done);
    std::string states = "CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 10 = 0 THEN 'partial' ELSE 'complete' END";
    std::string text;
    if (pg)
      text = "INSERT INTO node_task_attempts (id, node_id, task_id, state, sync_state, log_count, log_max_seq, "
             "created_at, updated_at) SELECT gen_random_uuid(), n.id, 'ov-task', 'succeeded', "
             + states + ", 10, 9, now(), now() FROM generate_series(1, " + std::to_string(k)
             + ") i JOIN (SELECT id, (row_number() OVER (ORDER BY id)) - 1 AS rn FROM nodes WHERE name LIKE '" + prefix
             + "%') n ON n.rn = i % " + std::to_string(nodes);
    else
      text = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < " + std::to_string(k)
             + "), n AS (SELECT id, (row_number() OVER (ORDER BY id)) - 1 AS rn FROM nodes WHERE name LIKE '" + prefix
             + "%') INSERT INTO node_task_attempts (id, node_id, task_id, state, sync_state, log_count, log_max_seq, "
               "created_at, updated_at) SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
               "substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))), "
               "n.id, 'ov-task', 'succeeded', "
             + states + ", 10, 9, '2026-01-09T12:00:00.000Z', '2026-01-09T12:00:00.000Z' FROM s JOIN n ON n.rn = i % "
             + std::to_string(nodes);
    sql << "BEGIN";
    sql << text;
    sql << "COMMIT";
  }
}

void seed_jobs_sql(storage::database& db, int64_t n) {
  bool pg = db.url().kind == storage::backend::postgresql;
  auto& sql = db.session();
  for (int64_t done = 0; done < n; done += seed_chunk) {
    auto k = std::min(seed_chunk, n - done);
    std::string status = "CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END";
    std::string text;
    if (pg)
      text = "INSERT INTO jobs (id, type, status, attempt_count, created_at) SELECT gen_random_uuid(), 'reconcile', "
             + status + ", 0, now() FROM generate_series(1, " + std::to_string(k) + ") i";
    else
      text = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < " + std::to_string(k)
             + ") INSERT INTO jobs (id, type, status, attempt_count, created_at) SELECT lower(hex(randomblob(4)) || "
               "'-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-a' || "
               "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))), 'reconcile', "
             + status + ", 0, '2026-01-09T12:00:00.000Z' FROM s";
    sql << "BEGIN";
    sql << text;
    sql << "COMMIT";
  }
}

std::vector<double> time_summary(storage::database& db, bool scan, size_t samples,
                                 storage::count_summary::result_type& last) {
  std::vector<double> ms;
  for (size_t i = 0; i < samples; ++i) {
    auto now = db.now();
    storage::op_context c{db.session(), db.sql_dialect(), now, format_time(now)};
    auto t0 = now_ns();
    last = storage::execute(c, storage::count_summary{scan});
    ms.push_back(static_cast<double>(now_ns() - t0) / 1e6);
  }
  std::sort(ms.begin(), ms.end());
  return ms;
}

} // namespace

int run_overview(const db_args& d, const overview_args& a, bool as_json) {
  report r("overview");
  auto target = open_target(d.config_path, d.state_dir);
  storage::database db(target.url, system_now);
  db.connect();
  db.migrate();
  auto nodes = ensure_nodes(db, a.prefix, a.nodes);
  auto have_attempts = query_int(db.session(), "SELECT COUNT(*) FROM node_task_attempts");
  auto have_jobs = query_int(db.session(), "SELECT COUNT(*) FROM jobs");
  auto t0 = now_ns();
  if (have_attempts < a.attempts)
    seed_attempts_sql(db, a.prefix, a.attempts - have_attempts);
  if (have_jobs < a.jobs)
    seed_jobs_sql(db, a.jobs - have_jobs);
  settle_tables(db);
  double seed_s = static_cast<double>(now_ns() - t0) / 1e9;
  db.connect(); // fresh plans after the seed

  r.text("storage", "storage", target.url.redacted());
  r.count("attempts", "attempts",
          static_cast<uint64_t>(query_int(db.session(), "SELECT COUNT(*) FROM node_task_attempts")));
  r.count("jobs", "jobs", static_cast<uint64_t>(query_int(db.session(), "SELECT COUNT(*) FROM jobs")));
  r.count("nodes", "nodes", static_cast<uint64_t>(query_int(db.session(), "SELECT COUNT(*) FROM nodes")));
  r.number("seeding", "seed_s", seed_s, 1, "s");
  storage::count_summary::result_type kept, scanned;
  auto fast = time_summary(db, false, a.samples, kept);
  auto slow = time_summary(db, true, std::max<size_t>(3, a.samples / 10), scanned);
  auto rows = [&](const std::string& what, const std::string& key, const std::vector<double>& v) {
    r.count(what + " samples", key + "_samples", v.size());
    r.number(what + " p50", key + "_p50_ms", percentile(v, 50), 3, "ms");
    r.number(what + " p99", key + "_p99_ms", percentile(v, 99), 3, "ms");
    r.number(what + " max", key + "_max_ms", v.back(), 3, "ms");
  };
  rows("count_summary from counters", "counters", fast);
  rows("count_summary by scan (before schema v3)", "scan", slow);
  r.number("scan p50 / counters p50", "scan_over_counters", percentile(slow, 50) / std::max(percentile(fast, 50), 1e-6),
           1, "x");
  if (summary_text(kept) != summary_text(scanned))
    r.problem("the counters (" + summary_text(kept) + ") differ from a scan (" + summary_text(scanned) + ")");
  r.text("counts", "counts", summary_text(kept));
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

} // namespace nodecoord::bench
