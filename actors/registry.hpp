#pragma once
// The registry (DESIGN §1): one live session per node, keyed by epoch. Authenticates hellos
// through storage, supersedes older sessions, and turns session ends into `offline` rows only
// while the ended session's epoch is still the node's current one.
#include "config/defaults.hpp"
#include "actors/actors.hpp"
#include "common/clock.hpp"

#include <caf/fwd.hpp>

#include <chrono>

namespace nodecoord {

struct registry_options {
  storage_actor storage;
  clock_fn clock = system_now;
  /// How often batched last_seen_at is written.
  std::chrono::milliseconds seen_flush{defaults::seen_flush};
  /// How often the registry looks for nodes an operator disabled (to close their sessions).
  std::chrono::milliseconds disabled_poll{defaults::disabled_poll};
  /// Failed authentications tolerated per peer address per minute; beyond it every hello from
  /// that address fails at once, without a database lookup.
  uint32_t auth_failures_per_minute = defaults::auth_failures_per_minute;
  /// Addresses the failure limit tracks at once (common/auth_limiter.hpp).
  size_t auth_limiter_capacity = defaults::auth_limiter_capacity;
  /// Key lookups in storage at once; further hellos wait their turn here, so a flood of random
  /// keys cannot put more than this many lookups ahead of the data writes. The daemon uses one
  /// storage batch (storage.batch_max): one transaction of lookups at most.
  uint32_t max_lookups = defaults::batch_max;
  /// How long session ends are gathered before they are written as one operation; 0: as soon as
  /// the mailbox has been worked off.
  std::chrono::milliseconds coalesce_window{0};
};

registry_actor spawn_registry(caf::actor_system& sys, registry_options opts);

} // namespace nodecoord
