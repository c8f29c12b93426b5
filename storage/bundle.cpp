// Bundles: the SQL side, export reads and the import in one transaction. The JSON-Lines format
// (writing lines, parsing a bundle) is in storage/bundle_format.cpp.
#include "storage/bundle.hpp"

#include "common/states.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"
#include "storage/dialect.hpp"
#include "storage/grouped.hpp"
#include "storage/query.hpp"
#include "storage/records.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

#include <unistd.h>

namespace nodecoord::storage {

namespace {

// Lines keep the order of their fields (and JSON documents the order of their keys) as written.
using ojson = nlohmann::ordered_json;

constexpr size_t ids_per_statement = statement_limits::ids;

void check_cursor(const std::string& id, const char* what) {
  if (!id.empty() && !is_uuid(id))
    throw std::invalid_argument(std::string(what) + ": not a UUID: " + id);
}

/// "SELECT <columns> FROM <table> [WHERE id > :after] ORDER BY id LIMIT :lim", run.
template <class Read, class Out>
void read_page(op_context& c, const std::string& columns, const char* table, const std::string& after, int64_t limit,
               Read read, Out& out) {
  check_cursor(after, table);
  if (limit < 1)
    return;
  query q(c.sql, "SELECT " + columns + " FROM " + table + (after.empty() ? "" : " WHERE id > :after")
                   + " ORDER BY id LIMIT :lim");
  if (!after.empty())
    q.bind("after", after);
  q.bind("lim", limit).each([&](const soci::row& r) { out.push_back(read(r)); });
}

} // namespace

// --- export ----------------------------------------------------------------------------------

bundle::read_nodes::result_type execute(op_context& c, const bundle::read_nodes& op) {
  bundle::read_nodes::result_type out;
  read_page(c, node_columns(c.d), "nodes", op.after_id, op.limit, read_node, out);
  return out;
}

bundle::read_attempts::result_type execute(op_context& c, const bundle::read_attempts& op) {
  bundle::read_attempts::result_type out;
  read_page(c, attempt_columns(c.d), "node_task_attempts", op.after_id, op.limit, read_attempt, out);
  return out;
}

bundle::read_jobs::result_type execute(op_context& c, const bundle::read_jobs& op) {
  bundle::read_jobs::result_type out;
  read_page(c, job_columns(c.d), "jobs", op.after_id, op.limit, read_job, out);
  return out;
}

bundle::read_audit::result_type execute(op_context& c, const bundle::read_audit& op) {
  bundle::read_audit::result_type out;
  if (op.limit < 1)
    return out;
  query(c.sql, "SELECT " + audit_columns(c.d) + " FROM audit_log WHERE id > " + dialect::int_param("after")
                 + " ORDER BY id LIMIT " + dialect::int_param("lim"))
    .bind("after", op.after_id)
    .bind("lim", op.limit)
    .each([&](const soci::row& r) { out.push_back(read_audit(r)); });
  return out;
}

bundle::read_logs::result_type execute(op_context& c, const bundle::read_logs& op) {
  bundle::read_logs::result_type out;
  check_cursor(op.after_attempt_id, "attempt_logs");
  if (op.limit < 1)
    return out;
  // A row-value comparison: both backends use it as a range on the primary key (attempt_id, seq).
  bool first = op.after_attempt_id.empty();
  query q(c.sql,
          "SELECT attempt_id, seq, " + c.d.ts("ts") + ", stream, line FROM attempt_logs"
            + (first ? "" : " WHERE (attempt_id, seq) > (" + c.d.uuid_param("a") + ", " + dialect::int_param("s") + ")")
            + " ORDER BY attempt_id, seq LIMIT :lim");
  if (!first)
    q.bind("a", op.after_attempt_id).bind("s", op.after_seq);
  q.bind("lim", op.limit).each([&](const soci::row& r) {
    out.push_back({col_str(r, 0), {col_int(r, 1), col_str(r, 2), col_str(r, 3), col_str(r, 4)}});
  });
  return out;
}

bundle::export_counts::result_type execute(op_context& c, const bundle::export_counts&) {
  bundle::counts out;
  query(c.sql, "SELECT (SELECT COUNT(*) FROM nodes), (SELECT COUNT(*) FROM node_task_attempts), "
               "(SELECT COUNT(*) FROM attempt_logs), (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM audit_log)")
    .each([&](const soci::row& r) {
      out = {col_int(r, 0), col_int(r, 1), col_int(r, 2), col_int(r, 3), col_int(r, 4)};
    });
  return out;
}

// --- import ----------------------------------------------------------------------------------

namespace {

using bundle::import_bundle;
using bundle::parsed;
using kind_counts = import_bundle::result_type::kind;

bool same_document(const std::string& a, const std::string& b) {
  if (a.empty() || b.empty())
    return a.empty() && b.empty();
  try { // JSONB reorders keys and spaces: compare values
    return nlohmann::json::parse(a) == nlohmann::json::parse(b);
  } catch (const std::exception&) {
    return a == b;
  }
}

/// What a bundle row becomes when it is written.
std::string imported_status(const node_record& n) {
  return to_string(n.disabled_at.empty() ? node_status::offline : node_status::disabled);
}

attempt_record imported(attempt_record a) {
  if (is(a.sync_state, sync_state::pending_backfill)) {
    a.sync_state = to_string(sync_state::partial); // no request survives (sync_rules::recover)
    a.backfill_request_id.clear();
  }
  return a;
}

job_record imported(job_record j, const std::string& exported_at) {
  if (!is_final(*parse<job_status>(j.status))) { // read_job_line checked the spelling
    if (j.error.empty())
      j.error = "imported while " + j.status;
    if (j.finished_at.empty())
      j.finished_at = exported_at;
    j.status = to_string(job_status::abandoned);
  }
  return j;
}

bool same_node(const node_record& db, const node_record& b) {
  return db.name == b.name && (db.status == b.status || db.status == imported_status(b))
         && db.session_epoch == b.session_epoch && db.connected_at == b.connected_at
         && db.disconnected_at == b.disconnected_at && db.disconnect_reason == b.disconnect_reason
         && db.last_seen_at == b.last_seen_at && same_document(db.capabilities, b.capabilities)
         && db.created_at == b.created_at && db.disabled_at == b.disabled_at;
}

bool same_attempt_as(const attempt_record& db, const attempt_record& b) {
  return db.node_id == b.node_id && db.task_id == b.task_id && db.state == b.state && db.sync_state == b.sync_state
         && db.backfill_request_id == b.backfill_request_id && db.sync_requested_at == b.sync_requested_at
         && db.last_full_sync_at == b.last_full_sync_at && db.backfill_failures == b.backfill_failures
         && db.started_at == b.started_at && db.finished_at == b.finished_at && same_document(db.meta, b.meta)
         && db.created_at == b.created_at && db.updated_at == b.updated_at;
}

bool same_attempt(const attempt_record& db, const attempt_record& b) {
  return same_attempt_as(db, b) || same_attempt_as(db, imported(b));
}

bool same_job_as(const job_record& db, const job_record& b) {
  return db.type == b.type && db.status == b.status && db.node_id == b.node_id && db.attempt_count == b.attempt_count
         && same_document(db.detail, b.detail) && db.error == b.error && db.created_at == b.created_at
         && db.started_at == b.started_at && db.finished_at == b.finished_at;
}

bool same_job(const job_record& db, const job_record& b, const std::string& exported_at) {
  return same_job_as(db, b) || same_job_as(db, imported(b, exported_at));
}

/// Reads rows by id (bounded IN lists): `select` is "SELECT … WHERE <col> IN ".
template <class F>
void read_by_ids(op_context& c, const std::string& select, const std::vector<std::string>& ids, F f) {
  for (auto& chunk : chunks(ids, c.d.rows_per_statement(1, ids_per_statement)))
    query(c.sql, select + query::in_list("i", chunk.size())).bind_list("i", chunk).each(f);
}

/// Inserts rows in multi-row statements: `columns` names them, `row(i, n)` gives the VALUES
/// tuple of row i with parameter suffix n, `bind(q, i, n)` binds it.
template <class Row, class Bind>
void insert_rows(op_context& c, const char* table, const std::string& columns, size_t params_per_row, size_t count,
                 Row row, Bind bind, const std::string& before_values = "") {
  in_slices(count, c.d.rows_per_statement(params_per_row, 100), [&](size_t from, size_t to) {
    std::string values;
    for (size_t i = from; i < to; ++i)
      values += (i == from ? "" : ", ") + row(std::to_string(i - from));
    query q(c.sql, std::string("INSERT INTO ") + table + " (" + columns + ") " + before_values + "VALUES " + values);
    for (size_t i = from; i < to; ++i)
      bind(q, i, std::to_string(i - from));
    q.exec();
  });
}

class importer {
public:
  importer(op_context& c, const parsed& b) : c_(c), b_(b) {}

  import_bundle::result_type run() {
    check_references();
    import_nodes();
    import_attempts();
    import_logs();
    import_jobs();
    import_audit();
    return out_;
  }

private:
  enum class fate { inserted, skipped, conflicting, blocked };

  /// Every attempt's and job's node, and every log's attempt, that the bundle does not hold
  /// must be in the database.
  void check_references() {
    std::set<std::string> bundle_nodes, bundle_attempts;
    for (auto& n : b_.nodes)
      bundle_nodes.insert(n.record.id);
    for (auto& a : b_.attempts)
      bundle_attempts.insert(a.record.id);
    std::map<std::string, std::pair<size_t, const char*>> nodes, attempts; // id -> first line, kind
    for (auto& a : b_.attempts)
      if (!bundle_nodes.count(a.record.node_id))
        nodes.emplace(a.record.node_id, std::pair{a.line, "attempt"});
    for (auto& j : b_.jobs)
      if (!j.record.node_id.empty() && !bundle_nodes.count(j.record.node_id))
        nodes.emplace(j.record.node_id, std::pair{j.line, "job"});
    for (auto& l : b_.logs)
      if (!bundle_attempts.count(l.record.attempt_id))
        attempts.emplace(l.record.attempt_id, std::pair{l.line, "log"});
    auto require = [&](const char* table, const char* what,
                       std::map<std::string, std::pair<size_t, const char*>>& refs) {
      std::vector<std::string> ids;
      for (auto& [id, _] : refs)
        ids.push_back(id);
      read_by_ids(c_, std::string("SELECT id FROM ") + table + " WHERE id IN ", ids,
                  [&](const soci::row& r) { refs.erase(col_str(r, 0)); });
      if (refs.empty())
        return;
      // The first line that names a missing one.
      auto first =
        std::min_element(refs.begin(), refs.end(), [](auto& x, auto& y) { return x.second.first < y.second.first; });
      throw std::runtime_error("line " + std::to_string(first->second.first) + ": " + first->second.second + ": " + what
                               + " " + first->first + " is neither in the bundle nor in the database");
    };
    require("nodes", "node", nodes);
    require("node_task_attempts", "attempt", attempts);
  }

  void import_nodes() {
    std::vector<std::string> ids, names;
    for (auto& n : b_.nodes) {
      ids.push_back(n.record.id);
      names.push_back(n.record.name);
    }
    std::map<std::string, node_record> by_id;
    read_by_ids(c_, "SELECT " + node_columns(c_.d) + " FROM nodes WHERE id IN ", ids, [&](const soci::row& r) {
      auto n = read_node(r);
      by_id.emplace(n.id, std::move(n));
    });
    std::set<std::string> taken_names;
    read_by_ids(c_, "SELECT name FROM nodes WHERE name IN ", names,
                [&](const soci::row& r) { taken_names.insert(col_str(r, 0)); });
    std::vector<const node_record*> fresh;
    for (auto& [line, n] : b_.nodes) {
      auto i = by_id.find(n.id);
      if (i != by_id.end()) {
        node_fate_[n.id] = same_node(i->second, n) ? fate::skipped : fate::conflicting;
      } else if (taken_names.count(n.name)) {
        node_fate_[n.id] = fate::blocked; // another node has the name: this one cannot be stored
      } else {
        node_fate_[n.id] = fate::inserted;
        fresh.push_back(&n);
      }
      count(out_.nodes, node_fate_[n.id]);
    }
    insert_rows(
      c_, "nodes",
      "id, name, key_id, key_hash, status, session_epoch, connected_at, disconnected_at, disconnect_reason, "
      "last_seen_at, capabilities, created_at, disabled_at",
      12, fresh.size(),
      [&](const std::string& n) {
        return "(:i" + n + ", :n" + n + ", :k" + n + ", '', :s" + n + ", :e" + n + ", :ca" + n + ", :da" + n + ", :r"
               + n + ", :la" + n + ", " + c_.d.json_param("cap" + n) + ", :cr" + n + ", :di" + n + ")";
      },
      [&](query& q, size_t i, const std::string& n) {
        auto& r = *fresh[i];
        // A fresh key id nobody holds the secret of: an operator rotates the key to let it in.
        q.bind("i" + n, r.id)
          .bind("n" + n, r.name)
          .bind("k" + n, random_hex(8))
          .bind("s" + n, imported_status(r))
          .bind("e" + n, r.session_epoch)
          .bind_nullable("ca" + n, r.connected_at)
          .bind_nullable("da" + n, r.disconnected_at)
          .bind_nullable("r" + n, r.disconnect_reason)
          .bind_nullable("la" + n, r.last_seen_at)
          .bind_nullable("cap" + n, r.capabilities)
          .bind("cr" + n, r.created_at)
          .bind_nullable("di" + n, r.disabled_at);
      });
  }

  /// A bundle node that could not be stored (its name is taken) takes its rows with it.
  bool node_blocked(const std::string& node_id) const {
    auto i = node_fate_.find(node_id);
    return i != node_fate_.end() && i->second == fate::blocked;
  }

  void import_attempts() {
    std::vector<std::string> ids;
    for (auto& a : b_.attempts)
      ids.push_back(a.record.id);
    std::map<std::string, attempt_record> by_id;
    read_by_ids(c_, "SELECT " + attempt_columns(c_.d) + " FROM node_task_attempts WHERE id IN ", ids,
                [&](const soci::row& r) {
                  auto a = read_attempt(r);
                  by_id.emplace(a.id, std::move(a));
                });
    std::vector<attempt_record> fresh;
    for (auto& [line, a] : b_.attempts) {
      fate f;
      auto i = by_id.find(a.id);
      if (node_blocked(a.node_id))
        f = fate::blocked;
      else if (i != by_id.end())
        f = same_attempt(i->second, a) ? fate::skipped : fate::conflicting;
      else {
        f = fate::inserted;
        fresh.push_back(imported(a));
      }
      attempt_fate_[a.id] = f;
      count(out_.attempts, f);
    }
    // Counters start with the pruned lines (they were delivered); the log import below raises
    // them as the live insert does.
    insert_rows(
      c_, "node_task_attempts",
      "id, node_id, task_id, state, sync_state, backfill_request_id, sync_requested_at, last_full_sync_at, "
      "backfill_failures, log_count, log_max_seq, started_at, finished_at, meta, created_at, updated_at, "
      "logs_pruned, logs_pruned_through",
      18, fresh.size(),
      [&](const std::string& n) {
        return "(:i" + n + ", :o" + n + ", :t" + n + ", :s" + n + ", :y" + n + ", :r" + n + ", :q" + n + ", :l" + n
               + ", :f" + n + ", :pc" + n + ", NULLIF(" + dialect::int_param("pm" + n) + ", -1), :b" + n + ", :e" + n
               + ", " + c_.d.json_param("m" + n) + ", :c" + n + ", :u" + n + ", :pn" + n + ", NULLIF("
               + dialect::int_param("pt" + n) + ", -1))";
      },
      [&](query& q, size_t i, const std::string& n) {
        auto& a = fresh[i];
        q.bind("i" + n, a.id)
          .bind("o" + n, a.node_id)
          .bind("t" + n, a.task_id)
          .bind("s" + n, a.state)
          .bind("y" + n, a.sync_state)
          .bind_nullable("r" + n, a.backfill_request_id)
          .bind_nullable("q" + n, a.sync_requested_at)
          .bind_nullable("l" + n, a.last_full_sync_at)
          .bind("f" + n, a.backfill_failures)
          .bind_nullable("b" + n, a.started_at)
          .bind_nullable("e" + n, a.finished_at)
          .bind_nullable("m" + n, a.meta)
          .bind("c" + n, a.created_at)
          .bind("u" + n, a.updated_at)
          .bind("pc" + n, a.logs_pruned)
          .bind("pm" + n, a.logs_pruned_through)
          .bind("pn" + n, a.logs_pruned)
          .bind("pt" + n, a.logs_pruned_through);
      });
  }

  void import_logs() {
    // Lines are rows of their own, keyed by (attempt_id, seq): every line of an attempt that is
    // stored (inserted now, there already — identical or not —, or only in the database) is
    // offered to the live path's insert. Only the lines of an attempt that could not be stored
    // (its node's name is taken) are held back.
    std::vector<log_candidate> offered; // op: index into offered_rows
    std::vector<const bundle::log_row*> offered_rows, held;
    auto pruned = pruned_through_of_logged_attempts();
    for (auto& [line, l] : b_.logs) {
      auto i = attempt_fate_.find(l.attempt_id);
      bool stored = i == attempt_fate_.end() || i->second != fate::blocked;
      if (auto p = pruned.find(l.attempt_id); stored && p != pruned.end() && l.entry.seq <= p->second) {
        ++out_.logs.skipped; // stored once, then pruned: not stored again
        continue;
      }
      if (stored) {
        offered.push_back({&l.attempt_id, &l.entry, offered_rows.size()});
        offered_rows.push_back(&l);
      } else {
        held.push_back(&l);
      }
    }
    auto inserted = insert_logs(c_, offered);
    // Counters as the live insert keeps them: log_count counts the stored lines, log_max_seq is
    // the highest stored seq.
    std::map<std::string, std::pair<int64_t, int64_t>> added; // attempt -> (lines, max seq)
    for (auto& [attempt, seq] : inserted) {
      auto& [n, max] = added.emplace(attempt, std::pair<int64_t, int64_t>{0, -1}).first->second;
      ++n;
      max = std::max(max, seq);
    }
    add_counters(added);
    out_.logs.inserted = static_cast<int64_t>(inserted.size());
    // The rest: an equal stored line is skipped, anything else conflicting.
    std::vector<const bundle::log_row*> existing = held;
    for (auto& cand : offered)
      if (!inserted.count({*cand.attempt_id, cand.entry->seq}))
        existing.push_back(offered_rows[cand.op]);
    classify_existing_lines(existing);
  }

  /// The stored pruned seq of every attempt the bundle's lines name (new ones included: they are
  /// inserted by now), for the attempts that have one.
  std::map<std::string, int64_t> pruned_through_of_logged_attempts() {
    std::set<std::string> ids;
    for (auto& l : b_.logs)
      ids.insert(l.record.attempt_id);
    std::map<std::string, int64_t> out;
    read_by_ids(
      c_, "SELECT id, logs_pruned_through FROM node_task_attempts WHERE logs_pruned_through IS NOT NULL AND id IN ",
      std::vector<std::string>(ids.begin(), ids.end()),
      [&](const soci::row& r) { out[col_str(r, 0)] = col_int(r, 1); });
    return out;
  }

  void add_counters(const std::map<std::string, std::pair<int64_t, int64_t>>& added) {
    std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> rows(added.begin(), added.end());
    in_slices(rows.size(), c_.d.rows_per_statement(3, 100), [&](size_t from, size_t to) {
      std::string values;
      for (size_t i = from; i < to; ++i) {
        auto n = std::to_string(i - from);
        values += (i == from ? "(" : ", (") + c_.d.uuid_param("i" + n) + ", " + dialect::int_param("n" + n) + ", "
                  + dialect::int_param("m" + n) + ")";
      }
      query q(c_.sql, "UPDATE node_task_attempts SET log_count = log_count + v.v_lines, log_max_seq = CASE WHEN "
                      "log_max_seq IS NULL OR log_max_seq < v.v_max THEN v.v_max ELSE log_max_seq END FROM "
                        + c_.d.values_table("v", "v_id, v_lines, v_max", values)
                        + " WHERE node_task_attempts.id = v.v_id");
      for (size_t i = from; i < to; ++i) {
        auto n = std::to_string(i - from);
        q.bind("i" + n, rows[i].first).bind("n" + n, rows[i].second.first).bind("m" + n, rows[i].second.second);
      }
      q.exec();
    });
  }

  void classify_existing_lines(const std::vector<const bundle::log_row*>& lines) {
    std::map<std::pair<std::string, int64_t>, const log_entry*> wanted;
    std::set<std::string> attempt_set;
    for (auto* l : lines) {
      wanted.emplace(std::pair{l->attempt_id, l->entry.seq}, &l->entry);
      attempt_set.insert(l->attempt_id);
    }
    std::vector<std::string> attempts(attempt_set.begin(), attempt_set.end());
    int64_t same = 0;
    read_by_ids(c_,
                "SELECT attempt_id, seq, " + c_.d.ts("ts") + ", stream, line FROM attempt_logs WHERE attempt_id IN ",
                attempts, [&](const soci::row& r) {
                  auto i = wanted.find({col_str(r, 0), col_int(r, 1)});
                  if (i != wanted.end() && i->second->ts == col_str(r, 2) && i->second->stream == col_str(r, 3)
                      && i->second->line == col_str(r, 4))
                    ++same;
                });
    out_.logs.skipped += same;
    out_.logs.conflicting += static_cast<int64_t>(lines.size()) - same;
  }

  void import_jobs() {
    std::vector<std::string> ids;
    for (auto& j : b_.jobs)
      ids.push_back(j.record.id);
    std::map<std::string, job_record> by_id;
    read_by_ids(c_, "SELECT " + job_columns(c_.d) + " FROM jobs WHERE id IN ", ids, [&](const soci::row& r) {
      auto j = read_job(r);
      by_id.emplace(j.id, std::move(j));
    });
    const auto& exported_at = b_.header.created_at;
    std::vector<job_record> fresh;
    for (auto& [line, j] : b_.jobs) {
      fate f;
      auto i = by_id.find(j.id);
      if (!j.node_id.empty() && node_blocked(j.node_id))
        f = fate::blocked;
      else if (i != by_id.end())
        f = same_job(i->second, j, exported_at) ? fate::skipped : fate::conflicting;
      else {
        f = fate::inserted;
        fresh.push_back(imported(j, exported_at));
      }
      count(out_.jobs, f);
    }
    insert_rows(
      c_, "jobs", "id, type, status, node_id, attempt_count, detail, error, created_at, started_at, finished_at", 10,
      fresh.size(),
      [&](const std::string& n) {
        return "(:i" + n + ", :t" + n + ", :s" + n + ", :n" + n + ", :a" + n + ", " + c_.d.json_param("d" + n) + ", :e"
               + n + ", :c" + n + ", :b" + n + ", :f" + n + ")";
      },
      [&](query& q, size_t i, const std::string& n) {
        auto& j = fresh[i];
        q.bind("i" + n, j.id)
          .bind("t" + n, j.type)
          .bind("s" + n, j.status)
          .bind_nullable("n" + n, j.node_id)
          .bind("a" + n, j.attempt_count)
          .bind_nullable("d" + n, j.detail)
          .bind_nullable("e" + n, j.error)
          .bind("c" + n, j.created_at)
          .bind_nullable("b" + n, j.started_at)
          .bind_nullable("f" + n, j.finished_at);
      });
  }

  static bool same_audit(const audit_record& db, const audit_record& b) {
    return db.at == b.at && db.instance_id == b.instance_id && db.entry.actor == b.entry.actor
           && db.entry.action == b.entry.action && db.entry.target == b.entry.target
           && same_document(db.entry.filter, b.entry.filter) && same_document(db.entry.counts, b.entry.counts)
           && db.entry.result == b.entry.result && db.entry.error == b.entry.error;
  }

  /// Ledger rows by id: a free id is inserted with that id, a taken one is compared.
  void import_audit() {
    if (b_.audit.empty())
      return;
    bool pg = c_.d.kind == backend::postgresql;
    // Writers of the ledger wait until this commits: no row can take an id between the reads
    // below and the sequence moved past the imported ids.
    if (pg)
      c_.sql << "LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE";
    std::vector<int64_t> ids;
    for (auto& a : b_.audit)
      ids.push_back(a.record.id);
    std::map<int64_t, audit_record> by_id;
    in_slices(ids.size(), c_.d.rows_per_statement(1, ids_per_statement), [&](size_t from, size_t to) {
      std::string list;
      for (size_t i = from; i < to; ++i)
        list += (i == from ? "" : ", ") + dialect::int_param("i" + std::to_string(i - from));
      query q(c_.sql, "SELECT " + audit_columns(c_.d) + " FROM audit_log WHERE id IN (" + list + ")");
      for (size_t i = from; i < to; ++i)
        q.bind("i" + std::to_string(i - from), ids[i]);
      q.each([&](const soci::row& r) {
        auto a = read_audit(r);
        by_id.emplace(a.id, std::move(a));
      });
    });
    std::vector<const audit_record*> fresh;
    for (auto& [line, a] : b_.audit) {
      auto i = by_id.find(a.id);
      if (i == by_id.end()) {
        fresh.push_back(&a);
        ++out_.audit.inserted;
      } else if (same_audit(i->second, a)) {
        ++out_.audit.skipped;
      } else {
        ++out_.audit.conflicting;
      }
    }
    insert_rows(
      c_, "audit_log", "id, at, instance_id, actor, action, target, filter, counts, result, error", 10, fresh.size(),
      [&](const std::string& n) {
        return "(" + dialect::int_param("i" + n) + ", :a" + n + ", :n" + n + ", :c" + n + ", :x" + n + ", :t" + n + ", "
               + c_.d.json_param("f" + n) + ", " + c_.d.json_param("k" + n) + ", :r" + n + ", :e" + n + ")";
      },
      [&](query& q, size_t i, const std::string& n) {
        auto& a = *fresh[i];
        q.bind("i" + n, a.id)
          .bind("a" + n, a.at)
          .bind_nullable("n" + n, a.instance_id)
          .bind("c" + n, a.entry.actor)
          .bind("x" + n, a.entry.action)
          .bind_nullable("t" + n, a.entry.target)
          .bind_nullable("f" + n, a.entry.filter)
          .bind_nullable("k" + n, a.entry.counts)
          .bind("r" + n, a.entry.result)
          .bind_nullable("e" + n, a.entry.error);
      },
      pg ? "OVERRIDING SYSTEM VALUE " : ""); // the identity is GENERATED ALWAYS
    // SQLite's AUTOINCREMENT follows the largest id by itself; PostgreSQL's identity does not.
    if (pg && !fresh.empty())
      c_.sql << "SELECT setval(pg_get_serial_sequence('audit_log', 'id'), (SELECT MAX(id) FROM audit_log))";
  }

  static void count(kind_counts& k, fate f) {
    switch (f) {
      case fate::inserted: ++k.inserted; break;
      case fate::skipped: ++k.skipped; break;
      case fate::conflicting:
      case fate::blocked: ++k.conflicting; break;
    }
  }

  op_context& c_;
  const parsed& b_;
  import_bundle::result_type out_;
  std::map<std::string, fate> node_fate_;
  std::map<std::string, fate> attempt_fate_;
};

} // namespace

bundle::import_bundle::result_type execute(op_context& c, const bundle::import_bundle& op) {
  if (!op.bundle)
    throw std::invalid_argument("import_bundle: no bundle");
  if (!op.dry_run)
    return importer(c, *op.bundle).run();
  // The same statements, undone: the counts are exactly those of a real import.
  c.sql << "SAVEPOINT nc_bundle_dry";
  try {
    auto out = importer(c, *op.bundle).run();
    c.sql << "ROLLBACK TO SAVEPOINT nc_bundle_dry";
    c.sql << "RELEASE SAVEPOINT nc_bundle_dry";
    return out;
  } catch (...) {
    try {
      c.sql << "ROLLBACK TO SAVEPOINT nc_bundle_dry";
      c.sql << "RELEASE SAVEPOINT nc_bundle_dry";
    } catch (...) { // the transaction is lost anyway; the original error is what counts
    }
    throw;
  }
}

bundle::export_file::result_type execute(op_context& c, const bundle::export_file& op) {
  if (!op.out)
    throw std::invalid_argument("export_file: no output file");
  // A batch that stopped (a lost connection, a serialization failure) runs again with the same
  // file: start it over, and cut what the earlier try wrote, or a shorter second try would leave
  // the end of the first one behind its last line.
  std::rewind(op.out.get());
  if (::ftruncate(::fileno(op.out.get()), 0) != 0)
    throw std::runtime_error("bundle export: cannot truncate the temporary file");
  bundle::counts written;
  bool first = true;
  bundle::write_all(c, op.created_at, [&](const std::string& l) {
    if (first) {
      // The manifest's counts, taken in this transaction, are what the lines hold.
      first = false;
      auto m = nlohmann::json::parse(l).at("counts");
      written = {m.at("nodes").get<int64_t>(), m.at("attempts").get<int64_t>(), m.at("logs").get<int64_t>(),
                 m.at("jobs").get<int64_t>(), m.at("audit").get<int64_t>()};
    }
    if (std::fwrite(l.data(), 1, l.size(), op.out.get()) != l.size() || std::fputc('\n', op.out.get()) == EOF)
      throw std::runtime_error("bundle export: cannot write the temporary file (disk full?)");
  });
  if (std::fflush(op.out.get()) != 0)
    throw std::runtime_error("bundle export: cannot write the temporary file (disk full?)");
  return written;
}

} // namespace nodecoord::storage
