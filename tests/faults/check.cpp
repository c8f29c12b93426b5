#include "faults/check.hpp"

#include "common/clock.hpp"
#include "storage/admin_ops.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"
#include "tools/agent/store.hpp"

#include <nlohmann/json.hpp>
#include <soci/soci.h>

#include <map>
#include <sstream>

namespace nodecoord::faults {

namespace {

using storage::attempt_record;

bool same_meta(const std::string& store, const std::string& db) {
  if (store.empty() || db.empty())
    return store.empty() && db.empty();
  auto a = nlohmann::json::parse(store, nullptr, false);
  auto b = nlohmann::json::parse(db, nullptr, false);
  if (a.is_discarded() || b.is_discarded())
    return store == db;
  return a == b;
}

std::string row_text(const attempt_record& r) {
  std::ostringstream os;
  os << "coordinator{node=" << r.node_id << " task=" << r.task_id << " state=" << r.state << " sync=" << r.sync_state
     << " request=" << (r.backfill_request_id.empty() ? "-" : r.backfill_request_id)
     << " failures=" << r.backfill_failures << " log_count=" << r.log_count << " log_max_seq=" << r.log_max_seq
     << " started=" << r.started_at << " finished=" << r.finished_at << " meta=" << r.meta
     << " sync_requested=" << r.sync_requested_at << " last_full_sync=" << r.last_full_sync_at
     << " created=" << r.created_at << " updated=" << r.updated_at << "}";
  return os.str();
}

std::string store_text(const agent::attempt_row& a) {
  std::ostringstream os;
  os << "store{task=" << a.task_id << " state=" << a.state << " started=" << a.started_at
     << " finished=" << a.finished_at << " meta=" << a.meta << " lines=" << a.log_count << " version=" << a.version
     << " confirmed_version=" << a.announced_version << " confirmed_lines=" << a.delivered_logs << "}";
  // The agent stops sending what the coordinator acknowledged: data it lacks although the agent
  // holds an acknowledgement for all of it was acknowledged and then not kept.
  if (a.announced_version >= a.version && a.delivered_logs >= a.log_count)
    os << " (the agent holds an acknowledgement of all of it)";
  return os.str();
}

std::string line_text(const std::string& who, int64_t seq, const std::string& ts, const std::string& stream,
                      const std::string& line) {
  auto shown = line.size() > 60 ? line.substr(0, 60) + "..." : line;
  return who + "[" + std::to_string(seq) + " " + ts + " " + stream + " "
         + nlohmann::json(shown).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "]";
}

/// What differs between the store's attempt and the coordinator's row (empty: nothing).
std::string field_diff(const agent::attempt_row& a, const attempt_record& r, const std::string& node_id) {
  std::string d;
  auto field = [&](const char* name, const std::string& mine, const std::string& theirs) {
    if (mine != theirs)
      d += std::string(d.empty() ? "" : ", ") + name + " store '" + mine + "' coordinator '" + theirs + "'";
  };
  field("node", node_id, r.node_id);
  field("task_id", a.task_id, r.task_id);
  field("state", a.state, r.state);
  field("started_at", a.started_at, r.started_at);
  field("finished_at", a.finished_at, r.finished_at);
  if (!same_meta(a.meta, r.meta))
    d += std::string(d.empty() ? "" : ", ") + "meta store '" + a.meta + "' coordinator '" + r.meta + "'";
  return d;
}

/// The node's backfill jobs that did not succeed, newest first (an attempt's history as far as
/// the jobs ledger tells it: jobs count attempts, they do not name them).
std::string node_history(soci::session& sql, const storage::dialect& d, const std::string& node_id) {
  std::string out;
  storage::query(sql, "SELECT id, status, attempt_count, " + d.json_text("detail") + ", " + d.ts("created_at")
                        + " FROM jobs WHERE node_id = :n AND type = 'backfill' AND status <> 'succeeded' "
                          "ORDER BY created_at DESC LIMIT 8")
    .bind("n", node_id)
    .each([&](const soci::row& r) {
      out += " job{" + storage::col_str(r, 0) + " " + storage::col_str(r, 1) + " attempts=" + storage::col_str(r, 2)
             + " " + storage::col_str(r, 3) + " " + storage::col_str(r, 4) + "}";
    });
  return out.empty() ? " (no unsuccessful backfill jobs)" : out;
}

} // namespace

bool check_report::clean() const {
  return missing.empty() && truncated.empty() && bad_lines.empty() && wrong_fields.empty() && stuck.empty()
         && pending.empty() && extra_attempts.empty() && open_jobs.empty() && counters.empty();
}

std::string check_report::counts() const {
  std::ostringstream os;
  os << "missing=" << missing.size() << " truncated=" << truncated.size() << " bad_lines=" << bad_lines.size()
     << " wrong_fields=" << wrong_fields.size() << " stuck=" << stuck.size() << " pending=" << pending.size()
     << " extra_attempts=" << extra_attempts.size() << " open_jobs=" << open_jobs.size() << " failed=" << failed.size()
     << " counters=" << counters.size();
  return os.str();
}

std::string list_findings(const std::vector<finding>& items, size_t first) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < first; ++i)
    out += "\n    " + items[i].attempt_id + ": " + items[i].detail;
  if (items.size() > first)
    out += "\n    ... and " + std::to_string(items.size() - first) + " more";
  return out;
}

std::string check_report::describe(size_t first) const {
  std::string out;
  auto add = [&](const char* name, const std::vector<finding>& v) {
    if (!v.empty())
      out += std::string("\n  ") + name + " (" + std::to_string(v.size()) + "):" + list_findings(v, first);
  };
  add("missing", missing);
  add("truncated", truncated);
  add("extra, duplicated or different lines", bad_lines);
  add("wrong fields", wrong_fields);
  add("stuck (not complete)", stuck);
  add("pending_backfill", pending);
  add("extra attempts", extra_attempts);
  add("open jobs", open_jobs);
  add("overview counters that differ from a scan", counters);
  add("failed for good (max_failures)", failed);
  return out.empty() ? " (nothing)" : out;
}

std::string check_report::fingerprint() const {
  return std::to_string(db_attempts) + "/" + std::to_string(db_lines) + "/" + std::to_string(db_complete) + "/"
         + std::to_string(db_partial) + "/" + std::to_string(pending.size()) + "/" + std::to_string(db_failed) + "/"
         + std::to_string(unconfirmed);
}

check_report check_round(const storage::storage_url& url, const std::vector<agent_ref>& agents, bool lines, bool jobs) {
  check_report rep;
  rep.lines_compared = lines;
  rep.jobs_checked = jobs;
  storage::database db(url, system_now);
  db.connect();
  auto& sql = db.session();
  const auto& d = db.sql_dialect();
  // One snapshot for every read, so a row and its lines are seen at the same moment.
  sql << (url.kind == storage::backend::postgresql ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN");
  auto now = system_now();
  storage::op_context c{sql, d, now, format_time(now)};

  for (auto& ag : agents) {
    agent::store st(ag.store_path);
    auto mine = st.all_attempts();
    std::map<std::string, attempt_record> theirs;
    for (std::string after;;) {
      auto page = storage::execute(c, storage::attempt_list{ag.node_id, "", "", after, 1000});
      for (auto& r : page)
        theirs.emplace(r.id, r);
      if (page.size() < 1000)
        break;
      after = page.back().id;
    }
    for (auto& [id, r] : theirs) {
      ++rep.db_attempts;
      rep.db_lines += r.log_count;
      rep.db_complete += r.sync_state == "complete";
      rep.db_partial += r.sync_state == "partial";
      rep.db_failed += r.sync_state == "failed";
    }
    for (auto& a : mine) {
      ++rep.attempts;
      rep.lines += a.log_count;
      rep.unconfirmed += a.version > a.announced_version || a.log_count > a.delivered_logs;
      auto it = theirs.find(a.id);
      attempt_record r;
      if (it != theirs.end()) {
        r = it->second;
        theirs.erase(it);
      } else {
        auto elsewhere = storage::execute(c, storage::attempt_get{a.id});
        if (!elsewhere.found) {
          rep.missing.push_back({a.id, "node " + ag.node_name + " " + store_text(a)});
          continue;
        }
        r = elsewhere.attempt; // under another node: a wrong field below
      }
      if (auto diff = field_diff(a, r, ag.node_id); !diff.empty())
        rep.wrong_fields.push_back({a.id, diff + "; " + row_text(r) + " " + store_text(a)});
      if (r.sync_state != "complete")
        rep.stuck.push_back({a.id, "node " + ag.node_name + " " + row_text(r) + " " + store_text(a)});
      if (r.sync_state == "failed")
        rep.failed.push_back({a.id, row_text(r) + " history:" + node_history(sql, d, r.node_id)});
      if (!lines) {
        if (r.log_count < a.log_count)
          rep.truncated.push_back({a.id, "counter " + std::to_string(r.log_count) + " of " + std::to_string(a.log_count)
                                           + " lines; " + row_text(r)});
        continue;
      }
      // Every line, by seq.
      auto want = st.logs(a.id, 0, a.log_count);
      std::vector<storage::log_entry> got;
      for (int64_t after = -1;;) {
        auto page = storage::execute(c, storage::logs_get{a.id, after, 10000});
        got.insert(got.end(), page.begin(), page.end());
        if (page.size() < 10000)
          break;
        after = page.back().seq;
      }
      size_t i = 0, j = 0;
      int64_t absent = 0;
      std::string bad;
      int64_t bad_count = 0;
      while (i < want.size() || j < got.size()) {
        if (j == got.size() || (i < want.size() && want[i].seq < got[j].seq)) {
          ++absent;
          ++i;
        } else if (i == want.size() || got[j].seq < want[i].seq) {
          if (++bad_count <= 3)
            bad += " extra " + line_text("coordinator", got[j].seq, got[j].ts, got[j].stream, got[j].line);
          ++j;
        } else {
          auto& w = want[i];
          auto& g = got[j];
          if (w.ts != g.ts || w.stream != g.stream || w.line != g.line) {
            if (++bad_count <= 3)
              bad += " differs " + line_text("store", w.seq, w.ts, w.stream, w.line) + " "
                     + line_text("coordinator", g.seq, g.ts, g.stream, g.line);
          }
          ++i;
          ++j;
        }
      }
      if (absent > 0)
        rep.truncated.push_back({a.id, std::to_string(got.size()) + " of " + std::to_string(want.size()) + " lines ("
                                         + std::to_string(absent) + " absent); " + row_text(r) + " " + store_text(a)});
      if (bad_count > 0)
        rep.bad_lines.push_back({a.id, std::to_string(bad_count) + " lines:" + bad + "; " + row_text(r)});
      if (absent == 0 && bad_count == 0 && r.log_count != static_cast<int64_t>(got.size()))
        rep.wrong_fields.push_back({a.id, "log_count counter " + std::to_string(r.log_count) + " but "
                                            + std::to_string(got.size()) + " lines stored; " + row_text(r)});
    }
    for (auto& [id, r] : theirs)
      rep.extra_attempts.push_back({id, "node " + ag.node_name + " " + row_text(r)});
  }

  storage::query(sql, "SELECT id FROM node_task_attempts WHERE sync_state = 'pending_backfill' ORDER BY id")
    .each([&](const soci::row& row) {
      auto id = storage::col_str(row, 0);
      auto r = storage::execute(c, storage::attempt_get{id});
      rep.pending.push_back({id, row_text(r.attempt)});
    });
  if (jobs)
    storage::query(sql, "SELECT id, type, status, node_id, attempt_count, " + d.ts("created_at")
                          + " FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_at, id")
      .each([&](const soci::row& row) {
        auto what = "type=" + storage::col_str(row, 1) + " status=" + storage::col_str(row, 2)
                    + " node=" + storage::col_str(row, 3) + " attempts=" + storage::col_str(row, 4)
                    + " created=" + storage::col_str(row, 5);
        rep.open_jobs.push_back({storage::col_str(row, 0), what});
      });
  if (jobs) {
    // The counters the triggers keep (schema v3) equal a scan, after every kill and restart.
    auto render = [](const storage::count_summary::result_type& s) {
      std::string out;
      for (auto& [k, v] : s.nodes_by_status)
        out += "nodes." + k + "=" + std::to_string(v) + " ";
      for (auto& [k, v] : s.attempts_by_sync_state)
        out += "attempts." + k + "=" + std::to_string(v) + " ";
      for (auto& [k, v] : s.jobs_by_status_type)
        out += "jobs." + k + "=" + std::to_string(v) + " ";
      return out + "log_lines=" + std::to_string(s.log_lines);
    };
    auto kept = render(storage::execute(c, storage::count_summary{}));
    auto scanned = render(storage::execute(c, storage::count_summary{true}));
    if (kept != scanned)
      rep.counters.push_back({"count_summary", "counters " + kept + " but a scan finds " + scanned});
  }
  sql << "ROLLBACK";
  return rep;
}

} // namespace nodecoord::faults
