#include "storage/admin_ops.hpp"

#include "storage/audit.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"
#include "storage/dialect.hpp"
#include "storage/query.hpp"
#include "storage/records.hpp"

#include <map>
#include <stdexcept>

namespace nodecoord::storage {

namespace {

const char* const data_tables[] = {"nodes", "node_task_attempts", "attempt_logs", "jobs"};

} // namespace

attempt_list::result_type execute(op_context& c, const attempt_list& op) {
  attempt_list::result_type out;
  // PostgreSQL refuses a non-UUID text compared with a UUID column; SQLite would compare text.
  // Both fail the same way here instead.
  if (!op.after_id.empty() && !is_uuid(op.after_id))
    throw std::invalid_argument("attempt_list: after_id is not a UUID: " + op.after_id);
  if (!op.node_id.empty() && !is_uuid(op.node_id))
    throw std::invalid_argument("attempt_list: node_id is not a UUID: " + op.node_id);
  if (op.limit < 1)
    return out;
  std::string where = " WHERE 1 = 1";
  if (!op.node_id.empty())
    where += " AND node_id = :node";
  if (!op.sync_state.empty())
    where += " AND sync_state = :sync";
  if (!op.state.empty())
    where += " AND state = :state";
  if (!op.after_id.empty())
    where += " AND id > :after";
  // Ids are compared as UUIDs in PostgreSQL and as text in SQLite: the same order for the
  // canonical lower-case form every id is stored in.
  query q(c.sql, "SELECT " + attempt_columns(c.d) + " FROM node_task_attempts" + where + " ORDER BY id LIMIT :lim");
  if (!op.node_id.empty())
    q.bind("node", op.node_id);
  if (!op.sync_state.empty())
    q.bind("sync", op.sync_state);
  if (!op.state.empty())
    q.bind("state", op.state);
  if (!op.after_id.empty())
    q.bind("after", op.after_id);
  q.bind("lim", op.limit).each([&](const soci::row& r) { out.push_back(read_attempt(r)); });
  return out;
}

jobs_prune::result_type execute(op_context& c, const jobs_prune& op) {
  // Normalised: SQLite compares times as text, which is right only in the stored format.
  auto normalised = [](const std::string& text, const char* what) {
    if (text.empty())
      return text;
    auto t = parse_time(text);
    if (!t)
      throw std::invalid_argument(std::string("jobs_prune: ") + what + " is not an RFC 3339 time: " + text);
    return format_time(*t);
  };
  auto older = normalised(op.older_than, "older_than");
  auto failed_older = normalised(op.failed_older_than, "failed_older_than");
  if (!failed_older.empty() && older.empty())
    throw std::invalid_argument("jobs_prune: failed_older_than needs older_than");
  // Queued and running jobs are never deleted, whatever the filter names.
  std::string where = " WHERE status NOT IN ('queued', 'running')";
  if (!op.statuses.empty())
    where += " AND status IN " + query::in_list("s", op.statuses.size());
  if (!op.types.empty())
    where += " AND type IN " + query::in_list("t", op.types.size());
  if (!failed_older.empty())
    where += " AND created_at < CASE WHEN status = 'failed' THEN " + c.d.ts_param("folder") + " ELSE "
             + c.d.ts_param("older") + " END";
  else if (!older.empty())
    where += " AND created_at < " + c.d.ts_param("older");
  query q(c.sql, "DELETE FROM jobs" + where);
  q.bind_list("s", op.statuses).bind_list("t", op.types);
  if (!older.empty())
    q.bind("older", older);
  if (!failed_older.empty())
    q.bind("folder", failed_older);
  jobs_prune::result_type out{q.exec()};
  audit_outcome(c, op.audit, true, R"({"jobs":)" + std::to_string(out.deleted) + "}");
  return out;
}

node_attempt_counts::result_type execute(op_context& c, const node_attempt_counts& op) {
  if (!is_uuid(op.node_id))
    throw std::invalid_argument("node_attempt_counts: node_id is not a UUID: " + op.node_id);
  node_attempt_counts::result_type out;
  query(c.sql, "SELECT sync_state, COUNT(*) FROM node_task_attempts WHERE node_id = :n GROUP BY sync_state")
    .bind("n", op.node_id)
    .each([&](const soci::row& r) { out.by_sync_state[col_str(r, 0)] = col_int(r, 1); });
  return out;
}

database_size::result_type execute(op_context& c, const database_size&) {
  database_size::result_type out;
  std::string names;
  for (auto* t : data_tables)
    names += std::string(names.empty() ? "" : ", ") + "'" + t + "'";
  std::map<std::string, int64_t> sizes;
  if (c.d.kind == backend::postgresql) {
    query(c.sql, "SELECT pg_database_size(current_database())").each([&](const soci::row& r) {
      out.total_bytes = col_int(r, 0);
    });
    // to_regclass resolves each name through the session's search_path (tests use a schema of
    // their own); a table that is not there counts 0.
    query(c.sql, "SELECT t.name, COALESCE(pg_total_relation_size(to_regclass(t.name)), 0) FROM "
                 "(SELECT unnest(ARRAY["
                   + names + "]) AS name) t")
      .each([&](const soci::row& r) { sizes[col_str(r, 0)] = col_int(r, 1); });
  } else {
    query(c.sql, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
      .each([&](const soci::row& r) { out.total_bytes = col_int(r, 0); });
    // dbstat has one row per page of each b-tree (a table, or one of its indexes); sqlite_schema
    // says which table an index belongs to.
    query(c.sql, "SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s JOIN sqlite_schema m ON m.name = s.name "
                 "WHERE m.tbl_name IN ("
                   + names + ") GROUP BY m.tbl_name")
      .each([&](const soci::row& r) { sizes[col_str(r, 0)] = col_int(r, 1); });
  }
  for (auto* t : data_tables)
    out.tables.emplace_back(t, sizes.count(t) ? sizes[t] : 0);
  return out;
}

ping::result_type execute(op_context& c, const ping&) {
  int64_t one = 0;
  query(c.sql, "SELECT 1").each([&](const soci::row& r) { one = col_int(r, 0); });
  return one == 1;
}

} // namespace nodecoord::storage
