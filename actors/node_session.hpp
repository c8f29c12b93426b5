#pragma once
// node_session (DESIGN §1-2): one broker per TCP connection. Framing, decode/encode, the
// handshake, heartbeats, the idle timer, a bounded outbound buffer and the protocol-error budget.
// Its handlers never block and never talk SQL: data frames go to storage as messages.
#include "actors/actors.hpp"
#include "common/clock.hpp"

#include <caf/fwd.hpp>
#include <caf/io/fwd.hpp>

#include <chrono>
#include <cstdint>

namespace nodecoord {

struct session_options {
  uint64_t max_frame_bytes = 1024 * 1024;
  uint64_t max_outbound_bytes = 4 * 1024 * 1024;
  std::chrono::milliseconds hello_timeout{10000};
  std::chrono::milliseconds heartbeat_interval{10000};
  std::chrono::milliseconds idle_timeout{30000};
  uint32_t max_protocol_errors = 10;
  registry_actor registry;
  storage_actor storage;
  tracker_actor tracker; // null: every backfill_response is unknown_request
  clock_fn clock = system_now; // server_time in frames
};

/// Moves the connection `hdl` from `acceptor` into a new node_session broker.
caf::actor fork_session(caf::io::broker* acceptor, caf::io::connection_handle hdl, session_options opts);

} // namespace nodecoord
