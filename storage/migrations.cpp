#include "storage/migrations.hpp"

#include "storage/dialect.hpp"

#include <soci/soci.h>

#include <functional>
#include <string>
#include <vector>

namespace nodecoord::storage {

namespace {

struct migration {
  int version;
  const char* description;
  std::vector<std::string> (*statements)(const dialect&);
  // SQLite: the statements edit sqlite_master's text of a table (a constraint that only gets
  // looser, so no stored row changes; https://www.sqlite.org/lang_altertable.html, "other kinds
  // of table schema changes"). migrate() wraps them in writable_schema and bumps schema_version.
  bool edits_sqlite_schema = false;
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

// Counts kept as the rows change (issue 19): the overview reads a few counter rows instead of
// scanning node_task_attempts and jobs. Triggers keep them, in the same transaction as the change,
// whatever statement makes it. PostgreSQL: each backend adds to its own shard (its pid), so
// writers never wait for each other on a counter row; statement-level triggers over transition
// tables, one counter upsert per statement and state. Not row triggers: thousands of updates of
// one counter row in one transaction (a storm ends 10,000 sessions) each walk the versions the
// earlier ones left, and the storm took 40 % longer. SQLite: one writer, shard 0, row triggers (an
// update in place). fold_counts (at startup) folds the shards of backends that are gone into
// shard 0.
/// A table whose rows a counts table keeps tallied by `keys`, one summed column per value.
struct counted_table {
  std::string table;  // e.g. node_task_attempts
  std::string counts; // e.g. attempt_counts
  std::vector<std::string> keys;
  std::vector<std::pair<std::string, std::string>> values; // counts column, per-row expression
};

const std::vector<counted_table>& counted_tables() {
  static const std::vector<counted_table> all{
    {"node_task_attempts", "attempt_counts", {"sync_state"}, {{"attempts", "1"}, {"log_lines", "log_count"}}},
    {"jobs", "job_counts", {"status", "type"}, {{"jobs", "1"}}},
    {"nodes", "node_counts", {"status"}, {{"nodes", "1"}}},
  };
  return all;
}

std::string joined(const std::vector<std::string>& xs, const std::string& sep,
                   const std::function<std::string(const std::string&)>& f) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : sep) + f(x);
  return out;
}

std::vector<std::string> value_columns(const counted_table& c) {
  std::vector<std::string> out;
  for (auto& [col, expr] : c.values)
    out.push_back(col);
  return out;
}

/// `INSERT … ON CONFLICT DO UPDATE` adding `rows` (keys then values, in order) to the counts.
/// PostgreSQL needs the target named to tell its column from EXCLUDED's; SQLite forbids an alias
/// inside a trigger and reads the bare name as the target's.
std::string add_to_counts(const counted_table& c, const std::string& rows, bool alias) {
  auto cols = value_columns(c);
  auto id = [](const std::string& x) { return x; };
  std::string target = alias ? "c." : "";
  return "INSERT INTO " + c.counts + (alias ? " AS c" : "") + " (shard, " + joined(c.keys, ", ", id) + ", "
         + joined(cols, ", ", id) + ") " + rows + " ON CONFLICT (shard, " + joined(c.keys, ", ", id)
         + ") DO UPDATE SET "
         + joined(cols, ", ", [&](const std::string& v) { return v + " = " + target + v + " + excluded." + v; });
}

/// PostgreSQL: one statement-level trigger per operation over the transition tables, adding to the
/// shard of this backend (pg_backend_pid()), so concurrent writers never share a counter row.
std::vector<std::string> pg_count_triggers(const counted_table& c) {
  auto id = [](const std::string& x) { return x; };
  auto cols = value_columns(c);
  auto rows = [&](const std::string& from, const std::string& sign) {
    std::string sel = "SELECT " + joined(c.keys, ", ", id);
    for (auto& [col, expr] : c.values)
      sel += ", " + sign + expr + " AS " + col;
    return sel + " FROM " + from;
  };
  auto summed = [&](const std::string& src) {
    return "SELECT pg_backend_pid(), " + joined(c.keys, ", ", id) + ", "
           + joined(cols, ", ", [](const std::string& v) { return "SUM(" + v + ")"; }) + " FROM (" + src
           + ") d GROUP BY " + joined(c.keys, ", ", id) + " HAVING "
           + joined(cols, " OR ", [](const std::string& v) { return "SUM(" + v + ") <> 0"; }) + " ORDER BY "
           + joined(c.keys, ", ", id);
  };
  std::string fn = "nc_count_" + c.table;
  std::vector<std::string> out;
  out.push_back("CREATE FUNCTION " + fn
                + "() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $f$\nBEGIN\n"
                  "  IF TG_OP = 'INSERT' THEN\n    "
                + add_to_counts(c, summed(rows("nc_new", "")), true) + ";\n  ELSIF TG_OP = 'DELETE' THEN\n    "
                + add_to_counts(c, summed(rows("nc_old", "-")), true) + ";\n  ELSE\n    "
                + add_to_counts(c, summed(rows("nc_new", "") + " UNION ALL " + rows("nc_old", "-")), true)
                + ";\n  END IF;\n  RETURN NULL;\nEND $f$");
  out.push_back("CREATE TRIGGER " + c.table + "_count_ins AFTER INSERT ON " + c.table
                + " REFERENCING NEW TABLE AS nc_new FOR EACH STATEMENT EXECUTE FUNCTION " + fn + "()");
  out.push_back("CREATE TRIGGER " + c.table + "_count_upd AFTER UPDATE ON " + c.table
                + " REFERENCING OLD TABLE AS nc_old NEW TABLE AS nc_new FOR EACH STATEMENT EXECUTE FUNCTION " + fn
                + "()");
  out.push_back("CREATE TRIGGER " + c.table + "_count_del AFTER DELETE ON " + c.table
                + " REFERENCING OLD TABLE AS nc_old FOR EACH STATEMENT EXECUTE FUNCTION " + fn + "()");
  return out;
}

/// SQLite: row triggers into shard 0; an update that changes no counted column adds nothing.
std::vector<std::string> sqlite_count_triggers(const counted_table& c) {
  auto row = [&](const std::string& r, const std::string& sign) {
    std::string vals = "VALUES (0";
    for (auto& k : c.keys)
      vals += ", " + r + "." + k;
    for (auto& [col, expr] : c.values)
      vals += ", " + sign + (expr == "1" ? expr : r + "." + expr);
    return add_to_counts(c, vals + ")", false) + ";";
  };
  std::vector<std::string> watched = c.keys;
  for (auto& [col, expr] : c.values)
    if (expr != "1")
      watched.push_back(expr);
  auto id = [](const std::string& x) { return x; };
  std::string changed = joined(watched, " OR ", [](const std::string& w) { return "OLD." + w + " IS NOT NEW." + w; });
  return {
    "CREATE TRIGGER " + c.table + "_count_ins AFTER INSERT ON " + c.table + " BEGIN " + row("NEW", "") + " END",
    "CREATE TRIGGER " + c.table + "_count_upd AFTER UPDATE OF " + joined(watched, ", ", id) + " ON " + c.table
      + " WHEN " + changed + " BEGIN " + row("OLD", "-") + " " + row("NEW", "") + " END",
    "CREATE TRIGGER " + c.table + "_count_del AFTER DELETE ON " + c.table + " BEGIN " + row("OLD", "-") + " END",
  };
}

std::vector<std::string> v3(const dialect& d) {
  std::vector<std::string> out;
  out.push_back(R"(CREATE TABLE attempt_counts (
  shard BIGINT NOT NULL,
  sync_state TEXT NOT NULL,
  attempts BIGINT NOT NULL,
  log_lines BIGINT NOT NULL,
  PRIMARY KEY (shard, sync_state)
))");
  out.push_back(R"(CREATE TABLE job_counts (
  shard BIGINT NOT NULL,
  status TEXT NOT NULL,
  type TEXT NOT NULL,
  jobs BIGINT NOT NULL,
  PRIMARY KEY (shard, status, type)
))");
  out.push_back(R"(CREATE TABLE node_counts (
  shard BIGINT NOT NULL,
  status TEXT NOT NULL,
  nodes BIGINT NOT NULL,
  PRIMARY KEY (shard, status)
))");
  // A page of nodes with a status (GET /api/nodes?status=) is a range of this index, not a walk
  // of every name that skips the other statuses (PostgreSQL chose a scan and a sort: 54 ms at
  // 100,000 nodes).
  out.push_back("CREATE INDEX nodes_status_name ON nodes (status, name)");
  // What the tables hold now.
  out.push_back(
    "INSERT INTO attempt_counts (shard, sync_state, attempts, log_lines) "
    "SELECT 0, sync_state, COUNT(*), COALESCE(SUM(log_count), 0) FROM node_task_attempts GROUP BY sync_state");
  out.push_back("INSERT INTO job_counts (shard, status, type, jobs) SELECT 0, status, type, COUNT(*) FROM jobs "
                "GROUP BY status, type");
  out.push_back("INSERT INTO node_counts (shard, status, nodes) SELECT 0, status, COUNT(*) FROM nodes GROUP BY status");
  for (auto& c : counted_tables())
    for (auto& sql : d.kind == backend::postgresql ? pg_count_triggers(c) : sqlite_count_triggers(c))
      out.push_back(std::move(sql));
  return out;
}

// The audit ledger (issue 20, storage/audit.hpp): rows are only ever inserted; ids grow, so the
// ledger pages by id, newest first, and the filters the API offers are (column, id) ranges.
std::vector<std::string> v4(const dialect& d) {
  std::string id = d.kind == backend::postgresql ? "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
                                                 : "INTEGER PRIMARY KEY AUTOINCREMENT";
  std::vector<std::string> out;
  out.push_back(subst(R"(CREATE TABLE audit_log (
  id )" + id + R"(,
  at {ts} NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  filter {json},
  counts {json},
  result TEXT NOT NULL CHECK (result IN ('succeeded', 'refused', 'failed')),
  error TEXT,
  instance_id TEXT
))",
                      d));
  out.push_back("CREATE INDEX audit_log_action ON audit_log (action, id)");
  out.push_back("CREATE INDEX audit_log_actor ON audit_log (actor, id)");
  out.push_back("CREATE INDEX audit_log_target ON audit_log (target, id)");
  return out;
}

// Check jobs (issue 20, allowed checks): 'check' joins the job types. PostgreSQL replaces the
// constraint; SQLite edits the table's text in sqlite_master (see migration::edits_sqlite_schema),
// the documented way to loosen a CHECK without copying the table.
std::vector<std::string> v5(const dialect& d) {
  if (d.kind == backend::postgresql)
    return {"ALTER TABLE jobs DROP CONSTRAINT jobs_type_check",
            "ALTER TABLE jobs ADD CONSTRAINT jobs_type_check "
            "CHECK (type IN ('backfill', 'reconcile', 'bundle_export', 'bundle_import', 'check'))"};
  return {"UPDATE sqlite_master SET sql = replace(sql, '''bundle_import''))', '''bundle_import'', ''check''))') "
          "WHERE type = 'table' AND name = 'jobs' AND instr(sql, '''bundle_import''))') > 0"};
}

// Pruned logs (issue 20, bulk attempts.prune_logs): the lines of a complete attempt can be
// deleted while log_count and log_max_seq keep saying what the node delivered (the evidence of
// DESIGN §3 rule 2). logs_pruned counts the deleted lines; a line whose seq is at or below
// logs_pruned_through was stored once and is not stored again (storage/grouped.cpp).
std::vector<std::string> v6(const dialect&) {
  return {"ALTER TABLE node_task_attempts ADD COLUMN logs_pruned BIGINT NOT NULL DEFAULT 0",
          "ALTER TABLE node_task_attempts ADD COLUMN logs_pruned_through BIGINT"};
}

const std::vector<migration>& all_migrations() {
  static const std::vector<migration> ms{
    {1, "initial schema: nodes, node_task_attempts, attempt_logs, jobs", &v1},
    {2, "several instances: instances (leases), nodes.owner_instance, jobs.instance_id", &v2},
    {3, "counts kept by triggers: attempt_counts, job_counts, node_counts", &v3},
    {4, "the audit ledger: audit_log", &v4},
    {5, "check jobs: jobs.type takes 'check'", &v5, true},
    {6, "pruned logs: node_task_attempts.logs_pruned, logs_pruned_through", &v6},
  };
  return ms;
}

} // namespace

int latest_schema_version() { return all_migrations().back().version; }

int migrate(soci::session& sql, const dialect& d, const std::string& now, int up_to) {
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
      if (m.version <= current || (up_to > 0 && m.version > up_to))
        continue;
      bool edit = m.edits_sqlite_schema && !pg;
      int schema_version = 0;
      if (edit) {
        sql << "PRAGMA schema_version", soci::into(schema_version);
        sql << "PRAGMA writable_schema = ON";
      }
      for (auto& stmt : m.statements(d)) {
        if (!edit) {
          sql << stmt;
          continue;
        }
        // Each edit names the text it changes: one row, or the table is not what this binary
        // expects, and nothing is changed.
        soci::statement st = (sql.prepare << stmt);
        st.execute(true);
        if (st.get_affected_rows() != 1)
          throw std::runtime_error("migration " + std::to_string(m.version)
                                   + " did not find the schema text it edits: " + stmt);
      }
      if (edit) {
        // Other connections (and this one) read the schema again when its version moves.
        sql << "PRAGMA schema_version = " + std::to_string(schema_version + 1);
        sql << "PRAGMA writable_schema = OFF";
      }
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
