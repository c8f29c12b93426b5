#include "storage/operations.hpp"

#include "storage/audit.hpp"

#include "common/ids.hpp"
#include "storage/dialect.hpp"
#include "storage/group_support.hpp"
#include "storage/operations_sql.hpp"
#include "storage/query.hpp"
#include "storage/records.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace nodecoord::storage {

namespace {

// Bounded IN lists: well below SQLite's 32766 and PostgreSQL's 65535 parameter limits.
constexpr size_t in_chunk = statement_limits::ids;

node_lookup_by_key::result_type find_node(op_context& c, const std::string& column, const std::string& value) {
  node_lookup_by_key::result_type out;
  query(c.sql, "SELECT " + node_columns(c.d) + " FROM nodes WHERE " + column + " = :v")
    .bind("v", value)
    .each([&](const soci::row& r) {
      out.found = true;
      out.node = read_node(r);
    });
  return out;
}

node_disable::result_type node_after(op_context& c, const std::string& name) {
  auto found = find_node(c, "name", name);
  return {found.found, std::move(found.node)};
}

/// The node after a change of `changed` rows, and the change in the ledger (a missing node: failed).
node_disable::result_type audited_node_change(op_context& c, const audit_entry& audit, const std::string& name,
                                              int64_t changed) {
  auto out = node_after(c, name);
  audit_outcome(c, audit, out.found, R"({"nodes":)" + std::to_string(changed) + "}", "no node named " + name);
  return out;
}

} // namespace

// Counters answer the common case (no gaps) without touching attempt_logs. Lines at or below
// pruned_through were stored and then pruned: they count as present.
int64_t contiguous_high_water(op_context& c, const std::string& attempt_id, int64_t log_count, int64_t log_max_seq,
                              int64_t pruned_through) {
  if (log_count == 0)
    return -1;
  if (log_count == log_max_seq + 1)
    return log_max_seq;
  int64_t lower = pruned_through < 0 ? 0 : pruned_through + 1; // the first seq that must be stored
  int64_t has_lower = 0;
  query(c.sql, "SELECT COUNT(*) FROM attempt_logs WHERE attempt_id = :a AND seq = :s")
    .bind("a", attempt_id)
    .bind("s", lower)
    .each([&](const soci::row& r) { has_lower = col_int(r, 0); });
  if (!has_lower)
    return lower - 1;
  int64_t end = -1;
  query(c.sql, "SELECT MIN(l.seq) FROM attempt_logs l WHERE l.attempt_id = :a1 AND l.seq >= :s AND NOT EXISTS "
               "(SELECT 1 FROM attempt_logs m WHERE m.attempt_id = :a2 AND m.seq = l.seq + 1)")
    .bind("a1", attempt_id)
    .bind("s", lower)
    .bind("a2", attempt_id)
    .each([&](const soci::row& r) { end = col_int(r, 0, -1); });
  return end;
}

// --- nodes -----------------------------------------------------------------------------------

node_create::result_type execute(op_context& c, const node_create& op) {
  node_create::result_type out;
  int64_t taken = 0;
  query(c.sql, "SELECT COUNT(*) FROM nodes WHERE name = :n OR key_id = :k")
    .bind("n", op.name)
    .bind("k", op.key_id)
    .each([&](const soci::row& r) { taken = col_int(r, 0); });
  if (taken) {
    audit_outcome(c, op.audit, false, R"({"nodes":0})", "the name or the key id is taken");
    return out;
  }
  auto id = op.id.empty() ? new_uuid() : op.id;
  query(c.sql, "INSERT INTO nodes (id, name, key_id, key_hash, status, session_epoch, created_at) "
               "VALUES (:id, :name, :key_id, :key_hash, 'offline', 0, :now)")
    .bind("id", id)
    .bind("name", op.name)
    .bind("key_id", op.key_id)
    .bind("key_hash", op.key_hash)
    .bind("now", c.now_text)
    .exec();
  auto found = find_node(c, "id", id);
  out.created = found.found;
  out.node = std::move(found.node);
  audit_outcome(c, op.audit, out.created, out.created ? R"({"nodes":1})" : R"({"nodes":0})", "not created");
  return out;
}

// Handshakes arrive in bursts (a fleet reconnecting): adjacent ones run as one statement.
void run_key_lookups(op_context& c, std::span<group_member* const> ms) {
  std::vector<std::string> keys;
  for (auto* m : ms) {
    auto& l = member_as<node_lookup_by_key>(m);
    l.result = {};
    keys.push_back(l.op.key_id);
  }
  std::map<std::string, node_record> found;
  for (auto& chunk : chunks(keys, c.d.rows_per_statement(1, in_chunk)))
    query(c.sql, "SELECT " + node_columns(c.d) + " FROM nodes WHERE key_id IN " + query::in_list("k", chunk.size()))
      .bind_list("k", chunk)
      .each([&](const soci::row& r) {
        auto n = read_node(r);
        found[n.key_id] = std::move(n);
      });
  for (auto* m : ms) {
    auto& l = member_as<node_lookup_by_key>(m);
    if (auto i = found.find(l.op.key_id); i != found.end())
      l.result = {true, i->second};
  }
}

node_lookup_by_key::result_type execute(op_context& c, const node_lookup_by_key& op) {
  return execute_alone(c, op, run_key_lookups);
}

node_lookup_by_name::result_type execute(op_context& c, const node_lookup_by_name& op) {
  return find_node(c, "name", op.name);
}

node_list::result_type execute(op_context& c, const node_list& op) {
  node_list::result_type out;
  // Keyset on the name's unique index: a page costs the same at any depth of the fleet.
  std::string where;
  if (!op.after_name.empty())
    where += " AND name > :after";
  if (!op.status.empty())
    where += " AND status = :status";
  query q(c.sql, "SELECT " + node_columns(c.d) + " FROM nodes WHERE 1 = 1" + where + " ORDER BY name"
                   + (op.limit > 0 ? " LIMIT :lim" : ""));
  if (!op.after_name.empty())
    q.bind("after", op.after_name);
  if (!op.status.empty())
    q.bind("status", op.status);
  if (op.limit > 0)
    q.bind("lim", op.limit);
  q.each([&](const soci::row& r) { out.push_back(read_node(r)); });
  return out;
}

node_disable::result_type execute(op_context& c, const node_disable& op) {
  auto changed = query(c.sql, "UPDATE nodes SET status = 'disabled', disabled_at = :now "
                              "WHERE name = :name AND status <> 'disabled'")
                   .bind("now", c.now_text)
                   .bind("name", op.name)
                   .exec();
  return audited_node_change(c, op.audit, op.name, changed);
}

node_enable::result_type execute(op_context& c, const node_enable& op) {
  auto changed = query(c.sql, "UPDATE nodes SET status = 'offline', disabled_at = NULL "
                              "WHERE name = :name AND status = 'disabled'")
                   .bind("name", op.name)
                   .exec();
  return audited_node_change(c, op.audit, op.name, changed);
}

node_set_key::result_type execute(op_context& c, const node_set_key& op) {
  auto changed = query(c.sql, "UPDATE nodes SET key_id = :k, key_hash = :h WHERE name = :name")
                   .bind("k", op.key_id)
                   .bind("h", op.key_hash)
                   .bind("name", op.name)
                   .exec();
  return audited_node_change(c, op.audit, op.name, changed);
}

nodes_disabled_since::result_type execute(op_context& c, const nodes_disabled_since& op) {
  nodes_disabled_since::result_type out;
  query(c.sql, "SELECT id FROM nodes WHERE status = 'disabled' AND disabled_at >= " + c.d.ts_param("since"))
    .bind("since", op.since)
    .each([&](const soci::row& r) { out.push_back(col_str(r, 0)); });
  return out;
}

namespace {

/// Session begins of distinct nodes: one compare-and-set statement, then one read of the epochs
/// of the nodes that lost (or are disabled, or do not exist: epoch 0).
void begin_distinct_sessions(op_context& c, std::span<op_member<node_begin_session>* const> ops) {
  std::string match, caps;
  bool any_caps = false;
  for (size_t i = 0; i < ops.size(); ++i) {
    auto n = std::to_string(i);
    match += (i ? " OR (id = :i" : "(id = :i") + n + " AND session_epoch = :e" + n + ")";
    caps += " WHEN :c" + n + " THEN " + c.d.json_param("j" + n);
    any_caps = any_caps || !ops[i]->op.capabilities.empty();
  }
  // An empty capabilities keeps the stored value.
  query q(c.sql, "UPDATE nodes SET session_epoch = session_epoch + 1, status = 'online', connected_at = :now, "
                 "last_seen_at = :now2, disconnected_at = NULL, disconnect_reason = NULL, owner_instance = :own, "
                 "capabilities = "
                   + (any_caps ? "COALESCE(CASE id" + caps + " END, capabilities)" : std::string("capabilities"))
                   + " WHERE status <> 'disabled' AND (" + match + ") RETURNING id, session_epoch");
  q.bind("now", c.now_text).bind("now2", c.now_text).bind_nullable("own", c.instance);
  for (size_t i = 0; i < ops.size(); ++i) {
    auto n = std::to_string(i);
    auto& op = ops[i]->op;
    q.bind("i" + n, op.node_id).bind("e" + n, op.expected_epoch);
    if (any_caps)
      q.bind("c" + n, op.node_id).bind_nullable("j" + n, op.capabilities);
  }
  std::map<std::string, int64_t> begun;
  q.each([&](const soci::row& r) { begun[col_str(r, 0)] = col_int(r, 1); });
  std::vector<std::string> lost;
  for (auto* m : ops) {
    auto i = begun.find(m->op.node_id);
    m->result =
      i != begun.end() ? node_begin_session::result_type{true, i->second} : node_begin_session::result_type{false, 0};
    if (i == begun.end())
      lost.push_back(m->op.node_id);
  }
  if (lost.empty())
    return;
  std::map<std::string, int64_t> epochs;
  query(c.sql, "SELECT id, session_epoch FROM nodes WHERE id IN " + query::in_list("i", lost.size()))
    .bind_list("i", lost)
    .each([&](const soci::row& r) { epochs[col_str(r, 0)] = col_int(r, 1); });
  for (auto* m : ops)
    if (!m->result.ok)
      m->result.epoch = epochs.count(m->op.node_id) ? epochs[m->op.node_id] : 0;
}

} // namespace

void run_session_begins(op_context& c, std::span<group_member* const> ms) {
  std::vector<op_member<node_begin_session>*> ops;
  for (auto* m : ms)
    ops.push_back(&member_as<node_begin_session>(m));
  // The same node twice: the second sees what the first did.
  distinct_runs(
    ops.size(), c.d.rows_per_statement(4, 200), [&](size_t i) { return ops[i]->op.node_id; },
    [&](size_t from, size_t to) {
      begin_distinct_sessions(c, std::span<op_member<node_begin_session>* const>(ops.data() + from, to - from));
    });
}

node_begin_session::result_type execute(op_context& c, const node_begin_session& op) {
  return execute_alone(c, op, run_session_begins);
}

node_end_session::result_type execute(op_context& c, const node_end_session& op) {
  return {execute(c, nodes_end_sessions{{op}}).applied == 1};
}

nodes_end_sessions::result_type execute(op_context& c, const nodes_end_sessions& op) {
  // A disabled node stays disabled; the time and reason of the disconnect are still recorded.
  // Grouped by reason (a storm has one), then one statement per chunk of (id, epoch) pairs.
  std::map<std::string, std::vector<const node_end_session*>> by_reason;
  for (auto& s : op.sessions)
    by_reason[s.reason].push_back(&s);
  nodes_end_sessions::result_type out;
  const size_t per_statement = c.d.rows_per_statement(2, 200);
  for (auto& [reason, sessions] : by_reason) {
    in_slices(sessions.size(), per_statement, [&](size_t from, size_t to) {
      std::string match;
      for (size_t i = from; i < to; ++i) {
        auto n = std::to_string(i - from);
        match += (i == from ? "(id = :i" : " OR (id = :i") + n + " AND session_epoch = :e" + n + ")";
      }
      query q(c.sql, "UPDATE nodes SET status = CASE WHEN status = 'disabled' THEN 'disabled' "
                     "ELSE 'offline' END, disconnected_at = :now, disconnect_reason = :r WHERE "
                       + match);
      q.bind("now", c.now_text).bind_nullable("r", reason);
      for (size_t i = from; i < to; ++i) {
        auto n = std::to_string(i - from);
        q.bind("i" + n, sessions[i]->node_id).bind("e" + n, sessions[i]->epoch);
      }
      out.applied += q.exec();
    });
  }
  return out;
}

node_touch::result_type execute(op_context& c, const node_touch& op) {
  // A few nodes a statement (dialect::rows_per_statement); never moves last_seen_at backwards
  // (the latest time of a node listed twice wins).
  std::map<std::string, std::string> latest;
  for (auto& s : op.nodes)
    if (auto& at = latest[s.node_id]; at < s.at)
      at = s.at;
  std::vector<std::pair<std::string, std::string>> rows(latest.begin(), latest.end());
  node_touch::result_type out;
  in_slices(rows.size(), c.d.rows_per_statement(2, 100), [&](size_t from, size_t to) {
    std::string values;
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      values += (i == from ? "(" : ", (") + c.d.uuid_param("i" + n) + ", " + c.d.ts_param("a" + n) + ")";
    }
    query q(c.sql, "UPDATE nodes SET last_seen_at = v.v_at FROM " + c.d.values_table("v", "v_id, v_at", values)
                     + " WHERE nodes.id = v.v_id AND (nodes.last_seen_at IS NULL OR nodes.last_seen_at < v.v_at)");
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      q.bind("i" + n, rows[i].first).bind("a" + n, rows[i].second);
    }
    out.updated += q.exec();
  });
  return out;
}

// --- attempts and logs -----------------------------------------------------------------------

attempt_get::result_type execute(op_context& c, const attempt_get& op) {
  attempt_get::result_type out;
  query(c.sql, "SELECT " + attempt_columns(c.d) + " FROM node_task_attempts WHERE id = :id")
    .bind("id", op.attempt_id)
    .each([&](const soci::row& r) {
      out.found = true;
      out.attempt = read_attempt(r);
    });
  return out;
}

attempts_partial_of_node::result_type execute(op_context& c, const attempts_partial_of_node& op) {
  attempts_partial_of_node::result_type out;
  query(c.sql, "SELECT id FROM node_task_attempts WHERE node_id = :n AND sync_state = 'partial' "
               "ORDER BY created_at, id LIMIT :lim")
    .bind("n", op.node_id)
    .bind("lim", op.limit)
    .each([&](const soci::row& r) { out.push_back(col_str(r, 0)); });
  return out;
}

nodes_with_partial::result_type execute(op_context& c, const nodes_with_partial& op) {
  nodes_with_partial::result_type out;
  // Keyset paging (never OFFSET: the set changes while it is paged). The EXISTS probe uses the
  // (node_id, sync_state, created_at) index.
  bool first = op.after_node_id.empty(); // "" is not a UUID to PostgreSQL
  // Only the nodes this instance serves (DESIGN §9): another instance's are its own to reconcile.
  bool mine = !c.instance.empty();
  query q(c.sql, std::string("SELECT n.id FROM nodes n WHERE n.status = 'online' ")
                   + (mine ? "AND n.owner_instance = :me " : "") + (first ? "" : "AND n.id > :after ")
                   + "AND EXISTS (SELECT 1 FROM node_task_attempts a WHERE a.node_id = n.id AND "
                     "a.sync_state = 'partial') ORDER BY n.id LIMIT :lim");
  if (mine)
    q.bind("me", c.instance);
  if (!first)
    q.bind("after", op.after_node_id);
  q.bind("lim", op.limit).each([&](const soci::row& r) { out.push_back(col_str(r, 0)); });
  return out;
}

nodes_partial_among::result_type execute(op_context& c, const nodes_partial_among& op) {
  nodes_partial_among::result_type out;
  // DISTINCT over the (node_id, sync_state, created_at) index: one probe per listed node.
  for (auto& chunk : chunks(op.node_ids, c.d.rows_per_statement(1, in_chunk))) {
    query(c.sql, "SELECT DISTINCT node_id FROM node_task_attempts WHERE sync_state = 'partial' AND node_id IN "
                   + query::in_list("i", chunk.size()))
      .bind_list("i", chunk)
      .each([&](const soci::row& r) { out.push_back(col_str(r, 0)); });
  }
  std::sort(out.begin(), out.end());
  return out;
}

logs_get::result_type execute(op_context& c, const logs_get& op) {
  logs_get::result_type out;
  query(c.sql, "SELECT seq, " + c.d.ts("ts")
                 + ", stream, line FROM attempt_logs "
                   "WHERE attempt_id = :a AND seq > :after ORDER BY seq LIMIT :lim")
    .bind("a", op.attempt_id)
    .bind("after", op.after_seq)
    .bind("lim", op.limit)
    .each([&](const soci::row& r) {
      out.push_back({col_int(r, 0), col_str(r, 1), col_str(r, 2), col_str(r, 3)});
    });
  return out;
}

// --- backfill --------------------------------------------------------------------------------

// attempt_upsert, logs_insert, apply_backfill and mark_pending by limit: storage/grouped.cpp.

mark_pending::result_type mark_pending_by_ids(op_context& c, const mark_pending& op) {
  mark_pending::result_type out;
  if (op.attempt_ids.empty())
    return out;
  // Rule 4: only `partial` attempts of this node are marked, so an attempt is never in two
  // live requests. Fenced (DESIGN §9): only while `epoch` is the node's session, checked by the
  // statement itself under a share lock on the node row, so a session begun elsewhere waits for
  // this transaction or makes the mark find nothing.
  exec_in_chunks(c,
                 "UPDATE node_task_attempts SET sync_state = 'pending_backfill', "
                 "backfill_request_id = :r, sync_requested_at = :now, updated_at = :now2 "
                 "WHERE node_id = :n AND sync_state = 'partial' AND EXISTS (SELECT 1 FROM nodes "
                 "WHERE nodes.id = :n2 AND nodes.session_epoch = :e"
                   + std::string(c.d.for_share()) + ") AND id IN ",
                 op.attempt_ids, [&](query& q) {
                   q.bind("r", op.request_id)
                     .bind("now", c.now_text)
                     .bind("now2", c.now_text)
                     .bind("n", op.node_id)
                     .bind("n2", op.node_id)
                     .bind("e", op.epoch);
                 });
  struct counters {
    int64_t count, max_seq, pruned_through;
  };
  std::map<std::string, counters> marked;
  query(c.sql, "SELECT id, log_count, log_max_seq, logs_pruned_through FROM node_task_attempts "
               "WHERE backfill_request_id = :r")
    .bind("r", op.request_id)
    .each([&](const soci::row& r) {
      marked[col_str(r, 0)] = {col_int(r, 1), col_int(r, 2, -1), col_int(r, 3, -1)};
    });
  std::set<std::string> seen;
  for (auto& id : op.attempt_ids) { // in the order asked
    auto i = marked.find(id);
    if (i != marked.end() && seen.insert(id).second)
      out.marked.push_back(
        {id, contiguous_high_water(c, id, i->second.count, i->second.max_seq, i->second.pruned_through)});
  }
  if (!out.marked.empty())
    query(c.sql, "INSERT INTO jobs (id, type, status, node_id, attempt_count, created_at, started_at, instance_id) "
                 "VALUES (:id, 'backfill', 'running', :n, :cnt, :now, :now2, :inst)")
      .bind("id", op.request_id)
      .bind("n", op.node_id)
      .bind_nullable("inst", c.instance)
      .bind("cnt", static_cast<int64_t>(out.marked.size()))
      .bind("now", c.now_text)
      .bind("now2", c.now_text)
      .exec();
  return out;
}

void reset_request_attempts(op_context& c, const reset_requests& op, reset_requests::result_type& out) {
  // Keyed by request id only (see apply_backfill on the sync_state predicate). The counter is
  // incremented in SQL, never written back from a read.
  auto count = int64_t{op.count_failure ? 1 : 0};
  // PostgreSQL counts the new states itself (a storm resets 10,000s of rows: one row per state
  // back, not one per attempt); SQLite has no UPDATE inside WITH, so it returns every row.
  const bool pg = c.d.kind == backend::postgresql;
  for (auto& chunk : chunks(op.request_ids, c.d.rows_per_statement(1, in_chunk))) {
    auto update = "UPDATE node_task_attempts SET sync_state = CASE WHEN " + dialect::int_param("c1")
                  + " = 1 AND backfill_failures + 1 >= " + dialect::int_param("max")
                  + " THEN 'failed' ELSE 'partial' END, backfill_failures = backfill_failures + "
                  + dialect::int_param("c2")
                  + ", backfill_request_id = NULL, updated_at = :now WHERE backfill_request_id IN "
                  + query::in_list("i", chunk.size()) + " RETURNING sync_state";
    query q(c.sql,
            pg ? "WITH u AS (" + update + ") SELECT sync_state, COUNT(*) FROM u GROUP BY sync_state" : update + ", 1");
    q.bind("c1", count).bind("max", op.max_failures).bind("c2", count).bind("now", c.now_text).bind_list("i", chunk);
    q.each([&](const soci::row& r) {
      (parse<sync_state>(col_str(r, 0)) == sync_state::failed ? out.attempts_failed : out.attempts_reset) +=
        col_int(r, 1);
    });
  }
}

int64_t sum_in_chunks(op_context& c, const std::string& sql_prefix, const std::vector<std::string>& ids) {
  int64_t total = 0;
  for (auto& chunk : chunks(ids, c.d.rows_per_statement(1, in_chunk))) {
    query q(c.sql, sql_prefix + query::in_list("i", chunk.size()));
    q.bind_list("i", chunk);
    q.each([&](const soci::row& r) { total += col_int(r, 0); });
  }
  return total;
}

int64_t finish_request_jobs(op_context& c, const reset_requests& op) {
  return exec_in_chunks(c,
                        "UPDATE jobs SET status = :s, finished_at = :now, error = :e "
                        "WHERE status IN ('queued', 'running') AND id IN ",
                        op.request_ids, [&](query& q) {
                          q.bind("s", op.job_status).bind("now", c.now_text).bind_nullable("e", op.reason);
                        });
}

reset_requests::result_type execute(op_context& c, const reset_requests& op) {
  reset_requests::result_type out;
  reset_request_attempts(c, op, out);
  out.jobs_finished = finish_request_jobs(c, op);
  return out;
}

namespace {

/// The rows instance `id` owned, released (DESIGN §9). `self`: this instance at its start, which
/// also claims the rows of no instance (written before instances existed) and every pending row
/// whose request has no open job (a live request always has one); another instance's recovery
/// takes only what is provably that instance's.
reset_all_pending::result_type recover_instance(op_context& c, const std::string& id, bool self,
                                                const std::string& why) {
  reset_all_pending::result_type out;
  auto mine = [&](const std::string& col) {
    if (!self)
      return col + " = :me";
    return id.empty() ? col + " IS NULL" : "(" + col + " = :me OR " + col + " IS NULL)";
  };
  auto bind_me = [&](query& q) -> query& {
    if (self && id.empty())
      return q;
    return q.bind("me", id);
  };
  std::string others_open = "EXISTS (SELECT 1 FROM jobs j WHERE j.id = node_task_attempts.backfill_request_id "
                            "AND j.status IN ('queued', 'running') AND ";
  {
    query q(c.sql,
            "UPDATE node_task_attempts SET sync_state = 'partial', backfill_request_id = NULL, updated_at = :now "
            "WHERE sync_state = 'pending_backfill' AND "
              + (self ? "NOT " + others_open + "j.instance_id IS NOT NULL"
                          + (id.empty() ? std::string(")") : " AND j.instance_id <> :me)")
                      : others_open + "j.instance_id = :me)"));
    q.bind("now", c.now_text);
    out.attempts_reset = bind_me(q).exec();
  }
  {
    query q(c.sql, "UPDATE jobs SET status = 'abandoned', finished_at = :now, error = :why "
                   "WHERE type IN ('backfill', 'reconcile', 'check') AND status IN ('queued', 'running') AND "
                     + mine("instance_id"));
    q.bind("now", c.now_text).bind("why", why);
    out.jobs_abandoned = bind_me(q).exec();
  }
  {
    // The epoch goes up: a late write of a session the instance held fails its fence.
    query q(c.sql, "UPDATE nodes SET status = 'offline', session_epoch = session_epoch + 1, disconnected_at = :now, "
                   "disconnect_reason = :r WHERE status = 'online' AND "
                     + mine("owner_instance"));
    q.bind("now", c.now_text).bind("r", std::string(self ? "restart" : "instance_lost"));
    out.nodes_offlined = bind_me(q).exec();
  }
  return out;
}

instance_record read_instance(const soci::row& r) {
  return {col_str(r, 0), col_int(r, 1), col_str(r, 2), col_str(r, 3),
          col_str(r, 4), col_str(r, 5), col_str(r, 6), col_str(r, 7)};
}

std::string instance_columns(const dialect& d) {
  return "id, incarnation, " + d.ts("started_at") + ", " + d.ts("heartbeat_at") + ", version, listen, "
         + d.ts("recovered_at") + ", recovered_by";
}

} // namespace

reset_all_pending::result_type execute(op_context& c, const reset_all_pending&) {
  return recover_instance(c, c.instance, true, "coordinator restarted");
}

instance_start::result_type execute(op_context& c, const instance_start& op) {
  instance_start::result_type out;
  if (!c.instance.empty())
    query(c.sql, "INSERT INTO instances (id, incarnation, started_at, heartbeat_at, version, listen) "
                 "VALUES (:id, 1, :now, :now2, :v, :l) ON CONFLICT (id) DO UPDATE SET "
                 "incarnation = instances.incarnation + 1, started_at = excluded.started_at, "
                 "heartbeat_at = excluded.heartbeat_at, version = excluded.version, listen = excluded.listen, "
                 "recovered_at = NULL, recovered_by = NULL RETURNING incarnation")
      .bind("id", c.instance)
      .bind("now", c.now_text)
      .bind("now2", c.now_text)
      .bind("v", op.version)
      .bind_nullable("l", op.listen)
      .each([&](const soci::row& r) { out.incarnation = col_int(r, 0); });
  out.recovery = execute(c, reset_all_pending{});
  fold_counts(c);
  return out;
}

void fold_counts(op_context& c) {
  if (c.d.kind != backend::postgresql)
    return; // one writer, one shard
  // One folder at a time (two starting instances would lock the same rows in different orders);
  // a live backend's shard is left alone: its transaction may hold the row.
  query(c.sql, "SELECT 1 FROM (SELECT pg_advisory_xact_lock(740075)) AS l").each([](const soci::row&) {});
  query(c.sql, "WITH gone AS (DELETE FROM attempt_counts WHERE shard <> 0 AND shard NOT IN "
               "(SELECT pid FROM pg_stat_activity) RETURNING sync_state, attempts, log_lines) "
               "INSERT INTO attempt_counts AS c (shard, sync_state, attempts, log_lines) "
               "SELECT 0, sync_state, SUM(attempts), SUM(log_lines) FROM gone GROUP BY sync_state ORDER BY sync_state "
               "ON CONFLICT (shard, sync_state) DO UPDATE SET attempts = c.attempts + EXCLUDED.attempts, "
               "log_lines = c.log_lines + EXCLUDED.log_lines")
    .exec();
  query(c.sql, "WITH gone AS (DELETE FROM job_counts WHERE shard <> 0 AND shard NOT IN "
               "(SELECT pid FROM pg_stat_activity) RETURNING status, type, jobs) "
               "INSERT INTO job_counts AS c (shard, status, type, jobs) "
               "SELECT 0, status, type, SUM(jobs) FROM gone GROUP BY status, type ORDER BY status, type "
               "ON CONFLICT (shard, status, type) DO UPDATE SET jobs = c.jobs + EXCLUDED.jobs")
    .exec();
  query(c.sql, "WITH gone AS (DELETE FROM node_counts WHERE shard <> 0 AND shard NOT IN "
               "(SELECT pid FROM pg_stat_activity) RETURNING status, nodes) "
               "INSERT INTO node_counts AS c (shard, status, nodes) "
               "SELECT 0, status, SUM(nodes) FROM gone GROUP BY status ORDER BY status "
               "ON CONFLICT (shard, status) DO UPDATE SET nodes = c.nodes + EXCLUDED.nodes")
    .exec();
}

instance_renew::result_type execute(op_context& c, const instance_renew& op) {
  instance_renew::result_type out;
  out.held = query(c.sql, "UPDATE instances SET heartbeat_at = :now WHERE id = :id AND incarnation = :inc")
               .bind("now", c.now_text)
               .bind("id", c.instance)
               .bind("inc", op.incarnation)
               .exec()
             == 1;
  if (!out.held) {
    // Lost: say to whom. Recover nobody: this instance's view of the fleet is stale.
    query(c.sql, "SELECT " + instance_columns(c.d) + " FROM instances WHERE id = :id")
      .bind("id", c.instance)
      .each([&](const soci::row& r) { out.now = read_instance(r); });
    return out;
  }
  // Expired leases: each taken by compare-and-set on its incarnation, so exactly one live instance
  // recovers it, in the same transaction as the take.
  auto cutoff = format_time(c.now - std::chrono::milliseconds(op.expiry_ms));
  std::vector<instance_record> expired;
  query(c.sql, "SELECT " + instance_columns(c.d)
                 + " FROM instances WHERE id <> :id AND recovered_at IS NULL AND "
                   "heartbeat_at < "
                 + c.d.ts_param("cutoff"))
    .bind("id", c.instance)
    .bind("cutoff", cutoff)
    .each([&](const soci::row& r) { expired.push_back(read_instance(r)); });
  for (auto& e : expired) {
    bool taken = query(c.sql, "UPDATE instances SET incarnation = incarnation + 1, recovered_at = :now, "
                              "recovered_by = :me WHERE id = :id AND incarnation = :inc AND recovered_at IS NULL")
                   .bind("now", c.now_text)
                   .bind("me", c.instance)
                   .bind("id", e.id)
                   .bind("inc", e.incarnation)
                   .exec()
                 == 1;
    if (taken)
      out.recovered.push_back(
        {e.id, recover_instance(c, e.id, false, "instance " + e.id + " lost its lease; recovered by " + c.instance)});
  }
  return out;
}

instance_rejoin::result_type execute(op_context& c, const instance_rejoin&) {
  instance_rejoin::result_type out;
  query(c.sql, "UPDATE instances SET incarnation = incarnation + 1, heartbeat_at = :now, recovered_at = NULL, "
               "recovered_by = NULL WHERE id = :id RETURNING incarnation")
    .bind("now", c.now_text)
    .bind("id", c.instance)
    .each([&](const soci::row& r) { out.incarnation = col_int(r, 0); });
  return out;
}

instance_list::result_type execute(op_context& c, const instance_list&) {
  instance_list::result_type out;
  query(c.sql, "SELECT " + instance_columns(c.d) + " FROM instances ORDER BY id").each([&](const soci::row& r) {
    out.push_back(read_instance(r));
  });
  return out;
}

attempt_requeue::result_type execute(op_context& c, const attempt_requeue& op) {
  attempt_requeue::result_type out;
  out.requeued = query(c.sql, "UPDATE node_task_attempts SET sync_state = 'partial', "
                              "backfill_failures = 0, updated_at = :now "
                              "WHERE id = :id AND sync_state = 'failed'")
                   .bind("now", c.now_text)
                   .bind("id", op.attempt_id)
                   .exec()
                 == 1;
  out.found = out.requeued || execute(c, attempt_get{op.attempt_id}).found;
  audit_outcome(c, op.audit, out.requeued, out.requeued ? R"({"attempts":1})" : R"({"attempts":0})",
                out.found ? "the attempt is not failed" : "no attempt " + op.attempt_id);
  return out;
}

// --- jobs ------------------------------------------------------------------------------------

bool is_final_job_status(const std::string& s) {
  auto status = parse<job_status>(s);
  return status && is_final(*status);
}

job_insert::result_type execute(op_context& c, const job_insert& op) {
  int64_t exists = 0;
  query(c.sql, "SELECT COUNT(*) FROM jobs WHERE id = :id").bind("id", op.job.id).each([&](const soci::row& r) {
    exists = col_int(r, 0);
  });
  if (exists)
    return {false};
  auto& j = op.job;
  query(c.sql, "INSERT INTO jobs (id, type, status, node_id, attempt_count, detail, error, "
               "created_at, started_at, finished_at, instance_id) VALUES (:id, :type, :status, :node, :cnt, "
                 + c.d.json_param("detail") + ", :err, :created, :started, :finished, :inst)")
    .bind("id", j.id)
    .bind("type", j.type)
    .bind("status", j.status)
    .bind_nullable("node", j.node_id)
    .bind("cnt", j.attempt_count)
    .bind_nullable("detail", j.detail)
    .bind_nullable("err", j.error)
    .bind("created", j.created_at.empty() ? c.now_text : j.created_at)
    .bind_nullable("started", j.started_at.empty() && is(j.status, job_status::running) ? c.now_text : j.started_at)
    .bind_nullable("finished", j.finished_at.empty() && is_final_job_status(j.status) ? c.now_text : j.finished_at)
    .bind_nullable("inst", c.instance)
    .exec();
  return {true};
}

job_update::result_type execute(op_context& c, const job_update& op) {
  std::string set = "status = :s";
  if (!op.detail.empty())
    set += ", detail = " + c.d.json_param("detail");
  if (!op.error.empty())
    set += ", error = :err";
  if (is(op.status, job_status::running))
    set += ", started_at = COALESCE(started_at, " + c.d.ts_param("now") + ")";
  else if (is_final_job_status(op.status))
    set += ", finished_at = :now";
  query q(c.sql, "UPDATE jobs SET " + set
                   + " WHERE id = :id AND status NOT IN "
                     "('succeeded', 'failed', 'cancelled', 'expired', 'abandoned')");
  q.bind("s", op.status).bind("id", op.id);
  if (!op.detail.empty())
    q.bind("detail", op.detail);
  if (!op.error.empty())
    q.bind("err", op.error);
  if (is(op.status, job_status::running) || is_final_job_status(op.status))
    q.bind("now", c.now_text);
  return {q.exec() == 1};
}

job_query::result_type execute(op_context& c, const job_query& op) {
  std::string where = " WHERE 1 = 1";
  if (!op.id.empty())
    where += " AND id = :id";
  if (!op.statuses.empty())
    where += " AND status IN " + query::in_list("s", op.statuses.size());
  if (!op.types.empty())
    where += " AND type IN " + query::in_list("t", op.types.size());
  if (!op.node_id.empty())
    where += " AND node_id = :node";
  if (!op.before_created_at.empty())
    where +=
      " AND (created_at < " + c.d.ts_param("b1") + " OR (created_at = " + c.d.ts_param("b2") + " AND id < :bid))";
  query q(c.sql, "SELECT " + job_columns(c.d) + " FROM jobs" + where + " ORDER BY created_at DESC, id DESC LIMIT :lim");
  q.bind_list("s", op.statuses).bind_list("t", op.types);
  if (!op.id.empty())
    q.bind("id", op.id);
  if (!op.node_id.empty())
    q.bind("node", op.node_id);
  if (!op.before_created_at.empty())
    q.bind("b1", op.before_created_at).bind("b2", op.before_created_at).bind("bid", op.before_id);
  q.bind("lim", op.limit);
  job_query::result_type out;
  q.each([&](const soci::row& r) { out.push_back(read_job(r)); });
  return out;
}

count_summary::result_type execute(op_context& c, const count_summary& op) {
  count_summary::result_type out;
  if (!op.scan) {
    // Shards summed; a state whose rows all left sums to 0 and is not listed (as in a scan).
    query(c.sql, "SELECT status, SUM(nodes) FROM node_counts GROUP BY status HAVING SUM(nodes) <> 0 ORDER BY status")
      .each([&](const soci::row& r) { out.nodes_by_status.emplace_back(col_str(r, 0), col_int(r, 1)); });
    query(c.sql, "SELECT sync_state, SUM(attempts) FROM attempt_counts GROUP BY sync_state "
                 "HAVING SUM(attempts) <> 0 ORDER BY sync_state")
      .each([&](const soci::row& r) { out.attempts_by_sync_state.emplace_back(col_str(r, 0), col_int(r, 1)); });
    query(c.sql, "SELECT status, type, SUM(jobs) FROM job_counts GROUP BY status, type HAVING SUM(jobs) <> 0 "
                 "ORDER BY status, type")
      .each([&](const soci::row& r) {
        out.jobs_by_status_type.emplace_back(col_str(r, 0) + "/" + col_str(r, 1), col_int(r, 2));
      });
    query(c.sql, "SELECT COALESCE(SUM(log_lines), 0) FROM attempt_counts").each([&](const soci::row& r) {
      out.log_lines = col_int(r, 0);
    });
    return out;
  }
  query(c.sql, "SELECT status, COUNT(*) FROM nodes GROUP BY status ORDER BY status").each([&](const soci::row& r) {
    out.nodes_by_status.emplace_back(col_str(r, 0), col_int(r, 1));
  });
  query(c.sql, "SELECT sync_state, COUNT(*) FROM node_task_attempts GROUP BY sync_state "
               "ORDER BY sync_state")
    .each([&](const soci::row& r) { out.attempts_by_sync_state.emplace_back(col_str(r, 0), col_int(r, 1)); });
  query(c.sql, "SELECT status, type, COUNT(*) FROM jobs GROUP BY status, type ORDER BY status, type")
    .each([&](const soci::row& r) {
      out.jobs_by_status_type.emplace_back(col_str(r, 0) + "/" + col_str(r, 1), col_int(r, 2));
    });
  query(c.sql, "SELECT COALESCE(SUM(log_count), 0) FROM node_task_attempts").each([&](const soci::row& r) {
    out.log_lines = col_int(r, 0);
  });
  return out;
}

const char* to_string(write_status s) {
  switch (s) {
    case write_status::ok: return "ok";
    case write_status::forbidden: return "forbidden";
    case write_status::unknown_attempt: return "unknown_attempt";
    case write_status::superseded: return "superseded";
  }
  return "?";
}

} // namespace nodecoord::storage
