// `limit` and `storage`: the row transitions of a backfill without a daemon, straight against the
// configured database. Both seed the same data (their own nodes, partial attempts with some log
// lines), time only the transitions, and check that every attempt ended `complete`.
//
// The transitions are those of DESIGN §3, as the daemon's storage operations do them:
//   mark      partial -> pending_backfill under a request id (CAS from partial, only while the
//             node's epoch is the request's), the stored log counters read back (logs_after), and
//             the request's `backfill` job inserted as running;
//   complete  pending_backfill -> complete where the stored log count is at least what the node
//             reported (evidence, CAS on request id and node), and the job finished as succeeded.
#include "common/clock.hpp"
#include "common/ids.hpp"
#include "common/states.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/grouped.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"
#include "storage/sync_rules.hpp"
#include "tools/bench/db.hpp"
#include "tools/bench/scenarios.hpp"
#include "tools/bench/util.hpp"

#include <soci/soci.h>

#include <algorithm>
#include <set>
#include <span>
#include <sstream>

namespace nodecoord::bench {

namespace {

struct fixture {
  db_target target;
  std::unique_ptr<storage::database> db;
  std::vector<bench_node> nodes;
  attempt_table ids;
  seed_spec spec;
  int64_t other_attempts = 0;
  double setup_s = 0;
};

/// Connects, creates the nodes, clears their old rows, seeds fresh partial attempts.
void seed(fixture& f) {
  auto t0 = now_ns();
  clear_nodes(*f.db, f.nodes);
  f.ids = new_attempt_ids(f.nodes.size(), f.spec.attempts);
  seed_attempts(*f.db, f.nodes, f.ids, f.spec);
  settle_tables(*f.db);
  // A fresh connection for the timed part: PostgreSQL caches the plans of foreign-key checks per
  // connection, and those made while seeding may date from when the tables looked empty.
  f.db->connect();
  f.setup_s += static_cast<double>(now_ns() - t0) / 1e9;
}

fixture open_fixture(const db_args& d, const std::string& prefix, size_t nodes, seed_spec spec) {
  fixture f;
  f.target = open_target(d.config_path, d.state_dir);
  f.spec = spec;
  f.db = std::make_unique<storage::database>(f.target.url, system_now);
  auto t0 = now_ns();
  f.db->connect();
  f.db->migrate();
  f.nodes = ensure_nodes(*f.db, prefix, nodes);
  f.setup_s = static_cast<double>(now_ns() - t0) / 1e9;
  seed(f);
  f.other_attempts =
    query_int(f.db->session(), "SELECT COUNT(*) FROM node_task_attempts") - static_cast<int64_t>(nodes * spec.attempts);
  return f;
}

void fixture_rows(report& r, const fixture& f, size_t nodes, const std::string& prefix) {
  r.text("storage", "storage", f.target.url.redacted());
  r.text("backend", "backend", std::string(storage::to_string(f.target.url.kind)));
  r.text("nodes (created if missing)", "node_prefix", prefix + "0 .. " + prefix + std::to_string(nodes - 1));
  r.count("nodes", "nodes", nodes);
  r.count("attempts per node", "attempts_per_node", f.spec.attempts);
  r.count("attempts", "attempts", nodes * f.spec.attempts);
  r.count("log lines stored per attempt", "logs_per_attempt", f.spec.logs);
  r.count("other attempts in the database", "other_attempts",
          static_cast<uint64_t>(std::max<int64_t>(f.other_attempts, 0)));
  r.number("setup (untimed: nodes, clear, seed)", "setup_s", f.setup_s, 2, "s");
}

/// Every attempt of the nodes is complete; anything else makes the run invalid.
bool check_complete(report& r, fixture& f, const std::vector<bench_node>& nodes, const std::string& what) {
  auto counts = state_counts(*f.db, nodes);
  int64_t expected = static_cast<int64_t>(nodes.size() * f.spec.attempts);
  int64_t complete = counts.count("complete") ? counts["complete"] : 0;
  if (complete != expected) {
    std::ostringstream s;
    s << what << ": " << complete << " of " << expected << " attempts complete (";
    bool first = true;
    for (auto& [state, n] : counts) {
      s << (first ? "" : ", ") << state << " " << n;
      first = false;
    }
    s << ")";
    r.problem(s.str());
    return false;
  }
  return true;
}

double rate(double n, double secs) { return secs > 0 ? n / secs : 0.0; }

std::string detail_json(size_t completed) {
  return R"({"completed":)" + std::to_string(completed) + R"(,"reset":0,"failed":0,"stale":0})";
}

} // namespace

// --- limit -------------------------------------------------------------------------------------

int run_limit(const db_args& d, const limit_args& a, bool as_json) {
  if (a.nodes == 0 || a.attempts == 0)
    throw usage_error("--nodes and --attempts must be at least 1");
  auto f = open_fixture(d, a.prefix, a.nodes, {a.attempts, a.logs, a.line_bytes});
  auto& db = *f.db;
  auto& sql = db.session();
  const auto& dl = db.sql_dialect();
  bool pg = f.target.url.kind == storage::backend::postgresql;
  size_t per_tx = a.tx_nodes == 0 ? a.nodes : std::min(a.tx_nodes, a.nodes);
  size_t chunks = (a.nodes + per_tx - 1) / per_tx;

  // Staging tables for what the coordinator ships to the database: the requests (one per node)
  // and the nodes' per-attempt results. Session-local, created outside the timed part.
  const std::string uuid = dl.uuid;
  sql << "CREATE TEMP TABLE IF NOT EXISTS bench_req (request_id " + uuid + " NOT NULL, node_id " + uuid
           + " NOT NULL, epoch BIGINT NOT NULL, chunk BIGINT NOT NULL)";
  sql << "CREATE TEMP TABLE IF NOT EXISTS bench_res (attempt_id " + uuid + " NOT NULL, request_id " + uuid
           + " NOT NULL, node_id " + uuid + " NOT NULL, log_count BIGINT NOT NULL, chunk BIGINT NOT NULL)";
  sql << "DELETE FROM bench_req";
  sql << "DELETE FROM bench_res";
  sql << "CREATE INDEX IF NOT EXISTS bench_req_chunk ON bench_req (chunk, request_id)";
  sql << "CREATE INDEX IF NOT EXISTS bench_req_id ON bench_req (request_id)";
  sql << "CREATE INDEX IF NOT EXISTS bench_res_chunk ON bench_res (chunk)";

  std::vector<std::string> request(a.nodes);
  for (auto& r : request)
    r = new_uuid();
  int64_t marked = 0, logs_after_read = 0, jobs_inserted = 0, lines_inserted = 0, completed = 0, jobs_finished = 0;
  const int64_t total_logs = static_cast<int64_t>(a.logs + a.missing);
  auto chunk_nodes = [&](size_t c) { return std::pair{c * per_tx, std::min(a.nodes, (c + 1) * per_tx)}; };
  auto tx = [&](auto&& body) {
    sql << (pg ? "BEGIN" : "BEGIN IMMEDIATE");
    try {
      body();
      sql << "COMMIT";
    } catch (...) {
      try {
        sql << "ROLLBACK";
      } catch (...) {
      }
      throw;
    }
  };

  // mark: partial -> pending_backfill, logs_after read back, jobs inserted.
  auto t0 = now_ns();
  for (size_t c = 0; c < chunks; ++c) {
    auto [first, last] = chunk_nodes(c);
    auto now = format_time(db.now());
    auto ch = static_cast<int64_t>(c);
    tx([&] {
      row_inserter req(sql, "bench_req (request_id, node_id, epoch, chunk)", 4, 200);
      for (size_t i = first; i < last; ++i)
        req.add({request[i], f.nodes[i].id, f.nodes[i].epoch, ch});
      req.flush();
      if (pg)
        sql << "ANALYZE bench_req";
      marked += storage::query(sql, "UPDATE node_task_attempts AS a SET sync_state = 'pending_backfill', "
                                    "backfill_request_id = r.request_id, sync_requested_at = "
                                      + dl.ts_param("now") + ", updated_at = " + dl.ts_param("now2")
                                      + " FROM bench_req AS r JOIN nodes AS n ON n.id = r.node_id AND "
                                        "n.session_epoch = r.epoch WHERE r.chunk = :c AND a.node_id = r.node_id "
                                        "AND a.sync_state = 'partial'")
                  .bind("now", now)
                  .bind("now2", now)
                  .bind("c", ch)
                  .exec();
      // logs_after: the highest contiguous stored seq (the counters answer it without gaps).
      storage::query(sql, "SELECT a.id, a.log_count, a.log_max_seq FROM node_task_attempts AS a JOIN bench_req AS r "
                          "ON a.backfill_request_id = r.request_id WHERE r.chunk = :c")
        .bind("c", ch)
        .each([&](const soci::row& r) {
          auto n = storage::col_int(r, 1);
          auto m = storage::col_int(r, 2, -1);
          logs_after_read += (n == m + 1) ? 1 : 0;
        });
      jobs_inserted += storage::query(sql, "INSERT INTO jobs (id, type, status, node_id, attempt_count, created_at, "
                                           "started_at) SELECT r.request_id, 'backfill', 'running', r.node_id, "
                                           "COUNT(a.id), "
                                             + dl.ts_param("now") + ", " + dl.ts_param("now2")
                                             + " FROM bench_req AS r JOIN node_task_attempts AS a ON "
                                               "a.backfill_request_id = r.request_id WHERE r.chunk = :c "
                                               "GROUP BY r.request_id, r.node_id")
                         .bind("now", now)
                         .bind("now2", now)
                         .bind("c", ch)
                         .exec();
    });
  }
  auto t1 = now_ns();

  // logs (optional): the missing lines inserted, the counters moved (set-based).
  for (size_t c = 0; a.missing > 0 && c < chunks; ++c) {
    auto [first, last] = chunk_nodes(c);
    auto now = format_time(db.now());
    auto ch = static_cast<int64_t>(c);
    tx([&] {
      row_inserter lines(sql, "attempt_logs (attempt_id, seq, ts, stream, line)", 5, 200);
      for (size_t i = first; i < last; ++i)
        for (auto& id : f.ids[i])
          for (auto s = static_cast<int64_t>(a.logs); s < total_logs; ++s)
            lines.add({id, s, now, std::string("stdout"), bench_line(id, s, a.line_bytes)});
      lines.flush();
      lines_inserted += lines.written();
      storage::query(sql, "UPDATE node_task_attempts SET log_count = log_count + :m, log_max_seq = CASE WHEN "
                          "log_max_seq IS NULL OR log_max_seq < :mx THEN :mx2 ELSE log_max_seq END, "
                          "updated_at = "
                            + dl.ts_param("now")
                            + " WHERE backfill_request_id IN (SELECT request_id FROM bench_req WHERE chunk = :c)")
        .bind("m", static_cast<int64_t>(a.missing))
        .bind("mx", total_logs - 1)
        .bind("mx2", total_logs - 1)
        .bind("now", now)
        .bind("c", ch)
        .exec();
    });
  }
  // Current statistics for the complete phase (untimed; autovacuum's job in a live database):
  // with the statistics of the seeding ("no row is pending_backfill") PostgreSQL drives the join
  // below from the sync_state index and takes 30 times longer (BENCHMARKS.md).
  if (pg)
    sql << "ANALYZE node_task_attempts";
  auto t2 = now_ns();

  // complete: the nodes' results shipped, evidence checked, jobs finished.
  for (size_t c = 0; c < chunks; ++c) {
    auto [first, last] = chunk_nodes(c);
    auto now = format_time(db.now());
    auto ch = static_cast<int64_t>(c);
    tx([&] {
      row_inserter res(sql, "bench_res (attempt_id, request_id, node_id, log_count, chunk)", 5, 200);
      for (size_t i = first; i < last; ++i)
        for (auto& id : f.ids[i])
          res.add({id, request[i], f.nodes[i].id, total_logs, ch});
      res.flush();
      if (pg)
        sql << "ANALYZE bench_res"; // a temporary table has no statistics of its own
      completed +=
        storage::query(sql, "UPDATE node_task_attempts AS a SET sync_state = 'complete', "
                            "backfill_request_id = NULL, last_full_sync_at = "
                              + dl.ts_param("now") + ", backfill_failures = 0, updated_at = " + dl.ts_param("now2")
                              + " FROM bench_res AS r JOIN bench_req AS q ON q.request_id = r.request_id "
                                "JOIN nodes AS n ON n.id = q.node_id AND n.session_epoch = q.epoch "
                                "WHERE r.chunk = :c AND a.id = r.attempt_id AND "
                                "a.backfill_request_id = r.request_id AND a.node_id = r.node_id AND "
                                "a.sync_state = 'pending_backfill' AND a.log_count >= r.log_count")
          .bind("now", now)
          .bind("now2", now)
          .bind("c", ch)
          .exec();
      jobs_finished += storage::query(sql, "UPDATE jobs SET status = 'succeeded', finished_at = " + dl.ts_param("now")
                                             + ", detail = " + dl.json_param("d")
                                             + " WHERE status = 'running' AND id IN "
                                               "(SELECT request_id FROM bench_req WHERE chunk = :c)")
                         .bind("now", now)
                         .bind("d", detail_json(a.attempts))
                         .bind("c", ch)
                         .exec();
    });
  }
  auto t3 = now_ns();

  report r("limit");
  fixture_rows(r, f, a.nodes, a.prefix);
  r.count("missing log lines per attempt (inserted by the backfill)", "missing_per_attempt", a.missing);
  r.count("nodes per transaction", "tx_nodes", per_tx);
  r.count("transactions per phase", "transactions_per_phase", chunks);
  double mark_s = static_cast<double>(t1 - t0) / 1e9;
  double logs_s = static_cast<double>(t2 - t1) / 1e9;
  double complete_s = static_cast<double>(t3 - t2) / 1e9;
  auto m = static_cast<double>(a.nodes * a.attempts);
  r.heading("timed");
  r.number("mark (partial -> pending_backfill, jobs)", "mark_s", mark_s, 3, "s");
  r.number("missing log lines inserted", "logs_s", logs_s, 3, "s");
  r.number("complete (evidence, jobs finished)", "complete_s", complete_s, 3, "s");
  r.heading("limit");
  r.number("transitions only: attempts completed/s", "rate_per_s", rate(m, mark_s + complete_s), 0, "attempts/s");
  if (a.missing > 0) {
    r.number("with the missing log lines: attempts completed/s", "rate_with_logs_per_s",
             rate(m, mark_s + logs_s + complete_s), 0, "attempts/s");
    r.number("log lines inserted/s", "log_lines_per_s", rate(static_cast<double>(lines_inserted), logs_s), 0,
             "lines/s");
  }
  r.heading("checks");
  r.count("attempts marked", "marked", static_cast<uint64_t>(marked));
  r.count("logs_after read (contiguous)", "logs_after_read", static_cast<uint64_t>(logs_after_read));
  r.count("jobs inserted", "jobs_inserted", static_cast<uint64_t>(jobs_inserted));
  r.count("log lines inserted", "log_lines_inserted", static_cast<uint64_t>(lines_inserted));
  r.count("attempts completed", "completed", static_cast<uint64_t>(completed));
  r.count("jobs finished", "jobs_finished", static_cast<uint64_t>(jobs_finished));
  if (marked != static_cast<int64_t>(m))
    r.problem(std::to_string(marked) + " of " + std::to_string(static_cast<int64_t>(m)) + " attempts marked");
  if (jobs_inserted != static_cast<int64_t>(a.nodes) || jobs_finished != static_cast<int64_t>(a.nodes))
    r.problem("jobs inserted/finished " + std::to_string(jobs_inserted) + "/" + std::to_string(jobs_finished)
              + ", expected " + std::to_string(a.nodes));
  check_complete(r, f, f.nodes, "limit");
  sql << "DROP TABLE bench_res";
  sql << "DROP TABLE bench_req";
  if (!a.keep)
    clear_nodes(db, f.nodes);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

// --- storage: batched against per-row --------------------------------------------------------

namespace {

struct mode_result {
  std::string mode;
  size_t nodes = 0;
  size_t attempts = 0;
  double mark_s = 0;
  double complete_s = 0;
  uint64_t transactions = 0;
  uint64_t statements = 0; // per-row only
  double rate() const { return bench::rate(static_cast<double>(attempts), mark_s + complete_s); }
};

/// mark then complete through the storage operations, `per_tx` operations per transaction.
mode_result run_ops(fixture& f, report& r, size_t nodes, size_t per_tx, const std::string& mode) {
  auto& db = *f.db;
  storage::batch_executor exec(db);
  const auto k = static_cast<int64_t>(f.spec.attempts);
  const auto logs = static_cast<int64_t>(f.spec.logs);
  std::vector<std::string> request(nodes);
  for (auto& q : request)
    q = new_uuid();
  std::vector<storage::mark_pending::result_type> marked(nodes);
  std::vector<storage::apply_backfill::result_type> applied(nodes);
  auto max_failures = static_cast<int64_t>(f.target.cfg.backfill.max_failures);

  auto execute_all = [&](std::vector<storage::batch_item>& items) {
    for (size_t first = 0; first < items.size(); first += per_tx) {
      auto n = std::min(per_tx, items.size() - first);
      auto rep = exec.execute(std::span<storage::batch_item>(items.data() + first, n));
      if (rep.stop != storage::stop_reason::none)
        throw std::runtime_error("database unavailable: " + rep.stop_message);
      for (auto& e : rep.errors)
        if (!e.empty())
          throw std::runtime_error(mode + ": an operation failed: " + e);
      if (rep.done != n)
        throw std::runtime_error(mode + ": the executor settled " + std::to_string(rep.done) + " of "
                                 + std::to_string(n) + " operations");
    }
  };

  // Items as the storage actor makes them (storage::bind_item): adjacent marks, and adjacent
  // applies, run together as set-based statements.
  std::vector<storage::batch_item> marks(nodes);
  std::vector<std::shared_ptr<storage::op_member<storage::mark_pending>>> mark_slots;
  for (size_t i = 0; i < nodes; ++i) {
    storage::mark_pending op;
    op.request_id = request[i];
    op.node_id = f.nodes[i].id;
    op.epoch = f.nodes[i].epoch;
    op.limit = k; // the node's oldest partial attempts, selected and marked in one statement
    mark_slots.push_back(storage::bind_item(marks[i], std::move(op)));
  }

  mode_result out{mode, nodes, nodes * f.spec.attempts};
  auto t0 = now_ns();
  execute_all(marks);
  auto t1 = now_ns();
  // The responses are built from what the marks returned (untimed, as a node would).
  std::vector<storage::batch_item> applies(nodes);
  std::vector<std::shared_ptr<storage::op_member<storage::apply_backfill>>> apply_slots;
  for (size_t i = 0; i < nodes; ++i) {
    marked[i] = mark_slots[i]->result;
    storage::apply_backfill op;
    op.request_id = request[i];
    op.node_id = f.nodes[i].id;
    op.max_failures = max_failures;
    for (auto& m : marked[i].marked)
      op.results.push_back({m.attempt_id, true, logs, ""});
    apply_slots.push_back(storage::bind_item(applies[i], std::move(op)));
  }
  auto t1b = now_ns();
  execute_all(applies);
  auto t2 = now_ns();
  for (size_t i = 0; i < nodes; ++i)
    applied[i] = apply_slots[i]->result;
  out.mark_s = static_cast<double>(t1 - t0) / 1e9;
  out.complete_s = static_cast<double>(t2 - t1b) / 1e9;
  out.transactions = exec.stats().transactions;
  size_t n_marked = 0, n_completed = 0;
  for (size_t i = 0; i < nodes; ++i) {
    n_marked += marked[i].marked.size();
    n_completed += static_cast<size_t>(applied[i].completed);
  }
  if (n_marked != out.attempts || n_completed != out.attempts)
    r.problem(mode + ": " + std::to_string(n_marked) + " marked, " + std::to_string(n_completed) + " completed of "
              + std::to_string(out.attempts));
  return out;
}

/// The naive path: the daemon's own statements (mark by ids, apply_backfill), issued one attempt
/// and one transition at a time, each autocommitted. Per node: the epoch read the mark checks,
/// one mark per attempt, the job; then the rows pending under the request read once, one UPDATE
/// per attempt with the outcome of sync_rules::answer (as grouped.cpp computes it), the job.
mode_result run_per_row(fixture& f, report& r, size_t nodes) {
  auto& db = *f.db;
  auto& sql = db.session();
  const auto& dl = db.sql_dialect();
  const auto logs = static_cast<int64_t>(f.spec.logs);
  mode_result out{"per-row", nodes, nodes * f.spec.attempts};
  std::vector<std::string> request(nodes);
  for (auto& q : request)
    q = new_uuid();
  size_t n_marked = 0, n_completed = 0;
  // As mark_pending_by_ids, one id at a time (RETURNING instead of its second read).
  const std::string mark =
    "UPDATE node_task_attempts SET sync_state = 'pending_backfill', backfill_request_id = :r, "
    "sync_requested_at = :now, updated_at = :now2 "
    "WHERE node_id = :n AND sync_state = 'partial' AND id = :id RETURNING log_count, log_max_seq";
  // As grouped.cpp's update_states, one row at a time: values computed from the row read.
  const std::string settle = "UPDATE node_task_attempts SET sync_state = :s, backfill_request_id = NULL, "
                             "backfill_failures = :f, last_full_sync_at = CASE WHEN :d = 1 THEN "
                             + dl.ts_param("now") + " ELSE last_full_sync_at END, updated_at = :now2 WHERE id = :id";
  auto t0 = now_ns();
  for (size_t i = 0; i < nodes; ++i) {
    auto& node = f.nodes[i];
    int64_t epoch = -1;
    storage::query(sql, "SELECT session_epoch FROM nodes WHERE id = :n")
      .bind("n", node.id)
      .each([&](const soci::row& row) { epoch = storage::col_int(row, 0); });
    ++out.statements;
    if (epoch != node.epoch)
      continue; // not this session: nothing marked (and counted as a problem below)
    size_t here = 0;
    for (auto& id : f.ids[i]) {
      auto now = format_time(db.now());
      storage::query(sql, mark)
        .bind("r", request[i])
        .bind("now", now)
        .bind("now2", now)
        .bind("n", node.id)
        .bind("id", id)
        .each([&](const soci::row&) { ++here; });
      ++out.statements;
    }
    auto now = format_time(db.now());
    storage::query(sql, "INSERT INTO jobs (id, type, status, node_id, attempt_count, created_at, started_at) "
                        "VALUES (:id, 'backfill', 'running', :n, :cnt, :now, :now2)")
      .bind("id", request[i])
      .bind("n", node.id)
      .bind("cnt", static_cast<int64_t>(here))
      .bind("now", now)
      .bind("now2", now)
      .exec();
    ++out.statements;
    n_marked += here;
  }
  auto t1 = now_ns();
  for (size_t i = 0; i < nodes; ++i) {
    auto& node = f.nodes[i];
    // The rows pending under the request, read once (rule 1 is checked on what was read).
    std::vector<std::pair<std::string, storage::sync_row>> rows;
    storage::query(sql, "SELECT id, node_id, sync_state, backfill_request_id, log_count, backfill_failures "
                        "FROM node_task_attempts WHERE backfill_request_id = :r")
      .bind("r", request[i])
      .each([&](const soci::row& row) {
        storage::sync_row s;
        s.owner = storage::col_str(row, 1);
        s.state = parse<sync_state>(storage::col_str(row, 2)).value_or(sync_state::partial);
        s.request_id = storage::col_str(row, 3);
        s.log_count = storage::col_int(row, 4);
        s.failures = storage::col_int(row, 5);
        rows.emplace_back(storage::col_str(row, 0), std::move(s));
      });
    ++out.statements;
    size_t here = 0;
    for (auto& [id, s] : rows) {
      if (!storage::sync_rules::pending_under(s, request[i], node.id))
        continue;
      auto outcome = storage::sync_rules::answer(s, storage::node_answer{true, logs},
                                                 static_cast<int64_t>(f.target.cfg.backfill.max_failures));
      auto now = format_time(db.now());
      storage::query(sql, settle)
        .bind("s", std::string(to_string(s.state)))
        .bind("f", s.failures)
        .bind("d", int64_t{outcome == storage::backfill_outcome::completed ? 1 : 0})
        .bind("now", now)
        .bind("now2", now)
        .bind("id", id)
        .exec();
      ++out.statements;
      if (outcome == storage::backfill_outcome::completed)
        ++here;
    }
    storage::query(sql, "UPDATE jobs SET status = 'succeeded', finished_at = " + dl.ts_param("now")
                          + ", detail = " + dl.json_param("d") + " WHERE id = :id AND status = 'running'")
      .bind("now", format_time(db.now()))
      .bind("d", detail_json(here))
      .bind("id", request[i])
      .exec();
    ++out.statements;
    n_completed += here;
  }
  auto t2 = now_ns();
  out.mark_s = static_cast<double>(t1 - t0) / 1e9;
  out.complete_s = static_cast<double>(t2 - t1) / 1e9;
  out.transactions = out.statements; // each one its own (autocommit)
  if (n_marked != out.attempts || n_completed != out.attempts)
    r.problem("per-row: " + std::to_string(n_marked) + " marked, " + std::to_string(n_completed) + " completed of "
              + std::to_string(out.attempts));
  return out;
}

std::vector<std::string> split_modes(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string m;
  while (std::getline(in, m, ','))
    if (!m.empty())
      out.push_back(m);
  return out;
}

} // namespace

int run_storage_path(const db_args& d, const storage_path_args& a, bool as_json) {
  if (a.nodes == 0 || a.attempts == 0)
    throw usage_error("--nodes and --attempts must be at least 1");
  auto modes = split_modes(a.modes);
  std::set<std::string> known{"batched", "per-row", "per-op"};
  if (modes.empty())
    throw usage_error("--modes: give at least one of batched, per-row, per-op");
  for (auto& m : modes)
    if (!known.count(m))
      throw usage_error("--modes: unknown mode '" + m + "' (batched, per-row, per-op)");
  auto f = open_fixture(d, a.prefix, a.nodes, {a.attempts, a.logs, a.line_bytes});
  size_t batch = a.batch ? a.batch : f.target.cfg.storage.batch_max;
  size_t slow = std::min(a.slow_nodes == 0 ? a.nodes : a.slow_nodes, a.nodes);

  report r("storage");
  std::vector<mode_result> results;
  for (size_t i = 0; i < modes.size(); ++i) {
    if (i > 0)
      seed(f); // every mode starts from the same fresh rows (untimed)
    auto& m = modes[i];
    size_t n = m == "batched" ? a.nodes : slow;
    mode_result res;
    if (m == "batched")
      res = run_ops(f, r, n, batch, m);
    else if (m == "per-op")
      res = run_ops(f, r, n, 1, m);
    else
      res = run_per_row(f, r, n);
    std::vector<bench_node> used(f.nodes.begin(), f.nodes.begin() + static_cast<ptrdiff_t>(n));
    check_complete(r, f, used, m);
    results.push_back(res);
  }

  fixture_rows(r, f, a.nodes, a.prefix);
  r.text("mark selection", "mark_selection", "mark_pending with limit (one statement)");
  r.count("batched: operations per transaction", "batch", batch);
  auto find = [&](const std::string& m) -> const mode_result* {
    for (auto& x : results)
      if (x.mode == m)
        return &x;
    return nullptr;
  };
  for (auto& res : results) {
    auto key = res.mode == "per-row" ? std::string("per_row") : res.mode == "per-op" ? std::string("per_op") : res.mode;
    r.heading(res.mode);
    r.count(res.mode + ": nodes", key + "_nodes", res.nodes);
    r.count(res.mode + ": attempts", key + "_attempts", res.attempts);
    r.number(res.mode + ": mark", key + "_mark_s", res.mark_s, 3, "s");
    r.number(res.mode + ": complete", key + "_complete_s", res.complete_s, 3, "s");
    r.count(res.mode + ": transactions", key + "_transactions", res.transactions);
    r.number(res.mode + ": attempts completed/s", key + "_rate_per_s", res.rate(), 0, "attempts/s");
  }
  auto* b = find("batched");
  auto* p = find("per-row");
  auto* o = find("per-op");
  if (b || p || o)
    r.heading("ratios (this run)");
  if (b && p)
    r.number("batched / per-row", "ratio_batched_per_row", p->rate() > 0 ? b->rate() / p->rate() : 0.0, 1, "x");
  if (b && o)
    r.number("batched / per-op", "ratio_batched_per_op", o->rate() > 0 ? b->rate() / o->rate() : 0.0, 1, "x");
  if (!a.keep)
    clear_nodes(*f.db, f.nodes);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

} // namespace nodecoord::bench
