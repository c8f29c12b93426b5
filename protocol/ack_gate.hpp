#pragma once
// Durable acknowledgement (DESIGN §2, docs/protocol.md "Heartbeats"): `heartbeat_ack{seq}`
// promises that every frame the session received before that heartbeat is committed, or was
// answered with an error frame. Agents forget what an ack confirms, so an ack written when a
// frame was merely *parsed* lost data whenever the daemon died before the commit.
//
// The session takes a ticket for every frame it hands on (to storage, or a backfill_response to
// the tracker) and settles it when the answer has been handled (error frame written, if any). A
// heartbeat is answered once every ticket taken before it is settled. Answers may come out of
// order (a response goes through the tracker), heartbeats are answered in arrival order.
// No CAF: tested directly (tests/protocol_test.cpp).
#include <chrono>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace nodecoord::protocol {

class ack_gate {
public:
  using ticket = uint64_t;
  using time_point = std::chrono::steady_clock::time_point;

  /// A frame was handed on; settle(ticket) once its answer is handled.
  ticket open();
  /// The answer of `t` (a result or an error) has been handled. Unknown or repeated: ignored.
  void settle(ticket t);

  /// A heartbeat arrived at `now`: true if it may be acknowledged at once (nothing before it is
  /// unsettled); otherwise it is held until released() hands it out.
  bool heartbeat(int64_t seq, time_point now);
  /// The held heartbeats whose frames are all settled now, in arrival order; they leave the gate.
  std::vector<int64_t> released();

  /// True (once per `interval`) while the oldest held heartbeat has waited at least `interval`:
  /// time to tell the node that acknowledgements are delayed, so it does not take the silence
  /// for a dead connection.
  bool delay_notice_due(time_point now, std::chrono::steady_clock::duration interval);

  /// Frames handed on and not answered yet.
  uint64_t unsettled() const { return next_ - base_ - settled_ahead_; }
  /// Heartbeats waiting for their ack.
  size_t held() const { return held_.size() - held_head_; }

private:
  struct held_ack {
    ticket barrier; // every ticket below it must be settled
    int64_t seq;
    time_point since;
  };
  void compact();

  ticket next_ = 0; // the next ticket handed out
  ticket base_ = 0; // every ticket below base_ is settled
  // Settled tickets at or above base_ (answers out of order), flags for [base_, next_) from head_.
  std::vector<uint8_t> flags_;
  size_t flags_head_ = 0;
  uint64_t settled_ahead_ = 0;
  std::vector<held_ack> held_;
  size_t held_head_ = 0;
  std::optional<time_point> last_notice_;
};

} // namespace nodecoord::protocol
