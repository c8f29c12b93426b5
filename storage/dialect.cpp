#include "storage/dialect.hpp"

namespace nodecoord::storage {

namespace {

// Times are kept as TIMESTAMPTZ in PostgreSQL (so operators can use date functions in psql) and
// as RFC 3339 text in SQLite (which sorts correctly because every value has the same format).
const dialect pg{backend::postgresql, "UUID", "TIMESTAMPTZ", "JSONB"};
const dialect lite{backend::sqlite, "TEXT", "TEXT", "TEXT"};

} // namespace

std::string dialect::ts(const std::string& col) const {
  if (kind == backend::sqlite)
    return col;
  return "to_char(" + col + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
}

std::string dialect::json_text(const std::string& col) const {
  return kind == backend::sqlite ? col : "CAST(" + col + " AS TEXT)";
}

std::string dialect::ts_param(const std::string& name) const {
  return kind == backend::sqlite ? ":" + name : "CAST(:" + name + " AS TIMESTAMPTZ)";
}

std::string dialect::json_param(const std::string& name) const {
  return kind == backend::sqlite ? ":" + name : "CAST(:" + name + " AS JSONB)";
}

const dialect& dialect_for(backend b) {
  return b == backend::sqlite ? lite : pg;
}

} // namespace nodecoord::storage
