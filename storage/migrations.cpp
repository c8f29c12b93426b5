#include "storage/migrations.hpp"

#include "storage/dialect.hpp"

#include <soci/soci.h>

#include <string>
#include <vector>

namespace nodecoord::storage {

namespace {

struct migration {
  int version;
  const char* description;
  std::vector<std::string> (*statements)(const dialect&);
};

std::string subst(std::string s, const dialect& d) {
  auto replace = [&s](const std::string& from, const std::string& to) {
    for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
      s.replace(pos, from.size(), to);
  };
  replace("{uuid}", d.uuid);
  replace("{ts}", d.timestamp);
  replace("{json}", d.json);
  return s;
}

std::vector<std::string> v1(const dialect& d) {
  std::vector<std::string> out;
  for (const char* s : {
         R"(CREATE TABLE nodes (
  id {uuid} PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  key_id TEXT NOT NULL UNIQUE,
  key_hash TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline', 'disabled')),
  session_epoch BIGINT NOT NULL DEFAULT 0,
  connected_at {ts},
  disconnected_at {ts},
  disconnect_reason TEXT,
  last_seen_at {ts},
  capabilities {json},
  created_at {ts} NOT NULL,
  disabled_at {ts}
))",
         // log_count / log_max_seq: counters kept by the log insert, so the evidence check of a
         // backfill (DESIGN §3 rule 2) and logs_after never count rows.
         R"(CREATE TABLE node_task_attempts (
  id {uuid} PRIMARY KEY,
  node_id {uuid} NOT NULL REFERENCES nodes (id),
  task_id TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  sync_state TEXT NOT NULL DEFAULT 'partial'
    CHECK (sync_state IN ('partial', 'pending_backfill', 'complete', 'failed')),
  backfill_request_id {uuid},
  sync_requested_at {ts},
  last_full_sync_at {ts},
  backfill_failures INTEGER NOT NULL DEFAULT 0,
  log_count BIGINT NOT NULL DEFAULT 0,
  log_max_seq BIGINT,
  started_at {ts},
  finished_at {ts},
  meta {json},
  created_at {ts} NOT NULL,
  updated_at {ts} NOT NULL,
  CHECK ((sync_state = 'pending_backfill') = (backfill_request_id IS NOT NULL))
))",
         "CREATE INDEX node_task_attempts_node_sync ON node_task_attempts (node_id, sync_state, created_at)",
         "CREATE INDEX node_task_attempts_sync ON node_task_attempts (sync_state, created_at)",
         "CREATE INDEX node_task_attempts_request ON node_task_attempts (backfill_request_id) "
         "WHERE backfill_request_id IS NOT NULL",
         R"(CREATE TABLE attempt_logs (
  attempt_id {uuid} NOT NULL REFERENCES node_task_attempts (id),
  seq BIGINT NOT NULL CHECK (seq >= 0),
  ts {ts} NOT NULL,
  stream TEXT NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
  line TEXT NOT NULL,
  PRIMARY KEY (attempt_id, seq)
))",
         R"(CREATE TABLE jobs (
  id {uuid} PRIMARY KEY,
  type TEXT NOT NULL CHECK (type IN ('backfill', 'reconcile', 'bundle_export', 'bundle_import')),
  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled',
                                         'expired', 'abandoned')),
  node_id {uuid} REFERENCES nodes (id),
  attempt_count INTEGER NOT NULL DEFAULT 0,
  detail {json},
  error TEXT,
  created_at {ts} NOT NULL,
  started_at {ts},
  finished_at {ts}
))",
         "CREATE INDEX jobs_status_type ON jobs (status, type)",
         "CREATE INDEX jobs_created ON jobs (created_at, id)",
         "CREATE INDEX jobs_node ON jobs (node_id, created_at)",
         // One row per running storage actor: the token of its last committed batch, so that a
         // batch whose COMMIT outcome was lost with the connection is never applied twice.
         R"(CREATE TABLE storage_commits (
  instance TEXT PRIMARY KEY,
  token BIGINT NOT NULL,
  committed_at {ts} NOT NULL
))",
       })
    out.push_back(subst(s, d));
  return out;
}

// Several instances on one database (DESIGN §9): who holds each node's live session, which
// instance runs each job, and each instance's lease. `incarnation` grows at every start and at
// every recovery by another instance, so a renewal by a lost incarnation fails.
std::vector<std::string> v2(const dialect& d) {
  std::vector<std::string> out;
  for (const char* s : {
         R"(CREATE TABLE instances (
  id TEXT PRIMARY KEY,
  incarnation BIGINT NOT NULL,
  started_at {ts} NOT NULL,
  heartbeat_at {ts} NOT NULL,
  version TEXT NOT NULL,
  listen TEXT,
  recovered_at {ts},
  recovered_by TEXT
))",
         "ALTER TABLE nodes ADD COLUMN owner_instance TEXT",
         "ALTER TABLE jobs ADD COLUMN instance_id TEXT",
         "CREATE INDEX nodes_owner_online ON nodes (owner_instance) WHERE status = 'online'",
         "CREATE INDEX jobs_instance_open ON jobs (instance_id) WHERE status IN ('queued', 'running')",
       })
    out.push_back(subst(s, d));
  return out;
}

const std::vector<migration>& all_migrations() {
  static const std::vector<migration> ms{
    {1, "initial schema: nodes, node_task_attempts, attempt_logs, jobs", &v1},
    {2, "several instances: instances (leases), nodes.owner_instance, jobs.instance_id", &v2},
  };
  return ms;
}

} // namespace

int latest_schema_version() { return all_migrations().back().version; }

int migrate(soci::session& sql, const dialect& d, const std::string& now) {
  sql << subst("CREATE TABLE IF NOT EXISTS schema_migrations ("
               "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at {ts} NOT NULL)",
               d);
  bool pg = d.kind == backend::postgresql;
  // SQLite: BEGIN IMMEDIATE takes the write lock now, so two migrators cannot both read "v0".
  if (pg)
    sql << "BEGIN";
  else
    sql << "BEGIN IMMEDIATE";
  try {
    if (pg) {
      long long got = 0;
      sql << "SELECT 1 FROM (SELECT pg_advisory_xact_lock(740074)) AS l", soci::into(got);
    }
    int current = 0;
    soci::indicator ind = soci::i_ok;
    sql << "SELECT MAX(version) FROM schema_migrations", soci::into(current, ind);
    if (ind == soci::i_null)
      current = 0;
    if (current > latest_schema_version())
      throw schema_too_new("the database schema is at version " + std::to_string(current)
                           + ", newer than this nodecoordd supports (" + std::to_string(latest_schema_version())
                           + "); run a newer nodecoordd or restore a matching backup");
    for (auto& m : all_migrations()) {
      if (m.version <= current)
        continue;
      for (auto& stmt : m.statements(d))
        sql << stmt;
      std::string desc = m.description;
      sql << "INSERT INTO schema_migrations (version, description, applied_at) VALUES (:v, :d, " + d.ts_param("t")
               + ")",
        soci::use(m.version, "v"), soci::use(desc, "d"), soci::use(now, "t");
    }
    sql << "COMMIT";
    return current;
  } catch (...) {
    try {
      sql << "ROLLBACK";
    } catch (...) { // the connection may be gone; the server rolls back on its own then
    }
    throw;
  }
}

} // namespace nodecoord::storage
