// nodecoordctl: the operator's command line. It speaks only the admin HTTP API
// (docs/admin-api.md), so it does exactly what the API does, with the same checks, whether the
// daemon runs on SQLite or PostgreSQL. Human tables by default; --json prints the API's `data`.
#include "nodecoord/version.hpp"
#include "tools/ctl/client.hpp"

#include <CLI/App.hpp>
#include <CLI/Config.hpp>
#include <CLI/Formatter.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <chrono>
#include <thread>
#include <iostream>
#include <sstream>

using namespace nodecoord;
using namespace nodecoord::ctl;
using json = nlohmann::json;

namespace {

std::string text(const json& v) {
  if (v.is_null())
    return "-";
  if (v.is_string())
    return v.get<std::string>();
  if (v.is_boolean())
    return v.get<bool>() ? "yes" : "no";
  return v.dump();
}

/// Prints rows as aligned columns under a header.
void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i)
    width[i] = header[i].size();
  for (auto& r : rows)
    for (size_t i = 0; i < r.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      out += r[i];
      if (i + 1 < r.size())
        out += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (auto& r : rows)
    line(r);
}

std::string query(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (auto& [k, v] : params)
    if (!v.empty())
      q += (q.empty() ? "?" : "&") + k + "=" + url_encode(v);
  return q;
}

void print_status(const json& d) {
  std::cout << "nodecoordd " << text(d.value("version", json())) << ", up " << text(d.value("uptime_seconds", json()))
            << " s (since " << text(d.value("started_at", json())) << ")\n";
  if (d.contains("nodes")) {
    auto& n = d["nodes"];
    std::cout << "nodes:     " << text(n.value("online", json(0))) << " online, " << text(n.value("offline", json(0)))
              << " offline, " << text(n.value("disabled", json(0))) << " disabled; "
              << text(d.value("connected", json("?"))) << " connected\n";
  }
  if (d.contains("attempts")) {
    auto& a = d["attempts"];
    std::cout << "attempts:  " << text(a.value("partial", json(0))) << " partial, "
              << text(a.value("pending_backfill", json(0))) << " pending_backfill, "
              << text(a.value("complete", json(0))) << " complete, " << text(a.value("failed", json(0))) << " failed\n";
  }
  if (d.contains("requests"))
    std::cout << "requests:  " << text(d["requests"].value("in_flight", json(0))) << " in flight, oldest "
              << text(d["requests"].value("oldest_age_seconds", json())) << " s\n";
  if (d.contains("database")) {
    auto& db = d["database"];
    std::cout << "database:  " << text(db.value("backend", json())) << ", "
              << (db.value("available", false) ? "available" : "UNAVAILABLE") << ", "
              << text(db.value("size_bytes", json())) << " bytes";
    if (db.contains("tables") && db["tables"].is_object()) {
      std::cout << " (";
      bool first = true;
      for (auto& [t, n] : db["tables"].items()) {
        std::cout << (first ? "" : ", ") << t << " " << text(n);
        first = false;
      }
      std::cout << ")";
    }
    std::cout << "\n";
  }
  if (d.contains("jobs") && d["jobs"].is_array() && !d["jobs"].empty()) {
    std::vector<std::vector<std::string>> rows;
    for (auto& j : d["jobs"])
      rows.push_back({text(j["type"]), text(j["status"]), text(j["count"])});
    std::cout << "jobs:\n";
    table({"  TYPE", "STATUS", "COUNT"}, [&] {
      for (auto& r : rows)
        r[0] = "  " + r[0];
      return rows;
    }());
  }
  // Instances sharing the database (DESIGN §9); "*" marks the one that answered.
  if (d.contains("instances") && d["instances"].is_array() && !d["instances"].empty()) {
    std::vector<std::vector<std::string>> rows;
    for (auto& i : d["instances"]) {
      auto age = i.value("lease_age_seconds", json());
      std::string lease = age.is_number() ? std::to_string(static_cast<int64_t>(age.get<double>())) + " s" : "?";
      std::string state =
        i.value("recovered_by", json()).is_string() ? "recovered by " + i["recovered_by"].get<std::string>() : "live";
      rows.push_back({std::string(i.value("this", false) ? "* " : "  ") + text(i["id"]), text(i["listen"]),
                      text(i["version"]), lease, state});
    }
    std::cout << "instances:\n";
    table({"  ID", "LISTEN", "VERSION", "LEASE AGE", "STATE"}, rows);
  }
  if (d.contains("missing") && !d["missing"].empty())
    std::cout << "missing (did not answer in time): " << d["missing"].dump() << "\n";
}

void print_nodes(const json& nodes) {
  std::vector<std::vector<std::string>> rows;
  for (auto& n : nodes)
    rows.push_back({text(n["name"]), text(n["status"]), n.value("connected", false) ? "yes" : "no",
                    text(n["session_epoch"]), text(n["in_flight"]), text(n["last_seen_at"]), text(n["id"])});
  table({"NAME", "STATUS", "CONNECTED", "EPOCH", "IN FLIGHT", "LAST SEEN", "ID"}, rows);
}

void print_node(const json& n) {
  for (auto& [k, v] : n.items())
    std::cout << k << ": " << text(v) << "\n";
}

void print_attempts(const json& d) {
  std::vector<std::vector<std::string>> rows;
  for (auto& a : d["attempts"])
    rows.push_back({text(a["id"]), text(a["task_id"]), text(a["state"]), text(a["sync_state"]), text(a["log_count"]),
                    text(a["backfill_failures"]), text(a["updated_at"])});
  table({"ID", "TASK", "STATE", "SYNC", "LOGS", "FAILURES", "UPDATED"}, rows);
  if (!d["next"].is_null())
    std::cout << "more: --after " << text(d["next"]) << "\n";
}

void print_jobs(const json& d) {
  std::vector<std::vector<std::string>> rows;
  for (auto& j : d["jobs"])
    rows.push_back({text(j["id"]), text(j["type"]), text(j["status"]), text(j["attempt_count"]), text(j["created_at"]),
                    text(j["finished_at"]), text(j["error"])});
  table({"ID", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "FINISHED", "ERROR"}, rows);
  if (!d["next"].is_null())
    std::cout << "more: --before " << text(d["next"]) << "\n";
}

void print_audit(const json& d) {
  std::vector<std::vector<std::string>> rows;
  for (auto& e : d["entries"]) {
    std::string what = e["counts"].is_null() ? "" : e["counts"].dump();
    if (!e["error"].is_null())
      what += (what.empty() ? "" : " ") + text(e["error"]);
    rows.push_back(
      {text(e["id"]), text(e["at"]), text(e["actor"]), text(e["action"]), text(e["target"]), text(e["result"]), what});
  }
  table({"ID", "AT", "ACTOR", "ACTION", "TARGET", "RESULT", "COUNTS / ERROR"}, rows);
  if (!d["next"].is_null())
    std::cout << "more: --before " << text(d["next"]) << "\n";
}

/// `node check`: the job is started, then its row polled until it is final (the session fails
/// it at the check's timeout plus a grace at the latest); exit 0 only for exit code 0.
int run_node_check(client& api, const std::string& node, const std::string& check, bool no_wait, bool json_out) {
  auto started = api.call("POST", "/api/nodes/" + url_encode(node) + "/checks/" + url_encode(check));
  auto job_id = started["job"]["id"].get<std::string>();
  if (no_wait) {
    std::cout << (json_out ? started.dump() : "check " + check + " started on " + node + ": job " + job_id) << "\n";
    return exit_ok;
  }
  auto bound = std::chrono::milliseconds(started.value("timeout_ms", int64_t{0}) + 15000);
  auto deadline = std::chrono::steady_clock::now() + bound;
  json job;
  while (std::chrono::steady_clock::now() < deadline) {
    auto got = api.call("GET", "/api/jobs/" + url_encode(job_id))["job"];
    if (got["finished_at"].is_string()) {
      job = got;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (job.is_null())
    throw api_failure(exit_failure, "timeout",
                      "check job " + job_id + " did not finish within " + std::to_string(bound.count()) + " ms");
  if (json_out) {
    std::cout << job.dump() << "\n";
  } else {
    auto& d = job["detail"];
    std::cout << "check " << check << " on " << node << ": " << text(job["status"]);
    if (!job["error"].is_null())
      std::cout << " (" << text(job["error"]) << ")";
    std::cout << "\n";
    if (d.is_object() && d.contains("output") && d["output"].is_string()) {
      std::cout << d["output"].get<std::string>();
      if (d.value("truncated", false))
        std::cout << "\n[output truncated]\n";
    }
  }
  return job["status"] == "succeeded" ? exit_ok : exit_failure;
}

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

void print_plan(const json& d) {
  auto matched = d.value("matched", json(0));
  std::cout << text(d["action"]) << ": " << text(matched) << " rows match " << d["filter"].dump()
            << (d.value("all", false) ? " (all)" : "") << "; budget " << text(d["budget"]["limit"]) << "\n";
  if (d["action"] == "requests.cancel")
    std::cout << "requests in flight holding " << text(d["attempts"])
              << " attempts (back to partial; the triggers ask for them again)\n";
  else if (d.contains("attempts"))
    std::cout << "with " << text(d["attempts"]) << " attempts and " << text(d["log_lines"]) << " log lines\n";
  else if (d.contains("log_lines"))
    std::cout << "deletes " << text(d["log_lines"]) << " stored log lines (the counters keep them)\n";
  if (!d["sample"].empty()) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> header{"ID"};
    for (auto& [k, v] : d["sample"][0].items())
      if (k != "id")
        header.push_back(k == "task_id"      ? "TASK"
                         : k == "sync_state" ? "SYNC"
                         : k == "name"       ? "NAME"
                         : k == "status"     ? "STATUS"
                                             : upper(k));
    for (auto& r : d["sample"]) {
      std::vector<std::string> row{text(r["id"])};
      for (auto& [k, v] : r.items())
        if (k != "id")
          row.push_back(text(v));
      rows.push_back(row);
    }
    table(header, rows);
    if (matched.is_number() && matched.get<int64_t>() > static_cast<int64_t>(d["sample"].size()))
      std::cout << "... and " << matched.get<int64_t>() - static_cast<int64_t>(d["sample"].size()) << " more\n";
  }
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodecoordctl " + std::string(version) + ": operate nodecoordd through its admin API"};
  std::string admin_url, token_file, config_path, ca_file;
  bool json_out = false;
  app.add_option("--admin", admin_url,
                 "admin API URL, e.g. http://127.0.0.1:7401 (default: $NODECOORD_ADMIN, else admin.listen of "
                 "the configuration)");
  app.add_option("--token-file", token_file,
                 "file holding the admin token (default: $NODECOORD_ADMIN_TOKEN, else admin.token_file of the "
                 "configuration)");
  app.add_option("-c,--config", config_path, "nodecoordd configuration file (default /etc/nodecoord/nodecoord.toml)");
  app.add_option(
    "--ca-file", ca_file,
    "HTTPS: PEM CAs to trust for the admin API (default: $NODECOORD_CA_FILE, else the system trust store)");
  app.add_flag("--json", json_out, "print the API's answer as JSON");
  app.require_subcommand(1);

  auto* status = app.add_subcommand("status", "overview: nodes, attempts, requests, jobs, database");

  auto* node = app.add_subcommand("node", "provision and inspect nodes");
  node->require_subcommand(1);
  std::string name;
  auto* node_add = node->add_subcommand("add", "create a node and print its API key (shown only once)");
  node_add->add_option("NAME", name, "node name (letters, digits, - _ .)")->required();
  std::string n_status, n_after, n_limit;
  auto* node_list = node->add_subcommand("list", "list nodes by name (every page, or one with --limit)");
  node_list->add_option("--status", n_status, "online | offline | disabled");
  node_list->add_option("--limit", n_limit, "one page of at most this many nodes (1-1000)");
  node_list->add_option("--after", n_after, "start after this node name (the 'more:' hint of a page)");
  auto* node_show = node->add_subcommand("show", "one node: session, epoch, last seen, requests in flight");
  node_show->add_option("NAME", name)->required();
  auto* node_disable = node->add_subcommand("disable", "disable a node (closes its session)");
  node_disable->add_option("NAME", name)->required();
  auto* node_enable = node->add_subcommand("enable", "re-enable a disabled node");
  node_enable->add_option("NAME", name)->required();
  auto* node_rotate = node->add_subcommand("rotate-key", "replace a node's API key (the old one stops working)");
  node_rotate->add_option("NAME", name)->required();
  std::string drain_deadline;
  auto* node_drain = node->add_subcommand(
    "drain", "no new backfill requests; wait for those in flight (reset at the deadline); close the session "
             "with `drained` (the agent stops reconnecting) and keep the node disabled");
  node_drain->add_option("NAME", name)->required();
  node_drain->add_option("--deadline", drain_deadline,
                         "how long to wait for requests in flight (default 60s, at most 100s)");
  std::string check_name;
  bool check_no_wait = false;
  auto* node_check = node->add_subcommand(
    "check", "run a check from the coordinator's [checks] on the node (its agent must allow the same); "
             "waits for the result and exits 0 only if the check exited 0");
  node_check->add_option("NAME", name)->required();
  node_check->add_option("CHECK", check_name, "a name from `nodecoordctl checks`")->required();
  node_check->add_flag("--no-wait", check_no_wait, "print the check's job and return");
  auto* checks = app.add_subcommand("checks", "the checks the coordinator's config allows ([checks.NAME])");

  auto* attempts = app.add_subcommand("attempts", "task attempts");
  attempts->require_subcommand(1);
  std::string a_node, a_sync, a_state, a_after, a_limit, attempt_id;
  auto* attempts_list = attempts->add_subcommand("list", "list attempts (ordered by id; --after pages)");
  attempts_list->add_option("--node", a_node, "node name");
  attempts_list->add_option("--sync-state", a_sync, "partial | pending_backfill | complete | failed");
  attempts_list->add_option("--state", a_state, "queued | running | succeeded | failed | cancelled");
  attempts_list->add_option("--limit", a_limit, "rows per page (1-1000, default 100)");
  attempts_list->add_option("--after", a_after, "the 'more' value of the previous page");
  auto* attempts_show = attempts->add_subcommand("show", "one attempt (a partial one is asked for at once)");
  attempts_show->add_option("ATTEMPT", attempt_id)->required();

  auto* backfill = app.add_subcommand("backfill", "ask the attempt's node to resend it now");
  backfill->add_option("ATTEMPT", attempt_id)->required();
  auto* requeue = app.add_subcommand("requeue", "take a failed attempt back to partial");
  requeue->add_option("ATTEMPT", attempt_id)->required();

  auto* jobs = app.add_subcommand("jobs", "the ledger of coordinator operations");
  jobs->require_subcommand(1);
  std::string j_status, j_type, j_node, j_limit, j_before, j_older;
  auto* jobs_list = jobs->add_subcommand("list", "jobs, newest first");
  jobs_list->add_option("--status", j_status, "comma-separated statuses");
  jobs_list->add_option("--type", j_type, "comma-separated types");
  jobs_list->add_option("--node", j_node, "node name");
  jobs_list->add_option("--limit", j_limit, "rows per page (1-1000, default 100)");
  jobs_list->add_option("--before", j_before, "the 'more' value of the previous page");
  auto* jobs_prune = jobs->add_subcommand("prune", "delete finished jobs (needs at least one filter)");
  jobs_prune->add_option("--status", j_status, "comma-separated statuses (never queued or running)");
  jobs_prune->add_option("--type", j_type, "comma-separated types");
  jobs_prune->add_option("--older-than", j_older,
                         "age such as 7d or 24h (default: failed 30d, other finished jobs 7d)");

  auto* audit = app.add_subcommand("audit", "the audit ledger: every mutating admin call, newest first");
  std::string u_actor, u_action, u_result, u_target, u_since, u_until, u_limit, u_before;
  audit->add_option("--actor", u_actor, "token:<8 hex> or local");
  audit->add_option("--action", u_action, "e.g. node.disable, attempt.requeue, jobs.prune");
  audit->add_option("--result", u_result, "succeeded, refused or failed");
  audit->add_option("--target", u_target, "a node name or an attempt id");
  audit->add_option("--since", u_since, "RFC 3339 time (inclusive)");
  audit->add_option("--until", u_until, "RFC 3339 time (exclusive)");
  audit->add_option("--limit", u_limit, "rows per page (1-1000, default 100)");
  audit->add_option("--before", u_before, "the 'more' value of the previous page");

  auto* bulk = app.add_subcommand(
    "bulk", "act on every attempt or node a filter matches: shows the plan, asks, then applies exactly that set");
  std::string b_action, b_node, b_node_status, b_sync, b_state, b_task_prefix, b_name_prefix, b_older, b_check;
  int64_t b_max_rows = 0;
  bool b_all = false, b_yes = false, b_plan_only = false;
  bulk
    ->add_option(
      "ACTION", b_action,
      "attempts.requeue | attempts.reset | attempts.prune_logs | nodes.disable | nodes.enable | nodes.delete | "
      "nodes.check | requests.cancel")
    ->required();
  bulk->add_option("--check", b_check, "nodes.check: the check to run on every matched online node");
  bulk->add_option("--node", b_node, "node name");
  bulk->add_option("--node-status", b_node_status, "online | offline | disabled");
  bulk->add_option("--sync-state", b_sync, "attempts: failed (requeue); complete or failed (reset)");
  bulk->add_option("--state", b_state, "attempts: queued | running | succeeded | failed | cancelled");
  bulk->add_option("--task-prefix", b_task_prefix, "attempts: task ids starting with this");
  bulk->add_option("--name-prefix", b_name_prefix, "nodes, requests.cancel: node names starting with this");
  bulk->add_option("--older-than", b_older,
                   "attempts last updated / nodes last seen / requests sent longer ago (7d, 24h, 5m); "
                   "attempts.prune_logs requires it");
  bulk->add_flag("--all", b_all, "no filter: every row the action applies to");
  bulk->add_option("--max-rows", b_max_rows, "this call's budget (default admin.max_rows_per_action)");
  bulk->add_flag("--yes", b_yes, "apply without asking");
  bulk->add_flag("--plan-only", b_plan_only, "show the plan, change nothing");

  auto* bundle = app.add_subcommand("bundle", "export or import everything as a JSON Lines bundle");
  bundle->require_subcommand(1);
  std::string file;
  bool dry_run = false;
  auto* bundle_export = bundle->add_subcommand("export", "write a bundle to FILE ('-': standard output)");
  bundle_export->add_option("FILE", file)->required();
  auto* bundle_import = bundle->add_subcommand("import", "import a bundle (one transaction, idempotent)");
  bundle_import->add_option("FILE", file)->required();
  bundle_import->add_flag("--dry-run", dry_run, "report what would change, change nothing");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);
    std::cerr << "nodecoordctl: " << e.what() << "\nRun 'nodecoordctl --help' for usage.\n";
    return exit_usage;
  }

  try {
    client api(resolve_target(admin_url, token_file, config_path, ca_file));
    auto print = [&](const json& data, const std::function<void(const json&)>& human) {
      if (json_out)
        std::cout << data.dump() << "\n";
      else
        human(data);
    };
    if (status->parsed()) {
      print(api.call("GET", "/api/overview"), print_status);
    } else if (node_add->parsed()) {
      print(api.call("POST", "/api/nodes", json{{"name", name}}.dump()), [&](const json& d) {
        std::cout << "created node " << name << " (" << text(d["node"]["id"]) << ")\n"
                  << "key: " << text(d["key"]) << "\n"
                  << "The key is shown only this once; store it on the node (e.g. in its key file).\n";
      });
    } else if (node_list->parsed()) {
      // Without --limit every page is read (1,000 nodes each), so a large fleet is listed without
      // one unbounded answer; with it, one page and where the next starts.
      auto one_page = !n_limit.empty();
      json all = json::array();
      json next = n_after.empty() ? json(nullptr) : json(n_after);
      do {
        auto d = api.call("GET", "/api/nodes"
                                   + query({{"status", n_status},
                                            {"limit", one_page ? n_limit : "1000"},
                                            {"after", next.is_null() ? "" : next.get<std::string>()}}));
        for (auto& n : d["nodes"])
          all.push_back(n);
        next = d["next"];
      } while (!one_page && !next.is_null());
      if (json_out)
        std::cout << all.dump() << "\n";
      else
        print_nodes(all);
      if (one_page && !next.is_null() && !json_out)
        std::cout << "more: --after " << text(next) << "\n";
    } else if (node_show->parsed()) {
      print(api.call("GET", "/api/nodes/" + url_encode(name)), [](const json& d) { print_node(d["node"]); });
    } else if (node_drain->parsed()) {
      print(api.call("POST", "/api/nodes/" + url_encode(name) + "/drain" + query({{"deadline", drain_deadline}})),
            [&](const json& d) {
              std::cout << "node " << name << " drained and disabled"
                        << (d.value("closed_session", false) ? "; its session was closed" : "") << "\n"
                        << "requests finished " << text(d["requests_finished"]) << ", reset "
                        << text(d["requests_reset"]) << "; attempts partial " << text(d["attempts_partial"]) << "\n";
            });
    } else if (checks->parsed()) {
      print(api.call("GET", "/api/checks"), [](const json& d) {
        std::vector<std::vector<std::string>> rows;
        for (auto& c : d["checks"])
          rows.push_back({text(c["name"]), c["argv"].dump(), text(c["timeout_ms"]), text(c["output_max"])});
        table({"NAME", "ARGV", "TIMEOUT_MS", "OUTPUT_MAX"}, rows);
      });
    } else if (node_check->parsed()) {
      return run_node_check(api, name, check_name, check_no_wait, json_out);
    } else if (node_disable->parsed() || node_enable->parsed() || node_rotate->parsed()) {
      std::string action = node_disable->parsed() ? "disable" : node_enable->parsed() ? "enable" : "rotate-key";
      print(api.call("POST", "/api/nodes/" + url_encode(name) + "/" + action), [&](const json& d) {
        if (action == "disable")
          std::cout << "node " << name << " disabled"
                    << (d.value("closed_session", false) ? "; its session was closed" : "") << "\n";
        else if (action == "enable")
          std::cout << "node " << name << " enabled\n";
        else
          std::cout << "node " << name << " has a new key\nkey: " << text(d["key"])
                    << "\nThe old key no longer authenticates; the key is shown only this once.\n";
      });
    } else if (attempts_list->parsed()) {
      print(
        api.call(
          "GET",
          "/api/attempts"
            + query(
              {{"node", a_node}, {"sync_state", a_sync}, {"state", a_state}, {"limit", a_limit}, {"after", a_after}})),
        print_attempts);
    } else if (attempts_show->parsed()) {
      print(api.call("GET", "/api/attempts/" + url_encode(attempt_id)), [](const json& d) {
        print_node(d["attempt"]);
        if (!d["backfill"].is_null())
          std::cout << "backfill: " << d["backfill"].dump() << "\n";
      });
    } else if (backfill->parsed()) {
      print(api.call("POST", "/api/attempts/" + url_encode(attempt_id) + "/backfill"),
            [&](const json& d) { std::cout << "backfill requested: job " << text(d["job_id"]) << "\n"; });
    } else if (requeue->parsed()) {
      print(api.call("POST", "/api/attempts/" + url_encode(attempt_id) + "/requeue"), [&](const json& d) {
        std::cout << "attempt " << attempt_id << " is " << text(d["attempt"]["sync_state"]) << " again\n";
      });
    } else if (audit->parsed()) {
      print(api.call("GET", "/api/audit"
                              + query({{"actor", u_actor},
                                       {"action", u_action},
                                       {"result", u_result},
                                       {"target", u_target},
                                       {"since", u_since},
                                       {"until", u_until},
                                       {"limit", u_limit},
                                       {"before", u_before}})),
            print_audit);
    } else if (jobs_list->parsed()) {
      print(
        api.call(
          "GET",
          "/api/jobs"
            + query(
              {{"status", j_status}, {"type", j_type}, {"node", j_node}, {"limit", j_limit}, {"before", j_before}})),
        print_jobs);
    } else if (jobs_prune->parsed()) {
      print(api.call("DELETE", "/api/jobs" + query({{"status", j_status}, {"type", j_type}, {"older_than", j_older}})),
            [](const json& d) { std::cout << "deleted " << text(d["deleted"]) << " jobs\n"; });
    } else if (bulk->parsed()) {
      json body = json::object();
      json filter = json::object();
      for (auto& [k, v] : std::vector<std::pair<std::string, std::string>>{{"node", b_node},
                                                                           {"node_status", b_node_status},
                                                                           {"sync_state", b_sync},
                                                                           {"state", b_state},
                                                                           {"task_prefix", b_task_prefix},
                                                                           {"name_prefix", b_name_prefix},
                                                                           {"older_than", b_older}})
        if (!v.empty())
          filter[k] = v;
      body["filter"] = filter;
      if (b_all)
        body["all"] = true;
      if (b_max_rows > 0)
        body["max_rows"] = b_max_rows;
      if (!b_check.empty())
        body["check"] = b_check;
      auto path = "/api/bulk/" + url_encode(b_action);
      auto plan = api.call("POST", path + "/plan", body.dump());
      if (!json_out)
        print_plan(plan);
      if (b_plan_only || plan.value("matched", 0) == 0) {
        if (json_out)
          std::cout << plan.dump() << "\n";
        else if (plan.value("matched", 0) == 0)
          std::cout << "nothing to apply\n";
        return exit_ok;
      }
      if (!b_yes) {
        // Like `terraform apply`: only the word itself, typed, applies.
        std::cerr << "Apply " << b_action << " to these " << plan["matched"] << " rows? Only 'yes' is accepted: ";
        std::string answer;
        if (!std::getline(std::cin, answer) || answer != "yes") {
          std::cerr << "not applied\n";
          return exit_failure;
        }
      }
      // The plan's filter as it answered it (an age resolved to a time) and its token: the apply
      // acts on that set or on nothing.
      json apply{{"filter", plan["filter"]}, {"token", plan["token"]}};
      if (plan.value("all", false))
        apply["all"] = true;
      if (b_max_rows > 0)
        apply["max_rows"] = b_max_rows;
      if (!b_check.empty())
        apply["check"] = b_check;
      print(api.call("POST", path + "/apply", apply.dump()), [&](const json& d) {
        std::cout << "applied " << b_action << ": " << d["counts"].dump();
        if (d.value("closed_sessions", 0) > 0)
          std::cout << "; closed " << d["closed_sessions"] << " sessions";
        std::cout << "\n";
        if (d.contains("jobs")) { // nodes.check: a job per node (nodecoordctl jobs list --type check)
          std::vector<std::vector<std::string>> rows;
          for (auto& j : d["jobs"])
            rows.push_back({text(j["node"]), text(j["job_id"]), j["error"].is_null() ? "sent" : text(j["error"])});
          table({"NODE", "JOB", "SENT"}, rows);
        }
      });
    } else if (bundle_export->parsed()) {
      std::ofstream out;
      bool to_stdout = file == "-";
      if (!to_stdout) {
        out.open(file + ".partial", std::ios::binary | std::ios::trunc);
        if (!out)
          throw api_failure(exit_failure, "file", "cannot write " + file + ".partial");
      }
      std::ostream& os = to_stdout ? std::cout : out;
      uint64_t bytes = 0, lines = 0;
      api.download("/api/bundle", [&](const char* data, size_t n) {
        os.write(data, static_cast<std::streamsize>(n));
        bytes += n;
        lines += static_cast<uint64_t>(std::count(data, data + n, '\n'));
        return static_cast<bool>(os);
      });
      if (!to_stdout) {
        out.close();
        if (!out)
          throw api_failure(exit_failure, "file", "writing " + file + " failed");
        // Only a complete bundle gets the name.
        if (std::rename((file + ".partial").c_str(), file.c_str()) != 0)
          throw api_failure(exit_failure, "file", "cannot rename " + file + ".partial to " + file);
        if (json_out)
          std::cout << json{{"file", file}, {"bytes", bytes}, {"lines", lines}}.dump() << "\n";
        else
          std::cout << "exported " << lines << " lines (" << bytes << " bytes) to " << file << "\n";
      }
    } else if (bundle_import->parsed()) {
      std::ifstream in(file, std::ios::binary);
      if (!in)
        throw api_failure(exit_usage, "file", "cannot read " + file);
      std::stringstream ss;
      ss << in.rdbuf();
      print(
        api.call("POST", std::string("/api/bundle?dry_run=") + (dry_run ? "1" : "0"), ss.str(), "application/x-ndjson"),
        [&](const json& d) {
          std::cout << (dry_run ? "dry run (nothing changed): " : "imported: ") << "job " << text(d["job_id"]) << "\n";
          std::vector<std::vector<std::string>> rows;
          for (auto& [kind, c] : d["counts"].items())
            rows.push_back({kind, text(c["inserted"]), text(c["skipped"]), text(c["conflicting"])});
          table({"TYPE", "INSERTED", "SKIPPED", "CONFLICTING"}, rows);
        });
    }
    return exit_ok;
  } catch (const api_failure& e) {
    std::cerr << "nodecoordctl: " << e.what() << "\n";
    return e.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "nodecoordctl: " << e.what() << "\n";
    return exit_failure;
  }
}
