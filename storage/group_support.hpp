#pragma once
// What every group runner is built from (storage/grouped.hpp lists the runners): an operation
// with its result slot, running one operation through a runner, and splitting runs. Used by
// operations.cpp and grouped.cpp alike, so neither needs the other's header.
#include "storage/batch_executor.hpp"

#include <memory>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

namespace nodecoord::storage {

/// An operation and its result slot, as a group runner sees them.
template <class Op>
struct op_member : group_member {
  explicit op_member(Op o) : op(std::move(o)) {}
  Op op;
  typename Op::result_type result{};
};

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

} // namespace nodecoord::storage
