#pragma once
// The scheduler (DESIGN §4): the three backfill triggers. Reconnect: after a welcome, ask for up
// to batch_size of the node's oldest partial attempts, paced fleet-wide at reconnect_rate.
// Periodic: every reconcile_interval, expire overdue requests, then page (keyset) through online
// nodes with partial attempts. On-demand: one attempt now (the admin API). The tracker owns the
// requests; the scheduler only decides when to ask.
#include "actors/actors.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>

namespace nodecoord {

struct scheduler_options {
  storage_actor storage;
  tracker_actor tracker;
  std::chrono::milliseconds reconcile_interval{std::chrono::seconds(60)};
  uint32_t batch_size = 100;
  uint32_t reconnect_rate = 50; // reconnect requests per second, whole fleet
  uint32_t page_size = 500;     // nodes per reconcile page
  uint64_t seed = 0;            // jitter; 0: random
};

scheduler_actor spawn_scheduler(caf::actor_system& sys, scheduler_options opts);

} // namespace nodecoord
