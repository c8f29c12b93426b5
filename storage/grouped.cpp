#include "storage/grouped.hpp"

#include "storage/dialect.hpp"
#include "storage/operations_sql.hpp"
#include "storage/query.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

namespace nodecoord::storage {

namespace {

constexpr size_t ids_per_statement = statement_limits::ids;
constexpr size_t rows_per_statement = statement_limits::rows;
constexpr size_t logs_per_statement = statement_limits::log_lines;
constexpr size_t ops_per_statement = statement_limits::ops;

// --- attempts: attempt_upsert, logs_insert and apply_backfill -----------------------------------

/// An attempt's fields as a node reports them; empty: not given (an upsert keeps the stored value).
struct attempt_fields {
  std::string task_id, state, started_at, finished_at, meta;
};

struct attempt_row {
  bool exists = false;
  bool is_new = false; // inserted by this run
  sync_row sync;       // what the rules of DESIGN §3 read and write (storage/sync_rules.hpp)
  int64_t max_seq = -1;
  int64_t pruned_through = -1; // lines at or below it were stored and pruned: not stored again
  // What the run's upserts set: task and state from the last one, times and meta from the last
  // one that had them (each upsert COALESCEs over the stored value).
  bool upserted = false;
  attempt_fields run;
  // As stored, so an attempt frame sent again unchanged (a node re-sends its attempts when it
  // answers a backfill) writes nothing.
  attempt_fields stored;
  // As the run's operations so far left them (pass 2 walks them in order): whether an upsert
  // changes the attempt depends on what came before it.
  attempt_fields seen;
  bool changed = false;   // sync state, request, counters or failures differ from the stored row
  bool completed = false; // an apply completed it: last_full_sync_at = now
};

using attempt_rows = std::map<std::string, attempt_row>;

std::string attempt_state_columns(const dialect& d) {
  return "SELECT id, node_id, sync_state, backfill_request_id, log_count, log_max_seq, backfill_failures, "
         "task_id, state, "
         + d.ts("started_at") + ", " + d.ts("finished_at") + ", " + d.json_text("meta")
         + ", logs_pruned_through FROM node_task_attempts WHERE ";
}

/// Equal JSON values (PostgreSQL's JSONB prints an object in its own key order and spacing).
bool same_json(const std::string& a, const std::string& b) {
  if (a == b)
    return true;
  if (a.empty() || b.empty())
    return false;
  auto ja = nlohmann::json::parse(a, nullptr, false);
  auto jb = nlohmann::json::parse(b, nullptr, false);
  return !ja.is_discarded() && !jb.is_discarded() && ja == jb;
}

/// True if `given` changes `f` (a field it leaves out keeps its value).
bool changes(const attempt_fields& given, const attempt_fields& f) {
  return given.task_id != f.task_id || given.state != f.state
         || (!given.started_at.empty() && given.started_at != f.started_at)
         || (!given.finished_at.empty() && given.finished_at != f.finished_at)
         || (!given.meta.empty() && !same_json(given.meta, f.meta));
}

/// An upsert's fields over `f`, as its SQL COALESCEs them over the row; true if that changed `f`.
bool apply(attempt_fields& f, const attempt_upsert& u) {
  bool changed = changes({u.task_id, u.state, u.started_at, u.finished_at, u.meta}, f);
  f.task_id = u.task_id;
  f.state = u.state;
  if (!u.started_at.empty())
    f.started_at = u.started_at;
  if (!u.finished_at.empty())
    f.finished_at = u.finished_at;
  if (!u.meta.empty())
    f.meta = u.meta;
  return changed;
}

/// Any change on the node reopens a complete or failed attempt (sync_rules::reopen).
bool reopen(attempt_row& a) {
  if (!sync_rules::reopen(a.sync))
    return false;
  a.changed = true;
  return true;
}

void read_row(const soci::row& r, attempt_row& a) {
  a.exists = true;
  a.sync.owner = col_str(r, 1);
  auto state = parse<sync_state>(col_str(r, 2));
  if (!state) // the schema's CHECK allows only the four
    throw std::runtime_error("attempt " + col_str(r, 0) + " has sync_state '" + col_str(r, 2) + "'");
  a.sync.state = *state;
  a.sync.request_id = col_str(r, 3);
  a.sync.log_count = col_int(r, 4);
  a.max_seq = col_int(r, 5, -1);
  a.sync.failures = col_int(r, 6);
  a.stored = {col_str(r, 7), col_str(r, 8), col_str(r, 9), col_str(r, 10), col_str(r, 11)};
  a.seen = a.stored;
  a.pruned_through = col_int(r, 12, -1);
}

/// Reads the attempts named by data operations (keys of `rows`) and every row pending under
/// `request_ids` (added to `rows`).
void read_attempts(op_context& c, attempt_rows& rows, const std::vector<std::string>& request_ids) {
  std::vector<std::string> ids;
  for (auto& [id, _] : rows)
    ids.push_back(id);
  // Locked to the end of the transaction, in id order (DESIGN §9): what is computed from these
  // rows is written back before anyone else (another instance, an operator) can change them.
  for (auto& chunk : chunks(ids, c.d.rows_per_statement(1, ids_per_statement))) {
    query q(c.sql, attempt_state_columns(c.d) + "id IN " + query::in_list("i", chunk.size()) + " ORDER BY id"
                     + c.d.for_update());
    q.bind_list("i", chunk).each([&](const soci::row& r) {
      auto i = rows.find(col_str(r, 0));
      if (i == rows.end())
        throw std::runtime_error("attempt id read back in another spelling: " + col_str(r, 0));
      read_row(r, i->second);
    });
  }
  for (auto& chunk : chunks(request_ids, c.d.rows_per_statement(1, ids_per_statement))) {
    query q(c.sql, attempt_state_columns(c.d) + "backfill_request_id IN " + query::in_list("r", chunk.size())
                     + " ORDER BY id" + c.d.for_update());
    q.bind_list("r", chunk).each([&](const soci::row& r) { read_row(r, rows[col_str(r, 0)]); });
  }
}

void insert_attempts(op_context& c, const std::vector<const std::string*>& ids, const attempt_rows& rows) {
  in_slices(ids.size(), c.d.rows_per_statement(10, rows_per_statement), [&](size_t from, size_t to) {
    std::string values;
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      values += (i == from ? "(:i" : ", (:i") + n + ", :o" + n + ", :k" + n + ", :s" + n + ", :y" + n + ", :b" + n
                + ", :f" + n + ", " + c.d.json_param("m" + n) + ", :c" + n + ", :u" + n + ")";
    }
    query q(c.sql, "INSERT INTO node_task_attempts (id, node_id, task_id, state, sync_state, started_at, "
                   "finished_at, meta, created_at, updated_at) VALUES "
                     + values);
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      auto& a = rows.at(*ids[i]);
      q.bind("i" + n, *ids[i])
        .bind("o" + n, a.sync.owner)
        .bind("k" + n, a.run.task_id)
        .bind("s" + n, a.run.state)
        .bind("y" + n, std::string(to_string(a.sync.state)))
        .bind_nullable("b" + n, a.run.started_at)
        .bind_nullable("f" + n, a.run.finished_at)
        .bind_nullable("m" + n, a.run.meta)
        .bind("c" + n, c.now_text)
        .bind("u" + n, c.now_text);
    }
    q.exec();
  });
}

void update_upserted(op_context& c, const std::vector<const std::string*>& ids, const attempt_rows& rows) {
  in_slices(ids.size(), c.d.rows_per_statement(6, rows_per_statement), [&](size_t from, size_t to) {
    std::string values;
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      values += (i == from ? "(" : ", (") + c.d.uuid_param("i" + n) + ", :k" + n + ", :s" + n + ", "
                + c.d.ts_param("b" + n) + ", " + c.d.ts_param("f" + n) + ", " + c.d.json_param("m" + n) + ")";
    }
    // v's columns are named apart from the table's: an unqualified name must not be ambiguous.
    // Times and meta the node leaves out keep their stored values.
    query q(c.sql, "UPDATE node_task_attempts SET task_id = v.v_task, state = v.v_state, "
                   "started_at = COALESCE(v.v_started, started_at), finished_at = COALESCE(v.v_finished, "
                   "finished_at), meta = COALESCE(v.v_meta, meta), updated_at = :now FROM "
                     + c.d.values_table("v", "v_id, v_task, v_state, v_started, v_finished, v_meta", values)
                     + " WHERE node_task_attempts.id = v.v_id");
    q.bind("now", c.now_text);
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      auto& a = rows.at(*ids[i]);
      q.bind("i" + n, *ids[i])
        .bind("k" + n, a.run.task_id)
        .bind("s" + n, a.run.state)
        .bind_nullable("b" + n, a.run.started_at)
        .bind_nullable("f" + n, a.run.finished_at)
        .bind_nullable("m" + n, a.run.meta);
    }
    q.exec();
  });
}

/// Writes the sync state, request, counters and failures the run computed (absolute values: the
/// rows were read in this transaction and nobody else writes them).
void update_states(op_context& c, const std::vector<const std::string*>& ids, const attempt_rows& rows) {
  in_slices(ids.size(), c.d.rows_per_statement(7, rows_per_statement), [&](size_t from, size_t to) {
    std::string values;
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      values += (i == from ? "(" : ", (") + c.d.uuid_param("i" + n) + ", :s" + n + ", " + c.d.uuid_param("r" + n) + ", "
                + dialect::int_param("c" + n) + ", " + dialect::int_param("m" + n) + ", " + dialect::int_param("f" + n)
                + ", " + dialect::int_param("d" + n) + ")";
    }
    query q(c.sql, "UPDATE node_task_attempts SET sync_state = v.v_sync, backfill_request_id = v.v_request, "
                   "log_count = v.v_count, log_max_seq = v.v_max, backfill_failures = v.v_failures, "
                   "last_full_sync_at = CASE WHEN v.v_done = 1 THEN "
                     + c.d.ts_param("now") + " ELSE last_full_sync_at END, updated_at = :now2 FROM "
                     + c.d.values_table("v", "v_id, v_sync, v_request, v_count, v_max, v_failures, v_done", values)
                     + " WHERE node_task_attempts.id = v.v_id");
    q.bind("now", c.now_text).bind("now2", c.now_text);
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      auto& a = rows.at(*ids[i]);
      q.bind("i" + n, *ids[i])
        .bind("s" + n, std::string(to_string(a.sync.state)))
        .bind_nullable("r" + n, a.sync.request_id)
        .bind("c" + n, a.sync.log_count)
        .bind("m" + n, a.max_seq)
        .bind("f" + n, a.sync.failures)
        .bind("d" + n, int64_t{a.completed ? 1 : 0});
    }
    q.exec();
  });
}

struct job_finish {
  std::string request_id, node_id, status, detail;
  apply_backfill::result_type* result;
};

/// Finishes the jobs of responses that had something pending; clears job_status of a job that
/// was not running any more.
void finish_jobs(op_context& c, std::vector<job_finish>& jobs) {
  in_slices(jobs.size(), c.d.rows_per_statement(6, ops_per_statement), [&](size_t from, size_t to) {
    std::string status_case, detail_case, match;
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      status_case += " WHEN :a" + n + " THEN :s" + n;
      detail_case += " WHEN :b" + n + " THEN " + c.d.json_param("d" + n);
      match += (i == from ? "(id = :i" : " OR (id = :i") + n + " AND node_id = :n" + n + ")";
    }
    query q(c.sql, "UPDATE jobs SET status = CASE id" + status_case + " END, finished_at = :now, detail = CASE id"
                     + detail_case + " END WHERE status = 'running' AND (" + match + ") RETURNING id");
    q.bind("now", c.now_text);
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      auto& j = jobs[i];
      q.bind("a" + n, j.request_id)
        .bind("s" + n, j.status)
        .bind("b" + n, j.request_id)
        .bind("d" + n, j.detail)
        .bind("i" + n, j.request_id)
        .bind("n" + n, j.node_id);
      j.result->job_status = j.status; // cleared below unless the job was still running
    }
    std::set<std::string> finished;
    q.each([&](const soci::row& r) { finished.insert(col_str(r, 0)); });
    for (size_t i = from; i < to; ++i)
      if (!finished.count(jobs[i].request_id))
        jobs[i].result->job_status.clear();
  });
}

} // namespace

std::set<std::pair<std::string, int64_t>> insert_logs(op_context& c, const std::vector<log_candidate>& lines) {
  std::set<std::pair<std::string, int64_t>> inserted;
  in_slices(lines.size(), c.d.rows_per_statement(5, logs_per_statement), [&](size_t from, size_t to) {
    std::string text = "INSERT INTO attempt_logs (attempt_id, seq, ts, stream, line) VALUES ";
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      text += (i == from ? "(:a" : ", (:a") + n + ", :s" + n + ", :t" + n + ", :st" + n + ", :l" + n + ")";
    }
    query q(c.sql, text + " ON CONFLICT (attempt_id, seq) DO NOTHING RETURNING attempt_id, seq");
    for (size_t i = from; i < to; ++i) {
      auto n = std::to_string(i - from);
      auto& e = *lines[i].entry;
      q.bind("a" + n, *lines[i].attempt_id)
        .bind("s" + n, e.seq)
        .bind("t" + n, e.ts)
        .bind("st" + n, e.stream)
        .bind("l" + n, e.line);
    }
    q.each([&](const soci::row& r) { inserted.emplace(col_str(r, 0), col_int(r, 1)); });
  });
  return inserted;
}

namespace {

template <class Op>
const Op* op_of(group_member* m) {
  auto* o = dynamic_cast<op_member<Op>*>(m);
  return o ? &o->op : nullptr;
}

/// The fence (DESIGN §9): which operations were sent by a session that is not the node's current
/// one. The node rows are share-locked to the end of the transaction, so a session begun by
/// another instance waits for this transaction: the epochs read here hold until it commits.
std::vector<bool> superseded_members(op_context& c, std::span<group_member* const> ms) {
  std::vector<std::pair<std::string, int64_t>> claims(ms.size(), {std::string(), unfenced});
  std::set<std::string> nodes;
  for (size_t k = 0; k < ms.size(); ++k) {
    if (auto* u = op_of<attempt_upsert>(ms[k]))
      claims[k] = {u->node_id, u->epoch};
    else if (auto* l = op_of<logs_insert>(ms[k]))
      claims[k] = {l->node_id, l->epoch};
    else if (auto* a = op_of<apply_backfill>(ms[k]))
      claims[k] = {a->node_id, a->epoch};
    if (claims[k].second != unfenced)
      nodes.insert(claims[k].first);
  }
  std::vector<bool> out(ms.size(), false);
  if (nodes.empty())
    return out;
  std::vector<std::string> ids(nodes.begin(), nodes.end());
  std::map<std::string, int64_t> epochs;
  for (auto& chunk : chunks(ids, c.d.rows_per_statement(1, ids_per_statement)))
    query(c.sql, "SELECT id, session_epoch FROM nodes WHERE id IN " + query::in_list("i", chunk.size()) + " ORDER BY id"
                   + c.d.for_share())
      .bind_list("i", chunk)
      .each([&](const soci::row& r) { epochs[col_str(r, 0)] = col_int(r, 1); });
  for (size_t k = 0; k < ms.size(); ++k) {
    if (claims[k].second == unfenced)
      continue;
    auto e = epochs.find(claims[k].first);
    out[k] = e == epochs.end() || e->second != claims[k].second;
  }
  return out;
}

} // namespace

void run_attempts(op_context& c, std::span<group_member* const> ms) {
  auto superseded = superseded_members(c, ms);
  attempt_rows rows;
  std::vector<std::string> request_ids;
  std::set<std::string> requests_seen;
  for (size_t k = 0; k < ms.size(); ++k) {
    auto* m = ms[k];
    if (superseded[k]) {
      // Nothing of it is read or written; the session is told (close{superseded}).
      if (auto* u = dynamic_cast<op_member<attempt_upsert>*>(m))
        u->result = {write_status::superseded, false, false};
      else if (auto* l = dynamic_cast<op_member<logs_insert>*>(m))
        l->result = {write_status::superseded, 0, false};
      else {
        auto& a = member_as<apply_backfill>(m);
        a.result = {};
        a.result.superseded = true;
        for (auto& item : a.op.results)
          a.result.attempts.push_back({item.attempt_id, backfill_outcome::stale});
        a.result.stale = static_cast<int64_t>(a.op.results.size());
      }
      continue;
    }
    if (auto* u = dynamic_cast<op_member<attempt_upsert>*>(m))
      rows[u->op.attempt_id];
    else if (auto* l = dynamic_cast<op_member<logs_insert>*>(m))
      rows[l->op.attempt_id];
    else if (auto& a = member_as<apply_backfill>(m); requests_seen.insert(a.op.request_id).second)
      request_ids.push_back(a.op.request_id);
  }
  read_attempts(c, rows, request_ids);
  // Pass 1, in order: ownership, creation, and which frame sends each line first (none of this
  // depends on backfill results).
  std::vector<const std::string*> created;
  std::vector<log_candidate> lines;
  std::set<std::pair<std::string, int64_t>> claimed;
  for (size_t k = 0; k < ms.size(); ++k) {
    if (superseded[k])
      continue;
    if (auto* u = dynamic_cast<op_member<attempt_upsert>*>(ms[k])) {
      auto& op = u->op;
      auto& a = rows.at(op.attempt_id);
      u->result = {};
      if (a.exists && a.sync.owner != op.node_id) {
        u->result.status = write_status::forbidden; // an attempt of another node is not touched
        continue;
      }
      if (!a.exists) {
        a.exists = a.is_new = true;
        a.sync = sync_rules::created(op.node_id);
        u->result.created = true;
        created.push_back(&rows.find(op.attempt_id)->first);
      }
      a.upserted = true;
      apply(a.run, op);
      continue;
    }
    auto* l = dynamic_cast<op_member<logs_insert>*>(ms[k]);
    if (!l)
      continue;
    auto& a = rows.at(l->op.attempt_id);
    l->result = {};
    if (!a.exists) {
      l->result.status = write_status::unknown_attempt;
      continue;
    }
    if (a.sync.owner != l->op.node_id) {
      l->result.status = write_status::forbidden;
      continue;
    }
    auto* id = &rows.find(l->op.attempt_id)->first;
    for (auto& e : l->op.entries)
      if (e.seq > a.pruned_through && claimed.emplace(*id, e.seq).second)
        lines.push_back({id, &e, k});
  }
  insert_attempts(c, created, rows); // before their lines (foreign key)
  auto inserted = insert_logs(c, lines);
  std::vector<int64_t> new_lines(ms.size(), 0);
  for (auto& line : lines)
    if (inserted.count({*line.attempt_id, line.entry->seq}))
      ++new_lines[line.op];
  // Pass 2, in order: counters, reopening, and the backfill responses, each seeing exactly what
  // the operations before it left.
  std::map<std::string, std::set<std::string>> pending; // request id -> attempts pending under it
  for (auto& [id, a] : rows)
    if (!a.sync.request_id.empty())
      pending[a.sync.request_id].insert(id);
  std::vector<job_finish> jobs;
  for (size_t k = 0; k < ms.size(); ++k) {
    if (superseded[k])
      continue;
    if (auto* u = dynamic_cast<op_member<attempt_upsert>*>(ms[k])) {
      if (u->result.status != write_status::ok)
        continue;
      auto& a = rows.at(u->op.attempt_id);
      if (apply(a.seen, u->op))
        u->result.reopened = reopen(a);
      continue;
    }
    if (auto* l = dynamic_cast<op_member<logs_insert>*>(ms[k])) {
      if (new_lines[k] == 0)
        continue;
      auto& a = rows.at(l->op.attempt_id);
      // A frame's new lines reopen a complete (or failed) attempt and raise the high-water mark
      // to the frame's largest seq (a line that conflicted was stored, so its seq is below it).
      l->result.inserted = new_lines[k];
      l->result.reopened = reopen(a);
      a.sync.log_count += new_lines[k];
      for (auto& e : l->op.entries)
        a.max_seq = std::max(a.max_seq, e.seq);
      a.changed = true;
      continue;
    }
    auto* ap = dynamic_cast<op_member<apply_backfill>*>(ms[k]);
    if (!ap)
      continue;
    auto& op = ap->op;
    auto& out = ap->result;
    out = {};
    // Rule 1: only rows still pending under this request, of the sender (the request id is unique
    // to one session). With an epoch, the fence above has already refused a superseded session.
    std::set<std::string> mine;
    for (auto& id : pending[op.request_id])
      if (sync_rules::pending_under(rows.at(id).sync, op.request_id, op.node_id))
        mine.insert(id);
    std::map<std::string, node_answer> answers;
    for (auto& item : op.results) {
      if (!mine.count(item.attempt_id)) {
        out.attempts.push_back({item.attempt_id, backfill_outcome::stale});
        ++out.stale;
        continue;
      }
      answers.emplace(item.attempt_id, node_answer{item.ok, item.log_count}); // a duplicate is ignored
    }
    for (auto& id : mine) {
      auto& a = rows.at(id);
      auto i = answers.find(id);
      // Rules 2 and 3; an attempt the response leaves out counts as a failure.
      auto outcome =
        sync_rules::answer(a.sync, i == answers.end() ? std::nullopt : std::optional(i->second), op.max_failures);
      switch (outcome) {
        case backfill_outcome::completed:
          ++out.completed;
          a.completed = true;
          break;
        case backfill_outcome::failed: ++out.failed; break;
        case backfill_outcome::reset: ++out.reset; break;
        case backfill_outcome::stale: break; // not reached: `mine` holds pending rows only
      }
      a.changed = true;
      pending[op.request_id].erase(id);
      out.attempts.push_back({id, outcome});
    }
    // Nothing of the sender was pending under the request: it is not live for this sender
    // (foreign, duplicate, late or stale-epoch response), so its job is not this one's to finish.
    if (mine.empty())
      continue;
    nlohmann::json detail{
      {"completed", out.completed}, {"reset", out.reset}, {"failed", out.failed}, {"stale", out.stale}};
    jobs.push_back({op.request_id, op.node_id,
                    (out.reset + out.failed == 0 && out.completed > 0) ? "succeeded" : "failed", detail.dump(), &out});
  }
  std::vector<const std::string*> upserted, changed;
  for (auto& [id, a] : rows) {
    if (a.upserted && !a.is_new && changes(a.run, a.stored))
      upserted.push_back(&id);
    if (a.changed)
      changed.push_back(&id);
  }
  update_upserted(c, upserted, rows);
  update_states(c, changed, rows);
  finish_jobs(c, jobs);
}

attempt_upsert::result_type execute(op_context& c, const attempt_upsert& op) {
  return execute_alone(c, op, run_attempts);
}

logs_insert::result_type execute(op_context& c, const logs_insert& op) { return execute_alone(c, op, run_attempts); }

apply_backfill::result_type execute(op_context& c, const apply_backfill& op) {
  return execute_alone(c, op, run_attempts);
}

// --- mark_pending by limit -----------------------------------------------------------------------

namespace {

using mark_member = op_member<mark_pending>;

/// Marks for distinct nodes: one epoch read, one UPDATE … RETURNING, one multi-row job INSERT.
void mark_distinct_nodes(op_context& c, std::span<mark_member* const> ops) {
  std::vector<std::string> node_ids;
  for (auto* m : ops) {
    m->result = {};
    node_ids.push_back(m->op.node_id);
  }
  // Read without a lock (a probe that finds nothing to mark stays a read-only transaction); the
  // UPDATE below checks the epochs again under a share lock (DESIGN §9).
  std::map<std::string, int64_t> epochs;
  query(c.sql, "SELECT id, session_epoch FROM nodes WHERE id IN " + query::in_list("i", node_ids.size()))
    .bind_list("i", node_ids)
    .each([&](const soci::row& r) { epochs[col_str(r, 0)] = col_int(r, 1); });
  // Only while `epoch` is the node's session (a request of an ended session marks nothing).
  std::map<std::string, mark_member*> live;
  for (auto* m : ops) {
    auto e = epochs.find(m->op.node_id);
    if (e != epochs.end() && e->second == m->op.epoch && m->op.limit > 0)
      live[m->op.node_id] = m;
  }
  if (live.empty())
    return;
  // Rule 4: only `partial` attempts of the node, its oldest: those with as many failures as its
  // oldest one, `request_size` of them (rule 3: suspects go in ever smaller groups). Selected
  // first, then marked by primary key: as one statement (UPDATE … WHERE id IN (window subquery))
  // PostgreSQL, with statistics that still say nothing is partial, re-ran the subquery for every
  // partial row (quadratic: 0.7 s a statement at 2,800 partial rows). Nothing changes in between:
  // the rows were read in this transaction, and the storage actor is their only writer.
  std::string limit_case, nodes;
  for (size_t n = 0; n < live.size(); ++n) {
    auto k = std::to_string(n);
    limit_case += " WHEN :q" + k + " THEN " + dialect::int_param("l" + k);
    nodes += (nodes.empty() ? ":a" : ", :a") + k;
  }
  query select(c.sql, "SELECT x.id, x.node_id, x.rn, x.backfill_failures FROM (SELECT id, node_id, "
                      "backfill_failures, ROW_NUMBER() OVER (PARTITION BY node_id, backfill_failures ORDER BY "
                      "created_at, id) AS rn, FIRST_VALUE(backfill_failures) OVER (PARTITION BY node_id ORDER BY "
                      "created_at, id) AS lead_failures FROM node_task_attempts WHERE node_id IN ("
                        + nodes
                        + ") AND sync_state = 'partial') x WHERE x.backfill_failures = x.lead_failures AND "
                          "x.rn <= CASE x.node_id"
                        + limit_case + " END");
  size_t n = 0;
  for (auto& [node, m] : live) {
    auto k = std::to_string(n++);
    select.bind("q" + k, node).bind("l" + k, m->op.limit).bind("a" + k, node);
  }
  std::vector<std::string> chosen;
  select.each([&](const soci::row& r) {
    auto& op = live.at(col_str(r, 1))->op;
    if (col_int(r, 2) <= sync_rules::request_size(op.limit, col_int(r, 3), op.max_failures))
      chosen.push_back(col_str(r, 0));
  });
  if (chosen.empty())
    return; // nothing to mark: no job is left behind
  std::string request_case, epoch_case;
  for (size_t i = 0; i < live.size(); ++i) {
    auto k = std::to_string(i);
    request_case += " WHEN :n" + k + " THEN " + c.d.uuid_param("r" + k);
    epoch_case += " WHEN :m" + k + " THEN " + dialect::int_param("e" + k);
  }
  struct marked_row {
    std::string created_at, id;
    int64_t count, max_seq, pruned_through;
    bool operator<(const marked_row& o) const { return std::tie(created_at, id) < std::tie(o.created_at, o.id); }
  };
  std::map<std::string, std::vector<marked_row>> by_node;
  for (auto& chunk : chunks(chosen, c.d.rows_per_statement(1, ids_per_statement))) {
    query q(c.sql, "UPDATE node_task_attempts SET sync_state = 'pending_backfill', backfill_request_id = "
                   "CASE node_id"
                     + request_case
                     + " END, sync_requested_at = :now, updated_at = :now2 "
                       "WHERE sync_state = 'partial' AND EXISTS (SELECT 1 FROM nodes WHERE nodes.id = "
                       "node_task_attempts.node_id AND nodes.session_epoch = CASE nodes.id"
                     + epoch_case + " END" + c.d.for_share() + ") AND id IN " + query::in_list("i", chunk.size())
                     + " RETURNING id, node_id, log_count, log_max_seq, " + c.d.ts("created_at")
                     + ", logs_pruned_through");
    q.bind("now", c.now_text).bind("now2", c.now_text).bind_list("i", chunk);
    size_t k = 0;
    for (auto& [node, m] : live) {
      auto s = std::to_string(k++);
      q.bind("n" + s, node).bind("r" + s, m->op.request_id).bind("m" + s, node).bind("e" + s, m->op.epoch);
    }
    q.each([&](const soci::row& r) {
      by_node[col_str(r, 1)].push_back(
        {col_str(r, 4), col_str(r, 0), col_int(r, 2), col_int(r, 3, -1), col_int(r, 5, -1)});
    });
  }
  std::vector<mark_member*> with_job;
  for (auto& [node, m] : live) {
    auto i = by_node.find(node);
    if (i == by_node.end())
      continue;                                    // nothing to mark: no job is left behind
    std::sort(i->second.begin(), i->second.end()); // oldest first
    for (auto& row : i->second)
      m->result.marked.push_back(
        {row.id, contiguous_high_water(c, row.id, row.count, row.max_seq, row.pruned_through)});
    with_job.push_back(m);
  }
  if (with_job.empty())
    return;
  std::string values;
  for (size_t i = 0; i < with_job.size(); ++i) {
    auto k = std::to_string(i);
    values += (i ? ", (:j" : "(:j") + k + ", 'backfill', 'running', :o" + k + ", :c" + k + ", :t" + k + ", :s" + k
              + ", :g" + k + ")";
  }
  query jobs(c.sql, "INSERT INTO jobs (id, type, status, node_id, attempt_count, created_at, started_at, instance_id) "
                    "VALUES "
                      + values);
  for (size_t i = 0; i < with_job.size(); ++i) {
    auto k = std::to_string(i);
    auto* m = with_job[i];
    jobs.bind("j" + k, m->op.request_id)
      .bind("o" + k, m->op.node_id)
      .bind("c" + k, static_cast<int64_t>(m->result.marked.size()))
      .bind("t" + k, c.now_text)
      .bind("s" + k, c.now_text)
      .bind_nullable("g" + k, c.instance);
  }
  jobs.exec();
}

} // namespace

void run_marks(op_context& c, std::span<group_member* const> ms) {
  std::vector<mark_member*> ops;
  for (auto* m : ms)
    ops.push_back(&member_as<mark_pending>(m));
  // A node marked twice in a row takes its next oldest the second time: a new statement.
  distinct_runs(
    ops.size(), c.d.rows_per_statement(5, ops_per_statement), [&](size_t i) { return ops[i]->op.node_id; },
    [&](size_t from, size_t to) {
      mark_distinct_nodes(c, std::span<mark_member* const>(ops.data() + from, to - from));
    });
}

mark_pending::result_type execute(op_context& c, const mark_pending& op) {
  if (op.attempt_ids.empty())
    return op.limit > 0 ? execute_alone(c, op, run_marks) : mark_pending::result_type{};
  return mark_pending_by_ids(c, op);
}

} // namespace nodecoord::storage
