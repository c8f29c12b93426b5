#pragma once
// Every typed actor interface of nodecoordd (DESIGN §1), one comment line per message.
// Message payloads are the plain structs of storage/operations.hpp; they never leave the process,
// so they are allowed as local message types without serialization code.
#include "actors/messages.hpp"
#include "storage/admin_ops.hpp"
#include "storage/audit.hpp"
#include "storage/bulk.hpp"
#include "storage/bundle.hpp"
#include "storage/batch_executor.hpp"
#include "storage/operations.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>

namespace nodecoord {

// --- atoms (at most 10 characters each) ---
using startup_atom = caf::atom_constant<caf::atom("startup")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using flush_atom = caf::atom_constant<caf::atom("flush")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;
using hello_atom = caf::atom_constant<caf::atom("hello")>;
using ended_atom = caf::atom_constant<caf::atom("ended")>;
using seen_atom = caf::atom_constant<caf::atom("seen")>;
using poll_atom = caf::atom_constant<caf::atom("poll")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using disable_atom = caf::atom_constant<caf::atom("disable")>;
using node_drain_atom = caf::atom_constant<caf::atom("nodedrain")>;
using idle_atom = caf::atom_constant<caf::atom("idle")>;
using port_atom = caf::atom_constant<caf::atom("port")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using node_up_atom = caf::atom_constant<caf::atom("nodeup")>;
using node_down_atom = caf::atom_constant<caf::atom("nodedown")>;
using backfill_atom = caf::atom_constant<caf::atom("backfill")>;
using response_atom = caf::atom_constant<caf::atom("response")>;
using sendfail_atom = caf::atom_constant<caf::atom("sendfail")>;
using expire_atom = caf::atom_constant<caf::atom("expire")>;
using reconcile_atom = caf::atom_constant<caf::atom("reconcile")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using pace_atom = caf::atom_constant<caf::atom("pace")>;
using settle_atom = caf::atom_constant<caf::atom("settle")>;
using token_atom = caf::atom_constant<caf::atom("token")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using signal_atom = caf::atom_constant<caf::atom("signal")>;
using watchdog_atom = caf::atom_constant<caf::atom("watchdog")>;
using lease_atom = caf::atom_constant<caf::atom("lease")>;
using check_atom = caf::atom_constant<caf::atom("check")>;

/// storage: the only owner of the database session. Every operation is queued in arrival order,
/// applied in batches (one transaction each) and answered after its batch commits.
using storage_actor = caf::typed_actor<
  // Migrate, take this instance's lease, reset what it owned (pending rows, open jobs, nodes).
  caf::replies_to<startup_atom>::with<startup_report>,
  // Answers once every operation received before it has been committed.
  caf::replies_to<drain_atom>::with<bool>,
  // Availability, queue depth and batch statistics.
  caf::replies_to<status_atom>::with<storage_status>,
  // Internal: commit what is queued.
  caf::reacts_to<flush_atom>,
  // Internal: try to reconnect after a connection or transient error.
  caf::reacts_to<reconnect_atom>,
  // Create a node with a key hash.
  caf::replies_to<storage::node_create>::with<storage::node_create::result_type>,
  // Find a node by the key id of its API key.
  caf::replies_to<storage::node_lookup_by_key>::with<storage::node_lookup_by_key::result_type>,
  // Find a node by name.
  caf::replies_to<storage::node_lookup_by_name>::with<storage::node_lookup_by_name::result_type>,
  // All nodes by name.
  caf::replies_to<storage::node_list>::with<storage::node_list::result_type>,
  // Disable a node.
  caf::replies_to<storage::node_disable>::with<storage::node_disable::result_type>,
  // Re-enable a node.
  caf::replies_to<storage::node_enable>::with<storage::node_enable::result_type>,
  // Replace a node's key.
  caf::replies_to<storage::node_set_key>::with<storage::node_set_key::result_type>,
  // Nodes disabled since a time.
  caf::replies_to<storage::nodes_disabled_since>::with<storage::nodes_disabled_since::result_type>,
  // Start a session: epoch compare-and-set, node online.
  caf::replies_to<storage::node_begin_session>::with<storage::node_begin_session::result_type>,
  // End a session: node offline only if the epoch is still current.
  caf::replies_to<storage::node_end_session>::with<storage::node_end_session::result_type>,
  // End many sessions at once (a storm), with the same epoch rule.
  caf::replies_to<storage::nodes_end_sessions>::with<storage::nodes_end_sessions::result_type>,
  // Batched last_seen_at.
  caf::replies_to<storage::node_touch>::with<storage::node_touch::result_type>,
  // Upsert an attempt record with the owner check.
  caf::replies_to<storage::attempt_upsert>::with<storage::attempt_upsert::result_type>,
  // Insert-or-ignore log lines with the owner check; reopens complete attempts.
  caf::replies_to<storage::logs_insert>::with<storage::logs_insert::result_type>,
  // Read one attempt.
  caf::replies_to<storage::attempt_get>::with<storage::attempt_get::result_type>,
  // Oldest partial attempts of a node.
  caf::replies_to<storage::attempts_partial_of_node>::with<storage::attempts_partial_of_node::result_type>,
  // Online nodes with partial attempts (keyset page).
  caf::replies_to<storage::nodes_with_partial>::with<storage::nodes_with_partial::result_type>,
  // Of these nodes, those with partial attempts (the reconnect trigger's probe).
  caf::replies_to<storage::nodes_partial_among>::with<storage::nodes_partial_among::result_type>,
  // Log lines of an attempt (keyset).
  caf::replies_to<storage::logs_get>::with<storage::logs_get::result_type>,
  // Mark attempts pending under a request (CAS from partial) and record its job.
  caf::replies_to<storage::mark_pending>::with<storage::mark_pending::result_type>,
  // Apply a backfill response (rules 1-3) and finish its job.
  caf::replies_to<storage::apply_backfill>::with<storage::apply_backfill::result_type>,
  // Reset the attempts of ended requests to partial; finish their jobs.
  caf::replies_to<storage::reset_requests>::with<storage::reset_requests::result_type>,
  // Take a failed attempt back to partial.
  caf::replies_to<storage::attempt_requeue>::with<storage::attempt_requeue::result_type>,
  // Record a job.
  caf::replies_to<storage::job_insert>::with<storage::job_insert::result_type>,
  // Move a job to a new status.
  caf::replies_to<storage::job_update>::with<storage::job_update::result_type>,
  // Query jobs, newest first.
  caf::replies_to<storage::job_query>::with<storage::job_query::result_type>,
  // Counts by status for operators.
  caf::replies_to<storage::count_summary>::with<storage::count_summary::result_type>,
  // Attempts by id, filtered (keyset page).
  caf::replies_to<storage::attempt_list>::with<storage::attempt_list::result_type>,
  // Delete finished jobs by filter.
  caf::replies_to<storage::jobs_prune>::with<storage::jobs_prune::result_type>,
  // Renew this instance's lease; recover instances whose lease expired.
  caf::replies_to<storage::instance_renew>::with<storage::instance_renew::result_type>,
  // Take a new incarnation after the lease was lost.
  caf::replies_to<storage::instance_rejoin>::with<storage::instance_rejoin::result_type>,
  // Every instance and its lease.
  caf::replies_to<storage::instance_list>::with<storage::instance_list::result_type>,
  // Database and table sizes.
  caf::replies_to<storage::database_size>::with<storage::database_size::result_type>,
  // One node's attempts by sync_state.
  caf::replies_to<storage::node_attempt_counts>::with<storage::node_attempt_counts::result_type>,
  // SELECT 1 through the queue (readiness).
  caf::replies_to<storage::ping>::with<bool>,
  // Plan or apply a bulk admin action by filter (a transaction of its own).
  caf::replies_to<storage::bulk_action>::with<storage::bulk_action::result_type>,
  // Write one audit row on its own (a refused admin call); its id.
  caf::replies_to<storage::audit_append>::with<int64_t>,
  // Audit rows, newest first, filtered (keyset page).
  caf::replies_to<storage::audit_query>::with<storage::audit_query::result_type>,
  // Write the whole bundle to a file in one transaction (a batch of its own).
  caf::replies_to<storage::bundle::export_file>::with<storage::bundle::counts>,
  // Import a parsed bundle in one transaction (a batch of its own).
  caf::replies_to<storage::bundle::import_bundle>::with<storage::bundle::import_bundle::result_type>>;

/// registry: node_id -> {session, epoch}; one live session per node; turns hello and session
/// ends into node rows (online/offline) through storage, epoch-checked.
using registry_actor = caf::typed_actor<
  // Authenticate a hello and register the session (a caf::actor: node_session broker).
  caf::replies_to<hello_atom, auth_request, caf::actor>::with<auth_result>,
  // A session ended (reason): offline only if the epoch is still current.
  caf::reacts_to<ended_atom, session_ref, std::string>,
  // A frame arrived from the session: last_seen_at, flushed in batches.
  caf::reacts_to<seen_atom, session_ref>,
  // Internal: write the batched last_seen_at.
  caf::reacts_to<flush_atom>,
  // Internal: write the session ends gathered since the last one, as one operation.
  caf::reacts_to<settle_atom>,
  // Internal: look for nodes disabled by an operator and close their sessions.
  caf::reacts_to<poll_atom>,
  // Close the session of a node (node name) with reason `disabled`; false if not connected.
  caf::replies_to<disable_atom, std::string>::with<bool>,
  // Close the session of a node (node name) with reason `drained`; false if not connected.
  caf::replies_to<node_drain_atom, std::string>::with<bool>,
  // Hand a check to the node's session (delegated; node_not_connected if there is none).
  caf::replies_to<check_atom, check_dispatch>::with<check_dispatch_result>,
  // Close every session with reason `shutdown`; answers the number closed.
  caf::replies_to<shutdown_atom>::with<uint64_t>,
  // Close every session with this reason and go on (the instance lost its lease: `superseded`).
  caf::replies_to<shutdown_atom, std::string>::with<uint64_t>,
  // The connected nodes.
  caf::replies_to<caf::get_atom>::with<std::vector<connected_node>>,
  // How many sessions are registered (the overview's `connected`, without copying the list).
  caf::replies_to<stats_atom>::with<uint64_t>,
  // The sessions of these nodes (a page of the admin API's node list).
  caf::replies_to<caf::get_atom, std::vector<std::string>>::with<std::vector<connected_node>>,
  // Receive (node_up_atom, session_ref, broker) after every welcome and (node_down_atom, session_ref,
  // reason) for every ended session, superseded ones included (tracker, scheduler).
  caf::reacts_to<subscribe_atom, caf::actor>>;

/// tracker: the one owner of request state (DESIGN §1). Turns orders, responses, session ends
/// and deadlines into storage transitions, in order.
using tracker_actor = caf::typed_actor<
  // Mark, record the job and send a backfill_request; answers once marked and handed over.
  caf::replies_to<backfill_order>::with<order_result>,
  // A backfill_response (session, request_id, results): true once applied and committed;
  // false = unknown_request.
  caf::replies_to<response_atom, session_ref, std::string, std::vector<storage::backfill_item>>::with<bool>,
  // The session could not write the request (session, request_id): reset at once.
  caf::reacts_to<sendfail_atom, session_ref, std::string>,
  // From the registry: a session began (session, its broker).
  caf::reacts_to<node_up_atom, session_ref, caf::actor>,
  // From the registry: a session ended (session, reason).
  caf::reacts_to<node_down_atom, session_ref, std::string>,
  // Expire the requests past their deadline (its own timer; the reconcile asks too).
  caf::reacts_to<expire_atom>,
  // Internal: send the resets gathered since the last one, coalesced.
  caf::reacts_to<settle_atom>,
  // Stop taking orders, reset every live request; answers how many.
  caf::replies_to<shutdown_atom>::with<uint64_t>,
  // Drain a node (node_id, deadline): no new requests to it from now on (until its session ends);
  // answers when its requests in flight have ended, resetting those left at the deadline.
  caf::replies_to<node_drain_atom, std::string, caf::timespan>::with<drain_result>,
  // An operator's cancel (request ids): exactly those requests, all sent and live, end as
  // cancelled (attempts partial, no failure counted), or none (stale); answers once in storage.
  caf::replies_to<cancel_atom, std::vector<std::string>>::with<cancel_result>,
  // Requests in flight and counters.
  caf::replies_to<caf::get_atom>::with<tracker_status>>;

/// scheduler: the three backfill triggers and their limits (DESIGN §4). Holds only which
/// sessions are up and its own queue; the tracker owns requests.
using scheduler_actor = caf::typed_actor<
  // On-demand: request this attempt now (admin API).
  caf::replies_to<backfill_atom, std::string>::with<order_result>,
  // Run a reconcile pass now (or join the running one); answers when it is done.
  caf::replies_to<reconcile_atom>::with<reconcile_report>,
  // From the registry: a session began (session, its broker): queue its reconnect request.
  caf::reacts_to<node_up_atom, session_ref, caf::actor>,
  // From the registry: a session ended (session, reason).
  caf::reacts_to<node_down_atom, session_ref, std::string>,
  // Internal: the next paced reconnect request is due.
  caf::reacts_to<pace_atom>,
  // Internal: reconcile_interval elapsed.
  caf::reacts_to<tick_atom>,
  // Stop triggering; a reconcile pass in flight is recorded `abandoned` first. Answers 1 if one was.
  caf::replies_to<shutdown_atom>::with<uint64_t>,
  // Queue length and counters.
  caf::replies_to<caf::get_atom>::with<scheduler_status>>;

/// admin: the HTTP API (docs/admin-api.md), served on its own threads; asks the actors above.
using admin_actor = caf::typed_actor<
  // The port the API listens on.
  caf::replies_to<port_atom>::with<uint16_t>,
  // Whether the daemon accepts nodes (false during shutdown: /readyz answers 503).
  caf::reacts_to<status_atom, bool>,
  // A new admin token (SIGHUP); empty: none required.
  caf::reacts_to<token_atom, std::string>>;

/// supervisor: starts the actors in order, reloads the configuration, shuts down in order.
using supervisor_actor = caf::typed_actor<
  // A signal the process received: SIGHUP reloads, SIGTERM and SIGINT shut down in order.
  caf::reacts_to<signal_atom, int>,
  // Internal: half the watchdog interval elapsed; WATCHDOG=1 if storage answers in time.
  caf::reacts_to<watchdog_atom>,
  // Internal: lease_interval elapsed; renew this instance's lease (DESIGN §9).
  caf::reacts_to<lease_atom>>;

// node_session (a dynamically typed broker, one per connection) accepts:
//   (caf::close_atom, std::string reason)  write close{reason} and disconnect;
//   (backfill_atom, backfill_delivery)     write a backfill_request frame; if it cannot (not
//                                          this session), tell the tracker (sendfail_atom).
// acceptor (a dynamically typed broker) accepts:
//   (port_atom) -> uint16_t                 the port it listens on;
//   (stats_atom) -> acceptor_stats          counters;
//   (shutdown_atom) -> uint64_t             stop accepting, close every session (`shutdown`).

} // namespace nodecoord

// Local-only message types (see the comment at the top).
#define NODECOORD_LOCAL_TYPE(T) CAF_ALLOW_UNSAFE_MESSAGE_TYPE(T)
#define NODECOORD_LOCAL_OP(op)                                                                                         \
  NODECOORD_LOCAL_TYPE(nodecoord::storage::op)                                                                         \
  NODECOORD_LOCAL_TYPE(nodecoord::storage::op::result_type)

NODECOORD_LOCAL_TYPE(nodecoord::drain_result)
NODECOORD_LOCAL_TYPE(nodecoord::cancel_result)
NODECOORD_LOCAL_TYPE(nodecoord::check_dispatch)
NODECOORD_LOCAL_TYPE(nodecoord::check_dispatch_result)
NODECOORD_LOCAL_TYPE(nodecoord::storage_status)
NODECOORD_LOCAL_TYPE(nodecoord::auth_request)
NODECOORD_LOCAL_TYPE(nodecoord::auth_result)
NODECOORD_LOCAL_TYPE(nodecoord::acceptor_stats)
NODECOORD_LOCAL_TYPE(std::vector<nodecoord::connected_node>)
NODECOORD_LOCAL_TYPE(nodecoord::startup_report)
NODECOORD_LOCAL_OP(node_create)
NODECOORD_LOCAL_OP(node_lookup_by_key)
NODECOORD_LOCAL_TYPE(nodecoord::storage::node_lookup_by_name)
NODECOORD_LOCAL_TYPE(nodecoord::storage::node_list)
NODECOORD_LOCAL_TYPE(nodecoord::storage::node_list::result_type)
NODECOORD_LOCAL_OP(node_disable)
NODECOORD_LOCAL_TYPE(nodecoord::storage::node_enable)
NODECOORD_LOCAL_TYPE(nodecoord::storage::node_set_key)
NODECOORD_LOCAL_TYPE(nodecoord::storage::nodes_disabled_since)
NODECOORD_LOCAL_OP(node_begin_session)
NODECOORD_LOCAL_OP(node_end_session)
NODECOORD_LOCAL_OP(nodes_end_sessions)
NODECOORD_LOCAL_OP(node_touch)
NODECOORD_LOCAL_OP(attempt_upsert)
NODECOORD_LOCAL_OP(logs_insert)
NODECOORD_LOCAL_OP(attempt_get)
NODECOORD_LOCAL_TYPE(nodecoord::storage::attempts_partial_of_node)
NODECOORD_LOCAL_TYPE(nodecoord::storage::logs_get)
NODECOORD_LOCAL_TYPE(nodecoord::storage::logs_get::result_type)
NODECOORD_LOCAL_OP(mark_pending)
NODECOORD_LOCAL_OP(apply_backfill)
NODECOORD_LOCAL_OP(reset_requests)
NODECOORD_LOCAL_OP(attempt_requeue)
NODECOORD_LOCAL_TYPE(nodecoord::storage::nodes_with_partial)
NODECOORD_LOCAL_TYPE(nodecoord::storage::nodes_partial_among)
NODECOORD_LOCAL_TYPE(std::vector<nodecoord::storage::backfill_item>)
NODECOORD_LOCAL_TYPE(nodecoord::session_ref)
NODECOORD_LOCAL_TYPE(nodecoord::backfill_delivery)
NODECOORD_LOCAL_TYPE(nodecoord::backfill_order)
NODECOORD_LOCAL_TYPE(nodecoord::order_result)
NODECOORD_LOCAL_TYPE(nodecoord::tracker_status)
NODECOORD_LOCAL_TYPE(nodecoord::reconcile_report)
NODECOORD_LOCAL_TYPE(nodecoord::scheduler_status)
NODECOORD_LOCAL_OP(job_insert)
NODECOORD_LOCAL_OP(job_update)
NODECOORD_LOCAL_OP(job_query)
NODECOORD_LOCAL_OP(count_summary)
NODECOORD_LOCAL_TYPE(nodecoord::storage::attempt_list)
NODECOORD_LOCAL_TYPE(std::vector<nodecoord::storage::attempt_record>)
NODECOORD_LOCAL_OP(jobs_prune)
NODECOORD_LOCAL_OP(database_size)
NODECOORD_LOCAL_OP(instance_renew)
NODECOORD_LOCAL_OP(instance_rejoin)
NODECOORD_LOCAL_OP(instance_list)
NODECOORD_LOCAL_TYPE(nodecoord::storage::ping)
NODECOORD_LOCAL_TYPE(nodecoord::storage::node_attempt_counts)
NODECOORD_LOCAL_TYPE(nodecoord::storage::node_attempt_counts::result_type)
NODECOORD_LOCAL_TYPE(nodecoord::storage::bulk_action)
NODECOORD_LOCAL_TYPE(nodecoord::storage::bulk_action::result_type)
NODECOORD_LOCAL_TYPE(nodecoord::storage::audit_append)
NODECOORD_LOCAL_TYPE(nodecoord::storage::audit_query)
NODECOORD_LOCAL_TYPE(std::vector<nodecoord::storage::audit_record>)
NODECOORD_LOCAL_TYPE(nodecoord::storage::bundle::export_file)
NODECOORD_LOCAL_TYPE(nodecoord::storage::bundle::counts)
NODECOORD_LOCAL_TYPE(nodecoord::storage::bundle::import_bundle)
NODECOORD_LOCAL_TYPE(nodecoord::storage::bundle::import_bundle::result_type)
