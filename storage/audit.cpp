#include "storage/audit.hpp"

#include "storage/dialect.hpp"
#include "storage/query.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iterator>
#include <stdexcept>

namespace nodecoord::storage {

namespace {

void require_object(const std::string& text, const char* what) {
  if (text.empty())
    return;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw std::invalid_argument(std::string("audit: ") + what + " is not a JSON object");
}

std::string checked_time(const std::string& t, const char* what) {
  if (t.empty())
    return t;
  auto parsed = parse_time(t);
  if (!parsed)
    throw std::invalid_argument(std::string("audit: ") + what + " is not an RFC 3339 time: " + t);
  return format_time(*parsed);
}

} // namespace

std::string valid_utf8(const std::string& s) {
  return nlohmann::json::parse(nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
    .get<std::string>();
}

int64_t append_audit(op_context& c, const audit_entry& e) {
  if (e.action.empty() || e.actor.empty())
    throw std::invalid_argument("audit: an entry needs an action and an actor");
  if (std::find(std::begin(audit_results), std::end(audit_results), e.result) == std::end(audit_results))
    throw std::invalid_argument("audit: result must be succeeded, refused or failed, not '" + e.result + "'");
  require_object(e.filter, "filter");
  require_object(e.counts, "counts");
  int64_t id = 0;
  query(c.sql, "INSERT INTO audit_log (at, actor, action, target, filter, counts, result, error, instance_id) "
               "VALUES (:at, :actor, :action, :target, "
                 + c.d.json_param("filter") + ", " + c.d.json_param("counts")
                 + ", :result, :error, :inst) RETURNING id")
    .bind("at", c.now_text)
    .bind("actor", valid_utf8(e.actor))
    .bind("action", valid_utf8(e.action))
    .bind_nullable("target", valid_utf8(e.target))
    .bind_nullable("filter", e.filter)
    .bind_nullable("counts", e.counts)
    .bind("result", e.result)
    .bind_nullable("error", valid_utf8(e.error))
    .bind_nullable("inst", c.instance)
    .each([&](const soci::row& r) { id = col_int(r, 0); });
  return id;
}

void audit_outcome(op_context& c, const audit_entry& e, bool succeeded, const std::string& counts,
                   const std::string& error) {
  if (e.action.empty())
    return;
  auto out = e;
  out.result = succeeded ? "succeeded" : "failed";
  out.counts = counts;
  out.error = succeeded ? "" : error;
  append_audit(c, out);
}

std::string audit_columns(const dialect& d) {
  return "id, " + d.ts("at") + ", actor, action, target, " + d.json_text("filter") + ", " + d.json_text("counts")
         + ", result, error, instance_id";
}

audit_record read_audit(const soci::row& r) {
  audit_record a;
  a.id = col_int(r, 0);
  a.at = col_str(r, 1);
  a.entry.actor = col_str(r, 2);
  a.entry.action = col_str(r, 3);
  a.entry.target = col_str(r, 4);
  a.entry.filter = col_str(r, 5);
  a.entry.counts = col_str(r, 6);
  a.entry.result = col_str(r, 7);
  a.entry.error = col_str(r, 8);
  a.instance_id = col_str(r, 9);
  return a;
}

audit_append::result_type execute(op_context& c, const audit_append& op) { return append_audit(c, op.entry); }

audit_query::result_type execute(op_context& c, const audit_query& op) {
  audit_query::result_type out;
  if (op.limit < 1)
    return out;
  auto since = checked_time(op.since, "since"), until = checked_time(op.until, "until");
  std::string where = " WHERE 1 = 1";
  if (op.before_id > 0)
    where += " AND id < " + dialect::int_param("before");
  if (!op.actor.empty())
    where += " AND actor = :actor";
  if (!op.action.empty())
    where += " AND action = :action";
  if (!op.result.empty())
    where += " AND result = :result";
  if (!op.target.empty())
    where += " AND target = :target";
  if (!since.empty())
    where += " AND at >= " + c.d.ts_param("since");
  if (!until.empty())
    where += " AND at < " + c.d.ts_param("until");
  query q(c.sql, "SELECT " + audit_columns(c.d) + " FROM audit_log" + where + " ORDER BY id DESC LIMIT "
                   + dialect::int_param("lim"));
  if (op.before_id > 0)
    q.bind("before", op.before_id);
  if (!op.actor.empty())
    q.bind("actor", op.actor);
  if (!op.action.empty())
    q.bind("action", op.action);
  if (!op.result.empty())
    q.bind("result", op.result);
  if (!op.target.empty())
    q.bind("target", op.target);
  if (!since.empty())
    q.bind("since", since);
  if (!until.empty())
    q.bind("until", until);
  q.bind("lim", op.limit);
  q.each([&](const soci::row& r) { out.push_back(read_audit(r)); });
  return out;
}

} // namespace nodecoord::storage
