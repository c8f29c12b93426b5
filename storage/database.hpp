#pragma once
// One database connection (SQLite or PostgreSQL through SOCI): connect, migrate, classify errors.
// Owned by exactly one thread at a time (the storage actor's).
#include "common/clock.hpp"
#include "storage/dialect.hpp"
#include "storage/url.hpp"

#include <memory>
#include <string>

namespace soci {
class session;
class soci_error;
} // namespace soci

namespace nodecoord::storage {

/// How an error from the database should be handled.
enum class error_kind {
  connection, // the connection is gone: reconnect, then retry
  transient,  // worth retrying as is: lock timeout, serialization failure, disk full
  statement,  // this statement is wrong for its data: retrying will not help
};

class database {
public:
  database(storage_url url, clock_fn clock);
  ~database();
  database(const database&) = delete;
  database& operator=(const database&) = delete;

  /// Opens the connection and sets per-connection options. Throws on failure.
  void connect();
  void disconnect() noexcept;
  /// False after a connection error until connect() succeeds again.
  bool connected() const noexcept { return sql_ != nullptr; }

  /// Applies migrations; returns the version found before. Throws schema_too_new.
  int migrate();

  soci::session& session();
  const dialect& sql_dialect() const { return dialect_for(url_.kind); }
  const storage_url& url() const { return url_; }
  sys_time now() const { return clock_(); }
  const clock_fn& clock() const { return clock_; }

  /// Classifies the exception currently being handled (call from a catch block).
  error_kind classify_current() noexcept;

private:
  storage_url url_;
  clock_fn clock_;
  std::unique_ptr<soci::session> sql_;
};

/// Renders the exception being handled as one line (for logs and error replies).
std::string current_exception_message();

} // namespace nodecoord::storage
