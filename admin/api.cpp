#include "admin/api.hpp"
#include "common/states.hpp"
#include "admin/envelope.hpp"

#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "common/ids.hpp"
#include "common/metrics.hpp"
#include "config/defaults.hpp"
#include "config/duration.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>
#include <sstream>

namespace nodecoord::admin {

using json = nlohmann::json;

namespace {

const std::vector<std::string> sync_states = all_names<sync_state>();
const std::vector<std::string> attempt_states = all_names<attempt_state>();
const std::vector<std::string> node_statuses = all_names<node_status>();
const std::vector<std::string> job_statuses = all_names<job_status>();
const std::vector<std::string> job_types = all_names<job_type>();
// Prune without older_than: failed jobs are kept longer than the rest (they are what an operator
// looks back at).
constexpr auto keep_finished = std::chrono::hours(24 * 7);
constexpr auto keep_failed = std::chrono::hours(24 * 30);
// The largest older_than: 100 years (larger ages would put the cutoff before year 1 or overflow).
constexpr std::chrono::milliseconds max_prune_age = std::chrono::hours(24 * 36500);

json text_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

/// Stored JSON text as a JSON value (null when empty; the text itself if it does not parse).
json json_or_null(const std::string& s) {
  if (s.empty())
    return nullptr;
  auto v = json::parse(s, nullptr, false);
  return v.is_discarded() ? json(s) : v;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v)
    out += (out.empty() ? "" : ", ") + s;
  return out;
}

json node_json(const storage::node_record& n, bool connected, uint64_t in_flight) {
  return {{"id", n.id},
          {"name", n.name},
          {"status", n.status},
          {"session_epoch", n.session_epoch},
          {"connected_at", text_or_null(n.connected_at)},
          {"disconnected_at", text_or_null(n.disconnected_at)},
          {"disconnect_reason", text_or_null(n.disconnect_reason)},
          {"last_seen_at", text_or_null(n.last_seen_at)},
          {"created_at", text_or_null(n.created_at)},
          {"disabled_at", text_or_null(n.disabled_at)},
          {"connected", connected},
          {"in_flight", in_flight}};
}

json attempt_json(const storage::attempt_record& a) {
  return {{"id", a.id},
          {"node_id", a.node_id},
          {"task_id", a.task_id},
          {"state", a.state},
          {"sync_state", a.sync_state},
          {"backfill_request_id", text_or_null(a.backfill_request_id)},
          {"sync_requested_at", text_or_null(a.sync_requested_at)},
          {"last_full_sync_at", text_or_null(a.last_full_sync_at)},
          {"backfill_failures", a.backfill_failures},
          {"log_count", a.log_count},
          {"started_at", text_or_null(a.started_at)},
          {"finished_at", text_or_null(a.finished_at)},
          {"meta", json_or_null(a.meta)},
          {"created_at", text_or_null(a.created_at)},
          {"updated_at", text_or_null(a.updated_at)}};
}

json job_json(const storage::job_record& j) {
  return {{"id", j.id},
          {"type", j.type},
          {"status", j.status},
          {"node_id", text_or_null(j.node_id)},
          {"attempt_count", j.attempt_count},
          {"detail", json_or_null(j.detail)},
          {"error", text_or_null(j.error)},
          {"created_at", text_or_null(j.created_at)},
          {"started_at", text_or_null(j.started_at)},
          {"finished_at", text_or_null(j.finished_at)}};
}

/// The one value of a query parameter; 400 if it is given twice.
std::optional<std::string> param(const http_request& req, const std::string& name) {
  auto [lo, hi] = req.params.equal_range(name);
  if (lo == hi)
    return std::nullopt;
  if (std::next(lo) != hi)
    bad_request("parameter '" + name + "' is given more than once");
  return lo->second;
}

/// An id as the database and the actors spell it: lower case. UUIDs are case-insensitive, but
/// SQLite compares text exactly and PostgreSQL reads them back in lower case, so an id compared
/// in the caller's spelling (an upper-case UUID) finds nothing, or finds the row in storage while
/// the tracker looks for another string. Every id that enters the API goes through here first.
std::string lower_id(std::string id) {
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return id;
}

/// Parameters must be among `known`: a misspelt filter is an error, not "no filter".
void only_params(const http_request& req, const std::vector<std::string>& known) {
  for (auto& [k, v] : req.params)
    if (std::find(known.begin(), known.end(), k) == known.end())
      bad_request("unknown parameter '" + k + "'" + (known.empty() ? "" : "; allowed: " + join(known)));
}

int64_t limit_param(const http_request& req) {
  auto v = param(req, "limit");
  if (!v)
    return defaults::admin_page_default;
  int64_t n = 0;
  bool digits = !v->empty() && v->size() <= 9
                && std::all_of(v->begin(), v->end(), [](unsigned char c) { return std::isdigit(c) != 0; });
  if (digits)
    n = std::stoll(*v);
  if (!digits || n < 1 || n > defaults::admin_page_max)
    bad_request("limit must be an integer from 1 to " + std::to_string(defaults::admin_page_max) + ", not '" + *v
                + "'");
  return n;
}

/// A value from a fixed set, or empty when absent; 400 naming the allowed values.
std::string one_of(const http_request& req, const std::string& name, const std::vector<std::string>& allowed) {
  auto v = param(req, name);
  if (!v)
    return {};
  if (std::find(allowed.begin(), allowed.end(), *v) == allowed.end())
    bad_request("unknown " + name + " '" + *v + "'; allowed: " + join(allowed));
  return *v;
}

/// A comma-separated list of values from a fixed set.
std::vector<std::string> list_of(const http_request& req, const std::string& name,
                                 const std::vector<std::string>& allowed) {
  std::vector<std::string> out;
  auto v = param(req, name);
  if (!v)
    return out;
  if (v->empty())
    bad_request(name + " is empty; allowed: " + join(allowed));
  size_t start = 0;
  for (;;) {
    auto comma = v->find(',', start);
    auto item = v->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty())
      bad_request(name + " has an empty item in '" + *v + "'; allowed: " + join(allowed));
    if (std::find(allowed.begin(), allowed.end(), item) == allowed.end())
      bad_request("unknown " + name + " '" + item + "'; allowed: " + join(allowed));
    if (std::find(out.begin(), out.end(), item) == out.end())
      out.push_back(item);
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return out;
}

/// The node named by the parameter `name`, as a node name: 400 if it cannot be one.
std::optional<std::string> node_param(const http_request& req, const std::string& name) {
  auto v = param(req, name);
  if (v && !valid_node_name(*v))
    bad_request(name + " must be a node name (letters, digits, - _ . only, 1 to 255 characters), not '" + *v + "'");
  return v;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> out;
  std::string seg;
  for (char c : path) {
    if (c == '/') {
      if (!seg.empty())
        out.push_back(seg);
      seg.clear();
    } else {
      seg += c;
    }
  }
  if (!seg.empty())
    out.push_back(seg);
  return out;
}

std::string bearer_of(const std::string& header) {
  const std::string prefix = "Bearer ";
  if (header.size() < prefix.size())
    return {};
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(header[i])) != std::tolower(static_cast<unsigned char>(prefix[i])))
      return {};
  auto token = header.substr(prefix.size());
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
    token.pop_back();
  return token;
}

/// {"a": n, ...} with every name of `all` present.
json counts_object(const std::vector<std::pair<std::string, int64_t>>& pairs, const std::vector<std::string>& all) {
  json out = json::object();
  for (auto& k : all)
    out[k] = 0;
  for (auto& [k, n] : pairs)
    out[k] = n;
  return out;
}

} // namespace

http_response transport_error(int status, uint64_t body_limit) {
  switch (status) {
    case 413: {
      auto mib = body_limit / (1024 * 1024);
      return failure(413, "payload_too_large",
                     "the request body is over the limit of " + std::to_string(body_limit) + " bytes"
                       + (mib * 1024 * 1024 == body_limit && mib > 0 ? " (" + std::to_string(mib) + " MiB)" : ""),
                     json{{"limit_bytes", body_limit}});
    }
    case 400: return failure(400, "bad_request", "the request is not valid HTTP");
    case 414: return failure(414, "uri_too_long", "the request line is too long");
    case 404: return failure(404, "not_found", "no route");
    default: return failure(status, "http_error", "the request was refused (HTTP " + std::to_string(status) + ")");
  }
}

bool valid_node_name(const std::string& name) {
  if (name.empty() || name.size() > 255)
    return false;
  for (unsigned char c : name)
    if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.'))
      return false;
  return true;
}

std::optional<std::chrono::milliseconds> parse_age(const std::string& text) {
  if (text.size() >= 2 && text.back() == 'd'
      && std::all_of(text.begin(), text.end() - 1, [](unsigned char c) { return std::isdigit(c) != 0; })
      && text.size() <= 6)
    return std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::hours(24) * std::stoll(text.substr(0, text.size() - 1)));
  return config::parse_duration(text);
}

api::api(backend& b, api_options opts) : backend_(b), opts_(std::move(opts)) {
  set_token(opts_.token);
  if (!opts_.wall_now)
    opts_.wall_now = [] { return format_time(system_now()); };
}

void api::set_token(const std::string& token) {
  std::lock_guard<std::mutex> lock(mutex_);
  token_hash_ = token.empty() ? "" : sha256_hex(token);
}

void api::set_listening(bool v) {
  std::lock_guard<std::mutex> lock(mutex_);
  listening_ = v;
}

std::string api::now_text() const { return opts_.wall_now(); }

http_response api::handle(const http_request& req) {
  // The process answers: no token, no actor.
  if (req.path == "/healthz" && req.method == "GET")
    return reply(200, {{"status", "alive"}});
  // The page carries no data; it asks for the token when the API says 401.
  if (req.path == "/" && req.method == "GET") {
    http_response r;
    r.content_type = "text/html; charset=utf-8";
    r.body = opts_.dashboard_html;
    return r;
  }
  std::string token_hash;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    token_hash = token_hash_;
  }
  if (!token_hash.empty()) {
    if (req.authorization.empty())
      return failure(401, "unauthorized", "this API needs 'Authorization: Bearer <token>' (admin.token_file)");
    auto presented = bearer_of(req.authorization);
    if (presented.empty() || !constant_time_equal(sha256_hex(presented), token_hash))
      return failure(403, "forbidden", "the token is not valid");
  }
  try {
    return route(req);
  } catch (const api_error& e) {
    return failure(e.status, e.code, e.message);
  } catch (const unavailable& e) {
    return failure(503, "unavailable", e.what());
  } catch (const std::exception& e) {
    return failure(500, "internal", e.what());
  }
}

http_response api::route(const http_request& req) {
  auto seg = split_path(req.path);
  auto method_not_allowed = [&](const std::string& allowed) -> http_response {
    return failure(405, "method_not_allowed", req.method + " is not allowed on " + req.path + "; use " + allowed);
  };
  const auto& m = req.method;
  if (seg.size() == 1 && seg[0] == "readyz")
    return m == "GET" ? readyz() : method_not_allowed("GET");
  if (seg.size() == 1 && seg[0] == "metrics")
    return m == "GET" ? metrics() : method_not_allowed("GET");
  if (seg.empty() || seg[0] != "api")
    not_found("no route " + req.path);
  if (seg.size() == 2 && seg[1] == "overview")
    return m == "GET" ? (only_params(req, {}), overview()) : method_not_allowed("GET");
  if (seg.size() >= 2 && seg[1] == "nodes") {
    if (seg.size() == 2) {
      if (m == "GET")
        return (only_params(req, {}), list_nodes());
      if (m == "POST")
        return (only_params(req, {}), create_node(req));
      return method_not_allowed("GET, POST");
    }
    if (seg.size() == 3)
      return m == "GET" ? (only_params(req, {}), show_node(seg[2])) : method_not_allowed("GET");
    if (seg.size() == 4 && (seg[3] == "disable" || seg[3] == "enable" || seg[3] == "rotate-key"))
      return m == "POST" ? (only_params(req, {}), node_action(seg[2], seg[3])) : method_not_allowed("POST");
  }
  if (seg.size() >= 2 && seg[1] == "attempts") {
    if (seg.size() == 2)
      return m == "GET" ? list_attempts(req) : method_not_allowed("GET");
    // The id in one spelling before anything looks it up (see lower_id).
    auto id = seg.size() >= 3 ? lower_id(seg[2]) : std::string();
    if (seg.size() == 3)
      return m == "GET" ? (only_params(req, {}), show_attempt(id)) : method_not_allowed("GET");
    if (seg.size() == 4 && seg[3] == "backfill")
      return m == "POST" ? (only_params(req, {}), backfill_attempt(id)) : method_not_allowed("POST");
    if (seg.size() == 4 && seg[3] == "requeue")
      return m == "POST" ? (only_params(req, {}), requeue_attempt(id)) : method_not_allowed("POST");
  }
  if (seg.size() == 2 && seg[1] == "jobs") {
    if (m == "GET")
      return list_jobs(req);
    if (m == "DELETE")
      return prune_jobs(req);
    return method_not_allowed("GET, DELETE");
  }
  if (seg.size() == 2 && seg[1] == "bundle") {
    if (m == "GET")
      return (only_params(req, {}), export_bundle());
    if (m == "POST")
      return import_bundle(req);
    return method_not_allowed("GET, POST");
  }
  not_found("no route " + req.path);
}

http_response api::readyz() {
  bool listening;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    listening = listening_;
  }
  // A live probe through the storage queue (an idle storage actor would not notice a dead
  // database), at most once per readiness_probe_every.
  bool db_ok = false;
  bool cached = false;
  std::string why;
  auto now = opts_.steady_now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (probe_at_ && now - *probe_at_ < defaults::readiness_probe_every) {
      db_ok = probe_ok_;
      cached = true;
    }
  }
  if (!cached) {
    try {
      auto st = backend_.storage_state();
      if (!st.available)
        why = st.last_error.empty() ? "database unavailable" : st.last_error;
      db_ok = st.available && backend_.ping();
    } catch (const unavailable& e) {
      db_ok = false;
      why = e.what();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    probe_at_ = now;
    probe_ok_ = db_ok;
  }
  json data{{"listening", listening}, {"database", db_ok}};
  if (listening && db_ok)
    return reply(200, data);
  std::string message = !listening ? "not accepting nodes" : "database unreachable";
  if (!why.empty())
    message += ": " + why;
  return failure(503, "unavailable", message, data);
}

api::cached_counts api::counts_cached() {
  auto now = opts_.steady_now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cache_.at && now - *cache_.at < defaults::overview_cache)
      return cache_;
  }
  cached_counts fresh;
  fresh.counts = backend_.counts(); // throws unavailable: nothing cached
  try {
    fresh.sizes = backend_.sizes();
    fresh.have_sizes = true;
  } catch (const unavailable&) {
  }
  fresh.at = now;
  fresh.measured_at = now_text();
  std::lock_guard<std::mutex> lock(mutex_);
  cache_ = fresh;
  return fresh;
}

http_response api::overview() {
  json data;
  json missing = json::array();
  data["version"] = opts_.version;
  data["started_at"] = opts_.started_at;
  if (auto start = parse_time(opts_.started_at))
    data["uptime_seconds"] = std::chrono::duration_cast<std::chrono::seconds>(system_now() - *start).count();
  try {
    auto c = counts_cached();
    data["nodes"] = counts_object(c.counts.nodes_by_status, node_statuses);
    data["attempts"] = counts_object(c.counts.attempts_by_sync_state, sync_states);
    json jobs = json::array();
    for (auto& [key, n] : c.counts.jobs_by_status_type) {
      auto slash = key.find('/');
      jobs.push_back({{"status", key.substr(0, slash)},
                      {"type", slash == std::string::npos ? "" : key.substr(slash + 1)},
                      {"count", n}});
    }
    data["jobs"] = jobs;
    data["log_lines"] = c.counts.log_lines;
    json db{{"measured_at", c.measured_at}};
    if (c.have_sizes) {
      db["size_bytes"] = c.sizes.total_bytes;
      json tables = json::object();
      for (auto& [t, n] : c.sizes.tables)
        tables[t] = n;
      db["tables"] = tables;
    } else {
      missing.push_back("database_size");
    }
    data["database"] = db;
  } catch (const unavailable&) {
    missing.push_back("counts");
    data["database"] = json::object();
  }
  try {
    auto st = backend_.storage_state();
    data["database"]["backend"] = st.backend;
    data["database"]["available"] = st.available;
    data["database"]["queued"] = st.queued;
  } catch (const unavailable&) {
    missing.push_back("storage");
  }
  try {
    data["connected"] = backend_.connected().size();
  } catch (const unavailable&) {
    missing.push_back("registry");
  }
  try {
    auto t = backend_.tracker();
    json oldest = nullptr;
    int64_t max_age = -1;
    for (auto& r : t.requests)
      if (r.sent)
        max_age = std::max(max_age, r.age_ms);
    if (max_age >= 0)
      oldest = max_age / 1000;
    data["requests"] = {{"in_flight", t.requests.size()}, {"oldest_age_seconds", oldest}};
  } catch (const unavailable&) {
    missing.push_back("tracker");
  }
  data["missing"] = missing;
  return reply(200, data);
}

http_response api::metrics() {
  auto& m = metrics::daemon();
  metrics::text_writer w;
  w.family("nodecoord_sessions", "gauge", "Authenticated node sessions.");
  w.sample("nodecoord_sessions", static_cast<double>(m.sessions.load()));
  w.family("nodecoord_connections_total", "counter", "TCP connections accepted from nodes.");
  w.sample("nodecoord_connections_total", static_cast<double>(m.connections.load()));
  w.family("nodecoord_connects_total", "counter", "Hello outcomes by result (ok or the error code).");
  for (auto& [k, v] : m.connects.snapshot())
    w.sample("nodecoord_connects_total", static_cast<double>(v), {{"result", k}});
  w.family("nodecoord_disconnects_total", "counter", "Ended sessions by reason.");
  for (auto& [k, v] : m.disconnects.snapshot())
    w.sample("nodecoord_disconnects_total", static_cast<double>(v), {{"reason", k}});
  w.family("nodecoord_frames_total", "counter", "Frames received from nodes by type.");
  for (size_t i = 0; i < m.frames.size(); ++i)
    w.sample("nodecoord_frames_total", static_cast<double>(m.frames[i].load()),
             {{"type", metrics::to_string(static_cast<metrics::frame_kind>(i))}});
  w.family("nodecoord_protocol_errors_total", "counter", "Protocol errors sent to nodes by code.");
  for (auto& [k, v] : m.protocol_errors.snapshot())
    w.sample("nodecoord_protocol_errors_total", static_cast<double>(v), {{"code", k}});
  w.family("nodecoord_heartbeat_acks_delayed_total", "counter",
           "ack_delayed notices: heartbeat acks held while the frames before them wait for a commit.");
  w.sample("nodecoord_heartbeat_acks_delayed_total", static_cast<double>(m.acks_delayed.load()));
  w.family("nodecoord_handshakes", "gauge", "Connections that have not authenticated yet.");
  w.sample("nodecoord_handshakes", static_cast<double>(m.handshakes.load()));
  w.family("nodecoord_ingest_frames", "gauge", "Node frames handed to storage and not committed yet (backpressure).");
  w.sample("nodecoord_ingest_frames", static_cast<double>(m.ingest_frames.load()));
  w.family("nodecoord_ingest_bytes", "gauge", "Bytes of those frames.");
  w.sample("nodecoord_ingest_bytes", static_cast<double>(m.ingest_bytes.load()));
  w.family("nodecoord_sessions_paused", "gauge", "Sessions not reading their socket now (backpressure).");
  w.sample("nodecoord_sessions_paused", static_cast<double>(m.sessions_paused.load()));
  w.family("nodecoord_session_pauses_total", "counter", "Times a session stopped reading (backpressure).");
  w.sample("nodecoord_session_pauses_total", static_cast<double>(m.session_pauses.load()));
  w.family("nodecoord_session_read_rearms_total", "counter",
           "Reads triggered again after a resume because none had come in yet (mostly an idle node; "
           "sometimes a lost trigger, which this repairs).");
  w.sample("nodecoord_session_read_rearms_total", static_cast<double>(m.read_rearms.load()));
  try {
    auto t = backend_.tracker();
    w.family("nodecoord_backfill_requests_total", "counter", "Backfill requests by outcome.");
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.requested), {{"outcome", "created"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.answered), {{"outcome", "completed"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.expired), {{"outcome", "expired"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.cancelled), {{"outcome", "cancelled"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.send_failures),
             {{"outcome", "send_failed"}});
    w.family("nodecoord_backfill_requests_in_flight", "gauge", "Backfill requests waiting for an answer.");
    w.sample("nodecoord_backfill_requests_in_flight", static_cast<double>(t.requests.size()));
    w.family("nodecoord_backfill_attempts_total", "counter", "Attempts settled by backfill responses and expired requests.");
    w.sample("nodecoord_backfill_attempts_total", static_cast<double>(t.completed), {{"result", "complete"}});
    w.sample("nodecoord_backfill_attempts_total", static_cast<double>(t.reset), {{"result", "partial"}});
    w.sample("nodecoord_backfill_attempts_total", static_cast<double>(t.failed), {{"result", "failed"}});
  } catch (const unavailable&) {
  }
  try {
    auto c = counts_cached();
    w.family("nodecoord_attempts", "gauge", "Attempts by sync_state (cached up to 5 s).");
    auto by_state = counts_object(c.counts.attempts_by_sync_state, sync_states);
    for (auto& [k, v] : by_state.items())
      w.sample("nodecoord_attempts", v.get<double>(), {{"sync_state", k}});
  } catch (const unavailable&) {
  }
  w.family("nodecoord_storage_batch_size", "histogram", "Operations per committed storage transaction.");
  w.histogram("nodecoord_storage_batch_size", m.batch_size.snapshot());
  w.family("nodecoord_storage_commit_seconds", "histogram", "Storage transaction commit latency.");
  w.histogram("nodecoord_storage_commit_seconds", m.commit_seconds.snapshot());
  try {
    auto st = backend_.storage_state();
    w.family("nodecoord_database_up", "gauge", "1 while the database is connected and migrated.");
    w.sample("nodecoord_database_up", st.available ? 1 : 0);
    w.family("nodecoord_storage_queued", "gauge", "Storage operations waiting for a commit.");
    w.sample("nodecoord_storage_queued", static_cast<double>(st.queued));
    w.family("nodecoord_database_errors_total", "counter", "Database errors by kind.");
    w.sample("nodecoord_database_errors_total", static_cast<double>(st.stats.connection_errors), {{"kind", "connection"}});
    w.sample("nodecoord_database_errors_total", static_cast<double>(st.stats.transient_errors), {{"kind", "transient"}});
    w.sample("nodecoord_database_errors_total", static_cast<double>(st.stats.item_errors), {{"kind", "statement"}});
    w.family("nodecoord_storage_transactions_total", "counter", "Committed storage transactions.");
    w.sample("nodecoord_storage_transactions_total", static_cast<double>(st.stats.transactions));
  } catch (const unavailable&) {
  }
  http_response r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = w.text();
  return r;
}

// --- nodes -------------------------------------------------------------------------------------

namespace {

struct live_view {
  std::set<std::string> connected; // node ids
  std::map<std::string, uint64_t> in_flight;
};

live_view live_of(backend& b) {
  live_view v;
  for (auto& c : b.connected())
    v.connected.insert(c.node_id);
  for (auto& r : b.tracker().requests)
    ++v.in_flight[r.node_id];
  return v;
}

json node_with_live(const storage::node_record& n, const live_view& v) {
  auto it = v.in_flight.find(n.id);
  return node_json(n, v.connected.count(n.id) > 0, it == v.in_flight.end() ? 0 : it->second);
}

storage::node_record find_node(backend& b, const std::string& name) {
  auto r = b.node(name);
  if (!r.found)
    not_found("no node named '" + name + "'");
  return r.node;
}

} // namespace

http_response api::list_nodes() {
  auto nodes = backend_.nodes();
  auto live = live_of(backend_);
  json out = json::object();
  auto& arr = out["nodes"] = json::array();
  for (auto& n : nodes)
    arr.push_back(node_with_live(n, live));
  return reply(200, std::move(out));
}

http_response api::show_node(const std::string& name) {
  auto n = find_node(backend_, name);
  auto live = live_of(backend_);
  json out = node_with_live(n, live);
  out["capabilities"] = json_or_null(n.capabilities);
  return reply(200, {{"node", out}});
}

http_response api::create_node(const http_request& req) {
  auto body = json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    bad_request("the body must be a JSON object such as {\"name\":\"node-1\"}");
  if (!body.contains("name") || !body["name"].is_string())
    bad_request("the body needs a string field \"name\"");
  for (auto& [k, v] : body.items())
    if (k != "name")
      bad_request("unknown field \"" + k + "\"; allowed: name");
  auto name = body["name"].get<std::string>();
  if (!valid_node_name(name))
    bad_request("invalid node name '" + name + "' (letters, digits, - _ . only, 1 to 255 characters)");
  auto key = generate_api_key();
  auto r = backend_.create_node(storage::node_create{name, "", key.key_id, key.key_hash});
  if (!r.created)
    conflict("a node named '" + name + "' already exists");
  return reply(201, {{"node", node_json(r.node, false, 0)}, {"key", key.key}});
}

http_response api::node_action(const std::string& name, const std::string& action) {
  if (action == "disable") {
    auto r = backend_.disable_node(name);
    if (!r.found)
      not_found("no node named '" + name + "'");
    bool closed = backend_.close_session(name);
    return reply(200, {{"node", node_json(r.node, false, 0)}, {"closed_session", closed}});
  }
  if (action == "enable") {
    auto r = backend_.enable_node(name);
    if (!r.found)
      not_found("no node named '" + name + "'");
    return reply(200, {{"node", node_json(r.node, false, 0)}});
  }
  auto key = generate_api_key();
  auto r = backend_.set_key(storage::node_set_key{name, key.key_id, key.key_hash});
  if (!r.found)
    not_found("no node named '" + name + "'");
  auto live = live_of(backend_);
  return reply(200, {{"node", node_with_live(r.node, live)}, {"key", key.key}});
}

// --- attempts ----------------------------------------------------------------------------------

http_response api::list_attempts(const http_request& req) {
  only_params(req, {"node", "sync_state", "state", "limit", "after"});
  storage::attempt_list op;
  op.sync_state = one_of(req, "sync_state", sync_states);
  op.state = one_of(req, "state", attempt_states);
  op.limit = limit_param(req);
  if (auto after = param(req, "after")) {
    if (!is_uuid(*after))
      bad_request("after must be the 'next' value of the previous page (an attempt id), not '" + *after + "'");
    op.after_id = lower_id(*after);
  }
  if (auto name = node_param(req, "node"))
    op.node_id = find_node(backend_, *name).id;
  auto rows = backend_.attempts(op);
  json out = json::object();
  auto& arr = out["attempts"] = json::array();
  for (auto& a : rows)
    arr.push_back(attempt_json(a));
  out["next"] = static_cast<int64_t>(rows.size()) == op.limit ? json(rows.back().id) : json(nullptr);
  return reply(200, std::move(out));
}

http_response api::show_attempt(const std::string& id) {
  if (!is_uuid(id))
    not_found("no attempt " + id + " (attempt ids are UUIDs)");
  auto r = backend_.attempt(id);
  if (!r.found)
    not_found("no attempt " + id);
  json backfill = nullptr;
  if (is(r.attempt.sync_state, sync_state::partial)) {
    // Reading an incomplete attempt asks its node for it, without making the reader wait.
    bool connected = false;
    try {
      for (auto& c : backend_.connected())
        connected = connected || c.node_id == r.attempt.node_id;
    } catch (const unavailable&) {
    }
    if (connected) {
      backend_.backfill_async(id);
      backfill = {{"requested", true}};
    } else {
      backfill = {{"requested", false}, {"reason", "node offline"}};
    }
  }
  return reply(200, {{"attempt", attempt_json(r.attempt)}, {"backfill", backfill}});
}

http_response api::backfill_attempt(const std::string& id) {
  if (!is_uuid(id))
    not_found("no attempt " + id + " (attempt ids are UUIDs)");
  auto r = backend_.backfill(id);
  switch (r.status) {
    case order_status::requested:
      return reply(202, {{"job_id", r.request_id}, {"attempts", r.attempts}});
    case order_status::not_found:
      not_found("no attempt " + id);
    case order_status::offline:
      conflict("the node of attempt " + id + " is not connected");
    case order_status::busy:
      conflict("the node of attempt " + id + " has max_inflight_per_node requests in flight; try again later");
    case order_status::not_partial:
    case order_status::nothing_to_mark:
      conflict("attempt " + id + " is not partial" + (r.message.empty() ? "" : ": " + r.message));
    case order_status::stopping:
      throw unavailable("the coordinator is shutting down");
    case order_status::error:
      break;
  }
  throw unavailable(r.message.empty() ? "the backfill could not be requested" : r.message);
}

http_response api::requeue_attempt(const std::string& id) {
  if (!is_uuid(id))
    not_found("no attempt " + id + " (attempt ids are UUIDs)");
  auto r = backend_.requeue(id);
  if (!r.found)
    not_found("no attempt " + id);
  if (!r.requeued)
    conflict("attempt " + id + " is not failed; only failed attempts are requeued");
  auto a = backend_.attempt(id);
  return reply(200, {{"attempt", attempt_json(a.attempt)}});
}

// --- jobs --------------------------------------------------------------------------------------

http_response api::list_jobs(const http_request& req) {
  only_params(req, {"status", "type", "node", "limit", "before"});
  storage::job_query q;
  q.statuses = list_of(req, "status", job_statuses);
  q.types = list_of(req, "type", job_types);
  q.limit = limit_param(req);
  if (auto before = param(req, "before")) {
    // "<created_at>,<job id>": both halves checked here, so the database never sees junk (a
    // non-UUID id is an error on PostgreSQL and a meaningless text comparison on SQLite).
    auto comma = before->find(',');
    auto at = comma == std::string::npos ? std::nullopt : parse_time(before->substr(0, comma));
    auto id = comma == std::string::npos ? std::string() : before->substr(comma + 1);
    if (!at || !is_uuid(id))
      bad_request("before must be the 'next' value of the previous page (<created_at>,<job id>), not '" + *before
                  + "'");
    q.before_created_at = format_time(*at);
    q.before_id = lower_id(id);
  }
  if (auto name = node_param(req, "node"))
    q.node_id = find_node(backend_, *name).id;
  auto rows = backend_.jobs(q);
  json out = json::object();
  auto& arr = out["jobs"] = json::array();
  for (auto& j : rows)
    arr.push_back(job_json(j));
  out["next"] = static_cast<int64_t>(rows.size()) == q.limit ? json(rows.back().created_at + "," + rows.back().id)
                                                             : json(nullptr);
  return reply(200, std::move(out));
}

http_response api::prune_jobs(const http_request& req) {
  only_params(req, {"status", "type", "older_than"});
  auto statuses = list_of(req, "status", job_statuses);
  auto types = list_of(req, "type", job_types);
  auto older = param(req, "older_than");
  if (statuses.empty() && types.empty() && !older)
    bad_request("refusing to prune without a filter: give status, type or older_than");
  for (auto& s : statuses)
    if (!is_final(*parse<job_status>(s))) // list_of checked the spelling
      bad_request("queued and running jobs are never pruned");
  auto cutoff = [&](std::chrono::milliseconds age) { return format_time(system_now() - age); };
  int64_t deleted = 0;
  if (older) {
    auto age = parse_age(*older);
    if (!age)
      bad_request("older_than must be a duration such as 7d, 24h or 90m, not '" + *older + "'");
    // A cutoff before the first job ever written is not a filter but an overflow.
    if (*age > max_prune_age)
      bad_request("older_than must be at most " + std::to_string(max_prune_age.count() / (24 * 3600 * 1000))
                  + "d, not '" + *older + "'");
    deleted = backend_.prune(storage::jobs_prune{statuses, types, cutoff(*age)}).deleted;
  } else {
    // Default retention: failed jobs 30 days, other finished jobs 7 days.
    std::vector<std::string> failed, rest;
    auto wanted = statuses.empty() ? job_statuses : statuses;
    for (auto& s : wanted) {
      auto status = *parse<job_status>(s);
      if (status == job_status::failed)
        failed.push_back(s);
      else if (is_final(status))
        rest.push_back(s);
    }
    if (!failed.empty())
      deleted += backend_.prune(storage::jobs_prune{failed, types, cutoff(keep_failed)}).deleted;
    if (!rest.empty())
      deleted += backend_.prune(storage::jobs_prune{rest, types, cutoff(keep_finished)}).deleted;
  }
  return reply(200, {{"deleted", deleted}});
}

} // namespace nodecoord::admin
