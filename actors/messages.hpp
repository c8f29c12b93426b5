#pragma once
// The plain structs the actors exchange (DESIGN §1), without CAF: the admin API and tests use
// them without pulling in the actor headers. The actor interfaces are in actors/actors.hpp.
#include "storage/batch_executor.hpp"
#include "storage/operations.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord {

/// One session of one node: what a request, a frame or a session event belongs to. The epoch
/// fences it: news of an older session than the current one changes nothing.
struct session_ref {
  std::string node_id;
  int64_t epoch = 0;

  bool operator==(const session_ref&) const = default;
};

/// A backfill_request frame for a session to write (tracker -> node_session).
struct backfill_delivery {
  session_ref to;
  std::string request_id;
  std::string frame; // the encoded line
};

/// What the storage actor reports about itself (readiness, metrics).
struct storage_status {
  bool available = false; // connected and migrated: "database unavailable" otherwise
  std::string backend;    // sqlite | postgresql
  std::string url;        // password redacted
  std::string last_error; // the latest connection or transient error, if any
  int schema_version = 0;
  uint64_t queued = 0; // operations waiting for a commit
  storage::executor_stats stats;
};

/// The result of startup (DESIGN §1 Startup): schema migrated, recovery applied.
struct startup_report {
  int schema_from = 0;
  int schema_to = 0;
  int64_t incarnation = 0; // of this instance's lease (0: no instance id)
  storage::reset_all_pending::result_type recovery;
};

/// A hello, as the registry sees it.
struct auth_request {
  std::string node_name;
  std::string key;          // the full API key "nck_<key_id>_<secret>"
  std::string peer;         // remote address, for per-peer failure rate limiting
  std::string capabilities; // JSON object text from the hello, stored on the node row
};

/// The registry's answer: ok with the node id and the session epoch, or an error code for the
/// node (auth_failed for every authentication problem, so a prober learns nothing).
struct auth_result {
  bool ok = false;
  std::string code;
  std::string message;
  std::string node_id;
  int64_t epoch = 0;
};

/// One connected node (registry view).
struct connected_node {
  std::string node_id;
  std::string name;
  int64_t epoch = 0;
  std::string connected_at;
  std::string peer;
};

/// Counters the acceptor keeps (metrics later).
struct acceptor_stats {
  uint16_t port = 0;
  uint64_t accepted = 0;
  uint64_t refused = 0;            // over max_connections
  uint64_t refused_handshakes = 0; // over max_handshakes
  uint64_t open = 0;
};

/// What a trigger asks the tracker for: a backfill of one node's session.
struct backfill_order {
  std::string node_id;
  int64_t epoch = 0;                    // 0: whatever session the node has now
  std::vector<std::string> attempt_ids; // these attempts (on-demand) ...
  int64_t limit = 0;                    // ... or up to `limit` of its oldest partial ones
  std::string trigger;                  // reconnect | reconcile | on_demand
};

enum class order_status : uint8_t {
  requested,       // marked, job recorded, backfill_request sent
  nothing_to_mark, // no attempt was partial: nothing sent, no job left behind
  offline,         // the node (or that session of it) is not connected
  busy,            // max_inflight_per_node requests are live for the session
  stopping,        // the coordinator is shutting down
  not_found,       // on-demand: no such attempt
  not_partial,     // on-demand: the attempt is not partial (see message)
  error,           // storage refused (see message)
};

inline const char* to_string(order_status s) {
  switch (s) {
    case order_status::requested: return "requested";
    case order_status::nothing_to_mark: return "nothing_to_mark";
    case order_status::offline: return "offline";
    case order_status::busy: return "busy";
    case order_status::stopping: return "stopping";
    case order_status::not_found: return "not_found";
    case order_status::not_partial: return "not_partial";
    case order_status::error: return "error";
  }
  return "?";
}

struct order_result {
  order_status status = order_status::error;
  std::string request_id;
  int64_t attempts = 0; // attempts marked and sent
  std::string message;
};

/// What a node drain did (the tracker's part): requests that ended with an answer while it
/// waited, and requests it reset at its deadline (or that expired or ended meanwhile).
struct drain_result {
  int64_t requests_finished = 0;
  int64_t requests_reset = 0;
};

/// What an operator's cancel of requests in flight did (bulk requests.cancel): nothing, and
/// `stale`, when one of the named requests had ended or was still being marked.
struct cancel_result {
  bool stale = false;
  int64_t requests = 0;
  int64_t attempts = 0; // the attempts they held, back to partial
};

/// A check for a node's session (admin -> registry -> node_session; docs/protocol.md, checks):
/// the job that records it is written first, and its id is the request id on the wire.
struct check_dispatch {
  std::string node_id;
  std::string job_id;
  std::string name;
  std::vector<std::string> argv;
  int64_t timeout_ms = 0; // the agent kills the program after this
  int64_t output_max = 0; // bytes of output kept
};

/// Whether a check went out; if not, why (`node_not_connected`, `checks_unsupported`).
struct check_dispatch_result {
  bool sent = false;
  std::string code;
  std::string message;
};

/// One live request (admin, metrics, tests).
struct inflight_request {
  std::string request_id;
  std::string node_id;
  int64_t epoch = 0;
  std::string trigger;
  bool sent = false;
  uint64_t attempts = 0;
  int64_t age_ms = 0; // since it was sent (0 while marking)
};

/// What the tracker reports about itself.
struct tracker_status {
  std::vector<inflight_request> requests;
  uint64_t requested = 0;     // requests sent since start
  uint64_t answered = 0;      // responses applied
  uint64_t refused = 0;       // responses refused (unknown_request)
  uint64_t fenced = 0;        // responses the epoch fence refused (the node has a newer session)
  uint64_t expired = 0;       // requests past request_timeout
  uint64_t cancelled = 0;     // requests of ended sessions (disconnect, supersede, shutdown), drains, operators
  uint64_t send_failures = 0; // marked but not deliverable: reset at once
  uint64_t completed = 0;     // attempts completed
  uint64_t reset = 0;         // attempts back to partial by a response
  uint64_t failed = 0;        // attempts that reached max_failures
  uint64_t answered_ms = 0;   // sum over answered requests of send-to-answer time (mean latency)
};

/// What one reconcile pass did (also the detail of its `reconcile` job).
struct reconcile_report {
  std::string job_id;
  uint64_t pages = 0;
  uint64_t nodes = 0;     // connected nodes with partial attempts
  uint64_t requested = 0; // requests made
  uint64_t attempts = 0;  // attempts marked
  uint64_t busy = 0;      // nodes at max_inflight_per_node
  std::string error;      // non-empty: the pass stopped (job `failed`, or `abandoned` by shutdown)
};

/// What the scheduler reports about itself.
struct scheduler_status {
  uint64_t connected = 0;
  uint64_t probe_waiting = 0;    // new sessions waiting for the probe for partial attempts
  uint64_t reconnect_queue = 0;  // sessions waiting for their reconnect request
  uint64_t reconnect_probes = 0; // probe statements (each covers up to page_size sessions)
  uint64_t reconnect_idle = 0;   // sessions the probe found without partial attempts (no request)
  uint64_t reconnect_requests = 0;
  uint64_t reconcile_passes = 0;
  uint64_t on_demand_requests = 0;
};

} // namespace nodecoord
