#pragma once
// A statement with named parameters whose values it owns (SOCI binds by reference, so a
// temporary bound to a prepared statement would dangle), plus typed column readers that accept
// what either backend returns (SQLite and PostgreSQL report integer widths differently).
#include <soci/soci.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace nodecoord::storage {

class query {
public:
  query(soci::session& sql, std::string text) : sql_(sql), text_(std::move(text)) {}

  /// Binds `:name` to a string.
  query& bind(const std::string& name, std::string value);
  /// Binds `:name` to a string, NULL when empty.
  query& bind_nullable(const std::string& name, std::string value);
  query& bind(const std::string& name, int64_t value);
  /// Binds `:prefix0, :prefix1, ...` to `values` and returns "(:prefix0, :prefix1, ...)".
  static std::string in_list(const std::string& prefix, size_t n);
  query& bind_list(const std::string& prefix, const std::vector<std::string>& values);

  /// Runs a statement; returns the number of affected rows.
  long long exec();

  /// Runs a query; calls f(row) for each result row.
  template <class F>
  void each(F&& f) {
    soci::row r;
    soci::statement st(sql_);
    prepare(st);
    st.exchange(soci::into(r));
    st.define_and_bind();
    if (st.execute(true)) {
      do
        f(static_cast<const soci::row&>(r));
      while (st.fetch());
    }
  }

private:
  void prepare(soci::statement& st);

  struct binding {
    std::string name;
    bool is_int;
    size_t index;
  };
  soci::session& sql_;
  std::string text_;
  std::vector<binding> bindings_;
  std::deque<std::string> strings_;
  std::deque<long long> ints_;
  std::deque<soci::indicator> indicators_;
};

/// Column i as text; "" for NULL. Numbers are rendered in decimal.
std::string col_str(const soci::row& r, size_t i);
/// Column i as an integer; `if_null` for NULL.
int64_t col_int(const soci::row& r, size_t i, int64_t if_null = 0);

/// Splits `values` into chunks of at most `n` (bounded IN lists).
std::vector<std::vector<std::string>> chunks(const std::vector<std::string>& values, size_t n);

/// Calls f(first, last) for consecutive slices [first, last) of [0, n), each at most `size` long
/// (bounded multi-row statements).
template <class F>
void in_slices(size_t n, size_t size, F f) {
  for (size_t from = 0; from < n; from += size)
    f(from, std::min(n, from + size));
}

} // namespace nodecoord::storage
