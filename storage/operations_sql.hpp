#pragma once
// SQL helpers of operations.cpp that the group runners (grouped.cpp) use as well: the
// dependency runs one way, from grouped.cpp to operations.cpp.
#include "storage/batch_executor.hpp"
#include "storage/operations.hpp"

#include <cstdint>
#include <string>

namespace nodecoord::storage {

/// The highest seq s such that 0..s are all stored, or -1.
int64_t contiguous_high_water(op_context& c, const std::string& attempt_id, int64_t log_count, int64_t log_max_seq);

/// mark_pending with explicit attempt ids (the on-demand trigger).
mark_pending::result_type mark_pending_by_ids(op_context& c, const mark_pending& op);

} // namespace nodecoord::storage
