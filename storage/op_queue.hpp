#pragma once
// The storage actor's queue and its ordering policy (DESIGN §3 rule 5 and its two exceptions),
// without the actor: operations apply in arrival order, except that handshakes go ahead of
// queued data, and an attempt reset goes ahead of queued operations that never touch attempts
// or logs. What an operation is, for this policy, its type declares (queue traits below).
#include "storage/batch_executor.hpp"

#include <cstddef>
#include <deque>
#include <vector>

namespace nodecoord::storage {

/// Where an operation enters the queue.
enum class queue_place {
  back,   // after everything (the rule)
  front,  // before everything (startup recovery)
  urgent, // after the handshakes already queued, before everything else
  ahead,  // after the last queued operation that touches attempts or logs (and the handshakes)
};

// --- queue traits, declared by the operation types --------------------------------------------
// `static constexpr bool touches_attempts = false;`: never reads or writes attempts or logs
//   (session ends, last-seen updates, job writes), so a reset may pass it.
// `static constexpr bool handshake = true;`: part of a node's hello (key lookup, session
//   begin); depends on nothing queued: a session writes data only after its welcome.
// `static constexpr bool own_transaction = true;`: long (a bundle): what is queued before it
//   commits first, and a failure of it is not re-run with others' (isolation would run it twice).

template <class Op>
constexpr bool touches_attempts() {
  if constexpr (requires { Op::touches_attempts; })
    return Op::touches_attempts;
  else
    return true;
}

template <class Op>
constexpr queue_place place_of() {
  if constexpr (requires { Op::handshake; })
    return Op::handshake ? queue_place::urgent : queue_place::back;
  else
    return queue_place::back;
}

template <class Op>
constexpr bool own_transaction() {
  if constexpr (requires { Op::own_transaction; })
    return Op::own_transaction;
  else
    return false;
}

class op_queue {
public:
  struct entry {
    batch_item item;
    bool touches_attempts = true;
    bool commit_after = false; // the batch ends after this entry
  };

  /// Queues `e` at `where`.
  void push(entry e, queue_place where = queue_place::back);

  /// Queues `e` in a transaction of its own: the batch ends before it and after it.
  void push_alone(entry e);

  /// Moves up to `max` entries, in order, into `batch`; stops after one that ends its batch.
  void take_batch(std::vector<batch_item>& batch, size_t max);

  /// Empties the queue (the storage stops), in order.
  std::deque<entry> take_all();

  size_t size() const { return q_.size(); }
  bool empty() const { return q_.empty(); }
  /// Handshakes at the front.
  size_t urgent() const { return urgent_; }

private:
  std::deque<entry> q_;
  size_t urgent_ = 0; // the first urgent_ entries are handshakes
};

} // namespace nodecoord::storage
