#define BOOST_TEST_MODULE hostile_e2e_test
#include <boost/test/unit_test.hpp>

// Hostile peers end to end (issue 15): the real nodecoordd on loopback against a node that writes
// faster than the database can take (PostgreSQL stopped for 30 s); a flood of bad hellos, over-long
// and never-finished handshakes and more unauthenticated connections than [server] max_handshakes
// allows are in hostile_e2e_flood_test.cpp (one binary). Waits are bounded; the scenarios have
// durations (the outage), but no assertion depends on timing.

#include "hostile_e2e_support.hpp"

using namespace hostile_e2e;

struct aside_backfill_requests {
  aside_backfill_requests() { node_client::default_aside = {"backfill_request"}; }
};
BOOST_TEST_GLOBAL_FIXTURE(aside_backfill_requests);

// --- backpressure --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(backpressure_holds_memory_while_the_database_is_down) {
  pg_outage pg;
  test_database db(storage::backend::postgresql); // fails (never skips) without
                                                  // NODECOORD_TEST_PG_URL
  // The storage limits go into the [storage] table daemon_under_test opens for
  // the url: keys before the next table header belong to it. Per session that
  // is max(1/16, 4 MiB / 256 frames) = 4 MiB or 256 frames. idle_timeout 10 s
  // is shorter than the outage: a paused session taken for idle would be
  // closed.
  daemon_under_test d(with(base_settings(), {{"idle_timeout", "\"10s\""}}), db.url(),
                      "max_queued_bytes = 8388608\nmax_queued_frames = 2000\n"
                      "[backfill]\nreconcile_interval = \"1h\"\n");
  auto fast = d.add_node("fast");
  auto quiet = d.add_node("quiet");
  d.start();
  const pid_t pid = d.process().pid();
  auto wc = connect_and_hello(d, fast);
  auto idle = connect_and_hello(d, quiet);
  fast_writer w{wc};

  int64_t idle_seq = 0, idle_acked = -1, idle_acks = 0, idle_delayed = 0;
  std::vector<std::string> idle_problems;
  auto idle_next = steady::now(), writer_next = steady::now();
  long rss_max = 0;
  // One round: read both, send what the writer's socket takes, heartbeat the
  // quiet node every heartbeat_interval (200 ms), sample the daemon's RSS.
  auto round = [&] {
    pollfd p[2] = {{wc.fd(), short(POLLIN | (w.pending() ? POLLOUT : 0)), 0}, {idle.fd(), POLLIN, 0}};
    ::poll(p, 2, 50);
    w.read();
    w.pump();
    idle.read_available();
    while (auto f = idle.take_frame()) {
      if (f->value("type", "") == "heartbeat_ack") {
        ++idle_acks;
        idle_acked = std::max(idle_acked, f->value("seq", int64_t{-1}));
      } else if (f->value("type", "") == "error" && f->value("code", "") == "ack_delayed")
        ++idle_delayed;
      else
        idle_problems.push_back(f->dump());
    }
    // A writer that has stopped writing heartbeats like an agent while it waits
    // for its acks.
    if (!w.generate && w.off == w.out.size() && steady::now() >= writer_next) {
      w.heartbeat();
      writer_next = steady::now() + 200ms;
    }
    if (steady::now() >= idle_next && !idle.peer_closed()) {
      idle.send_raw(protocol::encode_heartbeat(idle_seq++));
      idle_next = steady::now() + 200ms;
    }
    rss_max = std::max(rss_max, rss_kib(pid));
    BOOST_REQUIRE_MESSAGE(!wc.peer_closed() && !idle.peer_closed(), "a session was closed (writer "
                                                                      << wc.peer_closed() << ", quiet node "
                                                                      << idle.peer_closed() << "); stderr:\n"
                                                                      << d.process().stderr_tail());
  };
  auto run_until = [&](auto&& done, std::chrono::seconds bound, const char* what) {
    auto deadline = steady::now() + bound;
    while (!done()) {
      BOOST_REQUIRE_MESSAGE(steady::now() < deadline, what << " not within " << bound.count() << " s; stderr:\n"
                                                           << d.process().stderr_tail());
      round();
    }
  };

  // Warm-up with the database up: 300 frames, all committed (acked).
  const auto warm_start = steady::now();
  run_until([&] { return w.frames >= 300; }, 120s, "300 frames written");
  w.generate = false;
  auto warm_hb = w.heartbeat();
  run_until([&] { return w.hb_acked >= warm_hb; }, 60s, "the warm-up acknowledged");
  const long baseline = rss_kib(pid);
  const auto warm_ms = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - warm_start).count();
  const uint64_t warm_bytes = w.sent;

  // 30 s without the database, the writer pushing all the time.
  pg.stop();
  w.generate = true;
  const auto outage_start = steady::now();
  const uint64_t sent_at_stop = w.sent;
  const int64_t frames_at_stop = w.frames, idle_acks_before = idle_acks, idle_delayed_before = idle_delayed;
  rss_max = baseline;
  uint64_t sent_at_half = 0;
  while (steady::now() - outage_start < 30s) {
    round();
    if (sent_at_half == 0 && steady::now() - outage_start >= 15s)
      sent_at_half = w.sent;
  }
  const uint64_t outage_bytes = w.sent - sent_at_stop;
  const long outage_rss_max = rss_max;
  const int64_t outage_frames = w.frames - frames_at_stop;
  const int64_t idle_outage_acks = idle_acks - idle_acks_before,
                idle_outage_delayed = idle_delayed - idle_delayed_before;
  BOOST_TEST_MESSAGE("warm-up: " << warm_bytes << " bytes in " << warm_ms << " ms with the database up; "
                                 << "RSS baseline " << baseline / 1024 << " MiB, max during the outage "
                                 << outage_rss_max / 1024 << " MiB; the writer put " << outage_frames << " frames ("
                                 << outage_bytes << " bytes) on the wire during the outage, " << (w.sent - sent_at_half)
                                 << " in its second half; ack_delayed to the writer: " << w.ack_delayed
                                 << "; the quiet node during the outage: " << idle_outage_acks << " acks, "
                                 << idle_outage_delayed << " ack_delayed");
  pg.start();

  // The writer finishes: what is written so far, then a heartbeat whose ack
  // says all of it is committed. The database needs a reconnect and then
  // commits the backlog.
  w.generate = false;
  run_until([&] { return w.off == w.out.size(); }, 300s, "the writer's last frame sent");
  auto last_hb = w.heartbeat();
  run_until([&] { return w.hb_acked >= last_hb; }, 300s, "the last heartbeat acknowledged");
  auto idle_last = idle_seq;
  run_until([&] { return idle_acked >= idle_last; }, 30s, "a heartbeat of the quiet node after the outage acked");

  // Memory: the daemon holds at most max_queued_bytes (8 MiB; one session: its
  // 4 MiB share) of frames read and not committed. Each held frame exists a few
  // times over (the line, the decoded operation, the storage queue item and the
  // statement's bound values), say 4 x 8 MiB; the rest of the 64 MiB is
  // allocator slack (per-thread arenas). Without backpressure the daemon would
  // read everything the writer offers for 30 s.
  const long bound_kib = baseline + 64 * 1024;
  BOOST_TEST(outage_rss_max <= bound_kib, "RSS " << outage_rss_max << " KiB over " << bound_kib << " KiB");
  // Pushed back: send() accepted no more than the session's share (4 MiB, + 1
  // MiB for frames read in the same chunk) plus what the two kernels buffer
  // (the daemon's receive and the writer's send buffer, each at most its sysctl
  // maximum).
  const uint64_t socket_bytes =
    std::max(proc_max("/proc/sys/net/ipv4/tcp_rmem"), 2 * proc_max("/proc/sys/net/core/rmem_max"))
    + std::max(proc_max("/proc/sys/net/ipv4/tcp_wmem"), 2 * proc_max("/proc/sys/net/core/wmem_max"));
  BOOST_TEST(outage_bytes <= 5ull * 1024 * 1024 + socket_bytes,
             outage_bytes << " bytes accepted during the outage; bound " << 5ull * 1024 * 1024 + socket_bytes);
  BOOST_TEST(w.ack_delayed > 0, "the paused writer never heard ack_delayed");
  BOOST_TEST(idle_outage_acks + idle_outage_delayed > 0, "the quiet node heard nothing during the outage");
  BOOST_TEST(w.problems.empty(), "the writer got: " << (w.problems.empty() ? "" : w.problems.front()) << " ("
                                                    << w.problems.size() << " in all)");
  BOOST_TEST(idle_problems.empty(), "the quiet node got: " << (idle_problems.empty() ? "" : idle_problems.front()));

  // Exactly what was sent, once.
  std::map<std::string, int64_t> stored;
  for (auto& r : d.rows("SELECT CAST(attempt_id AS TEXT), COUNT(*) FROM "
                        "attempt_logs GROUP BY attempt_id")) {
    auto bar = r.find(" | ");
    stored[r.substr(0, bar)] = std::stoll(r.substr(bar + 3));
  }
  int64_t sent_lines = 0, stored_lines = 0;
  for (auto& [id, n] : w.lines)
    sent_lines += n;
  for (auto& [id, n] : stored)
    stored_lines += n;
  BOOST_TEST(sent_lines == stored_lines);
  BOOST_TEST(stored.size() == w.lines.size());
  int shown = 0;
  for (auto& [id, n] : w.lines)
    if (stored[id] != n && shown++ < 5)
      BOOST_ERROR("attempt " << id << ": sent " << n << " lines, stored " << stored[id]);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts") == int64_t(w.lines.size()));
  BOOST_TEST_MESSAGE(w.lines.size() << " attempts, " << sent_lines << " lines sent and stored");
  wc.close();
  idle.close();
  d.stop();
}
