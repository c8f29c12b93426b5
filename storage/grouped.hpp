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
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

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
void run_key_lookups(op_context&, std::span<group_member* const>);   // node_lookup_by_key
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

/// Runs one operation through its group runner (the one-operation execute() of a group kind).
template <class Op>
typename Op::result_type execute_alone(op_context& c, const Op& op, group_runner runner) {
  op_member<Op> m(op);
  group_member* p = &m;
  runner(c, std::span<group_member* const>(&p, 1));
  return std::move(m.result);
}

/// The member of `m` as an `Op`; throws std::logic_error if it is another kind.
template <class Op>
op_member<Op>& member_as(group_member* m) {
  auto* p = dynamic_cast<op_member<Op>*>(m);
  if (!p)
    throw std::logic_error("group runner given an operation of another kind");
  return *p;
}

/// Calls f(first, last) for consecutive runs of [0, n) in which key(i) never repeats and that
/// hold at most `size` indexes.
template <class Key, class F>
void distinct_runs(size_t n, size_t size, Key key, F f) {
  size_t from = 0;
  std::set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    if (i - from == size || !seen.insert(key(i)).second) {
      f(from, i);
      from = i;
      seen = {key(i)};
    }
  }
  if (from < n)
    f(from, n);
}

// Shared with operations.cpp.
/// The highest seq s such that 0..s are all stored, or -1.
int64_t contiguous_high_water(op_context& c, const std::string& attempt_id, int64_t log_count,
                              int64_t log_max_seq);
/// A log line to insert: the attempt, the line, and the operation that sends it first.
struct log_candidate {
  const std::string* attempt_id;
  const log_entry* entry;
  size_t op; // index of the logs_insert that sends it first (the run's bookkeeping)
};
/// Inserts the lines (multi-row INSERT … ON CONFLICT (attempt_id, seq) DO NOTHING RETURNING);
/// returns which (attempt, seq) were new. Used by the live log insert and the bundle import.
std::set<std::pair<std::string, int64_t>> insert_logs(op_context& c, const std::vector<log_candidate>& lines);
/// mark_pending with explicit attempt ids (the on-demand trigger).
mark_pending::result_type mark_pending_by_ids(op_context& c, const mark_pending& op);

} // namespace nodecoord::storage
