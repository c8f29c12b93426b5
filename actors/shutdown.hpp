#pragma once
// The daemon's orderly shutdown (DESIGN §1 Shutdown) as one sequence over the actors, apart from
// the supervisor that starts them, so it is tested on its own (tests/session_ack_test.cpp; the
// supervisor running it in tests/supervisor_test.cpp):
// 1. the acceptor stops accepting and closes every session with close{shutdown};
// 2. the registry has then seen every session end: it writes the offline rows;
// 3. the scheduler stops ordering (a reconcile pass in flight: its job row `abandoned`); the
//    tracker resets what is still in flight, after every response it already received (those
//    reached storage first);
// 4. storage commits everything it accepted (drain), then stops.
// A stage that fails or is gone is logged and the sequence goes on: nothing accepted is dropped
// because an earlier stage could not answer.
#include "actors/actors.hpp"

#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>

namespace nodecoord {

struct shutdown_stages {
  caf::actor acceptor;
  registry_actor registry;
  scheduler_actor scheduler;
  tracker_actor tracker;
  storage_actor storage;
};

/// What the sequence saw, for the log and for tests.
struct shutdown_report {
  uint64_t sessions_closed = 0;  // by the acceptor
  uint64_t passes_abandoned = 0; // reconcile passes stopped by the scheduler (0 or 1)
  uint64_t requests_reset = 0;   // by the tracker
  bool drained = false;          // storage committed everything before it stopped
};

/// Runs the sequence from `self`; `done` gets the report when storage has drained (or failed to)
/// and every stage has been told to exit.
void shutdown_in_order(caf::event_based_actor* self, const shutdown_stages& stages,
                       std::function<void(const shutdown_report&)> done);
void shutdown_in_order(supervisor_actor::pointer self, const shutdown_stages& stages,
                       std::function<void(const shutdown_report&)> done);

} // namespace nodecoord
