#pragma once
// Versioned schema migrations (DESIGN §3). Applied at startup in one transaction; re-running is a
// no-op; a database whose schema is newer than this binary is refused.
#include <stdexcept>
#include <string>

namespace soci {
class session;
}

namespace nodecoord::storage {

struct dialect;

/// The schema version this binary writes.
int latest_schema_version();

/// Thrown when the database was migrated by a newer nodecoordd.
struct schema_too_new : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Brings the schema up to latest_schema_version(). Returns the version found before migrating.
/// Safe against concurrent migrators (advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).
/// `up_to` (tests of an upgrade): stop after that version.
int migrate(soci::session& sql, const dialect& d, const std::string& now_rfc3339, int up_to = 0);

} // namespace nodecoord::storage
