// default_config(): every value of config/defaults.hpp in the configuration's structs. Split from
// config.cpp.
#include "config/config.hpp"
#include "config/defaults.hpp"
#include "config/endpoint.hpp"

#include <initializer_list>
#include <stdexcept>
#include <string>

namespace nodecoord::config {

namespace {

/// The value spelled `name` (a default of defaults.hpp); a misspelt default is a bug.
template <class Enum>
Enum named(std::string_view name, std::initializer_list<Enum> all) {
  for (auto e : all)
    if (to_string(e) == name)
      return e;
  throw std::logic_error("config/defaults.hpp: no such value: " + std::string(name));
}

} // namespace

daemon_config default_config() {
  daemon_config c;
  c.server.listen = default_endpoint(defaults::listen);
  c.server.max_connections = defaults::max_connections;
  c.server.max_handshakes = defaults::max_handshakes;
  c.server.max_frame_bytes = defaults::max_frame_bytes;
  c.server.max_outbound_bytes = defaults::max_outbound_bytes;
  c.server.hello_timeout = defaults::hello_timeout;
  c.server.heartbeat_interval = defaults::heartbeat_interval;
  c.server.idle_timeout = defaults::idle_timeout;
  c.server.max_protocol_errors = defaults::max_protocol_errors;
  c.server.shutdown_timeout = defaults::shutdown_timeout;
  c.server.lease_interval = defaults::lease_interval;
  c.server.lease_expiry = defaults::lease_expiry;
  c.server.tls.min_version = defaults::tls_min_version;
  c.server.tls.required = defaults::tls_required;
  c.admin.tls.min_version = defaults::tls_min_version;
  c.admin.tls.required = true; // the admin port is HTTPS only once it has a certificate

  c.storage.url = defaults::storage_url;
  c.storage.batch_max = defaults::batch_max;
  c.storage.max_queued_bytes = defaults::max_queued_bytes;
  c.storage.max_queued_frames = defaults::max_queued_frames;
  c.storage.connect_timeout = defaults::connect_timeout;
  c.storage.reconnect_initial = defaults::reconnect_initial;
  c.storage.reconnect_max = defaults::reconnect_max;

  c.backfill.reconcile_interval = defaults::reconcile_interval;
  c.backfill.batch_size = defaults::batch_size;
  c.backfill.request_timeout = defaults::request_timeout;
  c.backfill.max_failures = defaults::max_failures;
  c.backfill.reconnect_rate = defaults::reconnect_rate;
  c.backfill.max_inflight_per_node = defaults::max_inflight_per_node;

  c.admin.listen = default_endpoint(defaults::admin_listen);
  c.admin.token_file = defaults::admin_token_file;
  c.admin.max_body_bytes = defaults::admin_max_body_bytes;
  c.admin.max_rows_per_action = defaults::admin_max_rows_per_action;
  c.admin.max_rows_per_action_hard = defaults::admin_max_rows_per_action_hard;

  c.log.level = named(defaults::log_level,
                      {log_level::trace, log_level::debug, log_level::info, log_level::warn, log_level::error});
  c.log.format = named(defaults::log_format, {log_format::text, log_format::json});
  return c;
}

} // namespace nodecoord::config
