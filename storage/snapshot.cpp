#include "storage/snapshot.hpp"

#include "storage/database.hpp"

#include <soci/soci.h>

namespace nodecoord::storage {

namespace {

void roll_back(soci::session& sql) noexcept {
  try {
    sql << "ROLLBACK";
  } catch (...) { // the connection is gone; the server rolled back
  }
}

} // namespace

void read_snapshot(const storage_url& url, const clock_fn& clock, const std::function<void(op_context&)>& read) {
  database db(url, clock);
  db.connect();
  auto& sql = db.session();
  if (url.kind == backend::postgresql)
    sql << "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
  else
    sql << "BEGIN"; // deferred: the first read fixes the WAL snapshot; no write lock is taken
  try {
    auto now = db.now();
    op_context c{sql, db.sql_dialect(), now, format_time(now)};
    read(c);
    sql << "COMMIT";
  } catch (...) {
    roll_back(sql);
    throw;
  }
}

void write_transaction(const storage_url& url, const clock_fn& clock, bool rollback,
                       const std::function<void(op_context&)>& write, int attempts) {
  database db(url, clock);
  for (int attempt = 1;; ++attempt) {
    bool began = false, committing = false;
    try {
      if (!db.connected())
        db.connect();
      auto& sql = db.session();
      // IMMEDIATE: SQLite's write lock now, so the reads before the first write cannot be
      // overtaken by a session's commit (a stale snapshot fails at once, without a retry).
      sql << (url.kind == backend::sqlite ? "BEGIN IMMEDIATE" : "BEGIN");
      began = true;
      auto now = db.now();
      op_context c{sql, db.sql_dialect(), now, format_time(now)};
      write(c);
      committing = !rollback;
      sql << (rollback ? "ROLLBACK" : "COMMIT");
      return;
    } catch (...) {
      auto message = current_exception_message();
      auto kind = db.classify_current();
      if (began && db.connected())
        roll_back(db.session());
      if (kind == error_kind::statement)
        throw; // the data's fault (or the caller's own exception): the caller words it
      if (kind == error_kind::connection) {
        db.disconnect();
        // The COMMIT may have reached the server: running `write` again could count twice.
        if (committing)
          throw database_unavailable(message
                                     + " (the connection was lost during COMMIT: the transaction may "
                                       "or may not have been committed)");
      }
      if (attempt >= attempts)
        throw database_unavailable(message);
    }
  }
}

} // namespace nodecoord::storage
