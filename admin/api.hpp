#pragma once
#include "common/checks.hpp"
// The admin HTTP API (docs/admin-api.md) as plain logic: a request in, a response out, with the
// daemon's actors behind the `backend` interface. No CAF and no HTTP library here, so every route,
// parameter check and error status is unit-tested against a fake backend (tests/admin_api_test.cpp).
// The admin actor (actors/admin.cpp) connects it to cpp-httplib and to the real actors.
#include "actors/messages.hpp"
#include "admin/browser_guard.hpp"
#include "admin/history.hpp"
#include "storage/admin_ops.hpp"
#include "storage/audit.hpp"
#include "storage/bulk.hpp"
#include "storage/bundle.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace nodecoord::admin {

struct http_request {
  std::string method; // GET, POST, DELETE, ...
  std::string path;   // without the query string
  std::multimap<std::string, std::string> params;
  std::string body;
  std::string authorization; // the Authorization header, if any
  std::string host;          // the Host header, if any
  std::string origin;        // the Origin header, if any
  std::string content_type;  // the Content-Type header, if any
};

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  /// Streamed bodies (bundle export): called until it returns false; appends to `chunk`.
  std::function<bool(std::string& chunk)> stream;
};

/// Thrown by a backend call that got no answer: an actor timed out or the database refused.
struct unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// What the API needs from the daemon. Every call may throw `unavailable`; calls are made from
/// several HTTP threads at once.
class backend {
public:
  virtual ~backend() = default;
  // storage
  virtual storage_status storage_state() = 0;
  virtual bool ping() = 0;
  virtual storage::count_summary::result_type counts() = 0;
  virtual storage::database_size::result_type sizes() = 0;
  /// Every instance sharing the database and its lease (DESIGN §9).
  virtual storage::instance_list::result_type instances() { return {}; }
  virtual storage::node_list::result_type nodes(const storage::node_list& op) = 0;
  virtual storage::node_lookup_by_name::result_type node(const std::string& name) = 0;
  virtual storage::node_create::result_type create_node(const storage::node_create& op) = 0;
  // The mutations carry their audit row (op.audit), written in the same transaction.
  virtual storage::node_disable::result_type disable_node(const storage::node_disable& op) = 0;
  virtual storage::node_enable::result_type enable_node(const storage::node_enable& op) = 0;
  virtual storage::node_set_key::result_type set_key(const storage::node_set_key& op) = 0;
  virtual storage::attempt_list::result_type attempts(const storage::attempt_list& op) = 0;
  virtual storage::attempt_get::result_type attempt(const std::string& id) = 0;
  /// Log lines of an attempt by seq after `after_seq` (keyset).
  virtual storage::logs_get::result_type logs(const storage::logs_get& op) = 0;
  virtual storage::attempt_requeue::result_type requeue(const storage::attempt_requeue& op) = 0;
  /// Plans or applies a bulk action (storage/bulk.hpp); its audit row, when applied, is written
  /// in the same transaction as the change.
  virtual storage::bulk_action::result_type bulk(const storage::bulk_action& op) = 0;
  /// An audit row of its own (a call refused before it reached the database, or one whose change
  /// was not made in one storage transaction); its id.
  virtual int64_t append_audit(const storage::audit_append& op) = 0;
  virtual storage::audit_query::result_type audit(const storage::audit_query& op) = 0;
  virtual storage::job_query::result_type jobs(const storage::job_query& op) = 0;
  virtual storage::jobs_prune::result_type prune(const storage::jobs_prune& op) = 0;
  virtual storage::job_insert::result_type insert_job(const storage::job_insert& op) = 0;
  virtual storage::job_update::result_type update_job(const storage::job_update& op) = 0;
  /// Writes the whole bundle to the file in one transaction; the manifest's counts.
  virtual storage::bundle::counts export_bundle(const storage::bundle::export_file& op) = 0;
  /// Runs the import in one transaction; a std::runtime_error from it (a reference to a node or
  /// attempt that exists nowhere) is the bundle's fault, `unavailable` the database's.
  virtual storage::bundle::import_bundle::result_type import_bundle(const storage::bundle::import_bundle& op) = 0;
  // registry, tracker, scheduler
  virtual std::vector<connected_node> connected() = 0;
  /// How many sessions are registered.
  virtual uint64_t connected_count() { return connected().size(); }
  /// The sessions of these nodes only (a page of nodes costs its own size, not the fleet's).
  virtual std::vector<connected_node> connected_among(const std::vector<std::string>& node_ids) {
    std::vector<connected_node> out;
    for (auto& c : connected())
      if (std::find(node_ids.begin(), node_ids.end(), c.node_id) != node_ids.end())
        out.push_back(c);
    return out;
  }
  virtual bool close_session(const std::string& name) = 0;
  /// Closes the node's session with reason `drained` (the agent stops reconnecting); false if
  /// it has no session here.
  virtual bool close_drained(const std::string& name) = 0;
  /// Drains the node in the tracker: no new backfill requests to it; answers when its requests
  /// in flight have ended, resetting those left at `deadline`.
  virtual drain_result drain(const std::string& node_id, std::chrono::milliseconds deadline) = 0;
  virtual storage::node_attempt_counts::result_type node_attempts(const std::string& node_id) = 0;
  virtual tracker_status tracker() = 0;
  /// Cancels exactly these requests in flight (all live and sent), or none (`stale`); answers
  /// once their attempts are back to partial in storage.
  virtual cancel_result cancel_requests(const std::vector<std::string>& request_ids) = 0;
  /// On-demand backfill of one attempt; waits for the order's result.
  virtual order_result backfill(const std::string& attempt_id) = 0;
  /// Hands a check to the node's session; whether it went out.
  virtual check_dispatch_result dispatch_check(const check_dispatch& d) = 0;
};

struct api_options {
  std::string token; // empty: no token required (loopback only; checked by the config)
  std::string version;
  std::string started_at; // RFC 3339
  std::string instance_id;
  std::function<std::chrono::steady_clock::time_point()> steady_now = [] { return std::chrono::steady_clock::now(); };
  std::function<std::string()> wall_now; // RFC 3339 now; default: the system clock
  std::string dashboard_html;            // served at GET /
  browser_policy browser;                // Host, Origin and Content-Type checks (browser_guard.hpp)
  // Change budgets of bulk actions ([admin] max_rows_per_action, max_rows_per_action_hard): the
  // rows one call may change, and the most a call may raise its own cap to.
  int64_t max_rows_per_action = defaults::admin_max_rows_per_action;
  int64_t max_rows_per_action_hard = defaults::admin_max_rows_per_action_hard;
  std::vector<check_definition> checks; // [checks.NAME]: the only programs an operator may run
};

class api {
public:
  api(backend& b, api_options opts);

  http_response handle(const http_request& req);

  /// False while the daemon is not (or no longer) accepting nodes: /readyz answers 503.
  void set_listening(bool v);

  /// A new token (SIGHUP re-read admin.token_file); empty: none required from now on.
  void set_token(const std::string& token);

  /// One reading for the charts (GET /api/history); called every defaults::history_every.
  void record_history(history_sample s) { history_.record(std::move(s)); }

private:
  struct cached_counts {
    std::optional<std::chrono::steady_clock::time_point> at;
    std::string measured_at;
    storage::count_summary::result_type counts;
    storage::database_size::result_type sizes;
    bool have_sizes = false;
  };

  http_response route(const http_request& req);
  http_response readyz();
  http_response overview();
  http_response metrics();
  http_response list_nodes(const http_request& req);
  http_response show_node(const std::string& name);
  http_response create_node(const http_request& req);
  http_response node_action(const std::string& name, const std::string& action);
  http_response drain_node(const std::string& name, const http_request& req);
  http_response run_check(const std::string& name, const std::string& check);
  http_response list_checks();
  /// The configured check of that name; 404 unknown_check otherwise.
  const check_definition& configured_check(const std::string& name) const;
  /// Writes the check's job (running) and hands the check to the node's session; a check that
  /// did not go out has its job failed with the reason. The job as written and whether it went out.
  std::pair<storage::job_record, check_dispatch_result> send_check(const std::string& node_id,
                                                                   const check_definition& def);
  http_response list_attempts(const http_request& req);
  http_response show_attempt(const std::string& id);
  http_response attempt_logs(const std::string& id, const http_request& req);
  http_response backfill_attempt(const std::string& id);
  http_response requeue_attempt(const std::string& id);
  http_response export_bundle();
  http_response list_audit(const http_request& req);
  http_response list_history(const http_request& req);
  http_response bulk(const std::string& action, const std::string& step, const http_request& req);
  /// nodes.check applied: the check sent to every node of the set, a job each.
  http_response get_job(const std::string& id);
  http_response send_checks(const check_definition& def, const storage::bulk_action::result_type& r);
  /// requests.cancel: the bulk action on the tracker's requests in flight (no storage rows).
  http_response cancel_requests(const storage::bulk_action& op);

  /// The audit entry of the call this thread is handling, its actor filled in by handle():
  /// `action` and `target` also name the call if it is refused later. `filter` is a JSON object
  /// text (empty: none).
  storage::audit_entry audit_for(const std::string& action, const std::string& target, const std::string& filter = "");
  /// The call's row is written (with its effect, by the storage operation that carried it).
  void audit_written();
  /// A row of its own for a call whose change was not made in one storage transaction (a
  /// backfill order, a prune of several statements, a bundle import): written after it succeeded.
  void audit_after(const std::string& counts);
  http_response import_bundle(const http_request& req);
  http_response list_jobs(const http_request& req);
  http_response prune_jobs(const http_request& req);

  /// Counts and sizes, re-read at most every defaults::overview_cache. Throws unavailable.
  cached_counts counts_cached();
  std::string now_text() const;

  backend& backend_;
  api_options opts_;
  std::mutex mutex_; // guards what follows
  std::string token_hash_;
  cached_counts cache_;
  std::optional<std::chrono::steady_clock::time_point> probe_at_;
  bool probe_ok_ = false;
  bool listening_ = true;
  history history_;
};

/// The envelope for an error cpp-httplib answers on its own, before any route runs (its own body
/// is empty): 413 for a body over `body_limit` bytes, 400 for a request it cannot parse, ...
http_response transport_error(int status, uint64_t body_limit);

/// Letters, digits, '-', '_', '.'; 1 to 255 characters.
bool valid_node_name(const std::string& name);

/// `Nd` (days) or a configuration duration ("90m", "24h").
std::optional<std::chrono::milliseconds> parse_age(const std::string& text);

} // namespace nodecoord::admin
