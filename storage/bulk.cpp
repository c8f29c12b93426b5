#include "storage/bulk.hpp"

#include "storage/audit.hpp"

#include "common/ids.hpp"
#include "storage/dialect.hpp"
#include "storage/operations_sql.hpp"
#include "storage/query.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <stdexcept>

namespace nodecoord::storage {

std::string bulk_filter::canonical() const {
  nlohmann::json j = nlohmann::json::object(); // std::map underneath: keys sorted
  auto put = [&](const char* key, const std::string& v) {
    if (!v.empty())
      j[key] = v;
  };
  put("node", node);
  put("node_status", node_status);
  put("sync_state", sync_state);
  put("state", state);
  put("task_prefix", task_prefix);
  put("name_prefix", name_prefix);
  put("older_than", older_than);
  put("check", check);
  if (all)
    j["all"] = true;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_bulk_action(const std::string& name) {
  return std::find(std::begin(bulk_actions), std::end(bulk_actions), name) != std::end(bulk_actions);
}

bool acts_on_attempts(const std::string& action) { return action.rfind("attempts.", 0) == 0; }

namespace {

/// The matched set's FROM and WHERE, with its parameters.
struct selection {
  std::string from;  // " FROM ... WHERE ..."
  std::string id;    // the id column ("a.id" or "n.id")
  std::string label; // the sample's label and status columns
  std::string status;
  std::string lock;                                        // row locks for an apply
  std::vector<std::pair<std::string, std::string>> params; // name, value

  void bind(query& q) const {
    for (auto& [name, value] : params)
      q.bind(name, value);
  }
};

selection select_for(op_context& c, const bulk_action& op) {
  auto& f = op.filter;
  if (!is_bulk_action(op.action))
    throw std::invalid_argument("bulk: unknown action '" + op.action + "'");
  if (f.empty() && !f.all)
    throw std::invalid_argument("bulk: a filter is required (or all)");
  if (f.check.empty() != (op.action != "nodes.check"))
    throw std::invalid_argument("bulk: nodes.check, and only it, names a check");
  selection s;
  std::string where;
  auto add = [&](const std::string& cond, const std::string& name, const std::string& value) {
    where += " AND " + cond;
    s.params.emplace_back(name, value);
  };
  bool attempts = acts_on_attempts(op.action);
  if (attempts) {
    if (!f.name_prefix.empty())
      throw std::invalid_argument("bulk: name_prefix is a filter of node actions");
    s.from = " FROM node_task_attempts a JOIN nodes n ON n.id = a.node_id WHERE ";
    s.id = "a.id";
    s.label = "a.task_id";
    s.status = "a.sync_state";
    s.lock = c.d.kind == backend::sqlite ? "" : " FOR UPDATE OF a";
    if (op.action == "attempts.prune_logs" && f.older_than.empty())
      throw std::invalid_argument("bulk: attempts.prune_logs needs older_than (the bound the lines are pruned by)");
    // prune_logs: complete attempts holding lines that are not pruned yet (log_count counts the
    // pruned ones too).
    s.from += op.action == "attempts.requeue"      ? "a.sync_state = 'failed'"
              : op.action == "attempts.prune_logs" ? "a.sync_state = 'complete' AND a.log_count > a.logs_pruned"
                                                   : "a.sync_state IN ('complete', 'failed')";
    if (!f.sync_state.empty())
      add("a.sync_state = :f_sync", "f_sync", f.sync_state);
    if (!f.state.empty())
      add("a.state = :f_state", "f_state", f.state);
    if (!f.task_prefix.empty()) {
      // substr, not LIKE: SQLite's LIKE ignores case and both would need % and _ escaped.
      // The length is a literal: PostgreSQL's substr takes an integer, not a bound BIGINT.
      add("substr(a.task_id, 1, " + std::to_string(f.task_prefix.size()) + ") = :f_task", "f_task", f.task_prefix);
    }
    if (!f.older_than.empty())
      add("a.updated_at < " + c.d.ts_param("f_older"), "f_older", f.older_than);
  } else {
    if (!f.sync_state.empty() || !f.state.empty() || !f.task_prefix.empty())
      throw std::invalid_argument("bulk: sync_state, state and task_prefix are filters of attempt actions");
    s.from = " FROM nodes n WHERE ";
    s.id = "n.id";
    s.label = "n.name";
    s.status = "n.status";
    s.lock = c.d.for_update();
    s.from += op.action == "nodes.disable" ? "n.status <> 'disabled'"
              : op.action == "nodes.check" ? "n.status = 'online'"
                                           : "n.status = 'disabled'";
    if (!f.name_prefix.empty()) {
      add("substr(n.name, 1, " + std::to_string(f.name_prefix.size()) + ") = :f_name", "f_name", f.name_prefix);
    }
    if (!f.older_than.empty())
      add("COALESCE(n.last_seen_at, n.created_at) < " + c.d.ts_param("f_older"), "f_older", f.older_than);
  }
  if (!f.node.empty())
    add("n.name = :f_node", "f_node", f.node);
  if (!f.node_status.empty())
    add("n.status = :f_nstatus", "f_nstatus", f.node_status);
  s.from += where;
  return s;
}

int64_t count_of(op_context& c, const selection& s) {
  int64_t n = 0;
  query q(c.sql, "SELECT COUNT(*)" + s.from);
  s.bind(q);
  q.each([&](const soci::row& r) { n = col_int(r, 0); });
  return n;
}

} // namespace

bulk_action::result_type execute(op_context& c, const bulk_action& op) {
  bulk_action::result_type out;
  auto s = select_for(c, op);
  if (op.limit < 0)
    throw std::invalid_argument("bulk: the limit is negative");
  if (!op.apply) {
    // A plan counts first: a set over the budget is never read into memory.
    out.matched = count_of(c, s);
    if (out.matched > op.limit) {
      out.over_budget = true;
      return out;
    }
  }
  // Every matched id in one order (the token's input), locked for an apply: what the token names
  // is what the change acts on, even with another instance writing beside it (PostgreSQL).
  std::vector<std::string> ids, labels;
  {
    query q(c.sql, "SELECT " + s.id + ", " + s.label + ", " + s.status + s.from + " ORDER BY " + s.id + " LIMIT "
                     + dialect::int_param("lim") + (op.apply ? s.lock : ""));
    s.bind(q);
    q.bind("lim", op.limit + 1);
    q.each([&](const soci::row& r) {
      ids.push_back(col_str(r, 0));
      labels.push_back(col_str(r, 1));
      if (static_cast<int64_t>(out.sample.size()) < op.sample)
        out.sample.push_back({col_str(r, 0), col_str(r, 1), col_str(r, 2)});
    });
  }
  if (op.apply) {
    if (static_cast<int64_t>(ids.size()) > op.limit) {
      out.matched = count_of(c, s);
      out.over_budget = true;
      return out;
    }
    out.matched = static_cast<int64_t>(ids.size());
  }
  std::string input = op.action + "\n" + op.filter.canonical();
  for (auto& id : ids)
    input += "\n" + id;
  out.token = sha256_hex(input);
  if (op.action == "nodes.delete") {
    out.blocked = sum_in_chunks(c,
                                "SELECT COUNT(DISTINCT node_id) FROM node_task_attempts "
                                "WHERE sync_state <> 'complete' AND node_id IN ",
                                ids);
    out.attempts = sum_in_chunks(c, "SELECT COUNT(*) FROM node_task_attempts WHERE node_id IN ", ids);
    out.log_lines = sum_in_chunks(
      c, "SELECT COALESCE(SUM(log_count - logs_pruned), 0) FROM node_task_attempts WHERE node_id IN ", ids);
  } else if (op.action == "attempts.prune_logs") {
    out.log_lines =
      sum_in_chunks(c, "SELECT COALESCE(SUM(log_count - logs_pruned), 0) FROM node_task_attempts WHERE id IN ", ids);
  }
  if (!op.apply)
    return out;
  if (out.token != op.token) {
    out.stale = true;
    return out;
  }
  if (out.blocked > 0)
    return out; // the caller refuses: nothing changed
  // The updates name ids only: the set was read again above, in this transaction and locked on
  // PostgreSQL, so a state condition beside the ids is redundant, and on SQLite it made the
  // planner walk the sync_state index for every chunk (quadratic: 25 s for 100,000 rows).
  nlohmann::json counts = nlohmann::json::object();
  auto set_now = [&](query& q) { q.bind("now", c.now_text); };
  if (op.action == "attempts.requeue" || op.action == "attempts.reset") {
    counts["attempts"] = exec_in_chunks(c,
                                        "UPDATE node_task_attempts SET sync_state = 'partial', backfill_failures = 0, "
                                        "updated_at = :now WHERE id IN ",
                                        ids, set_now);
  } else if (op.action == "attempts.prune_logs") {
    // The rows are locked (PostgreSQL: a line's foreign key check waits for the lock), so every
    // stored line is counted in log_count and at or below log_max_seq: delete them all, and say
    // so in the counters. sync_state and updated_at stay: pruning is not a change of the attempt.
    counts["log_lines"] = exec_in_chunks(c, "DELETE FROM attempt_logs WHERE attempt_id IN ", ids);
    counts["attempts"] = exec_in_chunks(c,
                                        "UPDATE node_task_attempts SET logs_pruned = log_count, "
                                        "logs_pruned_through = log_max_seq WHERE id IN ",
                                        ids);
  } else if (op.action == "nodes.disable") {
    counts["nodes"] =
      exec_in_chunks(c, "UPDATE nodes SET status = 'disabled', disabled_at = :now WHERE id IN ", ids, set_now);
  } else if (op.action == "nodes.check") {
    counts["nodes"] = static_cast<int64_t>(ids.size()); // the API sends the checks
  } else if (op.action == "nodes.enable") {
    counts["nodes"] = exec_in_chunks(c, "UPDATE nodes SET status = 'offline', disabled_at = NULL WHERE id IN ", ids);
  } else { // nodes.delete: the lines, the attempts, the jobs' reference, the nodes
    exec_in_chunks(
      c, "DELETE FROM attempt_logs WHERE attempt_id IN (SELECT id FROM node_task_attempts WHERE node_id IN ", ids, ")");
    counts["log_lines"] = out.log_lines;
    counts["attempts"] = exec_in_chunks(c, "DELETE FROM node_task_attempts WHERE node_id IN ", ids);
    exec_in_chunks(c, "UPDATE jobs SET node_id = NULL WHERE node_id IN ", ids);
    counts["nodes"] = exec_in_chunks(c, "DELETE FROM nodes WHERE id IN ", ids);
  }
  if (!acts_on_attempts(op.action)) {
    out.node_ids = ids;
    out.node_names = std::move(labels);
  }
  out.counts = counts.dump();
  audit_outcome(c, op.audit, true, out.counts);
  return out;
}

} // namespace nodecoord::storage
