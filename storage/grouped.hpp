#pragma once
// Adjacent operations of one kind in a batch run together as set-based SQL, so a batch of a
// thousand operations costs a few statements instead of a few thousand round trips:
// - what a node session sends: attempt_upsert, logs_insert and apply_backfill (its backfill
//   responses), mixed, in any order;
// - mark_pending by `limit` (the reconnect and reconcile triggers).
// A runner gives every operation exactly the result, and leaves the rows exactly as, running them
// one after another would (storage_test compares both on random sequences). The storage actor is
// the only writer of these rows, so what a runner reads at its start stays true until it writes.
// The one-operation execute() of these kinds is the runner with one member: one implementation.
#include "storage/batch_executor.hpp"
#include "storage/operations.hpp"

#include <memory>
#include <span>

namespace nodecoord::storage {

/// An operation and its result slot, as a group runner sees them.
template <class Op>
struct op_member : group_member {
  explicit op_member(Op o) : op(std::move(o)) {}
  Op op;
  typename Op::result_type result{};
};

void run_attempts(op_context&, std::span<group_member* const>); // attempt_upsert, logs_insert, apply_backfill
void run_marks(op_context&, std::span<group_member* const>);    // mark_pending by limit

template <class Op>
group_runner runner_for(const Op&) {
  return nullptr;
}
inline group_runner runner_for(const attempt_upsert&) { return run_attempts; }
inline group_runner runner_for(const logs_insert&) { return run_attempts; }
inline group_runner runner_for(const apply_backfill&) { return run_attempts; }
inline group_runner runner_for(const mark_pending& op) {
  return op.attempt_ids.empty() && op.limit > 0 ? run_marks : nullptr;
}

/// Makes `item` run `op` (alone or in a group); the returned member holds the result after the
/// transaction ran.
template <class Op>
std::shared_ptr<op_member<Op>> bind_item(batch_item& item, Op op) {
  auto m = std::make_shared<op_member<Op>>(std::move(op));
  item.group = runner_for(m->op);
  item.run = [m](op_context& c) { m->result = execute(c, m->op); };
  item.member = m;
  return m;
}

// Shared with operations.cpp.
/// The highest seq s such that 0..s are all stored, or -1.
int64_t contiguous_high_water(op_context& c, const std::string& attempt_id, int64_t log_count,
                              int64_t log_max_seq);
/// mark_pending with explicit attempt ids (the on-demand trigger).
mark_pending::result_type mark_pending_by_ids(op_context& c, const mark_pending& op);

} // namespace nodecoord::storage
