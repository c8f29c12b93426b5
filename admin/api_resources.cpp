// The admin API's resources: nodes, attempts and jobs (docs/admin-api.md). Routing, health and
// metrics are in admin/api.cpp.
#include "admin/api.hpp"
#include "admin/api_support.hpp"

#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "common/ids.hpp"
#include "config/defaults.hpp"
#include "config/duration.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>

namespace nodecoord::admin {

using namespace detail;

// --- nodes -------------------------------------------------------------------------------------

namespace {

struct live_view {
  std::set<std::string> connected; // node ids
  std::map<std::string, uint64_t> in_flight;
  std::vector<inflight_request> requests; // of these nodes, from one read of the tracker
};

/// The live view of these nodes only: the registry is asked about them, not the whole fleet.
live_view live_of(backend& b, const std::vector<storage::node_record>& nodes) {
  live_view v;
  std::vector<std::string> ids;
  for (auto& n : nodes)
    ids.push_back(n.id);
  for (auto& c : b.connected_among(ids))
    v.connected.insert(c.node_id);
  std::set<std::string> page(ids.begin(), ids.end());
  for (auto& r : b.tracker().requests)
    if (page.count(r.node_id)) {
      ++v.in_flight[r.node_id];
      v.requests.push_back(std::move(r));
    }
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

http_response api::list_nodes(const http_request& req) {
  only_params(req, {"limit", "after", "status"});
  storage::node_list op;
  op.limit = limit_param(req);
  op.status = one_of(req, "status", node_statuses);
  if (auto after = param(req, "after")) {
    if (!valid_node_name(*after))
      bad_request("after must be the 'next' value of the previous page (a node name), not '" + *after + "'");
    op.after_name = *after;
  }
  auto nodes = backend_.nodes(op);
  auto live = live_of(backend_, nodes);
  json out = json::object();
  auto& arr = out["nodes"] = json::array();
  for (auto& n : nodes)
    arr.push_back(node_with_live(n, live));
  out["next"] = static_cast<int64_t>(nodes.size()) == op.limit ? json(nodes.back().name) : json(nullptr);
  return reply(200, std::move(out));
}

http_response api::show_node(const std::string& name) {
  auto n = find_node(backend_, name);
  auto live = live_of(backend_, {n});
  json out = node_with_live(n, live);
  out["capabilities"] = json_or_null(n.capabilities);
  // The node page (dashboard): its attempts by sync state and its requests in flight.
  json attempts = json::object();
  for (auto& s : sync_states)
    attempts[s] = 0;
  for (auto& [s, c] : backend_.node_attempts(n.id).by_sync_state)
    attempts[s] = c;
  json requests = json::array();
  for (auto& r : live.requests)
    requests.push_back({{"request_id", r.request_id},
                        {"trigger", r.trigger},
                        {"sent", r.sent},
                        {"attempts", r.attempts},
                        {"age_ms", r.age_ms}});
  return reply(200, {{"node", out}, {"attempts", attempts}, {"requests", requests}});
}

http_response api::create_node(const http_request& req) {
  audit_for("node.create", "");
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
  auto r =
    backend_.create_node(storage::node_create{name, "", key.key_id, key.key_hash, audit_for("node.create", name)});
  audit_written();
  if (!r.created)
    conflict("a node named '" + name + "' already exists");
  return reply(201, {{"node", node_json(r.node, false, 0)}, {"key", key.key}});
}

http_response api::node_action(const std::string& name, const std::string& action) {
  // A name no node can have (names are checked when created) is looked up nowhere: PostgreSQL
  // would refuse one that is not UTF-8 with an error, not "no such node".
  if (!valid_node_name(name))
    not_found("no node named '" + name + "'");
  if (action == "disable") {
    auto r = backend_.disable_node(storage::node_disable{name, audit_for("node.disable", name)});
    audit_written();
    if (!r.found)
      not_found("no node named '" + name + "'");
    bool closed = backend_.close_session(name);
    return reply(200, {{"node", node_json(r.node, false, 0)}, {"closed_session", closed}});
  }
  if (action == "enable") {
    auto r = backend_.enable_node(storage::node_enable{name, audit_for("node.enable", name)});
    audit_written();
    if (!r.found)
      not_found("no node named '" + name + "'");
    return reply(200, {{"node", node_json(r.node, false, 0)}});
  }
  auto key = generate_api_key();
  auto r = backend_.set_key(storage::node_set_key{name, key.key_id, key.key_hash, audit_for("node.rotate_key", name)});
  audit_written();
  if (!r.found)
    not_found("no node named '" + name + "'");
  auto live = live_of(backend_, {r.node});
  return reply(200, {{"node", node_with_live(r.node, live)}, {"key", key.key}});
}

http_response api::drain_node(const std::string& name, const http_request& req) {
  audit_for("node.drain", name);
  if (!valid_node_name(name))
    not_found("no node named '" + name + "'");
  auto deadline = std::chrono::duration_cast<std::chrono::milliseconds>(defaults::admin_drain_deadline);
  if (auto d = param(req, "deadline")) {
    auto parsed = config::parse_duration(*d);
    if (!parsed || *parsed > defaults::admin_drain_deadline_max)
      bad_request(
        "deadline must be a duration such as 30s or 1m, at most "
        + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(defaults::admin_drain_deadline_max).count())
        + "s, not '" + *d + "'");
    deadline = *parsed;
  }
  auto n = find_node(backend_, name);
  // 1. No new requests; those in flight finish, or are reset at the deadline.
  auto drained = backend_.drain(n.id, deadline);
  // 2. Its session closed with `drained`: the agent stops reconnecting. Before the disable, or the
  // registry's poll of disabled nodes could close it first with `disabled` (the agent would retry).
  bool closed = backend_.close_drained(name);
  // 3. Disabled, so it cannot come back until an operator enables it.
  auto r = backend_.disable_node(storage::node_disable{name});
  if (!r.found)
    not_found("no node named '" + name + "'"); // deleted meanwhile
  int64_t partial = 0;
  for (auto& [state, count] : backend_.node_attempts(n.id).by_sync_state)
    if (state == "partial")
      partial = count;
  json counts{{"requests_finished", drained.requests_finished},
              {"requests_reset", drained.requests_reset},
              {"attempts_partial", partial}};
  // The change spans the tracker and storage, so its row is written after it (like an order).
  audit_after(counts.dump());
  json out = counts;
  out["node"] = node_json(r.node, false, 0);
  out["closed_session"] = closed;
  return reply(200, std::move(out));
}

// --- checks ------------------------------------------------------------------------------------

namespace {

json check_json(const check_definition& c) {
  return {{"name", c.name}, {"argv", c.argv}, {"timeout_ms", c.timeout.count()}, {"output_max", c.output_max}};
}

} // namespace

http_response api::list_checks() {
  json out = json::array();
  for (auto& c : opts_.checks)
    out.push_back(check_json(c));
  return reply(200, {{"checks", out}});
}

const check_definition& api::configured_check(const std::string& name) const {
  for (auto& c : opts_.checks)
    if (c.name == name)
      return c;
  std::vector<std::string> names;
  for (auto& c : opts_.checks)
    names.push_back(c.name);
  // The coordinator runs nothing it was not configured with: no argv ever comes from a caller.
  throw api_error{404, "unknown_check",
                  "no check named '" + name + "' in this coordinator's config ([checks.NAME]); configured: "
                    + (names.empty() ? "none" : join(names))};
}

std::pair<storage::job_record, check_dispatch_result> api::send_check(const std::string& node_id,
                                                                      const check_definition& def) {
  storage::job_insert op;
  op.job.id = new_uuid();
  op.job.type = "check";
  op.job.status = "running";
  op.job.node_id = node_id;
  op.job.detail = json{{"check", def.name}, {"argv", def.argv}}.dump();
  op.job.created_at = now_text();
  op.job.started_at = op.job.created_at;
  backend_.insert_job(op);
  auto sent = backend_.dispatch_check(
    check_dispatch{node_id, op.job.id, def.name, def.argv, static_cast<int64_t>(def.timeout.count()), def.output_max});
  if (!sent.sent)
    backend_.update_job(storage::job_update{op.job.id, "failed", "", sent.code + ": " + sent.message});
  return {op.job, sent};
}

http_response api::run_check(const std::string& name, const std::string& check) {
  audit_for("node.check", name, json{{"check", check}}.dump(-1, ' ', false, json::error_handler_t::replace));
  const auto& def = configured_check(check);
  if (!valid_node_name(name))
    not_found("no node named '" + name + "'");
  auto n = find_node(backend_, name);
  auto [job, sent] = send_check(n.id, def);
  if (!sent.sent)
    throw api_error{409, sent.code, sent.message + " (job " + job.id + " failed)", json{{"job_id", job.id}}};
  audit_after(json{{"jobs", 1}, {"job_id", job.id}}.dump());
  json out = check_json(def);
  out["job"] = job_json(job);
  out["node"] = name;
  return reply(202, std::move(out));
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
  // Reading has no side effect (a page could make a browser read): asking the node for a partial
  // attempt is POST /api/attempts/{id}/backfill.
  return reply(200, {{"attempt", attempt_json(r.attempt)}});
}

http_response api::attempt_logs(const std::string& id, const http_request& req) {
  only_params(req, {"after", "limit"});
  if (!is_uuid(id))
    not_found("no attempt " + id + " (attempt ids are UUIDs)");
  storage::logs_get op{id};
  op.limit = limit_param(req);
  if (auto after = cursor_param(req, "after", 0, "a line's seq"))
    op.after_seq = *after;
  if (!backend_.attempt(id).found)
    not_found("no attempt " + id);
  auto rows = backend_.logs(op);
  json out = json::object();
  auto& arr = out["lines"] = json::array();
  for (auto& l : rows)
    arr.push_back({{"seq", l.seq}, {"ts", l.ts}, {"stream", l.stream}, {"line", l.line}});
  out["next"] = static_cast<int64_t>(rows.size()) == op.limit ? json(rows.back().seq) : json(nullptr);
  return reply(200, std::move(out));
}

http_response api::backfill_attempt(const std::string& id) {
  audit_for("attempt.backfill", id);
  if (!is_uuid(id))
    not_found("no attempt " + id + " (attempt ids are UUIDs)");
  auto r = backend_.backfill(id);
  switch (r.status) {
    case order_status::requested:
      audit_after(json{{"attempts", r.attempts}, {"job_id", r.request_id}}.dump());
      return reply(202, {{"job_id", r.request_id}, {"attempts", r.attempts}});
    case order_status::not_found: not_found("no attempt " + id);
    case order_status::offline: conflict("the node of attempt " + id + " is not connected");
    case order_status::busy:
      conflict("the node of attempt " + id + " has max_inflight_per_node requests in flight; try again later");
    case order_status::not_partial:
    case order_status::nothing_to_mark:
      conflict("attempt " + id + " is not partial" + (r.message.empty() ? "" : ": " + r.message));
    case order_status::stopping: throw unavailable("the coordinator is shutting down");
    case order_status::error: break;
  }
  throw unavailable(r.message.empty() ? "the backfill could not be requested" : r.message);
}

http_response api::requeue_attempt(const std::string& id) {
  audit_for("attempt.requeue", id);
  if (!is_uuid(id))
    not_found("no attempt " + id + " (attempt ids are UUIDs)");
  auto r = backend_.requeue(storage::attempt_requeue{id, audit_for("attempt.requeue", id)});
  audit_written();
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
  out["next"] =
    static_cast<int64_t>(rows.size()) == q.limit ? json(rows.back().created_at + "," + rows.back().id) : json(nullptr);
  return reply(200, std::move(out));
}

http_response api::get_job(const std::string& raw_id) {
  if (!is_uuid(raw_id))
    not_found("no job '" + raw_id + "' (a job id is a UUID)");
  storage::job_query q;
  q.id = lower_id(raw_id);
  q.limit = 1;
  auto rows = backend_.jobs(q);
  if (rows.empty())
    not_found("no job " + q.id);
  return reply(200, {{"job", job_json(rows[0])}});
}

http_response api::prune_jobs(const http_request& req) {
  json filter = json::object();
  for (auto& [k, v] : req.params)
    filter[k] = v;
  auto filter_text = filter.dump(-1, ' ', false, json::error_handler_t::replace);
  audit_for("jobs.prune", "", filter_text);
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
  // One operation: the count and the ledger's row in the transaction of the delete.
  storage::jobs_prune op{statuses, types, "", audit_for("jobs.prune", "", filter_text)};
  if (older) {
    auto age = parse_age(*older);
    if (!age)
      bad_request("older_than must be a duration such as 7d, 24h or 90m, not '" + *older + "'");
    // A cutoff before the first job ever written is not a filter but an overflow.
    if (*age > max_prune_age)
      bad_request("older_than must be at most " + std::to_string(max_prune_age.count() / (24 * 3600 * 1000))
                  + "d, not '" + *older + "'");
    op.older_than = cutoff(*age);
  } else {
    // Default retention: failed jobs 30 days, other finished jobs 7 days.
    op.older_than = cutoff(keep_finished);
    op.failed_older_than = cutoff(keep_failed);
  }
  auto deleted = backend_.prune(op).deleted;
  audit_written();
  return reply(200, {{"deleted", deleted}});
}

// --- history (the dashboard's charts) -----------------------------------------------------------

http_response api::list_history(const http_request& req) {
  only_params(req, {"window"});
  auto window = std::chrono::milliseconds(std::chrono::hours(1));
  if (auto w = param(req, "window")) {
    auto parsed = config::parse_duration(*w);
    if (!parsed || parsed->count() <= 0 || *parsed > std::chrono::hours(1))
      bad_request("window must be a duration up to 1h (what is kept), such as 15m, not '" + *w + "'");
    window = *parsed;
  }
  auto number_or_null = [](double v) { return v < 0 ? json(nullptr) : json(std::round(v * 10) / 10); };
  json points = json::array();
  for (auto& p : history_.points(window))
    points.push_back({{"at", p.at},
                      {"connected", p.connected < 0 ? json(nullptr) : json(p.connected)},
                      {"completed_per_minute", number_or_null(p.completed_per_minute)},
                      {"backfill_latency_ms", number_or_null(p.backfill_latency_ms)}});
  return reply(200,
               {{"every_seconds", std::chrono::duration_cast<std::chrono::seconds>(defaults::history_every).count()},
                {"points", points}});
}

// --- audit -------------------------------------------------------------------------------------

http_response api::list_audit(const http_request& req) {
  only_params(req, {"actor", "action", "result", "target", "since", "until", "before", "limit"});
  storage::audit_query q;
  q.actor = param(req, "actor").value_or("");
  q.action = param(req, "action").value_or("");
  q.target = param(req, "target").value_or("");
  q.result = one_of(req, "result", {std::begin(storage::audit_results), std::end(storage::audit_results)});
  for (auto [name, out] : {std::pair{"since", &q.since}, std::pair{"until", &q.until}})
    if (auto v = param(req, name)) {
      auto t = parse_time(*v);
      if (!t)
        bad_request(std::string(name) + " must be an RFC 3339 time such as 2026-01-09T12:00:00Z, not '" + *v + "'");
      *out = format_time(*t);
    }
  if (auto before = cursor_param(req, "before", 1, "a positive id"))
    q.before_id = *before;
  q.limit = limit_param(req);
  auto rows = backend_.audit(q);
  json out = json::object();
  auto& arr = out["entries"] = json::array();
  auto doc = [](const std::string& text) { return text.empty() ? json(nullptr) : json::parse(text, nullptr, false); };
  auto text_or_null = [](const std::string& text) { return text.empty() ? json(nullptr) : json(text); };
  for (auto& r : rows)
    arr.push_back({{"id", r.id},
                   {"at", r.at},
                   {"actor", r.entry.actor},
                   {"action", r.entry.action},
                   {"target", text_or_null(r.entry.target)},
                   {"filter", doc(r.entry.filter)},
                   {"counts", doc(r.entry.counts)},
                   {"result", r.entry.result},
                   {"error", text_or_null(r.entry.error)},
                   {"instance_id", text_or_null(r.instance_id)}});
  out["next"] = static_cast<int64_t>(rows.size()) == q.limit ? json(std::to_string(rows.back().id)) : json(nullptr);
  return reply(200, std::move(out));
}

} // namespace nodecoord::admin
