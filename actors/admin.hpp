#pragma once
#include "common/checks.hpp"
// admin (DESIGN §1, docs/admin-api.md): the operator's HTTP API. cpp-httplib serves it on its own
// threads; each request becomes a call of admin::api, whose backend asks the actors with a
// timeout. It changes state only through those actors.
#include "actors/actors.hpp"
#include "config/defaults.hpp"
#include "storage/url.hpp"
#include "tls/context.hpp"

#include <caf/fwd.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace nodecoord {

struct admin_options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                                                 // 0: any free port (ask with port_atom)
  std::string token;                                                 // empty: no token required
  uint64_t max_body_bytes = defaults::admin_max_body_bytes;          // larger bodies: 413
  std::vector<std::string> allowed_hosts;                            // names accepted in Host (browser_guard.hpp)
  int64_t max_rows_per_action = defaults::admin_max_rows_per_action; // a bulk action's change budget
  int64_t max_rows_per_action_hard = defaults::admin_max_rows_per_action_hard;
  std::vector<check_definition> checks; // [checks.NAME]
  /// [admin.tls]: with a context, HTTPS only; each handshake uses the context current then (a
  /// SIGHUP rotation needs no restart). Null or no context: plain HTTP.
  std::shared_ptr<tls::server_setting> tls;
  std::string started_at;
  std::string instance_id; // this daemon's (DESIGN §9)
  /// The database, for long reads on connections of their own (storage/snapshot.hpp): its size
  /// every sizes_every, and bundle exports. None: both are asked of the storage actor.
  std::optional<storage::storage_url> reader_url;
  std::chrono::milliseconds sizes_every{defaults::sizes_every};
  storage_actor storage;
  registry_actor registry;
  tracker_actor tracker;
  scheduler_actor scheduler;
};

/// Spawns the admin actor; it quits with an error if it cannot listen.
admin_actor spawn_admin(caf::actor_system& sys, admin_options opts);

} // namespace nodecoord
