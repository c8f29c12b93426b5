#include "admin/api.hpp"
#include "admin/api_support.hpp"
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

using namespace detail;

namespace {

/// The audit state of the call an HTTP thread is handling (one call at a time per thread).
struct call_audit {
  storage::audit_entry entry; // actor set by handle(), action/target by the route
  bool mutating = false;      // POST or DELETE: every one is in the ledger, whatever its outcome
  bool written = false;
};

thread_local call_audit* current_call = nullptr;

/// An error answer's code and message, for the ledger.
std::string error_of(const http_response& r) {
  auto j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.contains("error") || !j["error"].is_object())
    return "HTTP " + std::to_string(r.status);
  auto& e = j["error"];
  return e.value("code", "") + ": " + e.value("message", "");
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
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::hours(24)
                                                                 * std::stoll(text.substr(0, text.size() - 1)));
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
  // Before anything else, the token included: a browser page must not even learn whether it is
  // needed.
  if (auto refused = check_browser(opts_.browser, req.method, req.host, req.origin, req.content_type))
    return failure(refused->status, refused->code, refused->message);
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
  call_audit call;
  call.mutating = req.method == "POST" || req.method == "DELETE";
  // Which token (not the token): its hash's first 8 hex digits; "local" when none is required.
  call.entry.actor = token_hash.empty() ? "local" : "token:" + token_hash.substr(0, 8);
  call.entry.action = "request";
  // The ledger's text is made valid UTF-8 where it is written (storage::append_audit).
  call.entry.target = req.method + " " + req.path.substr(0, 200);
  current_call = &call;
  http_response out;
  try {
    out = route(req);
  } catch (const api_error& e) {
    out = failure(e.status, e.code, e.message, e.detail);
  } catch (const unavailable& e) {
    out = failure(503, "unavailable", e.what());
  } catch (const std::exception& e) {
    out = failure(500, "internal", e.what());
  }
  current_call = nullptr;
  if (call.mutating && !call.written) {
    // Refused before its change (a bad filter, a missing node, a conflict) or failed without an
    // answer: a row of its own. A call that succeeded wrote its row already.
    auto e = call.entry;
    e.result = out.status < 400 ? "succeeded" : out.status < 500 ? "refused" : "failed";
    if (out.status >= 400)
      e.error = error_of(out);
    if (out.status == 503)
      e.error += " (the change may still have been made: see the rows after this one)";
    try {
      backend_.append_audit(storage::audit_append{e});
    } catch (const std::exception&) { // the database is what failed: the answer says so already
    }
  }
  return out;
}

storage::audit_entry api::audit_for(const std::string& action, const std::string& target, const std::string& filter) {
  storage::audit_entry e;
  if (current_call) {
    current_call->entry.action = action;
    current_call->entry.target = target.substr(0, 200);
    current_call->entry.filter = filter;
    e = current_call->entry;
  } else {
    e.actor = "local";
    e.action = action;
    e.target = target;
    e.filter = filter;
  }
  return e;
}

void api::audit_written() {
  if (current_call)
    current_call->written = true;
}

void api::audit_after(const std::string& counts) {
  if (!current_call)
    return;
  auto e = current_call->entry;
  e.result = "succeeded";
  e.counts = counts;
  // Marked first: a row that could not be written is not written again as "failed" by handle().
  current_call->written = true;
  try {
    backend_.append_audit(storage::audit_append{e});
  } catch (const std::exception&) { // the change is made; the database failed only the ledger
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
        return list_nodes(req);
      if (m == "POST")
        return (only_params(req, {}), create_node(req));
      return method_not_allowed("GET, POST");
    }
    if (seg.size() == 3)
      return m == "GET" ? (only_params(req, {}), show_node(seg[2])) : method_not_allowed("GET");
    if (seg.size() == 5 && seg[3] == "checks")
      return m == "POST" ? (only_params(req, {}), run_check(seg[2], seg[4])) : method_not_allowed("POST");
    if (seg.size() == 4 && seg[3] == "drain")
      return m == "POST" ? (only_params(req, {"deadline"}), drain_node(seg[2], req)) : method_not_allowed("POST");
    if (seg.size() == 4 && (seg[3] == "disable" || seg[3] == "enable" || seg[3] == "rotate-key"))
      return m == "POST" ? (only_params(req, {}), node_action(seg[2], seg[3])) : method_not_allowed("POST");
  }
  if (seg.size() == 2 && seg[1] == "checks")
    return m == "GET" ? (only_params(req, {}), list_checks()) : method_not_allowed("GET");
  if (seg.size() >= 2 && seg[1] == "attempts") {
    if (seg.size() == 2)
      return m == "GET" ? list_attempts(req) : method_not_allowed("GET");
    // The id in one spelling before anything looks it up (see lower_id).
    auto id = seg.size() >= 3 ? lower_id(seg[2]) : std::string();
    if (seg.size() == 3)
      return m == "GET" ? (only_params(req, {}), show_attempt(id)) : method_not_allowed("GET");
    if (seg.size() == 4 && seg[3] == "logs")
      return m == "GET" ? attempt_logs(id, req) : method_not_allowed("GET");
    if (seg.size() == 4 && seg[3] == "backfill")
      return m == "POST" ? (only_params(req, {}), backfill_attempt(id)) : method_not_allowed("POST");
    if (seg.size() == 4 && seg[3] == "requeue")
      return m == "POST" ? (only_params(req, {}), requeue_attempt(id)) : method_not_allowed("POST");
  }
  if (seg.size() == 3 && seg[1] == "jobs")
    return m == "GET" ? (only_params(req, {}), get_job(seg[2])) : method_not_allowed("GET");
  if (seg.size() == 2 && seg[1] == "jobs") {
    if (m == "GET")
      return list_jobs(req);
    if (m == "DELETE")
      return prune_jobs(req);
    return method_not_allowed("GET, DELETE");
  }
  if (seg.size() == 4 && seg[1] == "bulk") {
    if (m != "POST")
      return method_not_allowed("POST");
    return (only_params(req, {}), bulk(seg[2], seg[3], req));
  }
  if (seg.size() == 2 && seg[1] == "history")
    return m == "GET" ? list_history(req) : method_not_allowed("GET");
  if (seg.size() == 2 && seg[1] == "audit")
    return m == "GET" ? list_audit(req) : method_not_allowed("GET");
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
    data["connected"] = backend_.connected_count();
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
  // Several instances share the database (DESIGN §9): which one answers, and every lease.
  data["instance"] = opts_.instance_id;
  try {
    json list = json::array();
    for (auto& i : backend_.instances()) {
      json age = nullptr;
      if (auto at = parse_time(i.heartbeat_at))
        age = std::chrono::duration_cast<std::chrono::milliseconds>(system_now() - *at).count() / 1000.0;
      list.push_back({{"id", i.id},
                      {"this", i.id == opts_.instance_id},
                      {"incarnation", i.incarnation},
                      {"listen", i.listen},
                      {"version", i.version},
                      {"started_at", i.started_at},
                      {"heartbeat_at", i.heartbeat_at},
                      {"lease_age_seconds", age},
                      {"recovered_at", i.recovered_at.empty() ? json() : json(i.recovered_at)},
                      {"recovered_by", i.recovered_by.empty() ? json() : json(i.recovered_by)}});
    }
    data["instances"] = list;
  } catch (const unavailable&) {
    missing.push_back("instances");
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
  w.family("nodecoord_fenced_writes_total", "counter",
           "Writes of a session that is no longer its node's current one, refused by the epoch fence (the session "
           "is closed with reason superseded).");
  w.sample("nodecoord_fenced_writes_total", static_cast<double>(m.fenced_writes.load()));
  w.family("nodecoord_lease_losses_total", "counter",
           "Times this instance found its lease taken by another (it closes every session and rejoins).");
  w.sample("nodecoord_lease_losses_total", static_cast<double>(m.lease_losses.load()));
  w.family("nodecoord_instances_recovered_total", "counter",
           "Instances whose lease expired that this instance recovered.");
  w.sample("nodecoord_instances_recovered_total", static_cast<double>(m.instances_recovered.load()));
  w.family("nodecoord_reconnect_probes_total", "counter",
           "Reconnect trigger: statements that asked which newly connected nodes have partial attempts.");
  w.sample("nodecoord_reconnect_probes_total", static_cast<double>(m.reconnect_probes.load()));
  w.family("nodecoord_reconnect_idle_total", "counter",
           "Reconnect trigger: sessions whose node had no partial attempts (no request, no paced slot used).");
  w.sample("nodecoord_reconnect_idle_total", static_cast<double>(m.reconnect_idle.load()));
  w.family("nodecoord_reconnect_requests_total", "counter", "Reconnect trigger: paced backfill orders.");
  w.sample("nodecoord_reconnect_requests_total", static_cast<double>(m.reconnect_requests.load()));
  w.family("nodecoord_session_capacity", "gauge",
           "Node sessions the process's descriptor limit allows (the soft limit, raised to the hard one at startup, "
           "less the descriptors kept for the daemon itself).");
  w.sample("nodecoord_session_capacity", static_cast<double>(m.session_capacity.load()));
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
  w.family("nodecoord_tls_failures_total", "counter",
           "Node connections whose TLS stream failed: a refused handshake (wrong CA, expired or missing "
           "certificate, version) or records that do not decrypt.");
  w.sample("nodecoord_tls_failures_total", static_cast<double>(m.tls_failures.load()));
  try {
    auto t = backend_.tracker();
    w.family("nodecoord_backfill_requests_total", "counter", "Backfill requests by outcome.");
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.requested), {{"outcome", "created"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.answered), {{"outcome", "completed"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.expired), {{"outcome", "expired"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.cancelled), {{"outcome", "cancelled"}});
    w.sample("nodecoord_backfill_requests_total", static_cast<double>(t.send_failures), {{"outcome", "send_failed"}});
    w.family("nodecoord_backfill_requests_in_flight", "gauge", "Backfill requests waiting for an answer.");
    w.sample("nodecoord_backfill_requests_in_flight", static_cast<double>(t.requests.size()));
    w.family("nodecoord_backfill_attempts_total", "counter",
             "Attempts settled by backfill responses and expired requests.");
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
    w.sample("nodecoord_database_errors_total", static_cast<double>(st.stats.connection_errors),
             {{"kind", "connection"}});
    w.sample("nodecoord_database_errors_total", static_cast<double>(st.stats.transient_errors),
             {{"kind", "transient"}});
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

} // namespace nodecoord::admin
