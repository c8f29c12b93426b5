#include "config/reload.hpp"

#include <algorithm>

namespace nodecoord::config {

std::vector<std::string> restart_needed(const daemon_config& now, const daemon_config& next) {
  std::vector<std::string> keys;
  auto differs = [&](bool changed, const char* key) {
    if (changed)
      keys.emplace_back(key);
  };
  auto& s = now.server;
  auto& ns = next.server;
  differs(s.listen.to_string() != ns.listen.to_string(), "server.listen");
  differs(s.max_connections != ns.max_connections, "server.max_connections");
  differs(s.max_handshakes != ns.max_handshakes, "server.max_handshakes");
  differs(s.max_frame_bytes != ns.max_frame_bytes || s.max_outbound_bytes != ns.max_outbound_bytes
            || s.hello_timeout != ns.hello_timeout || s.heartbeat_interval != ns.heartbeat_interval
            || s.idle_timeout != ns.idle_timeout || s.max_protocol_errors != ns.max_protocol_errors,
          "server");
  differs(s.shutdown_timeout != ns.shutdown_timeout, "server.shutdown_timeout");
  differs(s.instance_id != ns.instance_id, "server.instance_id");
  differs(s.lease_interval != ns.lease_interval || s.lease_expiry != ns.lease_expiry, "server.lease");
  auto& st = now.storage;
  auto& nst = next.storage;
  differs(st.url != nst.url, "storage.url");
  differs(st.batch_max != nst.batch_max, "storage.batch_max");
  differs(st.max_queued_bytes != nst.max_queued_bytes, "storage.max_queued_bytes");
  differs(st.max_queued_frames != nst.max_queued_frames, "storage.max_queued_frames");
  differs(st.connect_timeout != nst.connect_timeout || st.reconnect_initial != nst.reconnect_initial
            || st.reconnect_max != nst.reconnect_max,
          "storage");
  auto& b = now.backfill;
  auto& nb = next.backfill;
  differs(b.reconcile_interval != nb.reconcile_interval || b.batch_size != nb.batch_size
            || b.request_timeout != nb.request_timeout || b.max_failures != nb.max_failures
            || b.reconnect_rate != nb.reconnect_rate || b.max_inflight_per_node != nb.max_inflight_per_node,
          "backfill");
  differs(now.admin.listen.to_string() != next.admin.listen.to_string(), "admin.listen");
  differs(now.admin.max_body_bytes != next.admin.max_body_bytes, "admin.max_body_bytes");
  differs(now.admin.max_rows_per_action != next.admin.max_rows_per_action, "admin.max_rows_per_action");
  auto same_check = [](const check_definition& x, const check_definition& y) {
    return x.name == y.name && x.argv == y.argv && x.timeout == y.timeout && x.output_max == y.output_max;
  };
  differs(!std::equal(now.checks.begin(), now.checks.end(), next.checks.begin(), next.checks.end(), same_check),
          "checks");
  differs(now.admin.max_rows_per_action_hard != next.admin.max_rows_per_action_hard, "admin.max_rows_per_action_hard");
  differs(now.admin.allowed_hosts != next.admin.allowed_hosts, "admin.allowed_hosts");
  // A certificate can be rotated by SIGHUP, but the port cannot switch between HTTP and HTTPS.
  differs(now.admin.tls.enabled() != next.admin.tls.enabled(), "admin.tls.cert_file");
  return keys;
}

} // namespace nodecoord::config
