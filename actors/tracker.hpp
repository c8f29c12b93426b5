#pragma once
// The tracker (DESIGN §1, §3): the one owner of request_id -> {node, epoch, attempts, deadline}.
// It creates requests (storage marks by compare-and-set and records the job), hands them to the
// node's session, and turns responses, session ends, failed sends and deadlines into storage
// transitions. Everything it sends to storage goes in one order, so a reset never overtakes a
// response that arrived before it (lessons.md: the promise).
#include "config/defaults.hpp"
#include "actors/actors.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace nodecoord {

struct tracker_options {
  storage_actor storage;
  std::chrono::milliseconds request_timeout{defaults::request_timeout};
  uint32_t max_failures = defaults::max_failures;
  uint32_t max_inflight_per_node = defaults::max_inflight_per_node;
  /// How long resets are gathered before they go to storage as one operation; 0: as soon as the
  /// mailbox has been worked off.
  std::chrono::milliseconds coalesce_window{0};
  /// New request ids (tests may make them predictable).
  std::function<std::string()> new_request_id;
};

tracker_actor spawn_tracker(caf::actor_system& sys, tracker_options opts);

} // namespace nodecoord
