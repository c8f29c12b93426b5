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

std::string dialect::uuid_param(const std::string& name) const {
  return kind == backend::sqlite ? ":" + name : "CAST(:" + name + " AS UUID)";
}

std::string dialect::int_param(const std::string& name) { return "CAST(:" + name + " AS BIGINT)"; }

std::string dialect::values_table(const std::string& alias, const std::string& columns, const std::string& rows) const {
  if (kind != backend::sqlite)
    return "(VALUES " + rows + ") AS " + alias + " (" + columns + ")";
  std::string select;
  size_t n = 1, from = 0;
  while (true) {
    auto comma = columns.find(',', from);
    auto name = columns.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
    name.erase(0, name.find_first_not_of(' '));
    select += (n > 1 ? ", column" : "column") + std::to_string(n) + " AS " + name;
    if (comma == std::string::npos)
      break;
    from = comma + 1;
    ++n;
  }
  return "(SELECT " + select + " FROM (VALUES " + rows + ")) AS " + alias;
}

size_t dialect::rows_per_statement(size_t params_per_row, size_t pg_rows) const {
  if (kind != backend::sqlite)
    return pg_rows;
  return params_per_row >= 100 ? 1 : 100 / params_per_row;
}

const dialect& dialect_for(backend b) { return b == backend::sqlite ? lite : pg; }

} // namespace nodecoord::storage
