#pragma once
// Storage operations of the admin API (docs/admin-api.md): attempt listing, job pruning, database
// size and a liveness probe. Same style as storage/operations.hpp: a plain struct with its
// `result_type`, and `execute(op_context&, const op&)` running inside the batch's transaction.
// No CAF here.
#include "storage/operations.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace nodecoord::storage {

/// Attempts by id ascending, only ids above `after_id` (keyset paging: the next page starts after
/// the last id of this one). Every filter is optional (empty: any). Rows as attempt_get reads
/// them. `after_id` and `node_id`, when given, must be UUIDs (std::invalid_argument otherwise);
/// a `limit` below 1 returns nothing.
struct attempt_list {
  std::string node_id;
  std::string sync_state;
  std::string state;
  std::string after_id;
  int64_t limit = 100;
  using result_type = std::vector<attempt_record>;
};

/// Deletes finished jobs matching every given filter: status in `statuses`, type in `types`,
/// created before `older_than` (RFC 3339; std::invalid_argument if it does not parse). Jobs that
/// are `queued` or `running` are never deleted, whatever the filter says. The caller refuses an
/// all-empty filter (the admin API answers 400).
struct jobs_prune {
  std::vector<std::string> statuses;
  std::vector<std::string> types;
  std::string older_than; // created_at < this; empty: any age
  audit_entry audit = {}; // written with the count, in the same transaction
  /// Failed jobs only: created_at < this instead of older_than (default retention keeps them
  /// longer); needs older_than.
  std::string failed_older_than = {};
  struct result_type {
    int64_t deleted = 0;
  };
};

/// Size of the database and of the four data tables (each with its indexes), in bytes.
/// PostgreSQL: pg_database_size of the current database, pg_total_relation_size of each table as
/// the session's search_path resolves it. SQLite: page_count × page_size of the main file (the
/// WAL is not counted) and the dbstat virtual table (Debian's libsqlite3 has it).
struct database_size {
  struct result_type {
    int64_t total_bytes = 0;
    std::vector<std::pair<std::string, int64_t>> tables; // nodes, node_task_attempts, attempt_logs, jobs
  };
};

/// One node's attempts by sync_state (a drain's answer, the node page). `node_id` must be a UUID.
struct node_attempt_counts {
  std::string node_id;
  struct result_type {
    std::map<std::string, int64_t> by_sync_state; // only the states it has
  };
};

/// SELECT 1: true when the database answers (the /readyz probe).
struct ping {
  using result_type = bool;
};

attempt_list::result_type execute(op_context&, const attempt_list&);
jobs_prune::result_type execute(op_context&, const jobs_prune&);
database_size::result_type execute(op_context&, const database_size&);
ping::result_type execute(op_context&, const ping&);
node_attempt_counts::result_type execute(op_context&, const node_attempt_counts&);

} // namespace nodecoord::storage
