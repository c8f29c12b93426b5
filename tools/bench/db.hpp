#pragma once
// The database side of nodecoord-bench's backfill scenarios: the bench's own nodes, attempts and
// log lines seeded and cleared with set-based SQL, and a poller thread that watches a count while
// the daemon works. The bench talks to the same database as the daemon (its own connections).
#include "storage/database.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace soci {
class session;
}

namespace nodecoord::bench {

struct bench_node {
  std::string name;
  std::string id;
  int64_t epoch = 0; // nodes.session_epoch when read
};

/// The nodes PREFIX0 .. PREFIX<n-1>, created (with random keys nobody knows) where missing.
std::vector<bench_node> ensure_nodes(storage::database& db, const std::string& prefix, size_t n);

/// The nodes with these names, in this order. Throws usage_error if one is missing.
std::vector<bench_node> find_nodes(storage::database& db, const std::vector<std::string>& names);

/// With NODECOORD_BENCH_STATS set (measure_backfill.sh PG_STATS=1), the server's statistics are
/// reset before a scenario's timed part (`bench_stats_reset()`) and saved after it
/// (`bench_stats_save()`), functions pg_durable.sh creates; without it, nothing.
void server_stats_reset(storage::database& db);
void server_stats_save(storage::database& db);

/// Deletes the attempts, their log lines and the jobs of these nodes (one transaction).
struct cleared {
  int64_t attempts = 0;
  int64_t log_lines = 0;
  int64_t jobs = 0;
};
cleared clear_nodes(storage::database& db, const std::vector<bench_node>& nodes);

/// What to seed: per node, `attempts` partial attempts with log lines 0 .. logs-1 stored.
struct seed_spec {
  size_t attempts = 10;
  size_t logs = 0;
  size_t line_bytes = 80;
};

/// Attempt ids per node (nodes[i] owns attempt_ids[i]), oldest first.
using attempt_table = std::vector<std::vector<std::string>>;

/// New attempt ids (random UUIDs) for `nodes` x spec.attempts.
attempt_table new_attempt_ids(size_t nodes, size_t per_node);

/// Inserts the attempts (partial, log counters set) and their log lines with multi-row INSERTs in
/// one transaction. Returns the number of rows written.
int64_t seed_attempts(storage::database& db, const std::vector<bench_node>& nodes, const attempt_table& ids,
                      const seed_spec& spec);

/// A log line's text for the bench: `bytes` long, naming the attempt and seq.
std::string bench_line(const std::string& attempt_id, int64_t seq, size_t bytes);

/// Attempts of these nodes by sync_state (partial, pending_backfill, complete, failed).
std::map<std::string, int64_t> state_counts(storage::database& db, const std::vector<bench_node>& nodes);

/// One integer from a query (COUNT(*), SUM(...)); NULL reads as 0.
int64_t query_int(soci::session& sql, const std::string& text);

/// PostgreSQL: VACUUM ANALYZE the backfill tables, so that runs start from the same state and the
/// planner has statistics for the freshly seeded rows. SQLite: nothing.
void settle_tables(storage::database& db);

// --- multi-row INSERT --------------------------------------------------------------------------

/// A bound value: text, integer, or NULL.
using value = std::variant<std::string, int64_t, std::monostate>;

/// INSERT INTO `head` VALUES (...), (...) with bound parameters, `rows_per_statement` rows each.
/// `head` is e.g. "attempt_logs (attempt_id, seq, ts, stream, line)". `casts` (optional, one per
/// column) wraps a parameter for PostgreSQL, e.g. "CAST(? AS UUID)" with ? for the parameter.
class row_inserter {
public:
  row_inserter(soci::session& sql, std::string head, size_t columns, size_t rows_per_statement = 100,
               std::vector<std::string> casts = {});
  /// Buffers a row; nothing is written before flush().
  void add(std::vector<value> row);
  /// Writes what is buffered. Returns rows written by this call.
  int64_t flush();
  int64_t written() const { return written_; }
  size_t buffered() const { return rows_.size(); }

private:
  soci::session& sql_;
  std::string head_;
  size_t columns_;
  size_t per_statement_;
  std::vector<std::string> casts_;
  std::vector<std::vector<value>> rows_;
  int64_t written_ = 0;
  bool sqlite_ = false;
};

// --- a count, watched from a second thread -----------------------------------------------------

/// Runs `count_sql` (one integer) on its own connection every `interval_ns` until stopped, and
/// keeps every sample. Times are now_ns() (monotonic), like the load engine's.
class count_poller {
public:
  struct sample {
    int64_t started_ns = 0;  // when the query was sent: the state it saw existed by then or later
    int64_t finished_ns = 0; // when its answer arrived
    int64_t value = 0;
  };

  count_poller(storage::storage_url url, std::string count_sql, int64_t interval_ns);
  ~count_poller();
  count_poller(const count_poller&) = delete;
  count_poller& operator=(const count_poller&) = delete;

  /// Connects (in the caller's thread, so a failure is an exception here) and starts polling.
  void start();
  void stop();

  std::optional<sample> latest() const;
  /// The first sample that satisfies `pred` (after `since_ns`, by started_ns), waiting until
  /// `deadline_ns` for it.
  std::optional<sample> wait_for(const std::function<bool(int64_t)>& pred, int64_t since_ns, int64_t deadline_ns);
  std::vector<sample> samples() const;
  /// The error that stopped the thread, if any.
  std::string error() const;
  int64_t interval_ns() const { return interval_ns_; }

private:
  void run();

  storage::storage_url url_;
  std::string sql_text_;
  int64_t interval_ns_;
  std::unique_ptr<storage::database> db_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<sample> samples_;
  std::string error_;
};

} // namespace nodecoord::bench
