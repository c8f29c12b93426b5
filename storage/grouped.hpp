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
#include "storage/group_support.hpp"
#include "storage/operations.hpp"

#include <memory>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nodecoord::storage {

void run_attempts(op_context&, std::span<group_member* const>); // attempt_upsert, logs_insert, apply_backfill
void run_marks(op_context&, std::span<group_member* const>);    // mark_pending by limit
// Defined in operations.cpp (nothing there depends on this header):
void run_key_lookups(op_context&, std::span<group_member* const>);    // node_lookup_by_key
void run_session_begins(op_context&, std::span<group_member* const>); // node_begin_session

template <class Op>
group_runner runner_for(const Op&) {
  return nullptr;
}
inline group_runner runner_for(const attempt_upsert&) { return run_attempts; }
inline group_runner runner_for(const logs_insert&) { return run_attempts; }
inline group_runner runner_for(const apply_backfill&) { return run_attempts; }
inline group_runner runner_for(const node_lookup_by_key&) { return run_key_lookups; }
inline group_runner runner_for(const node_begin_session&) { return run_session_begins; }
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

/// A log line to insert: the attempt, the line, and the operation that sends it first.
struct log_candidate {
  const std::string* attempt_id;
  const log_entry* entry;
  size_t op; // index of the logs_insert that sends it first (the run's bookkeeping)
};
/// Inserts the lines (multi-row INSERT … ON CONFLICT (attempt_id, seq) DO NOTHING RETURNING);
/// returns which (attempt, seq) were new. Used by the live log insert and the bundle import.
std::set<std::pair<std::string, int64_t>> insert_logs(op_context& c, const std::vector<log_candidate>& lines);

} // namespace nodecoord::storage
