#pragma once
// storage.url (DESIGN §3): "sqlite:///abs/path.db", "sqlite://relative.db" (against the state
// directory), "sqlite::memory:", or a libpq URI "postgresql://user:pass@host:port/db?params".
#include <chrono>
#include <string>
#include <string_view>

namespace nodecoord::storage {

enum class backend { sqlite, postgresql };

std::string_view to_string(backend b);

struct storage_url {
  backend kind = backend::sqlite;
  std::string original;       // as configured (password masked by redacted())
  std::string connect_string; // what SOCI gets
  std::string sqlite_path;    // sqlite only; ":memory:" for the in-memory database
  /// The URL with any password replaced by "***", for logs.
  std::string redacted() const;
  /// False for SQLite's in-memory database: a second connection would open another, empty one, so
  /// long reads (exports, sizes) must go through the connection that holds the data.
  bool shared() const { return !(kind == backend::sqlite && sqlite_path == ":memory:"); }
};

/// Parses a storage URL. Relative SQLite paths are resolved against `state_dir` (if non-empty).
/// `connect_timeout` goes into the connection string (libpq connect_timeout, SQLite busy timeout).
/// Throws std::invalid_argument with a clear message on a malformed URL.
storage_url parse_storage_url(std::string_view url, const std::string& state_dir,
                              std::chrono::milliseconds connect_timeout);

} // namespace nodecoord::storage
