#pragma once
// The sync state machine of DESIGN §3 as plain functions over the columns it reads and writes.
// No SQL and no actor: storage/grouped.cpp applies them to the rows it read in its transaction;
// the set-based statements (mark by limit, reset_requests, requeue, recovery) state the same
// rules in SQL, and tests/sync_rules_test.cpp (the functions) and tests/storage_test.cpp (the
// SQL, on both backends) check both against the same table.
#include "common/states.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nodecoord::storage {

/// What became of one attempt pending under a request when its response was applied.
enum class backfill_outcome : uint8_t {
  completed, // ok and evidence holds
  reset,     // back to partial (failure result, missing evidence or missing result)
  failed,    // reached max_failures: terminal until an operator requeues it
  stale,     // not pending under this request/node: nothing changed (rule 1)
};

const char* to_string(backfill_outcome);

/// The sync columns of one node_task_attempts row.
struct sync_row {
  sync_state state = sync_state::partial;
  std::string request_id; // backfill_request_id; "" for NULL
  std::string owner;      // node_id
  int64_t log_count = 0;  // lines stored
  int64_t failures = 0;   // backfill_failures

  bool operator==(const sync_row&) const = default;
};

/// A node's answer for one attempt in a backfill_response.
struct node_answer {
  bool ok = false;
  int64_t log_count = 0; // the lines the node says it has
};

namespace sync_rules {

/// A new attempt starts partial (its lines may still be on their way).
sync_row created(std::string owner);

/// Any change on the node (a new line, state, finished_at, meta, started_at or task) takes a
/// complete or failed attempt back to partial, its failures forgotten: completion of an attempt
/// that was still running is provisional, and a failed one that changed may well succeed now.
/// A pending one stays pending (its request's answer decides). True if it reopened the row.
bool reopen(sync_row&);

/// Rule 4: only a partial attempt is marked, under one request. True if it was marked.
bool mark(sync_row&, std::string_view request_id);

/// Rule 1: a response changes the row only if the row is pending under exactly that request
/// and the sender owns it (a late, duplicate or foreign response changes nothing).
bool pending_under(const sync_row&, std::string_view request_id, std::string_view sender);

/// Rules 2 and 3, for a row pending under the answered request: ok with evidence (stored lines
/// ≥ the node's count) completes it; anything else (a failure, missing evidence, no answer for
/// it at all) counts one failure and sends it back to partial, or to failed at `max_failures`.
backfill_outcome answer(sync_row&, const std::optional<node_answer>&, int64_t max_failures);

/// Rule 3, for a row pending under a request that ended without an answer: an expired request
/// counts a failure (`count_failure`), a session that ended does not. Returns reset or failed.
backfill_outcome end_request(sync_row&, bool count_failure, int64_t max_failures);

/// An operator takes a failed attempt back to partial with no failures. True if it was failed.
bool requeue(sync_row&);

/// At startup no request survives: a pending attempt goes back to partial, failures unchanged.
/// True if it was pending.
bool recover(sync_row&);

/// How many attempts a request by limit takes when they have `failures` failures each: `limit`
/// without failures, falling geometrically to 1 at `max_failures - 1` (limit 100, max 5: 100, 31,
/// 10, 3, 1). An expired request counts a failure for every attempt in it; asking for suspects in
/// ever smaller groups lets the ones batched with a poison attempt complete, and an attempt is
/// only ever failed by a request it was alone in (for max_failures ≥ 2).
int64_t request_size(int64_t limit, int64_t failures, int64_t max_failures);

} // namespace sync_rules

} // namespace nodecoord::storage
