#pragma once
// What the admin API's routes share (admin/api.cpp: routing, health and metrics;
// admin/api_resources.cpp: nodes, attempts, jobs): the value lists, the JSON shapes of records and
// the query-parameter checks. Internal to nc_admin.
#include "admin/api.hpp"
#include "admin/envelope.hpp"
#include "common/states.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nodecoord::admin::detail {

using json = nlohmann::json;

inline const std::vector<std::string> sync_states = all_names<sync_state>();
inline const std::vector<std::string> attempt_states = all_names<attempt_state>();
inline const std::vector<std::string> node_statuses = all_names<node_status>();
inline const std::vector<std::string> job_statuses = all_names<job_status>();
inline const std::vector<std::string> job_types = all_names<job_type>();
// Prune without older_than: failed jobs are kept longer than the rest (they are what an operator
// looks back at).
constexpr auto keep_finished = std::chrono::hours(24 * 7);
constexpr auto keep_failed = std::chrono::hours(24 * 30);
// The largest older_than: 100 years (larger ages would put the cutoff before year 1 or overflow).
constexpr std::chrono::milliseconds max_prune_age = std::chrono::hours(24 * 36500);

inline json text_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

/// Stored JSON text as a JSON value (null when empty; the text itself if it does not parse).
inline json json_or_null(const std::string& s) {
  if (s.empty())
    return nullptr;
  auto v = json::parse(s, nullptr, false);
  return v.is_discarded() ? json(s) : v;
}

inline std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v)
    out += (out.empty() ? "" : ", ") + s;
  return out;
}

inline json node_json(const storage::node_record& n, bool connected, uint64_t in_flight) {
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

inline json attempt_json(const storage::attempt_record& a) {
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
          {"logs_pruned", a.logs_pruned},
          {"logs_pruned_through", a.logs_pruned_through < 0 ? json(nullptr) : json(a.logs_pruned_through)},
          {"started_at", text_or_null(a.started_at)},
          {"finished_at", text_or_null(a.finished_at)},
          {"meta", json_or_null(a.meta)},
          {"created_at", text_or_null(a.created_at)},
          {"updated_at", text_or_null(a.updated_at)}};
}

inline json job_json(const storage::job_record& j) {
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
inline std::optional<std::string> param(const http_request& req, const std::string& name) {
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
inline std::string lower_id(std::string id) {
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return id;
}

/// Parameters must be among `known`: a misspelt filter is an error, not "no filter".
inline void only_params(const http_request& req, const std::vector<std::string>& known) {
  for (auto& [k, v] : req.params)
    if (std::find(known.begin(), known.end(), k) == known.end())
      bad_request("unknown parameter '" + k + "'" + (known.empty() ? "" : "; allowed: " + join(known)));
}

/// `v` as a number when it is 1 to `max_digits` decimal digits (no sign, no space), else nothing.
inline std::optional<int64_t> digits_value(const std::string& v, size_t max_digits = 18) {
  if (v.empty() || v.size() > max_digits
      || !std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
    return std::nullopt;
  return std::stoll(v);
}

/// A paging cursor that is a number of at least `min`: absent, or 400 saying what it must be.
inline std::optional<int64_t> cursor_param(const http_request& req, const std::string& name, int64_t min,
                                           const std::string& what) {
  auto v = param(req, name);
  if (!v)
    return std::nullopt;
  auto n = digits_value(*v);
  if (!n || *n < min)
    bad_request(name + " must be the 'next' value of the previous page (" + what + "), not '" + *v + "'");
  return n;
}

inline int64_t limit_param(const http_request& req) {
  auto v = param(req, "limit");
  if (!v)
    return defaults::admin_page_default;
  auto n = digits_value(*v, 9);
  if (!n || *n < 1 || *n > defaults::admin_page_max)
    bad_request("limit must be an integer from 1 to " + std::to_string(defaults::admin_page_max) + ", not '" + *v
                + "'");
  return *n;
}

/// A value from a fixed set, or empty when absent; 400 naming the allowed values.
inline std::string one_of(const http_request& req, const std::string& name, const std::vector<std::string>& allowed) {
  auto v = param(req, name);
  if (!v)
    return {};
  if (std::find(allowed.begin(), allowed.end(), *v) == allowed.end())
    bad_request("unknown " + name + " '" + *v + "'; allowed: " + join(allowed));
  return *v;
}

/// A comma-separated list of values from a fixed set.
inline std::vector<std::string> list_of(const http_request& req, const std::string& name,
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
inline std::optional<std::string> node_param(const http_request& req, const std::string& name) {
  auto v = param(req, name);
  if (v && !valid_node_name(*v))
    bad_request(name + " must be a node name (letters, digits, - _ . only, 1 to 255 characters), not '" + *v + "'");
  return v;
}

inline std::vector<std::string> split_path(const std::string& path) {
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

inline std::string bearer_of(const std::string& header) {
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
inline json counts_object(const std::vector<std::pair<std::string, int64_t>>& pairs,
                          const std::vector<std::string>& all) {
  json out = json::object();
  for (auto& k : all)
    out[k] = 0;
  for (auto& [k, n] : pairs)
    out[k] = n;
  return out;
}

} // namespace nodecoord::admin::detail
