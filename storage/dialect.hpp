#pragma once
// The few places where PostgreSQL and SQLite SQL differ. Everything else is one portable text.
#include "storage/url.hpp"

#include <cstddef>
#include <string>

namespace nodecoord::storage {

/// How many rows one statement takes on PostgreSQL (dialect::rows_per_statement gives SQLite
/// fewer), well below SQLite's 32,766 and PostgreSQL's 65,535 parameters. The one place these
/// sizes are set.
namespace statement_limits {
inline constexpr size_t ids = 500;       // IN (...) lists of keys
inline constexpr size_t rows = 100;      // multi-row INSERT / UPDATE … FROM VALUES
inline constexpr size_t log_lines = 200; // 5 parameters a line
inline constexpr size_t ops = 200;       // marks, and jobs finished by responses
} // namespace statement_limits

struct dialect {
  backend kind;
  const char* uuid;      // column type of ids
  const char* timestamp; // column type of times (bound and read as RFC 3339 text)
  const char* json;      // column type of JSON documents (bound and read as text)

  /// An expression reading timestamp column `col` as RFC 3339 UTC text with milliseconds.
  std::string ts(const std::string& col) const;
  /// An expression reading JSON column `col` as text.
  std::string json_text(const std::string& col) const;
  /// A bound parameter `:name` cast to the timestamp / json / uuid column type, for contexts in
  /// which PostgreSQL cannot infer the type of a text parameter (e.g. inside CASE or COALESCE).
  std::string ts_param(const std::string& name) const;
  std::string json_param(const std::string& name) const;
  std::string uuid_param(const std::string& name) const;
  /// `:name` as a BIGINT (a text parameter is not compared or summed with numbers in PostgreSQL).
  static std::string int_param(const std::string& name);
  /// How many rows (or ids) of `params_per_row` bound parameters one statement should carry, where
  /// PostgreSQL would take `pg_rows`. PostgreSQL pays per statement (a round trip, parse, plan),
  /// so it gets large statements; SQLite pays nothing per statement but looks named parameters up
  /// in a list, quadratic in their number (40 % of the daemon's CPU at 1,000 parameters), so it
  /// gets statements of about 100 parameters.
  size_t rows_per_statement(size_t params_per_row, size_t pg_rows) const;
  /// A derived table `alias` with `columns` from multi-row VALUES text "(..), (..)" (SQLite has
  /// no column list on VALUES, PostgreSQL no column1.. names).
  std::string values_table(const std::string& alias, const std::string& columns, const std::string& rows) const;
  /// Row locks held to the end of the transaction (PostgreSQL; SQLite has one writer, whose
  /// transaction already excludes every other): " FOR SHARE" / " FOR UPDATE", or "".
  const char* for_share() const { return kind == backend::sqlite ? "" : " FOR SHARE"; }
  const char* for_update() const { return kind == backend::sqlite ? "" : " FOR UPDATE"; }
};

const dialect& dialect_for(backend b);

} // namespace nodecoord::storage
