#pragma once
// Every operation the storage actor performs, as plain structs: `op` in, `op::result_type` out.
// Each operation runs inside the transaction of its batch; `execute` is the one place that holds
// its SQL. No CAF here: actors/actors.hpp declares these as message types.
//
// Times are RFC 3339 UTC text (common/clock.hpp); an empty string means NULL.
#include "common/clock.hpp"
#include "config/defaults.hpp"
#include "storage/sync_rules.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace soci {
class session;
class row;
} // namespace soci

namespace nodecoord::storage {

struct dialect;

/// What an operation sees while it runs: the session, inside the batch's transaction.
struct op_context {
  soci::session& sql;
  const dialect& d;
  sys_time now;
  std::string now_text; // format_time(now)
  /// This daemon's instance id (DESIGN §9): the owner it writes into the nodes it serves and the
  /// jobs it runs. Empty (tests of one storage): NULL, which this instance's recovery also claims.
  std::string instance = {};
};

/// The epoch of a write made for no session (operators, tests): no fence.
inline constexpr int64_t unfenced = -1;

/// One row of the audit ledger (issue 20, storage/audit.hpp): who asked for a change, what, and
/// what came of it. An operation that carries one (a non-empty `action`) writes it in the same
/// transaction as its effect, with `result`, `counts` and `error` filled in from the outcome.
struct audit_entry {
  std::string actor;  // "token:<first 8 hex of the token's SHA-256>", or "local" (no token set)
  std::string action; // e.g. "node.disable"; empty: not audited
  std::string target; // a node name, an attempt id; empty for an action on a filter
  std::string filter; // the filter or parameters as a JSON object; empty: none
  std::string counts; // what changed, as a JSON object ({"nodes":1})
  std::string result; // succeeded | refused | failed
  std::string error;  // why it was refused or failed
};

// --- records ---------------------------------------------------------------------------------

struct node_record {
  std::string id;
  std::string name;
  std::string key_id;
  std::string key_hash;
  std::string status; // online | offline | disabled
  int64_t session_epoch = 0;
  std::string connected_at;
  std::string disconnected_at;
  std::string disconnect_reason;
  std::string last_seen_at;
  std::string capabilities; // JSON text
  std::string created_at;
  std::string disabled_at;
};

struct attempt_record {
  std::string id;
  std::string node_id;
  std::string task_id;
  std::string state; // queued | running | succeeded | failed | cancelled
  std::string sync_state = "partial";
  std::string backfill_request_id;
  std::string sync_requested_at;
  std::string last_full_sync_at;
  int64_t backfill_failures = 0;
  int64_t log_count = 0;
  int64_t log_max_seq = -1; // -1: no logs stored
  // Lines deleted by a prune (log_count still counts them) and the highest seq pruned (-1: none);
  // a line at or below it is not stored again.
  int64_t logs_pruned = 0;
  int64_t logs_pruned_through = -1;
  std::string started_at;
  std::string finished_at;
  std::string meta; // JSON text
  std::string created_at;
  std::string updated_at;
};

struct log_entry {
  int64_t seq = 0;
  std::string ts;
  std::string stream; // stdout | stderr | system
  std::string line;
};

struct job_record {
  std::string id;
  std::string type;   // backfill | reconcile | bundle_export | bundle_import
  std::string status; // queued | running | succeeded | failed | cancelled | expired | abandoned
  std::string node_id;
  int64_t attempt_count = 0;
  std::string detail; // JSON text
  std::string error;
  std::string created_at;
  std::string started_at;
  std::string finished_at;
};

// --- nodes -----------------------------------------------------------------------------------

/// Creates a node with a key (only the hash is stored). Names are unique.
struct node_create {
  std::string name;
  std::string id; // empty: a new random UUID
  std::string key_id;
  std::string key_hash;
  audit_entry audit = {}; // written with the outcome, in the same transaction
  struct result_type {
    bool created = false; // false: the name (or key id) is taken
    node_record node;
  };
};

/// Finds a node by the key id of its API key (the handshake).
struct node_lookup_by_key {
  static constexpr bool handshake = true; // storage/op_queue.hpp
  std::string key_id;
  struct result_type {
    bool found = false;
    node_record node;
  };
};

/// Finds a node by name (operators).
struct node_lookup_by_name {
  std::string name;
  using result_type = node_lookup_by_key::result_type;
};

/// Nodes ordered by name: those after `after_name` (keyset paging), with `status` if set, at most
/// `limit` (0: all).
struct node_list {
  std::string after_name;
  std::string status; // online | offline | disabled; empty: any
  int64_t limit = 0;
  using result_type = std::vector<node_record>;
};

/// Disables a node: it cannot authenticate; an operator re-enables it.
struct node_disable {
  std::string name;
  audit_entry audit = {};
  struct result_type {
    bool found = false;
    node_record node; // after the change
  };
};

/// Re-enables a disabled node (status back to offline).
struct node_enable {
  std::string name;
  audit_entry audit = {};
  using result_type = node_disable::result_type;
};

/// Replaces a node's key (rotate-key); the old key stops working at once.
struct node_set_key {
  std::string name;
  std::string key_id;
  std::string key_hash;
  audit_entry audit = {};
  using result_type = node_disable::result_type;
};

/// Ids of nodes disabled at or after `since` (the registry closes their sessions).
struct nodes_disabled_since {
  std::string since;
  using result_type = std::vector<std::string>;
};

/// Starts a session: compare-and-set of session_epoch from `expected_epoch` to expected+1, and the
/// row goes online. Fails if another session won the race or the node is disabled.
struct node_begin_session {
  static constexpr bool handshake = true; // storage/op_queue.hpp
  std::string node_id;
  int64_t expected_epoch = 0;
  std::string capabilities; // JSON object from the hello; empty keeps the stored value
  struct result_type {
    bool ok = false;
    int64_t epoch = 0; // the new epoch when ok, the current one otherwise
  };
};

/// Ends a session: the row goes offline only if `epoch` is still the node's current one, so a
/// superseded session's cleanup never touches the newer session (lessons.md: reconnect clobber).
struct node_end_session {
  static constexpr bool touches_attempts = false; // storage/op_queue.hpp
  std::string node_id;
  int64_t epoch = 0;
  std::string reason;
  struct result_type {
    bool applied = false;
  };
};

/// Ends many sessions (a disconnect storm) in a few statements, with node_end_session's rule.
struct nodes_end_sessions {
  static constexpr bool touches_attempts = false; // storage/op_queue.hpp
  std::vector<node_end_session> sessions;
  struct result_type {
    int64_t applied = 0;
  };
};

/// Batched last_seen_at update (heartbeats never write a row each, DESIGN §3 rule 7).
struct node_touch {
  static constexpr bool touches_attempts = false; // storage/op_queue.hpp
  struct seen {
    std::string node_id;
    std::string at;
  };
  std::vector<seen> nodes;
  struct result_type {
    int64_t updated = 0;
  };
};

// --- attempts and logs -----------------------------------------------------------------------

enum class write_status : uint8_t {
  ok,
  forbidden,       // the attempt belongs to another node
  unknown_attempt, // logs for an attempt never reported
  superseded,      // the session's epoch is not the node's current one: nothing written (fence)
};

/// Insert or update an attempt record from its node. A new attempt starts `partial`; an attempt
/// owned by another node is not touched. A change (task, state, a time or meta) takes a
/// `complete` or `failed` attempt back to `partial` (reopen; failures cleared).
/// Fenced (DESIGN §9): with an epoch, nothing is written unless it is the node's current one.
struct attempt_upsert {
  std::string node_id;
  std::string attempt_id;
  std::string task_id;
  std::string state;
  std::string started_at;
  std::string finished_at;
  std::string meta;         // JSON text
  int64_t epoch = unfenced; // the writing session's; sessions always give it
  struct result_type {
    write_status status = write_status::ok;
    bool created = false;
    bool reopened = false;
  };
};

/// Insert-or-ignore log lines on (attempt_id, seq). New lines for a `complete` or `failed`
/// attempt move it back to `partial` (reopen: the next backfill fetches the rest).
struct logs_insert {
  std::string node_id;
  std::string attempt_id;
  std::vector<log_entry> entries;
  int64_t epoch = unfenced; // fenced like attempt_upsert
  struct result_type {
    write_status status = write_status::ok;
    int64_t inserted = 0;
    bool reopened = false;
  };
};

/// Reads one attempt.
struct attempt_get {
  std::string attempt_id;
  struct result_type {
    bool found = false;
    attempt_record attempt;
  };
};

/// Up to `limit` `partial` attempts of a node, oldest first (the reconnect trigger).
struct attempts_partial_of_node {
  std::string node_id;
  int64_t limit = 100;
  using result_type = std::vector<std::string>;
};

/// Online nodes that have `partial` attempts, by id after `after_node_id` (keyset paging for the
/// periodic reconcile), at most `limit`; with an instance id, only the nodes it serves.
struct nodes_with_partial {
  std::string after_node_id;
  int64_t limit = 100;
  using result_type = std::vector<std::string>;
};

/// Of the given nodes, those with at least one `partial` attempt, in id order (the reconnect
/// trigger's probe: an idle node uses no paced slot). One statement per few hundred ids.
struct nodes_partial_among {
  std::vector<std::string> node_ids;
  using result_type = std::vector<std::string>;
};

/// Log lines of an attempt, by seq, after `after_seq` (keyset), at most `limit`.
struct logs_get {
  std::string attempt_id;
  int64_t after_seq = -1;
  int64_t limit = 1000;
  using result_type = std::vector<log_entry>;
};

// --- backfill (DESIGN §3 state machine) ------------------------------------------------------

/// Marks attempts `pending_backfill` under a request: compare-and-set from `partial`, only for
/// attempts of `node_id`, only while `epoch` is the node's session. Records the backfill job
/// (`running`) if anything was marked; leaves no job behind otherwise.
struct mark_pending {
  std::string request_id;
  std::string node_id;
  int64_t epoch = 0;
  std::vector<std::string> attempt_ids;
  /// With no attempt_ids: mark up to `limit` of the node's oldest `partial` attempts (selected
  /// and marked in one transaction; storage is the only writer of these rows). Only attempts
  /// with as many failures as the oldest one go together, and fewer of them the more failures
  /// they have (sync_rules::request_size), so a poison attempt is isolated before it fails the others.
  int64_t limit = 0;
  int64_t max_failures = defaults::max_failures;
  struct marked_attempt {
    std::string attempt_id;
    int64_t logs_after = -1; // highest contiguous stored seq from 0; -1: none
  };
  struct result_type {
    std::vector<marked_attempt> marked; // in the order of attempt_ids (oldest first by limit)
  };
};

/// One per-attempt result of a backfill_response.
struct backfill_item {
  std::string attempt_id;
  bool ok = false;
  int64_t log_count = 0; // what the node says it has; evidence needs stored >= this
  std::string error;
};

/// Applies a backfill_response (rules 1-3). Every attempt still pending under the request gets
/// an outcome: an attempt the response does not mention counts as a failure. Finishes the job:
/// `succeeded` if every attempt completed, else `failed`; counts go into its detail.
struct apply_backfill {
  std::string request_id;
  std::string node_id; // the sender: only its rows pending under the request change
  std::vector<backfill_item> results;
  int64_t max_failures = defaults::max_failures;
  int64_t epoch = unfenced; // the request's session: a superseded one applies nothing
  struct attempt_result {
    std::string attempt_id;
    backfill_outcome outcome = backfill_outcome::stale;
  };
  struct result_type {
    std::vector<attempt_result> attempts;
    int64_t completed = 0;
    int64_t reset = 0;
    int64_t failed = 0;
    int64_t stale = 0;
    std::string job_status;  // empty if the job was not running any more
    bool superseded = false; // the fence failed: nothing applied (every result stale)
  };
};

/// Ends requests without an answer (disconnect: job `cancelled`; deadline: `expired`; shutdown:
/// `cancelled`): every attempt still pending under each request goes back to `partial`. With
/// `count_failure` (an expired request, rule 3) each of them also counts a failure, and one that
/// reaches `max_failures` goes to `failed` instead; a session that ended counts nothing.
struct reset_requests {
  std::vector<std::string> request_ids;
  std::string job_status = "cancelled";
  std::string reason;
  bool count_failure = false;
  int64_t max_failures = defaults::max_failures;
  struct result_type {
    int64_t attempts_reset = 0;  // back to partial
    int64_t attempts_failed = 0; // reached max_failures
    int64_t jobs_finished = 0;
  };
};

/// Startup recovery of this instance (op_context::instance): no connection survives a restart, so
/// the attempts pending under its open requests go back to `partial` (and every pending row whose
/// request has no open job: a live request always has one), its open backfill and reconcile jobs
/// become `abandoned`, the nodes it held go offline with their epoch raised (so a late write of
/// a session it held fails its fence). Other instances' rows are not touched (DESIGN §9).
struct reset_all_pending {
  struct result_type {
    int64_t attempts_reset = 0;
    int64_t jobs_abandoned = 0;
    int64_t nodes_offlined = 0;
  };
};

// --- instances (DESIGN §9) -------------------------------------------------------------------

struct instance_record {
  std::string id;
  int64_t incarnation = 0;
  std::string started_at;
  std::string heartbeat_at;
  std::string version;
  std::string listen;
  std::string recovered_at;
  std::string recovered_by;
};

/// Startup: takes this instance's lease row (a new incarnation; a previous one of the same id is
/// dead, or a misconfigured twin) and recovers what this instance owned (reset_all_pending).
struct instance_start {
  std::string version;
  std::string listen;
  struct result_type {
    int64_t incarnation = 0;
    reset_all_pending::result_type recovery;
  };
};

/// Renews this instance's lease (compare-and-set on its incarnation), then recovers, each exactly
/// once (compare-and-set on theirs), the instances whose lease is older than `expiry_ms`.
struct instance_renew {
  static constexpr bool handshake = true; // ahead of queued data: a backlog must not expire a lease
  int64_t incarnation = 0;
  int64_t expiry_ms = 0;
  struct recovered_instance {
    std::string id;
    reset_all_pending::result_type recovery;
  };
  struct result_type {
    bool held = false;
    /// When not held: who took it; empty recovered_by with a newer incarnation means another
    /// process started with this instance id.
    instance_record now;
    std::vector<recovered_instance> recovered;
  };
};

/// A lost lease (recovered by another instance while this one was paused or cut off): takes a new
/// incarnation without recovering anything (the other instance did).
struct instance_rejoin {
  static constexpr bool handshake = true;
  static constexpr bool touches_attempts = false;
  struct result_type {
    int64_t incarnation = 0;
  };
};

/// Every instance, by id.
struct instance_list {
  using result_type = std::vector<instance_record>;
};

/// An operator takes a `failed` attempt back to `partial` with its failure counter cleared.
struct attempt_requeue {
  std::string attempt_id;
  audit_entry audit = {};
  struct result_type {
    bool found = false;
    bool requeued = false; // false: it was not `failed`
  };
};

// --- jobs ------------------------------------------------------------------------------------

struct job_insert {
  static constexpr bool touches_attempts = false; // storage/op_queue.hpp
  job_record job;                                 // created_at defaults to now
  struct result_type {
    bool inserted = false;
  };
};

/// Sets status (and detail / error when non-empty). `started_at` is set when it becomes running,
/// `finished_at` when it reaches a final status. Only a job that is not final yet is changed.
struct job_update {
  static constexpr bool touches_attempts = false; // storage/op_queue.hpp
  std::string id;
  std::string status;
  std::string detail;
  std::string error;
  struct result_type {
    bool updated = false;
  };
};

/// Newest first; every filter optional (empty); keyset paging by (created_at, id) < before.
struct job_query {
  std::vector<std::string> statuses;
  std::vector<std::string> types;
  std::string node_id;
  std::string before_created_at;
  std::string before_id;
  int64_t limit = 100;
  std::string id; // one job by id (lower case; empty: any)
  using result_type = std::vector<job_record>;
};

// --- counts ----------------------------------------------------------------------------------

/// Counts for operators (overview) and tests.
/// Counts for the overview, from the counter tables the triggers keep (a few rows, whatever the
/// size of the history); `scan`: by scanning the tables themselves (tests check one against the
/// other).
struct count_summary {
  bool scan = false;
  struct result_type {
    std::vector<std::pair<std::string, int64_t>> nodes_by_status;
    std::vector<std::pair<std::string, int64_t>> attempts_by_sync_state;
    std::vector<std::pair<std::string, int64_t>> jobs_by_status_type; // "status/type"
    int64_t log_lines = 0;
  };
};

// --- execution -------------------------------------------------------------------------------

node_create::result_type execute(op_context&, const node_create&);
node_lookup_by_key::result_type execute(op_context&, const node_lookup_by_key&);
node_lookup_by_name::result_type execute(op_context&, const node_lookup_by_name&);
node_list::result_type execute(op_context&, const node_list&);
node_disable::result_type execute(op_context&, const node_disable&);
node_enable::result_type execute(op_context&, const node_enable&);
node_set_key::result_type execute(op_context&, const node_set_key&);
nodes_disabled_since::result_type execute(op_context&, const nodes_disabled_since&);
node_begin_session::result_type execute(op_context&, const node_begin_session&);
node_end_session::result_type execute(op_context&, const node_end_session&);
nodes_end_sessions::result_type execute(op_context&, const nodes_end_sessions&);
node_touch::result_type execute(op_context&, const node_touch&);
attempt_upsert::result_type execute(op_context&, const attempt_upsert&);
logs_insert::result_type execute(op_context&, const logs_insert&);
attempt_get::result_type execute(op_context&, const attempt_get&);
attempts_partial_of_node::result_type execute(op_context&, const attempts_partial_of_node&);
nodes_with_partial::result_type execute(op_context&, const nodes_with_partial&);
nodes_partial_among::result_type execute(op_context&, const nodes_partial_among&);
/// Folds the counter shards of PostgreSQL backends that are gone into shard 0 (instance start).
void fold_counts(op_context&);
logs_get::result_type execute(op_context&, const logs_get&);
mark_pending::result_type execute(op_context&, const mark_pending&);
apply_backfill::result_type execute(op_context&, const apply_backfill&);
reset_requests::result_type execute(op_context&, const reset_requests&);
/// The two halves of reset_requests (execute runs both): the storage actor commits the attempts
/// first and lets the jobs wait in line (docs/storage.md, "Resets go ahead"). The first fills in
/// attempts_reset and attempts_failed.
void reset_request_attempts(op_context&, const reset_requests&, reset_requests::result_type&);
int64_t finish_request_jobs(op_context&, const reset_requests&);
reset_all_pending::result_type execute(op_context&, const reset_all_pending&);
instance_start::result_type execute(op_context&, const instance_start&);
instance_renew::result_type execute(op_context&, const instance_renew&);
instance_rejoin::result_type execute(op_context&, const instance_rejoin&);
instance_list::result_type execute(op_context&, const instance_list&);
attempt_requeue::result_type execute(op_context&, const attempt_requeue&);
job_insert::result_type execute(op_context&, const job_insert&);
job_update::result_type execute(op_context&, const job_update&);
job_query::result_type execute(op_context&, const job_query&);
count_summary::result_type execute(op_context&, const count_summary&);

const char* to_string(write_status);
/// True for the job statuses after which a job never changes.
bool is_final_job_status(const std::string& status);

} // namespace nodecoord::storage
