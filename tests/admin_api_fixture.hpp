#pragma once

// admin_api_test's fake backend (a small in-memory database that records what the API asks of it)
// and the fixture that calls admin::api::handle. fuzz/fuzz_admin_request.cpp has a different fake:
// canned rows, and every value it is handed checked against what the database accepts.

#include "admin/api.hpp"
#include "common/ids.hpp"
#include "common/metrics.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <map>

using namespace nodecoord;
using namespace nodecoord::admin;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace admin_api_test {

struct fake_backend final : backend {
  // What the fake database holds.
  std::map<std::string, storage::node_record> nodes_by_name;
  std::map<std::string, storage::attempt_record> attempts_by_id;
  std::vector<storage::job_record> job_rows;
  std::vector<connected_node> live;
  tracker_status tracker_now;
  storage_status storage_now{true, "sqlite", "sqlite://x", "", 6, 0, {}};
  order_result next_order{order_status::requested, "job-1", 1, ""};
  bool storage_down = false; // every storage call throws unavailable
  bool tracker_down = false;
  bool ping_ok = true;
  // What the API asked.
  int counts_calls = 0;
  int ping_calls = 0;
  std::vector<storage::jobs_prune> prunes;
  std::vector<storage::attempt_list> attempt_queries;
  std::vector<storage::job_query> job_queries;
  std::vector<std::string> closed;
  std::vector<std::string> requeues;
  std::vector<std::string> key_sets; // names whose key was replaced
  // The ledger as storage would keep it: rows carried by an operation (with its outcome) and
  // rows of their own, oldest first.
  std::vector<storage::audit_entry> audit_rows;
  std::vector<storage::audit_query> audit_queries;

  /// What storage::audit_outcome does with an operation's entry.
  void carried(const storage::audit_entry& e, bool ok, const std::string& counts, const std::string& error) {
    if (e.action.empty())
      return;
    auto r = e;
    r.result = ok ? "succeeded" : "failed";
    r.counts = counts;
    r.error = ok ? "" : error;
    audit_rows.push_back(r);
  }
  // Bulk actions: what was asked, and what storage answers (a plan of 3 rows by default).
  std::vector<storage::bulk_action> bulks;
  storage::bulk_action::result_type bulk_answer = [] {
    storage::bulk_action::result_type r;
    r.matched = 3;
    r.token = "t0ken";
    r.sample = {{"id-1", "label-1", "failed"}};
    return r;
  }();
  storage::bulk_action::result_type bulk(const storage::bulk_action& op) override {
    need_storage();
    bulks.push_back(op);
    auto r = bulk_answer;
    if (op.apply) {
      r.stale = r.token != op.token;
      if (!r.over_budget && !r.stale && r.blocked == 0) {
        r.counts = R"({"attempts":)" + std::to_string(r.matched) + "}";
        carried(op.audit, true, r.counts, "");
      }
    }
    return r;
  }
  int64_t append_audit(const storage::audit_append& op) override {
    need_storage();
    audit_rows.push_back(op.entry);
    return static_cast<int64_t>(audit_rows.size());
  }
  storage::audit_query::result_type audit(const storage::audit_query& op) override {
    need_storage();
    audit_queries.push_back(op);
    storage::audit_query::result_type out;
    for (auto i = static_cast<int64_t>(audit_rows.size()); i >= 1 && static_cast<int64_t>(out.size()) < op.limit; --i)
      if (op.before_id == 0 || i < op.before_id)
        out.push_back({i, "2026-01-09T12:00:00.000Z", "", audit_rows[size_t(i - 1)]});
    return out;
  }

  void need_storage() {
    if (storage_down)
      throw unavailable("storage: timed out");
  }

  storage_status storage_state() override {
    need_storage();
    return storage_now;
  }
  bool ping() override {
    ++ping_calls;
    need_storage();
    return ping_ok;
  }
  storage::count_summary::result_type counts() override {
    ++counts_calls;
    need_storage();
    storage::count_summary::result_type r;
    r.nodes_by_status = {{"offline", static_cast<int64_t>(nodes_by_name.size())}};
    r.attempts_by_sync_state = {{"partial", 2}, {"complete", 5}};
    r.jobs_by_status_type = {{"succeeded/backfill", 3}};
    return r;
  }
  storage::database_size::result_type sizes() override {
    need_storage();
    return {4096, {{"nodes", 1024}, {"jobs", 2048}}};
  }
  std::vector<connected_node> connected_among(const std::vector<std::string>& node_ids) override {
    live_asked_among = true;
    return backend::connected_among(node_ids);
  }
  bool live_asked_among = false;
  storage::node_list::result_type nodes(const storage::node_list& op) override {
    need_storage();
    storage::node_list::result_type out;
    for (auto it = nodes_by_name.upper_bound(op.after_name); it != nodes_by_name.end(); ++it) {
      if (op.limit > 0 && static_cast<int64_t>(out.size()) == op.limit)
        break;
      if (op.status.empty() || it->second.status == op.status)
        out.push_back(it->second);
    }
    return out;
  }
  storage::node_lookup_by_name::result_type node(const std::string& name) override {
    need_storage();
    auto it = nodes_by_name.find(name);
    if (it == nodes_by_name.end())
      return {};
    return {true, it->second};
  }
  storage::node_create::result_type create_node(const storage::node_create& op) override {
    need_storage();
    storage::node_create::result_type r;
    if (nodes_by_name.count(op.name)) {
      carried(op.audit, false, R"({"nodes":0})", "the name or the key id is taken");
      return r;
    }
    storage::node_record n;
    n.id = new_uuid();
    n.name = op.name;
    n.status = "offline";
    nodes_by_name[op.name] = n;
    r.created = true;
    r.node = n;
    carried(op.audit, true, R"({"nodes":1})", "");
    return r;
  }
  /// The node named `name` after `change`, or not found.
  template <class Change>
  storage::node_disable::result_type change_node(const std::string& name, const storage::audit_entry& audit,
                                                 Change change) {
    need_storage();
    auto it = nodes_by_name.find(name);
    if (it == nodes_by_name.end()) {
      carried(audit, false, R"({"nodes":0})", "no node named " + name);
      return {};
    }
    change(it->second);
    carried(audit, true, R"({"nodes":1})", "");
    return {true, it->second};
  }
  storage::node_disable::result_type disable_node(const storage::node_disable& op) override {
    return change_node(op.name, op.audit, [](storage::node_record& n) { n.status = "disabled"; });
  }
  storage::node_enable::result_type enable_node(const storage::node_enable& op) override {
    return change_node(op.name, op.audit, [](storage::node_record& n) { n.status = "offline"; });
  }
  storage::node_set_key::result_type set_key(const storage::node_set_key& op) override {
    return change_node(op.name, op.audit, [&](storage::node_record&) { key_sets.push_back(op.name); });
  }
  storage::attempt_list::result_type attempts(const storage::attempt_list& op) override {
    need_storage();
    attempt_queries.push_back(op);
    storage::attempt_list::result_type out;
    for (auto& [id, a] : attempts_by_id)
      if (id > op.after_id && static_cast<int64_t>(out.size()) < op.limit)
        out.push_back(a);
    return out;
  }
  storage::attempt_get::result_type attempt(const std::string& id) override {
    need_storage();
    auto it = attempts_by_id.find(id);
    storage::attempt_get::result_type r;
    if (it != attempts_by_id.end()) {
      r.found = true;
      r.attempt = it->second;
    }
    return r;
  }
  storage::attempt_requeue::result_type requeue(const storage::attempt_requeue& op) override {
    need_storage();
    requeues.push_back(op.attempt_id);
    auto it = attempts_by_id.find(op.attempt_id);
    if (it == attempts_by_id.end()) {
      carried(op.audit, false, R"({"attempts":0})", "no attempt " + op.attempt_id);
      return {};
    }
    if (it->second.sync_state != "failed") {
      carried(op.audit, false, R"({"attempts":0})", "the attempt is not failed");
      return {true, false};
    }
    it->second.sync_state = "partial";
    carried(op.audit, true, R"({"attempts":1})", "");
    return {true, true};
  }
  storage::job_query::result_type jobs(const storage::job_query& op) override {
    need_storage();
    job_queries.push_back(op);
    storage::job_query::result_type out;
    for (auto& j : job_rows)
      if (static_cast<int64_t>(out.size()) < op.limit && (op.id.empty() || j.id == op.id))
        out.push_back(j);
    return out;
  }
  storage::jobs_prune::result_type prune(const storage::jobs_prune& op) override {
    need_storage();
    prunes.push_back(op);
    carried(op.audit, true, R"({"jobs":)" + std::to_string(op.statuses.size()) + "}", "");
    return {static_cast<int64_t>(op.statuses.size())};
  }
  storage::job_insert::result_type insert_job(const storage::job_insert& op) override {
    jobs_inserted.push_back(op.job);
    return {true};
  }
  storage::job_update::result_type update_job(const storage::job_update& op) override {
    jobs_updated.push_back(op);
    return {true};
  }
  std::vector<storage::job_record> jobs_inserted;
  std::vector<storage::job_update> jobs_updated;
  storage::bundle::counts export_bundle(const storage::bundle::export_file& op) override {
    need_storage();
    const std::string text = "{\"type\":\"manifest\"}\n";
    std::fwrite(text.data(), 1, text.size(), op.out.get());
    return {1, 0, 0, 0};
  }
  storage::bundle::import_bundle::result_type import_bundle(const storage::bundle::import_bundle& op) override {
    need_storage();
    if (import_throws)
      throw std::runtime_error("line 3: attempt: node 123 exists nowhere");
    storage::bundle::import_bundle::result_type r;
    r.nodes.inserted = static_cast<int64_t>(op.bundle->nodes.size());
    last_dry_run = op.dry_run;
    return r;
  }
  bool import_throws = false;
  bool last_dry_run = false;
  std::vector<connected_node> connected() override { return live; }
  bool close_session(const std::string& name) override {
    closed.push_back(name);
    return true;
  }
  // Drains: what the tracker answers, and the calls in order.
  drain_result drain_answer{2, 1};
  std::vector<std::string> drain_calls; // "drain <node_id> <ms>", "close_drained <name>"
  bool close_drained(const std::string& name) override {
    drain_calls.push_back("close_drained " + name);
    return true;
  }
  drain_result drain(const std::string& node_id, std::chrono::milliseconds deadline) override {
    if (tracker_down)
      throw unavailable("tracker: timed out");
    drain_calls.push_back("drain " + node_id + " " + std::to_string(deadline.count()));
    return drain_answer;
  }
  std::vector<storage::logs_get> log_queries;
  storage::logs_get::result_type logs(const storage::logs_get& op) override {
    need_storage();
    log_queries.push_back(op);
    storage::logs_get::result_type out;
    for (int64_t s = op.after_seq + 1; s < 5 && static_cast<int64_t>(out.size()) < op.limit; ++s)
      out.push_back({s, "2026-01-09T12:00:00.000Z", "stdout", "line " + std::to_string(s)});
    return out;
  }
  storage::node_attempt_counts::result_type node_attempts(const std::string&) override {
    need_storage();
    return {{{"partial", 4}, {"complete", 9}}};
  }
  tracker_status tracker() override {
    if (tracker_down)
      throw unavailable("tracker: timed out");
    return tracker_now;
  }
  // Cancels: the ids asked, in order; a request is cancelled only if tracker_now still holds it
  // (sent), and is then removed from it, as the tracker's book does.
  std::vector<std::vector<std::string>> cancel_calls;
  bool cancel_stale = false; // one of them ended before the tracker took it
  cancel_result cancel_requests(const std::vector<std::string>& ids) override {
    if (tracker_down)
      throw unavailable("tracker: timed out");
    cancel_calls.push_back(ids);
    if (cancel_stale)
      return cancel_result{true, 0, 0};
    cancel_result out;
    for (auto& id : ids) {
      auto it = std::find_if(tracker_now.requests.begin(), tracker_now.requests.end(),
                             [&](const inflight_request& r) { return r.request_id == id && r.sent; });
      if (it == tracker_now.requests.end())
        return cancel_result{true, 0, 0};
    }
    for (auto& id : ids) {
      auto it = std::find_if(tracker_now.requests.begin(), tracker_now.requests.end(),
                             [&](const inflight_request& r) { return r.request_id == id; });
      ++out.requests;
      out.attempts += static_cast<int64_t>(it->attempts);
      tracker_now.requests.erase(it);
    }
    return out;
  }
  order_result backfill(const std::string& id) override {
    backfills.push_back(id);
    return next_order;
  }
  std::vector<std::string> backfills;
  check_dispatch_result dispatch_check(const check_dispatch& d) override {
    checks_sent.push_back(d);
    auto it = check_answers.find(d.node_id);
    return it == check_answers.end() ? next_check : it->second;
  }
  std::map<std::string, check_dispatch_result> check_answers; // by node id
  std::vector<check_dispatch> checks_sent;
  check_dispatch_result next_check{true, "", ""};
};

struct fixture {
  fake_backend b;
  std::chrono::steady_clock::time_point now{};
  api_options opts() {
    api_options o;
    o.version = "9.9.9";
    o.started_at = "2026-01-01T00:00:00.000Z";
    o.steady_now = [this] { return now; };
    o.wall_now = [] { return std::string("2026-01-02T00:00:00.000Z"); };
    o.dashboard_html = "<html>dash</html>";
    return o;
  }
  api a{b, opts()};

  /// The request a command-line client sends: no Host, no Origin, JSON content type on
  /// mutations.
  http_request request(const std::string& method, const std::string& target, const std::string& body = "",
                       const std::string& auth = "") {
    http_request r;
    r.method = method;
    auto q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) {
      std::string rest = target.substr(q + 1);
      size_t at = 0;
      while (at <= rest.size()) {
        auto amp = rest.find('&', at);
        auto kv = rest.substr(at, amp == std::string::npos ? std::string::npos : amp - at);
        auto eq = kv.find('=');
        r.params.emplace(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
        if (amp == std::string::npos)
          break;
        at = amp + 1;
      }
    }
    r.body = body;
    r.authorization = auth;
    if (method != "GET")
      r.content_type = "application/json";
    return r;
  }
  http_response call(const std::string& method, const std::string& target, const std::string& body = "",
                     const std::string& auth = "") {
    return a.handle(request(method, target, body, auth));
  }
  json data(const http_response& r) {
    auto j = json::parse(r.body);
    BOOST_TEST_REQUIRE(j["ok"].get<bool>(), r.body);
    return j["data"];
  }
  /// The error code of a failed answer, after checking its status.
  std::string error(const http_response& r, int status) {
    BOOST_TEST(r.status == status, "status " << r.status << " body " << r.body);
    auto j = json::parse(r.body);
    BOOST_TEST_REQUIRE(!j["ok"].get<bool>(), r.body);
    BOOST_TEST(!j["error"]["message"].get<std::string>().empty());
    return j["error"]["code"].get<std::string>();
  }

  storage::attempt_record add_attempt(const std::string& sync_state, const std::string& node_id = "n-1") {
    storage::attempt_record a;
    a.id = new_uuid();
    a.node_id = node_id;
    a.task_id = "t";
    a.state = "running";
    a.sync_state = sync_state;
    a.meta = "{\"k\":1}";
    b.attempts_by_id[a.id] = a;
    return a;
  }
};

} // namespace admin_api_test
