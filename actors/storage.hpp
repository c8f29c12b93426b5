#pragma once
// The storage actor (DESIGN §1, §3): owns the only database session, applies every operation in
// arrival order in batches (one transaction each), and answers each one after its batch commits.
// While the database is unreachable it reconnects with backoff; operations wait, none is dropped
// or applied twice.
#include "config/defaults.hpp"
#include "actors/actors.hpp"
#include "common/clock.hpp"
#include "storage/batch_executor.hpp"
#include "storage/url.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace nodecoord {

struct storage_options {
  storage::storage_url url;
  uint32_t batch_max = defaults::batch_max;
  std::chrono::milliseconds reconnect_initial{defaults::reconnect_initial};
  std::chrono::milliseconds reconnect_max{defaults::reconnect_max};
  clock_fn clock = system_now;
  /// Tests: called around COMMIT (may throw storage::simulated_connection_loss).
  std::function<void(storage::batch_executor::fault_point)> fault_hook;
  /// This daemon's instance (DESIGN §9): its lease row and what it writes as owner. Empty: none
  /// (tests of one storage), rows without an owner.
  std::string instance_id;
  std::string version;
  std::string listen;
};

/// Spawns the storage actor. `detached`: on its own thread (production: its SQL blocks);
/// tests under CAF's deterministic scheduler pass false.
storage_actor spawn_storage(caf::actor_system& sys, storage_options opts, bool detached = true);

} // namespace nodecoord
