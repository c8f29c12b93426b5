#pragma once
// The backfill scenarios of nodecoord-bench (DESIGN §8, issue 4):
//
//   limit             the same row transitions as a backfill, as direct set-based SQL in large
//                     transactions: the rate the database itself reaches (no daemon)
//   storage           the same transitions through the storage operations: batched (the batch
//                     executor, many operations per transaction, as the storage actor does) against
//                     per-row (one autocommitted statement per attempt) in one run (no daemon)
//   backfill          N nodes with partial attempts reconnect and answer every backfill_request:
//                     attempts completed per second, request latency (daemon running)
//   disconnect-storm  N nodes with pending requests drop at once: time until no row is
//                     pending_backfill, against one direct UPDATE of the same rows (daemon running)
#include <cstddef>
#include <cstdint>
#include <string>

namespace nodecoord::bench {

/// Where the database is: the daemon's configuration file and state directory.
struct db_args {
  std::string config_path;
  std::string state_dir;
};

struct limit_args {
  std::string prefix = "limit-"; // the bench's own nodes, created if missing
  size_t nodes = 1000;
  size_t attempts = 10; // per node
  size_t logs = 10;     // log lines stored per attempt before the backfill
  size_t missing = 10;  // log lines per attempt the backfill adds (0: transitions only)
  size_t tx_nodes = 0;  // nodes per transaction (0: all in one)
  size_t line_bytes = 80;
  bool keep = false; // leave the rows behind
};
int run_limit(const db_args& d, const limit_args& a, bool as_json);

struct storage_path_args {
  std::string prefix = "limit-";
  size_t nodes = 1000;
  size_t attempts = 10;
  size_t logs = 10;
  size_t slow_nodes = 100; // nodes the per-row and per-op modes transition (they are slow)
  std::string modes = "batched,per-row";
  size_t batch = 0; // operations per transaction in batched mode (0: storage.batch_max)
  size_t line_bytes = 80;
  bool keep = false;
};
int run_storage_path(const db_args& d, const storage_path_args& a, bool as_json);

/// Socket options shared with connect/steady.
struct socket_args {
  std::string coordinator;
  std::string keys_path;
  size_t nodes = 0;
  size_t skip = 0; // keys to pass over first: several processes split one keys file
  int pid = 0;
  size_t concurrency = 200;
  std::string sources = "auto";
  std::string welcome_timeout = "30s";
  std::string ack_timeout = "5s";
  // TLS (issue 17): --tls, the CA that signed the coordinator, its name, mutual TLS files.
  bool tls = false;
  std::string ca_file;
  std::string server_name; // default: the host of --coordinator
  std::string cert_file, key_file;
  bool no_resume = false;
};

struct backfill_args {
  size_t attempts = 10;  // per node
  size_t logs = 20;      // log lines each attempt has on its node
  size_t sent_logs = 10; // of those, sent live in phase 1 (the rest is missing)
  size_t line_bytes = 80;
  size_t frame_lines = 500;    // log lines per logs frame at most
  bool resend_attempts = true; // answer a request with the attempt frame too, then the logs
  std::string poll = "10ms";   // database poll interval
  std::string timeout = "300s";
  bool keep = false;
};
int run_backfill(const db_args& d, const socket_args& s, const backfill_args& a, bool as_json);

struct storm_args {
  size_t attempts = 10; // per node, all pending when the sockets drop
  std::string poll = "10ms";
  std::string timeout = "300s";
  size_t direct_repeats = 3; // direct UPDATEs timed for the comparison
  bool keep = false;
};
int run_storm(const db_args& d, const socket_args& s, const storm_args& a, bool as_json);

struct overview_args {
  std::string prefix = "ov-"; // the bench's own nodes, created if missing
  size_t nodes = 1000;
  int64_t attempts = 1'000'000; // in the whole table, seeded up to this (kept between runs)
  int64_t jobs = 100'000;
  size_t samples = 200;
};

int run_overview(const db_args& d, const overview_args& a, bool as_json);

/// The socket scenarios' arguments (connect, steady, admin, reconnect-storm; load_scenarios.cpp).
struct load_args : socket_args {
  // connect
  std::string settle = "1s";
  // steady
  std::string interval = "10s";
  std::string duration = "60s";
  std::string warmup = "0s";
  int64_t lines = 0;
  // admin
  std::string admin_url;
  size_t requests = 200;
};

int run_connect(const load_args& a, bool as_json);
int run_steady(const load_args& a, bool as_json);
int run_admin(const load_args& a, bool as_json);
int run_reconnect_storm(const load_args& a, bool as_json);

} // namespace nodecoord::bench
