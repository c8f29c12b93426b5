#pragma once
// SQL helpers of operations.cpp that the group runners (grouped.cpp) use as well: the
// dependency runs one way, from grouped.cpp to operations.cpp.
#include "storage/batch_executor.hpp"
#include "storage/dialect.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"

#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord::storage {

/// The highest seq s such that 0..s are all stored, or -1.
int64_t contiguous_high_water(op_context& c, const std::string& attempt_id, int64_t log_count, int64_t log_max_seq,
                              int64_t pruned_through);

/// Runs `sql_prefix + "(:i0, ...)" + suffix` for every chunk of ids; the total affected rows.
/// `binder` adds the statement's other parameters.
template <class Binder>
requires std::invocable<Binder&, query&> int64_t exec_in_chunks(op_context& c, const std::string& sql_prefix,
                                                                const std::vector<std::string>& ids, Binder binder,
                                                                const std::string& suffix = "") {
  int64_t total = 0;
  for (auto& chunk : chunks(ids, c.d.rows_per_statement(1, statement_limits::ids))) {
    query q(c.sql, sql_prefix + query::in_list("i", chunk.size()) + suffix);
    q.bind_list("i", chunk);
    binder(q);
    total += q.exec();
  }
  return total;
}

inline int64_t exec_in_chunks(op_context& c, const std::string& sql_prefix, const std::vector<std::string>& ids,
                              const std::string& suffix = "") {
  return exec_in_chunks(
    c, sql_prefix, ids, [](query&) {}, suffix);
}

/// Sums the one-number answer of `sql_prefix + "(:i0, ...)"` over every chunk of ids.
int64_t sum_in_chunks(op_context& c, const std::string& sql_prefix, const std::vector<std::string>& ids);

/// mark_pending with explicit attempt ids (the on-demand trigger).
mark_pending::result_type mark_pending_by_ids(op_context& c, const mark_pending& op);

} // namespace nodecoord::storage
