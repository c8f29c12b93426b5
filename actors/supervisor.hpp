#pragma once
// The supervisor (DESIGN §1 Startup / Shutdown) starts the actors in order (storage first: migrate
// and recover before anything listens), reports readiness, pings the watchdog while storage
// answers, reloads on SIGHUP and runs the orderly shutdown (actors/shutdown.hpp). What it does
// outside the actor system (sd_notify, the log sinks) goes through `supervisor_hooks`, so
// tests/supervisor_test.cpp runs it under CAF's deterministic scheduler.
#include "actors/actors.hpp"
#include "actors/admin.hpp"
#include "config/config.hpp"
#include "tls/context.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>

namespace nodecoord {

/// The daemon wires these to sd_notify(3) and the log sinks (daemon/main.cpp); tests record them.
struct supervisor_hooks {
  std::function<void(const std::string& status)> ready = [](const std::string&) {};    // READY=1
  std::function<void()> reloading = [] {};                                             // RELOADING=1
  std::function<void(const std::string& status)> stopping = [](const std::string&) {}; // STOPPING=1
  std::function<void()> watchdog = [] {};                                              // WATCHDOG=1
  std::optional<std::chrono::microseconds> watchdog_interval;                          // WATCHDOG_USEC; none: no pings
  std::function<void(const config::log_config&)> apply_log = [](const config::log_config&) {};
};

struct supervisor_options {
  config::daemon_config config;
  std::string config_path; // re-read on SIGHUP; empty: defaults only
  std::string state_dir;
  /// This daemon's instance id (config::resolve_instance_id). Empty (tests): no lease.
  std::string instance_id;
  std::string admin_token; // the content of admin.token_file; empty: no token
  /// TLS on the node port, built from [server.tls] by the caller (which refuses to start when its
  /// files are unusable); rebuilt on SIGHUP. Null: plain TCP until a reload configures TLS.
  std::shared_ptr<tls::server_setting> node_tls;
  /// The same for the admin API ([admin.tls]): with a context it serves HTTPS only.
  std::shared_ptr<tls::server_setting> admin_tls;
  /// Called once when the supervisor is done, with the process exit code.
  std::function<void(int)> on_done = [](int) {};
  supervisor_hooks hooks;
  /// Storage on its own thread (its SQL blocks); false under the deterministic scheduler.
  bool detached_storage = true;
  /// Spawns the admin API (tests: a stand-in without cpp-httplib's threads).
  std::function<admin_actor(caf::actor_system&, admin_options)> spawn_admin = nodecoord::spawn_admin;
};

/// Spawns the supervisor; it spawns everything else.
supervisor_actor spawn_supervisor(caf::actor_system& sys, supervisor_options opts);

} // namespace nodecoord
