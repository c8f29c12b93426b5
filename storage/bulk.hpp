#pragma once
// Bulk admin actions by filter (issue 20, docs/admin-api.md "Bulk actions"): the set a filter
// matches now, counted against a change budget, named by a plan token; then that exact set
// changed, in one transaction with its audit row, or nothing if the set is no longer the same.
// No CAF here.
#include "storage/operations.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord::storage {

/// What a bulk action may act on. Every field is optional; an all-empty filter matches nothing
/// unless `all` is set (the admin API answers 400 filter_required before it gets here).
struct bulk_filter {
  std::string node;        // exact node name
  std::string node_status; // online | offline | disabled
  std::string sync_state;  // attempts only
  std::string state;       // attempts only (the task's state)
  std::string task_prefix; // attempts only: task_id starts with this (case-sensitive)
  std::string name_prefix; // nodes only: name starts with this
  std::string older_than;  // RFC 3339 cutoff: attempts last updated, nodes last seen before it
                           // (attempts.prune_logs requires it)
  bool all = false;        // explicitly everything the action applies to
  std::string check;       // nodes.check: the check to run (not a filter; part of the token)

  bool empty() const {
    return node.empty() && node_status.empty() && sync_state.empty() && state.empty() && task_prefix.empty()
           && name_prefix.empty() && older_than.empty();
  }
  /// The filter as a JSON object text with its keys sorted (the token and the ledger use it).
  std::string canonical() const;
};

/// The bulk actions, by name (the admin API's route segment and the ledger's action).
inline constexpr const char* bulk_actions[] = {
  "attempts.requeue",    // failed -> partial, failure counter cleared
  "attempts.reset",      // complete or failed -> partial: the node is asked again (re-verification)
  "attempts.prune_logs", // complete attempts with stored lines: the lines deleted, the counters kept
  "nodes.disable",       // not disabled -> disabled (the API closes their sessions)
  "nodes.enable",        // disabled -> offline
  "nodes.delete",        // disabled nodes with their attempts and logs; refused while an attempt is not complete
  "nodes.check",         // online nodes: the API sends each the check (a job each); nothing changes here
};
bool is_bulk_action(const std::string& name);
/// True for actions on attempts, false for actions on nodes.
bool acts_on_attempts(const std::string& action);

/// One row of a plan's sample.
struct bulk_row {
  std::string id;
  std::string label;  // attempts: the task id; nodes: the name
  std::string status; // attempts: sync_state; nodes: status
};

/// Plans (`apply` false) or applies a bulk action. A plan reads: the rows the filter and the
/// action's own condition match, their count, a sample and the token (a hash of the action, the
/// filter and every matched id). An apply reads the same set again under row locks and changes it
/// only if its token is `token` and its count within `limit`; the audit row is written in the same
/// transaction. std::invalid_argument for an unknown action or a filter field the action does not
/// take.
struct bulk_action {
  static constexpr bool own_transaction = true; // long; a failure is not re-run with others'
  std::string action;
  bulk_filter filter;
  int64_t limit = 0; // the change budget: more matched rows than this change nothing
  bool apply = false;
  std::string token;      // apply: the plan's token
  int64_t sample = 10;    // rows in a plan's sample
  audit_entry audit = {}; // apply: written with the effect
  struct result_type {
    int64_t matched = 0;
    bool over_budget = false; // matched > limit: no token, nothing changed
    std::string token;
    std::vector<bulk_row> sample;
    bool stale = false;                // apply: the set is not the plan's; nothing changed
    int64_t blocked = 0;               // nodes.delete: matched nodes with an attempt that is not complete
    int64_t attempts = 0;              // nodes.delete: their attempts
    int64_t log_lines = 0;             // nodes.delete, attempts.prune_logs: the stored lines it deletes
    std::string counts;                // apply: what changed, as a JSON object
    std::vector<std::string> node_ids; // apply on nodes: the changed nodes (their sessions close)
    std::vector<std::string> node_names;
  };
};

bulk_action::result_type execute(op_context&, const bulk_action&);

} // namespace nodecoord::storage
