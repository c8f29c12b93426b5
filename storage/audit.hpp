#pragma once
// The audit ledger (issue 20, docs/admin-api.md "Audit"): one row per mutating admin call,
// succeeded, refused or failed, written in the same transaction as the call's effect, so the
// ledger never shows a change that did not happen nor misses one that did. Rows are never
// changed; ids only grow, so they page by id (newest first). No CAF here.
#include "storage/operations.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord::storage {

inline constexpr const char* audit_results[] = {"succeeded", "refused", "failed"};

struct audit_record {
  int64_t id = 0;
  std::string at;          // RFC 3339 UTC, milliseconds
  std::string instance_id; // the instance that wrote it ("" for none)
  audit_entry entry;
};

/// Text as valid UTF-8 (invalid bytes replaced by U+FFFD): the ledger's text columns take what a
/// request names (a path, a parameter), and PostgreSQL refuses text that is not UTF-8; a change
/// must not fail because its row names a bad byte.
std::string valid_utf8(const std::string& s);

/// The columns read_audit reads, in its order.
std::string audit_columns(const dialect& d);
audit_record read_audit(const soci::row& r);

/// Writes `e` inside the caller's transaction (every text made valid UTF-8). std::invalid_argument if it has no action
/// or actor, a result outside audit_results, or a filter/counts that is not a JSON object.
int64_t append_audit(op_context& c, const audit_entry& e);

/// The outcome of an audited operation: `e` with result, counts and error set, written by
/// append_audit (nothing when `e.action` is empty).
void audit_outcome(op_context& c, const audit_entry& e, bool succeeded, const std::string& counts,
                   const std::string& error = "");

/// An audit row on its own (a call refused before it reached the database, or one whose
/// transaction failed): its id.
struct audit_append {
  audit_entry entry;
  using result_type = int64_t;
};

/// Rows, newest first, with ids below `before_id` (0: from the newest); every filter optional:
/// exact actor, action, result and target; `since` / `until` (RFC 3339; std::invalid_argument
/// otherwise) bound `at` (since ≤ at < until). A `limit` below 1 returns nothing.
struct audit_query {
  std::string actor, action, result, target, since, until;
  int64_t before_id = 0;
  int64_t limit = 100;
  using result_type = std::vector<audit_record>;
};

audit_append::result_type execute(op_context&, const audit_append&);
audit_query::result_type execute(op_context&, const audit_query&);

} // namespace nodecoord::storage
