// nodecoord-bench: the load generator of nodecoordd (DESIGN §8). It plays many nodes against a
// running coordinator over real sockets and reports what it measured; BENCHMARKS.md holds the
// figures and the commands that produced them.
//
//   provision  create N nodes in the configured database (one batch) and write their keys
//   connect    open N sessions (connect + hello + welcome): rate, latency, daemon RSS per session
//   steady     N sessions heartbeating: ack latency, lost acks, daemon CPU and RSS
//   reconnect-storm  N sessions drop at once and reconnect at once: time to the last welcome
//   limit, storage, backfill, disconnect-storm: the backfill scenarios (scenarios.hpp)
//
// It asserts nothing about timing: a run is invalid (exit 1) only when something went wrong
// (a session failed to authenticate, an ack was lost, the coordinator ended a session, an error
// frame arrived). One thread, epoll, non-blocking sockets; no CAF.
#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "common/states.hpp"
#include "config/config.hpp"
#include "config/duration.hpp"
#include "nodecoord/version.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "tools/bench/load.hpp"
#include "tools/bench/scenarios.hpp"

#include "tools/bench/util.hpp"

#include <CLI/App.hpp>
#include <CLI/Config.hpp>
#include <CLI/Formatter.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace nodecoord;
using namespace nodecoord::bench;

namespace {

// --- provision ----------------------------------------------------------------------------------

struct provision_args {
  std::string config_path;
  std::string state_dir;
  std::string keys_path;
  size_t nodes = 0;
  std::string prefix = "bench-";
  size_t batch = 10000;
};

int run_provision(const provision_args& a, bool as_json) {
  std::string keys_path = a.keys_path;
  if (keys_path.empty()) {
    if (a.state_dir.empty())
      throw usage_error("provision: give --state-dir (the keys go to DIR/bench-keys.tsv) or --keys FILE");
    keys_path = (std::filesystem::path(a.state_dir) / "bench-keys.tsv").string();
  }
  auto url = open_target(a.config_path, a.state_dir).url;
  auto t0 = now_ns();
  storage::database db(url, system_now);
  db.connect();
  db.migrate();
  storage::batch_executor exec(db);

  struct outcome {
    std::string name;
    std::string key;
    bool created = false;
    bool enabled = false;
  };
  std::vector<outcome> out(a.nodes);
  size_t batches = 0;
  for (size_t first = 0; first < a.nodes; first += a.batch) {
    size_t last = std::min(a.nodes, first + a.batch);
    std::vector<storage::batch_item> items(last - first);
    for (size_t i = first; i < last; ++i) {
      auto& o = out[i];
      o.name = a.prefix + std::to_string(i);
      auto key = generate_api_key();
      o.key = key.key;
      // Idempotent: a node that exists gets a new key (and is enabled), so the file is valid.
      items[i - first].run = [&o, key](storage::op_context& c) {
        auto made = storage::execute(c, storage::node_create{o.name, "", key.key_id, key.key_hash});
        o.created = made.created;
        if (made.created)
          return;
        auto r = storage::execute(c, storage::node_set_key{o.name, key.key_id, key.key_hash});
        if (!r.found)
          throw std::runtime_error("node " + o.name + ": neither created nor found");
        if (is(r.node.status, node_status::disabled)) {
          storage::execute(c, storage::node_enable{o.name});
          o.enabled = true;
        }
      };
    }
    auto rep = exec.execute(std::span<storage::batch_item>(items));
    ++batches;
    if (rep.stop != storage::stop_reason::none)
      throw std::runtime_error("database unavailable: " + rep.stop_message);
    for (auto& e : rep.errors)
      if (!e.empty())
        throw std::runtime_error("provisioning failed: " + e);
  }
  auto t1 = now_ns();

  // Written to a temporary file and renamed: a reader never sees half a file. Mode 0600: keys.
  auto tmp = keys_path + ".tmp";
  {
    auto old_mask = umask(077);
    std::ofstream f(tmp, std::ios::trunc);
    umask(old_mask);
    if (!f)
      throw usage_error("cannot write " + tmp);
    for (auto& o : out)
      f << o.name << '\t' << o.key << '\n';
    f.close();
    if (!f)
      throw usage_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, keys_path);

  size_t created = 0, enabled = 0;
  for (auto& o : out) {
    created += o.created;
    enabled += o.enabled;
  }
  report r("provision");
  r.text("storage", "storage", url.redacted());
  r.count("nodes", "nodes", a.nodes);
  r.count("created", "created", created);
  r.count("re-keyed (already existed)", "rekeyed", a.nodes - created);
  r.count("re-enabled", "reenabled", enabled);
  r.count("batches", "batches", batches);
  r.number("time", "time_s", static_cast<double>(t1 - t0) / 1e9, 3, "s");
  r.text("keys file", "keys_file", keys_path);
  r.print(as_json);
  return exit_ok;
}

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"nodecoord-bench " + std::string(version) + ": load generator for nodecoordd (DESIGN §8)"};
  bool as_json = false;
  provision_args prov;
  load_args la;
  app.add_option("-c,--config", prov.config_path, "nodecoordd configuration file (provision: its [storage] url)");
  app.add_option("--state-dir", prov.state_dir, "state directory (relative SQLite paths; DIR/bench-keys.tsv)");
  app.add_flag("--json", as_json, "print the result as one JSON object instead of a table");
  app.require_subcommand(1);

  auto* provision = app.add_subcommand("provision", "create N nodes in the database and write their keys");
  provision->add_option("--nodes", prov.nodes, "number of nodes")->required()->check(CLI::Range(1, 10'000'000));
  provision->add_option("--prefix", prov.prefix, "node name prefix (names are PREFIX0 .. PREFIX<N-1>)");
  provision->add_option("--keys", prov.keys_path, "keys file to write (default STATE_DIR/bench-keys.tsv)");
  provision->add_option("--batch", prov.batch, "nodes per database transaction")->check(CLI::Range(1, 10'000'000));

  // The TLS options every socket scenario takes (issue 17).
  auto add_tls_options = [](CLI::App* sub, socket_args& so) {
    sub->add_flag("--tls", so.tls, "speak TLS to the coordinator ([server.tls])");
    sub->add_option("--ca-file", so.ca_file,
                    "PEM CA that signed the coordinator's certificate (default: system store)");
    sub->add_option("--server-name", so.server_name, "name the certificate must carry (default: --coordinator's host)");
    sub->add_option("--tls-cert-file", so.cert_file, "mutual TLS: this bench's client certificate");
    sub->add_option("--tls-key-file", so.key_file, "mutual TLS: its private key");
    sub->add_flag("--no-resume", so.no_resume,
                  "a full handshake on every connection (default: resume the last session)");
  };
  auto add_load_options = [&](CLI::App* sub) {
    sub
      ->add_option("--coordinator", la.coordinator,
                   "nodecoordd node address HOST:PORT, or several separated by commas (sessions spread round "
                   "robin)")
      ->required();
    sub->add_option("--keys", la.keys_path, "keys file (NAME<TAB>KEY lines) from provision")->required();
    sub->add_option("--nodes", la.nodes, "number of sessions (the first N keys)")
      ->required()
      ->check(CLI::Range(1, 10'000'000));
    sub->add_option("--skip", la.skip,
                    "use the keys after the first N (several bench processes, each --skip K*N --nodes N, split one "
                    "keys file and one fleet; tools/bench/measure_fleet.sh)");
    sub->add_option("--pid", la.pid, "daemon process id: report its RSS (and CPU) from /proc");
    sub->add_option("--concurrency", la.concurrency, "connections between connect() and welcome at once (default 200)");
    sub->add_option("--sources", la.sources,
                    "loopback source addresses 127.0.0.2.. to spread connections over: auto (254 when N >= 1000), "
                    "none, or a count");
    sub->add_option("--welcome-timeout", la.welcome_timeout, "per session, connect to welcome (default 30s)");
    sub->add_option("--ack-timeout", la.ack_timeout, "a heartbeat without ack for this long is lost (default 5s)");
    add_tls_options(sub, la);
  };
  auto* connect = app.add_subcommand("connect", "open N sessions: connect+auth rate, latency, daemon RSS per session");
  add_load_options(connect);
  auto* reconnect = app.add_subcommand("reconnect-storm", "N sessions drop at once and reconnect at once: time to "
                                                          "the last welcome, latency, daemon CPU");
  add_load_options(reconnect);
  reconnect->add_option("--settle", la.settle, "wait before the drop and after the storm (default 1s)");
  connect->add_option("--settle", la.settle, "wait after the last welcome before weighing the daemon (default 1s)");
  auto* steady = app.add_subcommand("steady", "N sessions heartbeating: ack latency, lost acks, daemon CPU and RSS");
  add_load_options(steady);
  steady->add_option("--interval", la.interval, "heartbeat interval per session (default 10s)");
  steady->add_option("--duration", la.duration, "measurement window (default 60s)");
  steady->add_option("--warmup", la.warmup, "heartbeat this long after the last welcome before measuring (default 0s)");
  steady->add_option("--lines", la.lines,
                     "log lines each session sends before each heartbeat (default 0): the ack then waits for "
                     "their commit");

  auto* admin = app.add_subcommand("admin", "N sessions heartbeating while the admin API is polled: latency of "
                                            "overview, metrics, readyz, nodes, jobs; daemon CPU");
  add_load_options(admin);
  admin->add_option("--admin", la.admin_url, "admin API URL, e.g. http://127.0.0.1:7401")->required();
  admin->add_option("--requests", la.requests, "requests per endpoint (default 200)")->check(CLI::Range(1, 1'000'000));
  admin->add_option("--interval", la.interval, "heartbeat interval per session (default 10s)");

  // Backfill scenarios (issue 4): the database comes from --config / --state-dir, as for provision.
  limit_args lim;
  auto* limit = app.add_subcommand("limit", "the backfill's row transitions as direct set-based SQL in large "
                                            "transactions: the database's own rate (no daemon)");
  limit->add_option("--nodes", lim.nodes, "bench nodes (created if missing; default 1000)")
    ->check(CLI::Range(1, 1'000'000));
  limit->add_option("--attempts", lim.attempts, "partial attempts per node (default 10)")
    ->check(CLI::Range(1, 100'000));
  limit->add_option("--logs", lim.logs, "log lines stored per attempt before the backfill (default 10)");
  limit->add_option("--missing", lim.missing,
                    "log lines per attempt the backfill inserts, timed apart (default 10; 0: none)");
  limit->add_option("--tx-nodes", lim.tx_nodes, "nodes per transaction (default 0: all in one)");
  limit->add_option("--prefix", lim.prefix, "node name prefix (default limit-)");
  limit->add_option("--line-bytes", lim.line_bytes, "bytes per log line (default 80)");
  limit->add_flag("--keep", lim.keep, "leave the attempts, log lines and jobs in the database");

  storage_path_args sp;
  auto* storage_cmd = app.add_subcommand(
    "storage", "the same transitions through the storage operations: batched (the batch executor) against per-row "
               "(one autocommitted statement per attempt), ratio from one run (no daemon)");
  storage_cmd->add_option("--nodes", sp.nodes, "bench nodes (created if missing; default 1000)")
    ->check(CLI::Range(1, 1'000'000));
  storage_cmd->add_option("--attempts", sp.attempts, "partial attempts per node (default 10)")
    ->check(CLI::Range(1, 100'000));
  storage_cmd->add_option("--logs", sp.logs, "log lines stored per attempt (default 10)");
  storage_cmd->add_option("--slow-nodes", sp.slow_nodes,
                          "nodes the per-row and per-op modes transition (default 100; 0: all)");
  storage_cmd->add_option("--modes", sp.modes, "comma-separated: batched, per-row, per-op (default batched,per-row)");
  storage_cmd->add_option("--batch", sp.batch, "batched: operations per transaction (default storage.batch_max)");
  storage_cmd->add_option("--prefix", sp.prefix, "node name prefix (default limit-)");
  storage_cmd->add_flag("--keep", sp.keep, "leave the attempts, log lines and jobs in the database");

  auto add_socket_options = [&](CLI::App* sub, socket_args& so, size_t default_nodes) {
    so.nodes = default_nodes;
    sub
      ->add_option("--coordinator", so.coordinator,
                   "nodecoordd node address HOST:PORT, or several separated by commas (sessions spread round "
                   "robin)")
      ->required();
    sub->add_option("--keys", so.keys_path, "keys file (NAME<TAB>KEY lines) from provision")->required();
    sub
      ->add_option("--nodes", so.nodes,
                   "number of nodes (the first N keys; default " + std::to_string(default_nodes) + ")")
      ->check(CLI::Range(1, 10'000'000));
    sub->add_option("--pid", so.pid, "daemon process id: report its CPU and RSS from /proc");
    sub->add_option("--concurrency", so.concurrency, "connections between connect() and welcome at once (default 200)");
    sub->add_option("--sources", so.sources, "loopback source addresses: auto, none, or a count");
    sub->add_option("--welcome-timeout", so.welcome_timeout, "per session, connect to welcome (default 30s)");
    sub->add_option("--ack-timeout", so.ack_timeout, "a heartbeat without ack for this long is lost (default 5s)");
    add_tls_options(sub, so);
  };
  socket_args bso, sso;
  backfill_args bf;
  auto* backfill = app.add_subcommand("backfill", "N nodes reconnect with partial attempts and answer every "
                                                  "backfill_request: attempts completed/s, request latency");
  add_socket_options(backfill, bso, 1000);
  backfill->add_option("--attempts", bf.attempts, "attempts per node (default 10)")->check(CLI::Range(1, 100'000));
  backfill->add_option("--logs", bf.logs, "log lines per attempt on the node (default 20)")
    ->check(CLI::Range(1, 1'000'000));
  backfill->add_option("--sent-logs", bf.sent_logs, "of those, sent live in phase 1 (default 10)");
  backfill->add_option("--line-bytes", bf.line_bytes, "bytes per log line (default 80)");
  backfill->add_option("--frame-lines", bf.frame_lines, "log lines per logs frame at most (default 500)");
  bool no_resend = false;
  backfill->add_flag("--no-resend-attempts", no_resend, "answer with the missing logs only, not the attempt frames");
  backfill->add_option("--poll", bf.poll, "database poll interval (default 10ms)");
  backfill->add_option("--timeout", bf.timeout, "give up on a phase after this long (default 300s)");
  backfill->add_flag("--keep", bf.keep, "leave the attempts, log lines and jobs in the database");

  storm_args st;
  auto* storm = app.add_subcommand("disconnect-storm", "N nodes with pending requests drop at once: time until no "
                                                       "row is pending_backfill, against one direct UPDATE");
  add_socket_options(storm, sso, 10000);
  storm->add_option("--attempts", st.attempts, "pending attempts per node (default 10)")->check(CLI::Range(1, 100'000));
  storm->add_option("--poll", st.poll, "database poll interval (default 10ms)");
  storm->add_option("--timeout", st.timeout, "give up on a phase after this long (default 300s)");
  storm->add_option("--direct-repeats", st.direct_repeats, "direct UPDATEs timed, median taken (default 3)");
  storm->add_flag("--keep", st.keep, "leave the attempts and jobs in the database");

  overview_args ov;
  auto* overview = app.add_subcommand("overview", "the overview's counts at a large history: from the counter rows "
                                                  "(schema v3) against the scan they replaced (no daemon)");
  overview->add_option("--nodes", ov.nodes, "bench nodes the attempts belong to (default 1000)")
    ->check(CLI::Range(1, 1'000'000));
  overview->add_option("--attempts", ov.attempts, "attempts in the table, seeded up to this (default 1000000)")
    ->check(CLI::Range(int64_t{0}, int64_t{1'000'000'000}));
  overview->add_option("--jobs", ov.jobs, "jobs in the table, seeded up to this (default 100000)")
    ->check(CLI::Range(int64_t{0}, int64_t{1'000'000'000}));
  overview->add_option("--samples", ov.samples, "timed reads from the counters (default 200; a tenth by scan)")
    ->check(CLI::Range(1, 100'000));
  overview->add_option("--prefix", ov.prefix, "node name prefix (default ov-)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);
    std::cerr << "nodecoord-bench: " << e.what() << "\nRun 'nodecoord-bench --help' for usage.\n";
    return exit_usage;
  }
  try {
    if (provision->parsed())
      return run_provision(prov, as_json);
    if (connect->parsed())
      return run_connect(la, as_json);
    if (reconnect->parsed())
      return run_reconnect_storm(la, as_json);
    if (steady->parsed())
      return run_steady(la, as_json);
    if (admin->parsed())
      return run_admin(la, as_json);
    db_args db{prov.config_path, prov.state_dir};
    if (limit->parsed())
      return run_limit(db, lim, as_json);
    if (storage_cmd->parsed())
      return run_storage_path(db, sp, as_json);
    if (overview->parsed())
      return run_overview(db, ov, as_json);
    if (backfill->parsed()) {
      bf.resend_attempts = !no_resend;
      return run_backfill(db, bso, bf, as_json);
    }
    return run_storm(db, sso, st, as_json);
  } catch (const usage_error& e) {
    std::cerr << "nodecoord-bench: " << e.what() << "\n";
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "nodecoord-bench: " << e.what() << "\n";
    return exit_usage;
  }
}
