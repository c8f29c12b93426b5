// Bulk actions by filter (docs/admin-api.md "Bulk actions"): POST /api/bulk/{action}/plan and
// POST /api/bulk/{action}/apply. A plan counts what the filter matches now against the change
// budget and names the set by a token; an apply changes exactly that set or nothing (409
// plan_stale). Stateless: the apply carries the plan's filter (as the plan answered it, with its
// age resolved to a time) and token, so any instance can apply what another planned.
#include "admin/api.hpp"
#include "admin/api_support.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <map>

namespace nodecoord::admin {

using namespace detail;

namespace {

constexpr int64_t plan_sample = 10;

// The one bulk action on the tracker's requests in flight, not on stored rows.
const std::string requests_cancel = "requests.cancel";

bool is_action(const std::string& action) { return storage::is_bulk_action(action) || action == requests_cancel; }

std::string bulk_action_list() {
  std::string out;
  for (auto* a : storage::bulk_actions)
    out += (out.empty() ? "" : ", ") + std::string(a);
  return out + ", " + requests_cancel;
}

/// The filter fields an action takes.
std::vector<std::string> filter_keys(const std::string& action) {
  if (action == requests_cancel)
    return {"node", "name_prefix", "older_than"};
  if (storage::acts_on_attempts(action))
    return {"node", "node_status", "sync_state", "state", "task_prefix", "older_than"};
  return {"node", "node_status", "name_prefix", "older_than"};
}

/// The sync states an attempt action changes (its own condition; a filter outside them matches
/// nothing, so it is refused as a mistake).
std::vector<std::string> acted_sync_states(const std::string& action) {
  if (action == "attempts.requeue")
    return {"failed"};
  if (action == "attempts.prune_logs")
    return {"complete"};
  return {"complete", "failed"};
}

std::string text_field(const json& v, const std::string& key) {
  if (!v.is_string())
    bad_request("filter." + key + " must be a string");
  auto s = v.get<std::string>();
  if (s.empty())
    bad_request("filter." + key + " is empty; leave it out to not filter by it");
  return s;
}

storage::bulk_filter parse_filter(const std::string& action, const json& body) {
  storage::bulk_filter f;
  if (body.contains("all")) {
    if (!body["all"].is_boolean())
      bad_request("all must be true or false");
    f.all = body["all"].get<bool>();
  }
  if (body.contains("filter")) {
    auto& filter = body["filter"];
    if (!filter.is_object())
      bad_request("filter must be a JSON object such as {\"node_status\":\"offline\"}");
    auto keys = filter_keys(action);
    for (auto& item : filter.items()) {
      // Named copies, not structured bindings: clang 14 (the fuzz build) cannot capture those.
      const std::string k = item.key();
      const json& v = item.value();
      if (std::find(keys.begin(), keys.end(), k) == keys.end())
        bad_request("unknown filter field '" + k + "' for " + action + "; allowed: " + join(keys));
      auto s = text_field(v, k);
      auto member_of = [&](const std::vector<std::string>& allowed) {
        if (std::find(allowed.begin(), allowed.end(), s) == allowed.end())
          bad_request("unknown filter." + k + " '" + s + "'; allowed: " + join(allowed));
      };
      if (k == "node") {
        if (!valid_node_name(s))
          bad_request("filter.node must be a node name (letters, digits, - _ . only), not '" + s + "'");
        f.node = s;
      } else if (k == "node_status") {
        member_of(node_statuses);
        f.node_status = s;
      } else if (k == "sync_state") {
        member_of(sync_states);
        auto acted = acted_sync_states(action);
        if (std::find(acted.begin(), acted.end(), s) == acted.end())
          bad_request(action + " changes only attempts whose sync_state is " + join(acted) + ", not '" + s + "'");
        f.sync_state = s;
      } else if (k == "state") {
        member_of(attempt_states);
        f.state = s;
      } else if (k == "task_prefix" || k == "name_prefix") {
        if (s.size() > 255)
          bad_request("filter." + k + " is longer than 255 bytes");
        (k == "task_prefix" ? f.task_prefix : f.name_prefix) = s;
      } else { // older_than: an age from now, or a time (what a plan answers, so its apply matches)
        if (auto t = parse_time(s)) {
          f.older_than = format_time(*t);
        } else {
          auto age = parse_age(s);
          if (!age)
            bad_request("filter.older_than must be an age such as 7d, 24h or 90m, or an RFC 3339 time, not '" + s
                        + "'");
          if (*age > max_prune_age)
            bad_request("filter.older_than must be at most " + std::to_string(max_prune_age.count() / 86'400'000)
                        + "d, not '" + s + "'");
          f.older_than = format_time(system_now() - *age);
        }
      }
    }
  }
  if (f.empty() && !f.all)
    throw api_error{400, "filter_required",
                    action + " needs a filter (" + join(filter_keys(action))
                      + "); to act on every row it applies to, say so with \"all\": true"};
  if (action == "attempts.prune_logs" && f.older_than.empty())
    bad_request("attempts.prune_logs needs filter.older_than (an age such as 30d, or a time): the lines of "
                "complete attempts last updated before it are pruned");
  return f;
}

json sample_json(const std::string& action, const std::vector<storage::bulk_row>& rows) {
  bool attempts = storage::acts_on_attempts(action);
  json out = json::array();
  for (auto& r : rows)
    out.push_back(
      {{"id", r.id}, {attempts ? "task_id" : "name", r.label}, {attempts ? "sync_state" : "status", r.status}});
  return out;
}

[[noreturn]] void over_budget(const std::string& action, int64_t limit, int64_t requested) {
  throw api_error{400, "budget_exceeded",
                  action + " matches " + std::to_string(requested) + " rows, over this call's budget of "
                    + std::to_string(limit)
                    + "; narrow the filter or raise the call's max_rows (up to admin.max_rows_per_action_hard)",
                  json{{"limit", limit}, {"requested", requested}}};
}

[[noreturn]] void attempts_not_complete(int64_t nodes) {
  throw api_error{409, "attempts_not_complete",
                  std::to_string(nodes)
                    + " of the matched nodes have attempts that are not complete; deleting them would lose data "
                      "a node still holds. Let them settle (or requeue them) first",
                  json{{"nodes", nodes}}};
}

} // namespace

http_response api::send_checks(const check_definition& def, const storage::bulk_action::result_type& r) {
  // One job each; a node that has no session here or an older agent gets a failed job, not a
  // refusal of the whole set (the set was planned and applied; what each node did is its job).
  json counts{{"nodes", r.matched}, {"sent", 0}, {"node_not_connected", 0}, {"checks_unsupported", 0}};
  json jobs = json::array();
  for (size_t i = 0; i < r.node_ids.size(); ++i) {
    auto sent = send_check(r.node_ids[i], def);
    const auto& job = sent.first;
    const auto& result = sent.second;
    auto outcome = result.sent ? std::string("sent") : result.code;
    if (counts.contains(outcome))
      counts[outcome] = counts[outcome].get<int64_t>() + 1;
    jobs.push_back({{"node", i < r.node_names.size() ? r.node_names[i] : ""},
                    {"job_id", job.id},
                    {"sent", result.sent},
                    {"error", result.sent ? json(nullptr) : json(result.code + ": " + result.message)}});
  }
  audit_after(counts.dump());
  return reply(
    200, {{"action", "nodes.check"}, {"check", def.name}, {"matched", r.matched}, {"counts", counts}, {"jobs", jobs}});
}

http_response api::cancel_requests(const storage::bulk_action& op) {
  // The set: requests sent and not yet answered, expired or ended, of nodes with a session here
  // (a request lives in the tracker of the instance its node is connected to). A request still
  // being marked is not in it: its attempts are not known yet.
  auto& f = op.filter;
  std::map<std::string, std::string> name_of; // node id -> name
  for (auto& c : backend_.connected())
    name_of[c.node_id] = c.name;
  std::optional<sys_time> cutoff;
  if (!f.older_than.empty())
    cutoff = parse_time(f.older_than);
  auto now = system_now();
  std::vector<inflight_request> matched;
  for (auto& r : backend_.tracker().requests) {
    auto name = name_of.find(r.node_id);
    if (!r.sent || name == name_of.end())
      continue;
    if (!f.node.empty() && name->second != f.node)
      continue;
    if (!f.name_prefix.empty() && name->second.rfind(f.name_prefix, 0) != 0)
      continue;
    if (cutoff && !(now - std::chrono::milliseconds(r.age_ms) < *cutoff))
      continue;
    matched.push_back(r);
  }
  std::sort(matched.begin(), matched.end(), [](auto& a, auto& b) { return a.request_id < b.request_id; });
  auto count = static_cast<int64_t>(matched.size());
  if (count > op.limit)
    over_budget(op.action, op.limit, count);
  std::string input = op.action + "\n" + f.canonical();
  std::vector<std::string> ids;
  int64_t attempts = 0;
  json sample = json::array();
  for (auto& r : matched) {
    input += "\n" + r.request_id;
    ids.push_back(r.request_id);
    attempts += static_cast<int64_t>(r.attempts);
    if (static_cast<int64_t>(sample.size()) < plan_sample)
      sample.push_back({{"id", r.request_id},
                        {"node", name_of[r.node_id]},
                        {"trigger", r.trigger},
                        {"attempts", r.attempts},
                        {"age_ms", r.age_ms}});
  }
  auto token = sha256_hex(input);
  json filter = json::parse(f.canonical());
  filter.erase("all");
  if (!op.apply) {
    audit_after(json{{"matched", count}}.dump());
    return reply(200, {{"action", op.action},
                       {"filter", filter},
                       {"all", f.all},
                       {"matched", count},
                       {"attempts", attempts},
                       {"budget", {{"limit", op.limit}, {"used", count}}},
                       {"sample", sample},
                       {"token", token}});
  }
  auto stale = [&](const std::string& why) {
    throw api_error{409, "plan_stale", why + "; nothing was cancelled. Plan again", json{{"matched", count}}};
  };
  if (token != op.token)
    stale("the requests in flight that the filter matches changed since the plan (" + std::to_string(count) + " now)");
  // The tracker takes all of them or none: one may have ended since the read above.
  auto r = backend_.cancel_requests(ids);
  if (r.stale)
    stale("one of the planned requests ended (answered, expired or its session closed) since the plan");
  json counts{{"requests", r.requests}, {"attempts", r.attempts}};
  // The change is the tracker's and storage's, so its row is written after it (like a drain).
  audit_after(counts.dump());
  return reply(200, {{"action", op.action}, {"matched", count}, {"counts", counts}});
}

http_response api::bulk(const std::string& action, const std::string& step, const http_request& req) {
  bool apply = step == "apply";
  audit_for(apply ? action : action + "." + step, "");
  if (!is_action(action))
    not_found("no bulk action '" + action + "'; allowed: " + bulk_action_list());
  if (step != "plan" && step != "apply")
    not_found("no route " + req.path + "; a bulk action is planned (…/plan), then applied (…/apply)");
  auto body = json::parse(req.body.empty() ? std::string("{}") : req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    bad_request("the body must be a JSON object such as {\"filter\":{\"node_status\":\"offline\"}}");
  bool checks = action == "nodes.check";
  for (auto& [k, v] : body.items())
    if (k != "filter" && k != "all" && k != "max_rows" && !(apply && k == "token") && !(checks && k == "check"))
      bad_request("unknown field \"" + k + "\"; allowed: filter, all, max_rows" + (checks ? ", check" : "")
                  + (apply ? ", token" : ""));
  storage::bulk_action op;
  op.action = action;
  op.apply = apply;
  op.sample = plan_sample;
  op.filter = parse_filter(action, body);
  const check_definition* def = nullptr;
  if (checks) {
    if (!body.contains("check") || !body["check"].is_string())
      bad_request("nodes.check needs the check to run: \"check\": \"NAME\" (GET /api/checks lists them)");
    def = &configured_check(body["check"].get<std::string>());
    op.filter.check = def->name;
  }
  op.limit = opts_.max_rows_per_action;
  if (body.contains("max_rows")) {
    auto& v = body["max_rows"];
    if (!v.is_number_integer() || v.get<int64_t>() < 1)
      bad_request("max_rows must be a positive integer");
    if (v.get<int64_t>() > opts_.max_rows_per_action_hard)
      bad_request("max_rows may be at most " + std::to_string(opts_.max_rows_per_action_hard)
                  + " (admin.max_rows_per_action_hard), not " + std::to_string(v.get<int64_t>()));
    op.limit = v.get<int64_t>();
  }
  auto filter_text = op.filter.canonical();
  if (apply) {
    if (!body.contains("token") || !body["token"].is_string() || body["token"].get<std::string>().empty())
      bad_request("apply needs the plan's token: POST /api/bulk/" + action
                  + "/plan first, then apply with its filter and token");
    op.token = body["token"].get<std::string>();
    op.audit = audit_for(action, "", filter_text);
    if (checks)
      op.audit = {}; // its row comes after the checks are sent, with what happened to each
  } else {
    audit_for(action + ".plan", "", filter_text);
  }
  if (action == requests_cancel)
    return cancel_requests(op);
  auto r = backend_.bulk(op);
  if (r.over_budget)
    over_budget(action, op.limit, r.matched);
  if (r.blocked > 0)
    attempts_not_complete(r.blocked);
  json filter = json::parse(filter_text);
  filter.erase("all");
  filter.erase("check"); // a field of its own in the body
  if (!apply) {
    json out{{"action", action},
             {"filter", filter},
             {"all", op.filter.all},
             {"matched", r.matched},
             {"budget", {{"limit", op.limit}, {"used", r.matched}}},
             {"sample", sample_json(action, r.sample)},
             {"token", r.token}};
    if (action == "nodes.delete") {
      out["attempts"] = r.attempts;
      out["log_lines"] = r.log_lines;
    } else if (action == "attempts.prune_logs") {
      out["log_lines"] = r.log_lines;
    }
    if (checks)
      out["check"] = def->name;
    audit_after(json{{"matched", r.matched}}.dump());
    return reply(200, std::move(out));
  }
  if (r.stale)
    throw api_error{409, "plan_stale",
                    "what the filter matches changed since the plan (" + std::to_string(r.matched)
                      + " rows now); nothing was changed. Plan again",
                    json{{"matched", r.matched}}};
  if (checks)
    return send_checks(*def, r);
  audit_written();
  // Disabled (or deleted) nodes lose their sessions now; the registry would also notice within
  // its disable poll.
  int64_t closed = 0;
  if (action == "nodes.disable" || action == "nodes.delete") {
    std::map<std::string, std::string> name_of;
    for (size_t i = 0; i < r.node_ids.size() && i < r.node_names.size(); ++i)
      name_of[r.node_ids[i]] = r.node_names[i];
    try {
      for (auto& c : backend_.connected_among(r.node_ids))
        if (auto it = name_of.find(c.node_id); it != name_of.end() && backend_.close_session(it->second))
          ++closed;
    } catch (const unavailable&) { // the change is committed; the registry's poll closes the rest
    }
  }
  return reply(200, {{"action", action},
                     {"matched", r.matched},
                     {"counts", json::parse(r.counts.empty() ? std::string("{}") : r.counts)},
                     {"closed_sessions", closed}});
}

} // namespace nodecoord::admin
