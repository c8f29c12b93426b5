#include "storage/database.hpp"

#include "storage/migrations.hpp"

#include "common/log.hpp"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <sqlite3.h>

#include <stdexcept>

namespace nodecoord::storage {

database::database(storage_url url, clock_fn clock) : url_(std::move(url)), clock_(std::move(clock)) {}

database::~database() { disconnect(); }

void database::connect() {
  disconnect();
  std::unique_ptr<soci::session> s;
  if (url_.kind == backend::sqlite) {
    s = std::make_unique<soci::session>(soci::sqlite3, url_.connect_string);
    // WAL lets readers (nodecoordctl, backups) work beside the daemon; synchronous=FULL keeps
    // every committed batch across a power loss; SQLite enforces foreign keys only when asked.
    *s << "PRAGMA journal_mode = WAL";
    *s << "PRAGMA synchronous = FULL";
    *s << "PRAGMA foreign_keys = ON";
    // 64 MiB page cache instead of SQLite's 2 MiB: the attempts table and its indexes outgrow
    // 2 MiB at a few ten thousand rows, and a storm then spends its time in pread/pwrite.
    *s << "PRAGMA cache_size = -65536";
  } else {
    s = std::make_unique<soci::session>(soci::postgresql, url_.connect_string);
    // libpq prints NOTICEs ("relation ... already exists, skipping") straight to stderr, which
    // would break the log format; send them through the logger instead.
    auto* be = static_cast<soci::postgresql_session_backend*>(s->get_backend());
    PQsetNoticeProcessor(
      be->conn_,
      [](void*, const char* message) {
        std::string m = message ? message : "";
        while (!m.empty() && (m.back() == '\n' || m.back() == ' '))
          m.pop_back();
        log::debug("postgresql notice", {{"message", m}});
      },
      nullptr);
    *s << "SET TIME ZONE 'UTC'";
  }
  sql_ = std::move(s);
}

void database::disconnect() noexcept {
  try {
    sql_.reset();
  } catch (...) { // closing a broken connection may throw; it is gone either way
  }
}

int database::migrate() { return storage::migrate(session(), sql_dialect(), format_time(clock_())); }

soci::session& database::session() {
  if (!sql_)
    throw std::logic_error("database: not connected");
  return *sql_;
}

namespace {

// Only called for PostgreSQL URLs. (libsoci_postgresql exports no typeinfo for dynamic_cast.)
bool pg_connection_bad(soci::session* s) {
  if (!s)
    return true;
  auto* be = static_cast<soci::postgresql_session_backend*>(s->get_backend());
  return !be || !be->conn_ || PQstatus(be->conn_) != CONNECTION_OK;
}

} // namespace

error_kind database::classify_current() noexcept {
  try {
    throw;
  } catch (const soci::postgresql_soci_error& e) {
    auto state = e.sqlstate();
    // Class 08: connection exception; 57P01-03: the server is shutting down or restarting.
    if (state.rfind("08", 0) == 0 || state.rfind("57P", 0) == 0
        || (url_.kind == backend::postgresql && pg_connection_bad(sql_.get())))
      return error_kind::connection;
    // Serialization failure, deadlock, lock timeout, out of disk/memory/connections.
    if (state == "40001" || state == "40P01" || state == "55P03" || state.rfind("53", 0) == 0)
      return error_kind::transient;
    return error_kind::statement;
  } catch (const soci::sqlite3_soci_error& e) {
    switch (e.result() & 0xff) {
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
      case SQLITE_IOERR:
      case SQLITE_FULL:
      case SQLITE_NOMEM:
      case SQLITE_PROTOCOL: return error_kind::transient;
      case SQLITE_CANTOPEN:
      case SQLITE_NOTADB:
      case SQLITE_CORRUPT: return error_kind::connection;
      default: return error_kind::statement;
    }
  } catch (const soci::soci_error& e) {
    // libpq reports a dropped connection without an SQLSTATE; SOCI wraps some errors generically.
    if (url_.kind == backend::postgresql && pg_connection_bad(sql_.get()))
      return error_kind::connection;
    if (e.get_error_category() == soci::soci_error::connection_error)
      return error_kind::connection;
    return error_kind::statement;
  } catch (...) {
    return error_kind::statement;
  }
}

namespace {

/// libpq messages span lines ("server closed the connection unexpectedly\n\tThis probably...");
/// a log line and an error reply want one line.
std::string one_line(std::string s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space)
      out += ' ';
    space = false;
    out += c;
  }
  return out;
}

} // namespace

std::string current_exception_message() {
  try {
    throw;
  } catch (const soci::soci_error& e) {
    return one_line(e.get_error_message());
  } catch (const std::exception& e) {
    return one_line(e.what());
  } catch (...) {
    return "unknown error";
  }
}

} // namespace nodecoord::storage
