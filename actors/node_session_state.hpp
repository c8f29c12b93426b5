#pragma once
// node_session's state and its transport (internal to actors/node_session*.cpp): the state of one
// connection, and the functions that write to it and end it (node_session_transport.cpp), which
// the protocol handling (node_session.cpp) calls.
#include "actors/node_session.hpp"
#include "common/ingest_budget.hpp"
#include "protocol/ack_gate.hpp"
#include "protocol/codec.hpp"
#include "tls/stream.hpp"

#include <caf/io/broker.hpp>
#include <caf/stateful_actor.hpp>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace nodecoord::session_detail {

struct node_session_state {
  static inline const char* name = "node_session";

  enum class phase { awaiting_hello, authenticating, active, closing };

  session_options opts;
  caf::io::connection_handle hdl;
  std::string peer;
  protocol::line_splitter splitter{0};
  phase ph = phase::awaiting_hello;
  std::string node_id;
  std::string node_name;
  int64_t epoch = 0;
  uint32_t protocol_errors = 0;
  caf::actor_clock::time_point last_frame;
  caf::actor_clock::time_point last_seen_report;
  bool idle_timer = false;
  // Frames that arrive after hello, before welcome: handled once authenticated.
  std::deque<std::string> early;
  size_t early_bytes = 0;
  // Heartbeats are acknowledged only once the frames before them are committed (or refused).
  protocol::ack_gate acks;
  // Backpressure: what this session handed on and is not settled; reading stops over the limits.
  uint64_t unsettled_bytes = 0;
  uint64_t unsettled_frames = 0;
  ingest_budget::limits own{0, 0};
  bool paused = false;
  bool waiting = false;      // a wake is registered with the fleet's budget
  bool paused_timer = false; // one notice timer, however often the session pauses
  bool in_handshake = true;  // holds a place in the acceptor's handshake count
  // Resuming (see rearm_reading): which resume the pending checks belong to, and whether a read
  // has come in since it.
  uint64_t resumes = 0;
  bool read_since_resume = false;
  bool read_grown = false; // the receive buffer is at read_busy_bytes
  // TLS (issue 17): the first byte decides; then every byte both ways goes through the stream.
  bool transport_known = false;
  std::unique_ptr<tls::stream> tls;
  bool tls_verifies_clients = false;
  // Checks (docs/protocol.md): sent only if the hello named the feature; those sent and not
  // answered, by request (job) id. Each ends as a job update: an answer, a timeout or the end.
  bool takes_checks = false;
  struct pending_check {
    std::string name;
    int64_t output_max = 0;
    int64_t timeout_ms = 0;
  };
  std::map<std::string, pending_check> checks;
};

using self_ptr = caf::io::stateful_broker<node_session_state>*;

/// Bytes for the node, encrypted when the link is TLS.
void put(self_ptr self, std::string_view bytes);
/// Moves what the TLS stream has for the network into the socket's buffer.
void flush_tls(self_ptr self);
/// Queues one encoded frame; false (and the session ends as slow_consumer) over max_outbound_bytes.
bool write_line(self_ptr self, const std::string& line);
/// Writes a last frame (error or close), then closes.
void close_with(self_ptr self, const std::string& line, const std::string& reason);
/// Gives back this connection's place among the unauthenticated ones (once).
void leave_handshake(self_ptr self);
/// Ends the session for `reason` (once): the registry hears of it, the socket closes.
void terminate(self_ptr self, const std::string& reason);
/// Fails the checks still waiting for an answer (the session ends): their jobs say why.
void end_checks(self_ptr self, const std::string& reason);
/// Plain or TLS, from the first byte; false when the connection is being closed.
bool choose_transport(self_ptr self, unsigned char first);

} // namespace nodecoord::session_detail
