#pragma once
// The scheduler (DESIGN §4): the three backfill triggers. Reconnect: after a welcome, ask for up
// to batch_size of the node's oldest partial attempts, paced fleet-wide at reconnect_rate.
// Periodic: every reconcile_interval, expire overdue requests, then page (keyset) through online
// nodes with partial attempts. On-demand: one attempt now (the admin API). The tracker owns the
// requests; the scheduler only decides when to ask.
#include "config/defaults.hpp"
#include "actors/actors.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>

namespace nodecoord {

struct scheduler_options {
  storage_actor storage;
  tracker_actor tracker;
  std::chrono::milliseconds reconcile_interval{defaults::reconcile_interval};
  uint32_t batch_size = defaults::batch_size;
  uint32_t reconnect_rate = defaults::reconnect_rate; // reconnect requests per second, whole fleet
  uint32_t page_size = defaults::reconcile_page_size; // nodes per reconcile page
  uint64_t seed = 0;                                  // jitter; 0: random
};

scheduler_actor spawn_scheduler(caf::actor_system& sys, scheduler_options opts);

} // namespace nodecoord
