#pragma once
// node_session (DESIGN §1-2): one broker per TCP connection. Framing, decode/encode, the
// handshake, heartbeats, the idle timer, a bounded outbound buffer and the protocol-error budget.
// Its handlers never block and never talk SQL: data frames go to storage as messages.
#include "config/defaults.hpp"
#include "actors/actors.hpp"
#include "common/clock.hpp"

#include <caf/fwd.hpp>
#include <caf/io/fwd.hpp>

#include <chrono>
#include <cstdint>
#include <atomic>
#include <memory>

namespace nodecoord {
class ingest_budget;
namespace tls {
class server_setting;
}
} // namespace nodecoord

namespace nodecoord {

struct session_options {
  uint64_t max_frame_bytes = defaults::max_frame_bytes;
  uint64_t max_hello_bytes = defaults::max_hello_bytes; // before authentication (docs/protocol.md, limits)
  uint64_t max_outbound_bytes = defaults::max_outbound_bytes;
  std::chrono::milliseconds hello_timeout{defaults::hello_timeout}; // the whole handshake, hello to welcome
  std::chrono::milliseconds heartbeat_interval{defaults::heartbeat_interval};
  std::chrono::milliseconds idle_timeout{defaults::idle_timeout};
  uint32_t max_protocol_errors = defaults::max_protocol_errors;
  /// How often a session reports that its node was seen (the registry writes it this often).
  std::chrono::milliseconds seen_report{defaults::seen_flush};
  registry_actor registry;
  storage_actor storage;
  tracker_actor tracker;       // null: every backfill_response is unknown_request
  clock_fn clock = system_now; // server_time in frames
  /// Frames handed to storage and not settled, fleet-wide; over its limits sessions stop
  /// reading (backpressure). Null: no limit (tests of other things).
  std::shared_ptr<ingest_budget> ingest;
  /// Connections that have not authenticated yet, fleet-wide (the acceptor's count); the
  /// session gives its place back when it leaves the handshake. Null: not counted.
  std::shared_ptr<std::atomic<int64_t>> handshakes;
  /// TLS on this port ([server.tls]), read once per connection; a reload replaces its value.
  /// Null: plain TCP only.
  std::shared_ptr<tls::server_setting> tls;
};

/// Moves the connection `hdl` from `acceptor` into a new node_session broker.
caf::actor fork_session(caf::io::broker* acceptor, caf::io::connection_handle hdl, session_options opts);

} // namespace nodecoord
