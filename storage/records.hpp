#pragma once
// Internal to storage/: the column lists and row readers of the record structs, shared by every
// file that reads nodes, attempts or jobs (so a column is added in one place).
#include "storage/dialect.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"

#include <soci/soci.h>

#include <string>

namespace nodecoord::storage {

inline std::string node_columns(const dialect& d) {
  return "id, name, key_id, key_hash, status, session_epoch, " + d.ts("connected_at") + ", " + d.ts("disconnected_at")
         + ", disconnect_reason, " + d.ts("last_seen_at") + ", " + d.json_text("capabilities") + ", "
         + d.ts("created_at") + ", " + d.ts("disabled_at");
}

inline node_record read_node(const soci::row& r) {
  node_record n;
  n.id = col_str(r, 0);
  n.name = col_str(r, 1);
  n.key_id = col_str(r, 2);
  n.key_hash = col_str(r, 3);
  n.status = col_str(r, 4);
  n.session_epoch = col_int(r, 5);
  n.connected_at = col_str(r, 6);
  n.disconnected_at = col_str(r, 7);
  n.disconnect_reason = col_str(r, 8);
  n.last_seen_at = col_str(r, 9);
  n.capabilities = col_str(r, 10);
  n.created_at = col_str(r, 11);
  n.disabled_at = col_str(r, 12);
  return n;
}

inline std::string attempt_columns(const dialect& d) {
  return "id, node_id, task_id, state, sync_state, backfill_request_id, " + d.ts("sync_requested_at") + ", "
         + d.ts("last_full_sync_at") + ", backfill_failures, log_count, log_max_seq, " + d.ts("started_at") + ", "
         + d.ts("finished_at") + ", " + d.json_text("meta") + ", " + d.ts("created_at") + ", " + d.ts("updated_at")
         + ", logs_pruned, logs_pruned_through";
}

inline attempt_record read_attempt(const soci::row& r) {
  attempt_record a;
  a.id = col_str(r, 0);
  a.node_id = col_str(r, 1);
  a.task_id = col_str(r, 2);
  a.state = col_str(r, 3);
  a.sync_state = col_str(r, 4);
  a.backfill_request_id = col_str(r, 5);
  a.sync_requested_at = col_str(r, 6);
  a.last_full_sync_at = col_str(r, 7);
  a.backfill_failures = col_int(r, 8);
  a.log_count = col_int(r, 9);
  a.log_max_seq = col_int(r, 10, -1);
  a.started_at = col_str(r, 11);
  a.finished_at = col_str(r, 12);
  a.meta = col_str(r, 13);
  a.created_at = col_str(r, 14);
  a.updated_at = col_str(r, 15);
  a.logs_pruned = col_int(r, 16);
  a.logs_pruned_through = col_int(r, 17, -1);
  return a;
}

inline std::string job_columns(const dialect& d) {
  return "id, type, status, node_id, attempt_count, " + d.json_text("detail") + ", error, " + d.ts("created_at") + ", "
         + d.ts("started_at") + ", " + d.ts("finished_at");
}

inline job_record read_job(const soci::row& r) {
  job_record j;
  j.id = col_str(r, 0);
  j.type = col_str(r, 1);
  j.status = col_str(r, 2);
  j.node_id = col_str(r, 3);
  j.attempt_count = col_int(r, 4);
  j.detail = col_str(r, 5);
  j.error = col_str(r, 6);
  j.created_at = col_str(r, 7);
  j.started_at = col_str(r, 8);
  j.finished_at = col_str(r, 9);
  return j;
}

} // namespace nodecoord::storage
