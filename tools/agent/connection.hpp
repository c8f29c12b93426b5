#pragma once
// The agent's connection loop: connect, speak through a `link`, and after any end of a
// connection reconnect with exponential backoff and full jitter (a delay drawn uniformly from
// [0, min(max, initial · 2^n)]), so a fleet that lost its coordinator does not come back in
// lockstep. One thread, poll(), a non-blocking socket; it always reads, even while sending.
#include "tls/context.hpp"
#include "tools/agent/link.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nodecoord::agent {

struct loop_options {
  std::string host = "127.0.0.1";
  uint16_t port = 7400;
  /// Several coordinators (instances sharing one database, DESIGN §9): the agent starts at a
  /// random one and moves to the next after every failed connection or ended session. Empty:
  /// host and port only.
  std::vector<std::pair<std::string, uint16_t>> coordinators;
  std::chrono::milliseconds poll_interval{200}; // how often the store is read for new records
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds stable_after{10000}; // a session this long resets the backoff
  std::chrono::milliseconds bye_bound{2000};     // at shutdown: flush the bye for at most this
  /// TLS to the coordinator (null: plain TCP). Its certificate must name `server_name` (empty:
  /// `host`); sessions are resumed across reconnects.
  std::shared_ptr<const tls::context> tls;
  std::string server_name;
  // Silence (not even a heartbeat ack) for 3 heartbeat intervals + connect_timeout: reconnect.
};

/// Splits "HOST:PORT" (IPv6 as "[::1]:7400"); false if it is not that shape.
bool parse_endpoint(const std::string& s, std::string& host, uint16_t& port);

/// Runs until `stop_fd` becomes readable (the signal pipe); then sends `bye` if a session is up
/// and returns 0. Also returns 0 when the coordinator closes the session with `drained` (an
/// operator drained the node): the agent does not reconnect until it is started again.
int run_connection_loop(coordinator_link& l, const loop_options& opts, int stop_fd);

} // namespace nodecoord::agent
