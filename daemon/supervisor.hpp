#pragma once
// The supervisor starts the actors in order (storage first: migrate and recover before anything
// listens), reports readiness to systemd, pings the watchdog while the actors answer, reloads
// the log level on SIGHUP and runs the orderly shutdown (DESIGN §1 Startup / Shutdown).
#include "config/config.hpp"

#include <caf/fwd.hpp>

#include <functional>
#include <string>

namespace nodecoord {

struct supervisor_options {
  config::daemon_config config;
  std::string config_path; // re-read on SIGHUP; empty: defaults only
  std::string state_dir;
  std::string admin_token; // the content of admin.token_file; empty: no token
  /// Called once when the supervisor is done, with the process exit code.
  std::function<void(int)> on_done;
};

/// Spawns the supervisor; it spawns everything else.
caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_options opts);

/// Tells the supervisor about a signal (SIGTERM, SIGINT, SIGHUP).
void send_signal(const caf::actor& supervisor, int signo);

} // namespace nodecoord
