#pragma once
// Every default of nodecoordd in one place. config/nodecoord.example.toml lists the same values;
// tests/config_test.cpp checks that the example file parses to exactly these.
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace nodecoord::defaults {

using namespace std::chrono_literals;

// [server]
inline constexpr const char* listen = "127.0.0.1:7400";
inline constexpr uint32_t max_connections = 10000;
inline constexpr uint32_t max_handshakes = 1000; // connections not authenticated yet
// Not configurable: a connection's buffer before authentication (a hello and what is pipelined
// behind it).
inline constexpr uint64_t max_hello_bytes = 16 * 1024;
// A session's receive buffer (CAF allocates one per connection and never shrinks it): small
// while the node only heartbeats; larger once a read fills it (the node sends lines).
inline constexpr uint32_t read_idle_bytes = 512;
inline constexpr uint32_t read_busy_bytes = 4096;
inline constexpr uint64_t max_frame_bytes = 1024 * 1024;        // 1 MiB
inline constexpr uint64_t max_outbound_bytes = 4 * 1024 * 1024; // 4 MiB
inline constexpr auto hello_timeout = 10s;
inline constexpr auto heartbeat_interval = 10s;
inline constexpr auto idle_timeout = 30s;
inline constexpr uint32_t max_protocol_errors = 10;
inline constexpr auto shutdown_timeout = 15s;
// Several instances (DESIGN §9): a lease renewed every lease_interval; another instance recovers
// one that is older than lease_expiry (3 renewals missed).
inline constexpr auto lease_interval = 5s;
inline constexpr auto lease_expiry = 15s;

// [storage]
// Relative SQLite paths resolve against the state directory ($STATE_DIRECTORY under systemd,
// --state-dir, or the working directory).
inline constexpr const char* storage_url = "sqlite://nodecoord.db";
inline constexpr uint32_t batch_max = 1000;
// Node frames handed to storage and not committed yet, fleet-wide: over either bound sessions
// stop reading (backpressure). 10,000 nodes with a few frames each in flight fit.
inline constexpr uint64_t max_queued_bytes = 256ull * 1024 * 1024;
inline constexpr uint64_t max_queued_frames = 100000;
inline constexpr auto connect_timeout = 5s;
inline constexpr auto reconnect_initial = 100ms;
inline constexpr auto reconnect_max = 10s;

// [backfill]
inline constexpr auto reconcile_interval = 60s;
inline constexpr uint32_t batch_size = 100;
inline constexpr auto request_timeout = 120s;
inline constexpr uint32_t max_failures = 5;
inline constexpr uint32_t reconnect_rate = 50; // requests per second, whole fleet
inline constexpr uint32_t max_inflight_per_node = 2;
// Not configurable: nodes per page of a reconcile pass.
inline constexpr uint32_t reconcile_page_size = 500;
// Not configurable: how long the tracker gathers request resets (and the registry session ends)
// before writing them as one operation, so a disconnect storm is a few statements.
inline constexpr auto coalesce_window = 10ms;

// Not configurable: the registry's own rhythm. last_seen_at is written every seen_flush, so a
// session reports a frame's arrival at most that often (more would buy nothing).
inline constexpr auto seen_flush = 5s;
inline constexpr auto disabled_poll = 2s; // how soon a node an operator disabled is disconnected
// Not configurable: failed hellos tolerated per address (IPv6: per /64) a minute, and how many
// addresses the limiter tracks at once (common/auth_limiter.hpp).
inline constexpr uint32_t auth_failures_per_minute = 20;
inline constexpr size_t auth_limiter_capacity = 65536;

// [server.tls]
inline constexpr const char* tls_min_version = "1.2";
inline constexpr bool tls_required = true; // once a certificate is configured

// [admin]
inline constexpr const char* admin_listen = "127.0.0.1:7401";
inline constexpr const char* admin_token_file = "";
// admin.max_body_bytes: the largest request body (a bundle import).
inline constexpr uint64_t admin_max_body_bytes = 512ull * 1024 * 1024; // 512 MiB
// admin.max_rows_per_action: the change budget of one bulk action (rows its filter matches);
// admin.max_rows_per_action_hard: the most a call may raise its own budget to.
inline constexpr int64_t admin_max_rows_per_action = 10'000;
inline constexpr int64_t admin_max_rows_per_action_hard = 1'000'000;
// A node drain waits this long for the node's requests in flight, unless the call says (at most
// admin_drain_deadline_max); then it resets them.
inline constexpr auto admin_drain_deadline = 60s;
inline constexpr auto admin_drain_deadline_max = 100s; // below nodecoordctl's 120 s read timeout

// Checks ([checks.NAME]): how long the agent lets the program run, and how much of its output is
// kept. The output travels in one frame, so its cap stays well below max_frame_bytes.
inline constexpr auto check_timeout = 10s;
inline constexpr auto check_timeout_max = 600s;
inline constexpr int64_t check_output_max = 64 * 1024;
inline constexpr int64_t check_output_max_hard = 512 * 1024;

// Not configurable: the admin API's own limits.
inline constexpr auto history_every = 10s;        // the dashboard's charts: one reading this often, an hour kept
inline constexpr auto sizes_every = 30s;          // the database's size is measured this often, off the write path
inline constexpr auto overview_cache = 5s;        // counts and sizes are re-read at most this often
inline constexpr auto admin_part_timeout = 2s;    // each actor asked for a part of an answer
inline constexpr auto admin_write_timeout = 30s;  // an operation that writes (create, prune, import)
inline constexpr auto readiness_probe_every = 1s; // /readyz asks the database at most this often
inline constexpr auto bundle_timeout = 10min;     // an export or import holds the storage actor this long at most
inline constexpr int64_t admin_page_max = 1000;   // attempts and jobs per page
inline constexpr int64_t admin_page_default = 100;
inline constexpr size_t admin_threads = 8; // concurrent HTTP requests

// [log]
inline constexpr const char* log_level = "info";
inline constexpr const char* log_format = "text";

} // namespace nodecoord::defaults
