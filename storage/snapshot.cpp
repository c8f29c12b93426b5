#include "storage/snapshot.hpp"

#include "storage/database.hpp"

#include <soci/soci.h>

namespace nodecoord::storage {

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
    try {
      sql << "ROLLBACK";
    } catch (...) { // the connection is gone; nothing was written
    }
    throw;
  }
}

} // namespace nodecoord::storage
