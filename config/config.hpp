#pragma once
#include "common/checks.hpp"
// The TOML configuration of nodecoordd (DESIGN §5): plain structs, parsing and validation.
// No CAF here: this is unit-tested directly and also used by --check-config.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodecoord::config {

using duration = std::chrono::milliseconds;

/// A host:port pair. IPv6 hosts are written in brackets: "[::1]:7400".
struct endpoint {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const;
};

/// [server.tls] (docs/configuration.md, "TLS"). The files are checked when the daemon builds its
/// TLS context (startup, --check-config, SIGHUP), not here.
struct tls_config {
  std::string cert_file; // empty: no TLS on the node port
  std::string key_file;
  std::string client_ca_file; // non-empty: mutual TLS
  std::string min_version;    // "1.2" or "1.3"
  bool required;              // with a certificate: refuse plain connections (close{tls_required})
  bool enabled() const { return !cert_file.empty(); }
};

struct server_config {
  endpoint listen;
  uint32_t max_connections;
  uint32_t max_handshakes;
  uint64_t max_frame_bytes;
  uint64_t max_outbound_bytes;
  duration hello_timeout;
  duration heartbeat_interval;
  duration idle_timeout;
  uint32_t max_protocol_errors;
  duration shutdown_timeout;
  tls_config tls;
  std::string instance_id; // empty: a UUID kept in the state directory (DESIGN §9)
  duration lease_interval; // how often the instance renews its lease
  duration lease_expiry;   // a lease older than this is recovered by another instance
};

struct storage_config {
  std::string url;
  uint32_t batch_max;
  uint64_t max_queued_bytes;
  uint64_t max_queued_frames;
  duration connect_timeout;
  duration reconnect_initial;
  duration reconnect_max;
};

struct backfill_config {
  duration reconcile_interval;
  uint32_t batch_size;
  duration request_timeout;
  uint32_t max_failures;
  uint32_t reconnect_rate;
  uint32_t max_inflight_per_node;
};

struct admin_config {
  endpoint listen;
  std::string token_file;                 // empty: no token (allowed only on loopback)
  uint64_t max_body_bytes;                // larger request bodies (bundle imports) are refused with 413
  int64_t max_rows_per_action;            // a bulk action's change budget (rows its filter matches)
  int64_t max_rows_per_action_hard;       // the most one call may raise its own budget to
  std::vector<std::string> allowed_hosts; // names besides IP literals, localhost and listen's host
                                          // that the Host header may carry (DNS rebinding)
  tls_config tls;                         // [admin.tls]: HTTPS (no `required`: HTTPS only)
};

enum class log_level { trace, debug, info, warn, error };
enum class log_format { text, json };

struct log_config {
  log_level level;
  log_format format;
};

struct daemon_config {
  server_config server;
  storage_config storage;
  backfill_config backfill;
  admin_config admin;
  log_config log;
  std::vector<check_definition> checks; // [checks.NAME], by name
};

/// Every default from defaults.hpp.
daemon_config default_config();

/// One problem found in a configuration file. line/column are 1-based; 0 when the problem has no
/// position (an unreadable file).
struct config_error {
  std::string file;
  uint32_t line = 0;
  uint32_t column = 0;
  std::string key; // dotted key, e.g. "server.listen"; empty for syntax errors
  std::string message;
  /// "file:line:column: key: message" (parts without a value are left out).
  std::string to_string() const;
};

struct load_result {
  daemon_config config;             // defaults where the file had errors
  std::vector<config_error> errors; // empty: the file is valid
  bool ok() const { return errors.empty(); }
};

/// Parses and validates a file. Collects every error instead of stopping at the first.
load_result load_file(const std::string& path);

/// Same for text in memory; `name` is used as the file name in errors.
load_result load_string(std::string_view text, std::string_view name);

/// Where relative SQLite paths live: `flag` (--state-dir), else $STATE_DIRECTORY (systemd's
/// StateDirectory=; the first of several), else empty (the working directory).
std::string resolve_state_dir(const std::string& flag);

/// This daemon's instance id (DESIGN §9): server.instance_id if set, else the one kept in
/// `<state_dir>/instance_id`, made (a new UUID) the first time. nullopt with `why` if the file
/// cannot be read or written.
std::optional<std::string> resolve_instance_id(const std::string& configured, const std::string& state_dir,
                                               std::string& why);

/// The admin token in admin.token_file: the whole file, surrounding whitespace trimmed, at least
/// 16 characters. nullopt with `why` set (naming the file) if it cannot be read or is too short.
std::optional<std::string> read_admin_token(const std::string& path, std::string& why);

std::string_view to_string(log_level);
std::string_view to_string(log_format);

} // namespace nodecoord::config
