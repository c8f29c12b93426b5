#include "tools/agent/store.hpp"

#include "common/states.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"
#include "storage/query.hpp"

#include <nlohmann/json.hpp>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>
#include <sqlite3.h>

#include <chrono>
#include <random>
#include <thread>

namespace nodecoord::agent {

using storage::col_int;
using storage::col_str;
using storage::query;

bool is_attempt_state(const std::string& s) { return parse<attempt_state>(s).has_value(); }

bool is_final_state(const std::string& s) {
  auto state = parse<attempt_state>(s);
  return state && is_final(*state);
}

std::string valid_utf8(const std::string& s) {
  auto text = nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(text).get<std::string>();
}

namespace {

const char* const schema[] = {
  "CREATE TABLE IF NOT EXISTS attempts ("
  " id TEXT PRIMARY KEY,"
  " task_id TEXT NOT NULL,"
  " state TEXT NOT NULL,"
  " started_at TEXT, finished_at TEXT, meta TEXT,"
  " version INTEGER NOT NULL DEFAULT 1,"
  " log_count INTEGER NOT NULL DEFAULT 0,"
  " announced_version INTEGER NOT NULL DEFAULT 0,"
  " delivered_logs INTEGER NOT NULL DEFAULT 0,"
  " created_at TEXT NOT NULL)",
  "CREATE INDEX IF NOT EXISTS attempts_unconfirmed ON attempts (created_at, id)"
  " WHERE version > announced_version OR log_count > delivered_logs",
  "CREATE TABLE IF NOT EXISTS logs ("
  " attempt_id TEXT NOT NULL REFERENCES attempts (id),"
  " seq INTEGER NOT NULL,"
  " ts TEXT NOT NULL,"
  " stream TEXT NOT NULL,"
  " line TEXT NOT NULL,"
  " PRIMARY KEY (attempt_id, seq)) WITHOUT ROWID",
};

const char* const attempt_columns =
  "id, task_id, state, started_at, finished_at, meta, version, log_count, announced_version, delivered_logs";

attempt_row attempt_of(const soci::row& r) {
  return {col_str(r, 0), col_str(r, 1), col_str(r, 2), col_str(r, 3), col_str(r, 4),
          col_str(r, 5), col_int(r, 6), col_int(r, 7), col_int(r, 8), col_int(r, 9)};
}

std::string now_text() { return format_time(system_now()); }

bool is_busy(const soci::soci_error& e) {
  auto* s = dynamic_cast<const soci::sqlite3_soci_error*>(&e);
  return s && (s->result() == SQLITE_BUSY || s->result() == SQLITE_LOCKED);
}

} // namespace

store::store(const std::string& path) {
  // Any number of processes may open the same store at once, new or not (a unit starting
  // `connect` while a job runner starts `record`). Switching a new file to WAL needs the
  // exclusive lock, and SQLite answers "database is locked" at once, without its busy timeout,
  // to a connection that would otherwise deadlock: so opening is retried, with jitter.
  std::minstd_rand rng{std::random_device{}()};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int attempt = 0;; ++attempt) {
    try {
      open(path);
      return;
    } catch (const soci::soci_error& e) {
      sql_.reset();
      if (!is_busy(e) || std::chrono::steady_clock::now() >= deadline)
        throw;
    }
    auto cap = 2 << std::min(attempt, 7); // 2 ms .. 256 ms
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + rng() % static_cast<unsigned>(cap)));
  }
}

void store::open(const std::string& path) {
  // timeout: SQLite's busy timeout in seconds — another process may hold the write lock briefly.
  sql_ = std::make_unique<soci::session>(soci::sqlite3, "db=" + path + " timeout=30");
  std::string mode;
  *sql_ << "PRAGMA journal_mode", soci::into(mode);
  if (mode != "wal")
    *sql_ << "PRAGMA journal_mode = WAL"; // persistent: only the first opener of a file changes it
  *sql_ << "PRAGMA synchronous = FULL";
  *sql_ << "PRAGMA foreign_keys = ON";
  write([&] {
    for (auto* stmt : schema)
      *sql_ << stmt;
  });
}

store::~store() = default;

template <class F>
void store::write(F&& f) {
  // IMMEDIATE takes the write lock first: two processes that both read then write would
  // otherwise deadlock on the upgrade (SQLITE_BUSY without waiting).
  *sql_ << "BEGIN IMMEDIATE";
  try {
    f();
    *sql_ << "COMMIT";
  } catch (...) {
    try {
      *sql_ << "ROLLBACK";
    } catch (...) {
    }
    throw;
  }
}

std::string store::start_attempt(const std::string& task_id, const std::string& state, const std::string& meta) {
  if (task_id.empty())
    throw store_error("a task id is required");
  if (!is_attempt_state(state))
    throw store_error("unknown attempt state '" + state + "'");
  if (!meta.empty() && !nlohmann::json::parse(meta, nullptr, false).is_object())
    throw store_error("meta must be a JSON object");
  auto id = new_uuid();
  auto now = now_text();
  write([&] {
    query(*sql_, "INSERT INTO attempts (id, task_id, state, started_at, finished_at, meta, created_at) "
                 "VALUES (:id, :task, :state, :started, :finished, :meta, :now)")
      .bind("id", id)
      .bind("task", valid_utf8(task_id))
      .bind("state", state)
      .bind_nullable("started", is(state, attempt_state::queued) ? "" : now)
      .bind_nullable("finished", is_final_state(state) ? now : "")
      .bind_nullable("meta", meta)
      .bind("now", now)
      .exec();
  });
  return id;
}

void store::set_state(const std::string& attempt_id, const std::string& state, const std::string& meta) {
  if (!is_attempt_state(state))
    throw store_error("unknown attempt state '" + state + "'");
  if (!meta.empty() && !nlohmann::json::parse(meta, nullptr, false).is_object())
    throw store_error("meta must be a JSON object");
  auto now = now_text();
  write([&] {
    auto n = query(*sql_, "UPDATE attempts SET state = :state, version = version + 1, "
                          "started_at = COALESCE(started_at, :started), "
                          "finished_at = CASE WHEN :final = 1 THEN COALESCE(finished_at, :now) ELSE finished_at END, "
                          "meta = COALESCE(:meta, meta) WHERE id = :id")
               .bind("state", state)
               .bind_nullable("started", is(state, attempt_state::queued) ? "" : now)
               .bind("final", int64_t{is_final_state(state) ? 1 : 0})
               .bind("now", now)
               .bind_nullable("meta", meta)
               .bind("id", attempt_id)
               .exec();
    if (n != 1)
      throw store_error("no attempt " + attempt_id + " in the store");
  });
}

int64_t store::append_logs(const std::string& attempt_id, const std::string& stream,
                           const std::vector<std::string>& lines) {
  if (stream != "stdout" && stream != "stderr" && stream != "system")
    throw store_error("unknown stream '" + stream + "' (stdout, stderr or system)");
  int64_t first = -1;
  auto now = now_text();
  write([&] {
    query(*sql_, "SELECT log_count FROM attempts WHERE id = :id").bind("id", attempt_id).each([&](const soci::row& r) {
      first = col_int(r, 0);
    });
    if (first < 0)
      throw store_error("no attempt " + attempt_id + " in the store");
    auto seq = first;
    for (auto& l : lines)
      query(*sql_, "INSERT INTO logs (attempt_id, seq, ts, stream, line) VALUES (:a, :s, :ts, :st, :l)")
        .bind("a", attempt_id)
        .bind("s", seq++)
        .bind("ts", now)
        .bind("st", stream)
        .bind("l", valid_utf8(l))
        .exec();
    query(*sql_, "UPDATE attempts SET log_count = :n WHERE id = :id").bind("n", seq).bind("id", attempt_id).exec();
  });
  return first;
}

std::optional<attempt_row> store::attempt(const std::string& id) {
  std::optional<attempt_row> out;
  query(*sql_, std::string("SELECT ") + attempt_columns + " FROM attempts WHERE id = :id")
    .bind("id", id)
    .each([&](const soci::row& r) { out = attempt_of(r); });
  return out;
}

std::vector<log_row> store::logs(const std::string& attempt_id, int64_t from, int64_t to) {
  std::vector<log_row> out;
  query(*sql_, "SELECT seq, ts, stream, line FROM logs WHERE attempt_id = :a AND seq >= :f AND seq < :t ORDER BY seq")
    .bind("a", attempt_id)
    .bind("f", from)
    .bind("t", to)
    .each([&](const soci::row& r) {
      out.push_back({col_int(r, 0), col_str(r, 1), col_str(r, 2), col_str(r, 3)});
    });
  return out;
}

std::vector<attempt_row> store::unconfirmed(size_t limit) {
  std::vector<attempt_row> out;
  query(*sql_, std::string("SELECT ") + attempt_columns
                 + " FROM attempts WHERE version > announced_version OR log_count > delivered_logs "
                   "ORDER BY created_at, id LIMIT :n")
    .bind("n", static_cast<int64_t>(limit))
    .each([&](const soci::row& r) { out.push_back(attempt_of(r)); });
  return out;
}

void store::confirm(const std::string& attempt_id, int64_t version, int64_t logs) {
  write([&] {
    query(*sql_, "UPDATE attempts SET announced_version = MAX(announced_version, :v), "
                 "delivered_logs = MAX(delivered_logs, :l) WHERE id = :id")
      .bind("v", version)
      .bind("l", logs)
      .bind("id", attempt_id)
      .exec();
  });
}

void store::unconfirm(const std::string& attempt_id) {
  write([&] {
    query(*sql_, "UPDATE attempts SET announced_version = 0, delivered_logs = 0 WHERE id = :id")
      .bind("id", attempt_id)
      .exec();
  });
}

void store::give_up(const std::string& attempt_id) {
  write([&] {
    query(*sql_, "UPDATE attempts SET announced_version = version, delivered_logs = log_count WHERE id = :id")
      .bind("id", attempt_id)
      .exec();
  });
}

std::vector<attempt_row> store::all_attempts() {
  std::vector<attempt_row> out;
  query(*sql_, std::string("SELECT ") + attempt_columns + " FROM attempts ORDER BY created_at, id")
    .each([&](const soci::row& r) { out.push_back(attempt_of(r)); });
  return out;
}

} // namespace nodecoord::agent
