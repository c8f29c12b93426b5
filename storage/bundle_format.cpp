// Bundles: the JSON-Lines format (docs/admin-api.md): writing each kind of line and parsing a
// whole bundle with every check that needs no database. The SQL (export reads, the import) is in
// storage/bundle.cpp.
#include "storage/bundle.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"
#include "common/json_limits.hpp"
#include "common/states.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

namespace nodecoord::storage {

namespace {
// Lines keep the order of their fields (and JSON documents the order of their keys) as written.
using ojson = nlohmann::ordered_json;
} // namespace

namespace bundle {

namespace {

ojson text_or_null(const std::string& s) { return s.empty() ? ojson(nullptr) : ojson(s); }

ojson document_or_null(const std::string& text, const char* what, const std::string& id) {
  if (text.empty())
    return nullptr;
  try {
    return ojson::parse(text);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(what) + " of " + id + " is not valid JSON: " + e.what());
  }
}

std::string dump(const ojson& j) {
  // Stored text that is not UTF-8 must not stop an export: invalid bytes become U+FFFD.
  return j.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

} // namespace

std::string manifest_line(const counts& n, const std::string& created_at) {
  ojson j;
  j["type"] = "manifest";
  j["format"] = format_name;
  j["version"] = format_version;
  j["created_at"] = created_at;
  j["counts"] =
    ojson{{"nodes", n.nodes}, {"attempts", n.attempts}, {"logs", n.logs}, {"jobs", n.jobs}, {"audit", n.audit}};
  return dump(j);
}

std::string line(const node_record& n) {
  ojson j;
  j["type"] = "node";
  j["id"] = n.id;
  j["name"] = n.name;
  j["status"] = n.status;
  j["session_epoch"] = n.session_epoch;
  j["connected_at"] = text_or_null(n.connected_at);
  j["disconnected_at"] = text_or_null(n.disconnected_at);
  j["disconnect_reason"] = text_or_null(n.disconnect_reason);
  j["last_seen_at"] = text_or_null(n.last_seen_at);
  j["capabilities"] = document_or_null(n.capabilities, "capabilities of node", n.id);
  j["created_at"] = n.created_at;
  j["disabled_at"] = text_or_null(n.disabled_at);
  return dump(j);
}

std::string line(const attempt_record& a) {
  ojson j;
  j["type"] = "attempt";
  j["id"] = a.id;
  j["node_id"] = a.node_id;
  j["task_id"] = a.task_id;
  j["state"] = a.state;
  j["sync_state"] = a.sync_state;
  j["backfill_request_id"] = text_or_null(a.backfill_request_id);
  j["sync_requested_at"] = text_or_null(a.sync_requested_at);
  j["last_full_sync_at"] = text_or_null(a.last_full_sync_at);
  j["backfill_failures"] = a.backfill_failures;
  j["started_at"] = text_or_null(a.started_at);
  j["finished_at"] = text_or_null(a.finished_at);
  j["meta"] = document_or_null(a.meta, "meta of attempt", a.id);
  j["created_at"] = a.created_at;
  j["updated_at"] = a.updated_at;
  j["logs_pruned"] = a.logs_pruned;
  j["logs_pruned_through"] = a.logs_pruned_through < 0 ? ojson(nullptr) : ojson(a.logs_pruned_through);
  return dump(j);
}

std::string line(const log_row& l) {
  ojson j;
  j["type"] = "log";
  j["attempt_id"] = l.attempt_id;
  j["seq"] = l.entry.seq;
  j["ts"] = l.entry.ts;
  j["stream"] = l.entry.stream;
  j["line"] = l.entry.line;
  return dump(j);
}

std::string line(const job_record& r) {
  ojson j;
  j["type"] = "job";
  j["id"] = r.id;
  j["job_type"] = r.type;
  j["status"] = r.status;
  j["node_id"] = text_or_null(r.node_id);
  j["attempt_count"] = r.attempt_count;
  j["detail"] = document_or_null(r.detail, "detail of job", r.id);
  j["error"] = text_or_null(r.error);
  j["created_at"] = r.created_at;
  j["started_at"] = text_or_null(r.started_at);
  j["finished_at"] = text_or_null(r.finished_at);
  return dump(j);
}

std::string line(const audit_record& a) {
  ojson j;
  j["type"] = "audit";
  j["id"] = a.id;
  j["at"] = a.at;
  j["instance_id"] = text_or_null(a.instance_id);
  j["actor"] = a.entry.actor;
  j["action"] = a.entry.action;
  j["target"] = text_or_null(a.entry.target);
  j["filter"] = document_or_null(a.entry.filter, "filter of audit row", std::to_string(a.id));
  j["counts"] = document_or_null(a.entry.counts, "counts of audit row", std::to_string(a.id));
  j["result"] = a.entry.result;
  j["error"] = text_or_null(a.entry.error);
  return dump(j);
}

void write_all(op_context& c, const std::string& created_at, const std::function<void(const std::string&)>& emit,
               int64_t page) {
  if (page < 1)
    throw std::invalid_argument("write_all: page must be positive");
  emit(manifest_line(execute(c, export_counts{}), created_at));
  auto pages = [&](auto op, auto next) {
    while (true) {
      auto rows = execute(c, op);
      for (auto& r : rows)
        emit(line(r));
      if (rows.size() < static_cast<size_t>(page))
        return;
      next(op, rows.back());
    }
  };
  auto by_id = [](auto& op, const auto& last) { op.after_id = last.id; };
  pages(read_nodes{"", page}, by_id);
  pages(read_attempts{"", page}, by_id);
  pages(read_logs{"", -1, page}, [](read_logs& op, const log_row& last) {
    op.after_attempt_id = last.attempt_id;
    op.after_seq = last.entry.seq;
  });
  pages(read_jobs{"", page}, by_id);
  pages(read_audit{0, page}, by_id);
}

// --- parse -----------------------------------------------------------------------------------

namespace {

struct line_error {
  size_t line;
  std::string message;
};

[[noreturn]] void fail(size_t line, const std::string& what) {
  throw line_error{line, "line " + std::to_string(line) + ": " + what};
}

std::string json_quoted(const std::string& s) { return ojson(s).dump(-1, ' ', false, ojson::error_handler_t::replace); }

template <named_state E>
std::set<std::string> name_set() {
  auto names = all_names<E>();
  return {names.begin(), names.end()};
}

const std::set<std::string> node_statuses = name_set<node_status>();
const std::set<std::string> attempt_states = name_set<attempt_state>();
const std::set<std::string> sync_states = name_set<sync_state>();
const std::set<std::string> streams{"stdout", "stderr", "system"};
const std::set<std::string> job_types = name_set<job_type>();
const std::set<std::string> job_statuses = name_set<job_status>();

std::string list(const std::set<std::string>& values) {
  std::string out;
  for (auto& v : values)
    out += (out.empty() ? "" : ", ") + v;
  return out;
}

/// Reads the fields of one line's object; every failure names the line, the kind and the field.
class fields {
public:
  fields(const ojson& j, size_t line, const char* kind) : j_(j), line_(line), kind_(kind) {}

  [[noreturn]] void fail_field(const std::string& key, const std::string& what) const {
    fail(line_, std::string(kind_) + ": field \"" + key + "\" " + what);
  }

  /// A string ("" for null when nullable). `non_empty`: "" is refused.
  std::string str(const char* key, bool nullable, bool non_empty = false) const {
    auto& v = get(key);
    if (v.is_null()) {
      if (!nullable)
        fail_field(key, "must not be null");
      return {};
    }
    if (!v.is_string())
      fail_field(key, nullable ? "must be a string or null" : "must be a string");
    auto s = v.get<std::string>();
    if (non_empty && s.empty())
      fail_field(key, "must not be empty");
    return s; // U+0000 was refused for the whole line (unsafe_json in parse_lines)
  }

  std::string uuid(const char* key, bool nullable) const {
    auto s = str(key, nullable);
    if (s.empty()) {
      if (!nullable)
        fail_field(key, "must be a UUID");
      return s;
    }
    if (!is_uuid(s))
      fail_field(key, "must be a UUID, not " + json_quoted(s));
    // One spelling, as the protocol does: PostgreSQL reads UUIDs back in lower case.
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
    return s;
  }

  /// A time, normalised to the stored form ("" for null when nullable).
  std::string time(const char* key, bool nullable) const {
    auto s = str(key, nullable);
    if (s.empty()) {
      if (!nullable)
        fail_field(key, "must be an RFC 3339 time");
      return s;
    }
    auto t = parse_time(s);
    if (!t)
      fail_field(key, "must be an RFC 3339 time, not " + json_quoted(s));
    return format_time(*t);
  }

  /// An integer, or `if_null` for null.
  int64_t integer_or_null(const char* key, int64_t min, int64_t if_null) const {
    return get(key).is_null() ? if_null : integer(key, min);
  }

  int64_t integer(const char* key, int64_t min, int64_t max = std::numeric_limits<int64_t>::max()) const {
    auto& v = get(key);
    if (!v.is_number_integer())
      fail_field(key, "must be an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(max))
      fail_field(key, "must be at most " + std::to_string(max));
    auto n = v.get<int64_t>();
    if (n < min || n > max)
      fail_field(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return n;
  }

  std::string one_of(const char* key, const std::set<std::string>& allowed) const {
    auto s = str(key, false);
    if (!allowed.count(s))
      fail_field(key, "must be one of " + list(allowed) + ", not " + json_quoted(s));
    return s;
  }

  /// A JSON object or null, as compact text ("" for null).
  std::string document(const char* key) const {
    auto& v = get(key);
    if (v.is_null())
      return {};
    if (!v.is_object())
      fail_field(key, "must be a JSON object or null");
    return v.dump(); // within max_json_depth and free of U+0000: checked for the whole line
  }

private:
  const ojson& get(const char* key) const {
    auto i = j_.find(key);
    if (i == j_.end())
      fail(line_, std::string(kind_) + ": missing field \"" + key + "\"");
    return *i;
  }

  const ojson& j_;
  size_t line_;
  const char* kind_;
};

/// Remembers the line of each key; a key seen twice fails on its second line.
template <class Key>
class unique_keys {
public:
  explicit unique_keys(const char* what) : what_(what) {}
  void add(const Key& key, size_t line, const std::string& shown) {
    auto [i, fresh] = seen_.emplace(key, line);
    if (!fresh)
      fail(line, std::string(what_) + " " + shown + " appears twice (first on line " + std::to_string(i->second) + ")");
  }
  bool contains(const Key& key) const { return seen_.count(key) > 0; }

private:
  const char* what_;
  std::map<Key, size_t> seen_;
};

manifest read_manifest(const ojson& j) {
  fields f(j, 1, "manifest");
  manifest m;
  auto format = f.str("format", false);
  if (format != format_name)
    f.fail_field("format", "must be " + json_quoted(format_name) + ", not " + json_quoted(format));
  m.version = f.integer("version", std::numeric_limits<int64_t>::min());
  if (m.version > format_version)
    fail(1, "bundle version " + std::to_string(m.version) + " is newer than this nodecoordd reads (version "
              + std::to_string(format_version) + "); import it with a newer nodecoordd");
  if (m.version < oldest_format_version)
    fail(1, "bundle version " + std::to_string(m.version) + " is not supported (this nodecoordd reads versions "
              + std::to_string(oldest_format_version) + " to " + std::to_string(format_version) + ")");
  m.created_at = f.time("created_at", false);
  auto c = j.find("counts");
  if (c == j.end())
    fail(1, "manifest: missing field \"counts\"");
  if (!c->is_object())
    f.fail_field("counts", "must be an object");
  fields n(*c, 1, "manifest: counts");
  m.declared = {n.integer("nodes", 0), n.integer("attempts", 0), n.integer("logs", 0), n.integer("jobs", 0),
                m.version >= 2 ? n.integer("audit", 0) : 0};
  return m;
}

node_record read_node_line(const fields& f) {
  node_record n;
  n.id = f.uuid("id", false);
  n.name = f.str("name", false, true);
  n.status = f.one_of("status", node_statuses);
  n.session_epoch = f.integer("session_epoch", 0);
  n.connected_at = f.time("connected_at", true);
  n.disconnected_at = f.time("disconnected_at", true);
  n.disconnect_reason = f.str("disconnect_reason", true);
  n.last_seen_at = f.time("last_seen_at", true);
  n.capabilities = f.document("capabilities");
  n.created_at = f.time("created_at", false);
  n.disabled_at = f.time("disabled_at", true);
  return n;
}

attempt_record read_attempt_line(const fields& f, int64_t version) {
  attempt_record a;
  a.id = f.uuid("id", false);
  a.node_id = f.uuid("node_id", false);
  a.task_id = f.str("task_id", false);
  a.state = f.one_of("state", attempt_states);
  a.sync_state = f.one_of("sync_state", sync_states);
  a.backfill_request_id = f.uuid("backfill_request_id", true);
  // The schema's CHECK, said with the line number.
  if (is(a.sync_state, sync_state::pending_backfill) != !a.backfill_request_id.empty())
    f.fail_field("backfill_request_id", "must be set exactly when sync_state is pending_backfill");
  a.sync_requested_at = f.time("sync_requested_at", true);
  a.last_full_sync_at = f.time("last_full_sync_at", true);
  a.backfill_failures = f.integer("backfill_failures", 0, std::numeric_limits<int32_t>::max());
  a.started_at = f.time("started_at", true);
  a.finished_at = f.time("finished_at", true);
  a.meta = f.document("meta");
  a.created_at = f.time("created_at", false);
  a.updated_at = f.time("updated_at", false);
  a.log_count = 0;
  a.log_max_seq = -1;
  if (version >= 2) {
    a.logs_pruned = f.integer("logs_pruned", 0);
    a.logs_pruned_through = f.integer_or_null("logs_pruned_through", 0, -1);
    if ((a.logs_pruned > 0) != (a.logs_pruned_through >= 0))
      f.fail_field("logs_pruned_through", "must be set exactly when logs_pruned is above 0");
  }
  return a;
}

log_row read_log_line(const fields& f) {
  log_row l;
  l.attempt_id = f.uuid("attempt_id", false);
  l.entry.seq = f.integer("seq", 0);
  l.entry.ts = f.time("ts", false);
  l.entry.stream = f.one_of("stream", streams);
  l.entry.line = f.str("line", false);
  return l;
}

job_record read_job_line(const fields& f) {
  job_record j;
  j.id = f.uuid("id", false);
  j.type = f.one_of("job_type", job_types);
  j.status = f.one_of("status", job_statuses);
  j.node_id = f.uuid("node_id", true);
  j.attempt_count = f.integer("attempt_count", 0, std::numeric_limits<int32_t>::max());
  j.detail = f.document("detail");
  j.error = f.str("error", true);
  j.created_at = f.time("created_at", false);
  j.started_at = f.time("started_at", true);
  j.finished_at = f.time("finished_at", true);
  return j;
}

const std::set<std::string> audit_result_set(std::begin(audit_results), std::end(audit_results));

audit_record read_audit_line(const fields& f) {
  audit_record a;
  a.id = f.integer("id", 1);
  a.at = f.time("at", false);
  a.instance_id = f.str("instance_id", true);
  a.entry.actor = f.str("actor", false, true);
  a.entry.action = f.str("action", false, true);
  a.entry.target = f.str("target", true);
  a.entry.filter = f.document("filter");
  a.entry.counts = f.document("counts");
  a.entry.result = f.one_of("result", audit_result_set);
  a.entry.error = f.str("error", true);
  return a;
}

void check_count(const char* what, int64_t declared, size_t found) {
  if (declared != static_cast<int64_t>(found))
    fail(1, std::string("manifest: counts.") + what + " is " + std::to_string(declared) + " but the bundle has "
              + std::to_string(found) + " " + what + " lines");
}

parsed parse_lines(std::string_view text) {
  parsed out;
  unique_keys<std::string> node_ids("node id"), node_names("node name"), attempt_ids("attempt id"), job_ids("job id");
  unique_keys<std::pair<std::string, int64_t>> log_keys("log line");
  unique_keys<int64_t> audit_ids("audit id");
  size_t number = 0;
  size_t pos = 0;
  bool have_manifest = false;
  while (pos < text.size()) {
    ++number;
    auto end = text.find('\n', pos);
    auto raw = text.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    if (!raw.empty() && raw.back() == '\r')
      raw.remove_suffix(1);
    if (raw.empty())
      fail(number, "empty line (only the last line may end with a newline)");
    ojson j;
    try {
      j = ojson::parse(raw);
    } catch (const ojson::exception& e) { // parse_error, and out_of_range for "1e400"
      fail(number, std::string("not valid JSON: ") + e.what());
    }
    // The same check as for frames: nothing either backend refuses, nothing deep enough to
    // recurse on when a document is serialized again.
    if (auto why = unsafe_json(j, "record", max_json_depth))
      fail(number, *why);
    if (!j.is_object())
      fail(number, "not a JSON object");
    auto t = j.find("type");
    if (t == j.end())
      fail(number, "missing field \"type\"");
    if (!t->is_string())
      fail(number, "field \"type\" must be a string");
    auto type = t->get<std::string>();
    if (number == 1) {
      if (type != "manifest")
        fail(1, "the first line must be the manifest ({\"type\":\"manifest\",\"format\":\"nodecoord-bundle\",...}), "
                "not a "
                  + json_quoted(type) + " line");
      out.header = read_manifest(j);
      have_manifest = true;
      continue;
    }
    if (type == "manifest")
      fail(number, "a second manifest (the manifest is the first line only)");
    if (type == "node") {
      auto n = read_node_line(fields(j, number, "node"));
      node_ids.add(n.id, number, json_quoted(n.id));
      node_names.add(n.name, number, json_quoted(n.name));
      out.nodes.push_back({number, std::move(n)});
    } else if (type == "attempt") {
      auto a = read_attempt_line(fields(j, number, "attempt"), out.header.version);
      attempt_ids.add(a.id, number, json_quoted(a.id));
      out.attempts.push_back({number, std::move(a)});
    } else if (type == "log") {
      auto l = read_log_line(fields(j, number, "log"));
      log_keys.add({l.attempt_id, l.entry.seq}, number,
                   "(" + json_quoted(l.attempt_id) + ", " + std::to_string(l.entry.seq) + ")");
      out.logs.push_back({number, std::move(l)});
    } else if (type == "job") {
      auto r = read_job_line(fields(j, number, "job"));
      job_ids.add(r.id, number, json_quoted(r.id));
      out.jobs.push_back({number, std::move(r)});
    } else if (type == "audit" && out.header.version >= 2) {
      auto a = read_audit_line(fields(j, number, "audit"));
      audit_ids.add(a.id, number, std::to_string(a.id));
      out.audit.push_back({number, std::move(a)});
    } else if (type == "audit") {
      fail(number, "an audit line in a version 1 bundle (the ledger is in bundles from version 2)");
    } else {
      fail(number, "unknown type " + json_quoted(type) + " (manifest, node, attempt, log, job, audit)");
    }
  }
  if (!have_manifest)
    fail(1, "empty bundle: the first line must be the manifest");
  check_count("nodes", out.header.declared.nodes, out.nodes.size());
  check_count("attempts", out.header.declared.attempts, out.attempts.size());
  check_count("logs", out.header.declared.logs, out.logs.size());
  check_count("jobs", out.header.declared.jobs, out.jobs.size());
  check_count("audit", out.header.declared.audit, out.audit.size());
  return out;
}

} // namespace

std::variant<parsed, parse_error> parse(std::string_view text) {
  try {
    return parse_lines(text);
  } catch (const line_error& e) {
    return parse_error{e.line, e.message};
  }
}

} // namespace bundle

} // namespace nodecoord::storage
