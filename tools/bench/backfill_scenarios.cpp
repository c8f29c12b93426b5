// `backfill` and `disconnect-storm`: bench nodes against a running nodecoordd (DESIGN §4, §8).
//
// backfill: N nodes each own A attempts of L log lines.
//   phase 1  every node connects, reports its attempts and the first S lines of each, says bye;
//            the bench waits until the database holds exactly that and nothing is pending.
//   phase 2  every node reconnects; the daemon asks (backfill_request), each node answers with its
//            attempt frames, the lines after logs_after, and a backfill_response (ok, log_count L).
//            A second thread polls the number of complete attempts; the run ends when all are.
// disconnect-storm: N nodes each own A partial attempts (seeded directly in the database). They
//   connect and never answer the daemon's requests; once every attempt is pending_backfill, all
//   sockets are closed at once and the poller measures the time until none is. Then the same rows
//   are marked pending again and one direct UPDATE resets them, for the ratio.
#include "tools/bench/backfill_support.hpp"

namespace nodecoord::bench {

// --- backfill ----------------------------------------------------------------------------------

int run_backfill(const db_args& d, const socket_args& s, const backfill_args& a, bool as_json) {
  if (a.attempts == 0 || a.logs == 0 || a.sent_logs > a.logs)
    throw usage_error("need --attempts >= 1, --logs >= 1 and --sent-logs <= --logs");
  auto opts = socket_options(s);
  auto poll_ns = duration_ns(a.poll, "--poll");
  auto timeout_ns = duration_ns(a.timeout, "--timeout");
  check_pid(s.pid);
  auto nofile = raise_nofile(s.nodes);
  daemon_probe daemon{s.pid};
  auto target = open_target(d.config_path, d.state_dir);
  storage::database db(target.url, system_now);
  db.connect();

  // Setup: the nodes' old rows go; nothing of theirs is left.
  auto t_setup = now_ns();
  auto nodes = find_nodes(db, names_of(opts.keys));
  auto cleared = clear_nodes(db, nodes);
  check_database_is_ours(db, nodes);
  // No VACUUM ANALYZE here: the tables may be (nearly) empty now, and PostgreSQL keeps the plan of
  // a foreign-key check made on a table it believes empty (a sequential scan) for the life of the
  // daemon's connection (see BENCHMARKS.md).
  auto ids = new_attempt_ids(nodes.size(), a.attempts);
  const auto total = static_cast<int64_t>(nodes.size() * a.attempts);
  report r("backfill");
  r.text("coordinator", "coordinator", s.coordinator);
  r.text("storage", "storage", target.url.redacted());
  r.count("nodes", "nodes", s.nodes);
  r.count("attempts per node", "attempts_per_node", a.attempts);
  r.count("attempts", "attempts", static_cast<uint64_t>(total));
  r.count("log lines per attempt (on the node)", "logs_per_attempt", a.logs);
  r.count("log lines per attempt sent in phase 1", "sent_logs_per_attempt", a.sent_logs);
  r.count("bench fd limit", "bench_fd_limit", nofile);
  r.count("rows of earlier runs removed", "rows_removed",
          static_cast<uint64_t>(cleared.attempts + cleared.log_lines + cleared.jobs));

  // Phase 1: report the attempts and part of their logs, then bye.
  r.heading("phase 1: attempts and part of the logs, live");
  bench_nodes seeder(ids, a, bench_nodes::mode::seed, s.nodes);
  auto o1 = opts;
  o1.hooks = &seeder;
  int64_t phase1_ns = 0;
  {
    load l1(std::move(o1));
    auto t0 = now_ns();
    l1.open_all();
    session_rows(r, l1, s.nodes);
    const int64_t want_lines = total * static_cast<int64_t>(a.sent_logs);
    int64_t seen_attempts = 0, seen_lines = 0;
    bool stored = serve_until(l1, t0 + timeout_ns, 100'000'000, [&] {
      if (l1.unsent_bytes() > 0)
        return false;
      seen_attempts = sum_over_nodes(db, nodes, "COUNT(*)");
      seen_lines = sum_over_nodes(db, nodes, "COALESCE(SUM(log_count), 0)");
      return seen_attempts == total && seen_lines == want_lines;
    });
    if (!stored)
      r.problem("phase 1: the database holds " + std::to_string(seen_attempts) + " of " + std::to_string(total)
                + " attempts and " + std::to_string(seen_lines) + " of " + std::to_string(want_lines)
                + " log lines after --timeout");
    l1.drain();
    l1.close_all(true);
    trailing_rows(r, l1);
    // The daemon resets whatever it asked phase 1 for once the sessions are gone.
    std::map<std::string, int64_t> counts;
    bool settled = stored && serve_until(l1, now_ns() + timeout_ns, 50'000'000, [&] {
                     counts = state_counts(db, nodes);
                     return get(counts, "partial") == total && online_nodes(db, nodes) == 0;
                   });
    if (stored && !settled)
      r.problem("phase 1: attempts did not all return to partial (" + states_text(counts) + ")");
    phase1_ns = now_ns() - t0;
  }
  r.number("phase 1 time (connect, send, stored, bye, settled)", "phase1_s", secs(phase1_ns), 3, "s");
  r.count("phase 1: backfill_requests ignored", "phase1_requests", seeder.requests);
  r.number("setup + phase 1 (untimed for the rate)", "setup_s", secs(now_ns() - t_setup), 2, "s");
  if (!r.valid()) {
    if (!a.keep)
      clear_nodes(db, nodes);
    r.print(as_json);
    return exit_invalid;
  }

  // Phase 2: reconnect and answer every request.
  server_stats_reset(db);
  r.heading("phase 2: reconnect, every backfill_request answered");
  // The counters the triggers keep (schema v3), not a count over the table: the same number at
  // every commit, and a poll costs the database next to nothing (a COUNT(*) of the complete rows
  // took 0.9 ms, a sixth of the server's time in this phase, with a poll every 10 ms).
  const std::string complete_sql =
    "SELECT COALESCE(SUM(attempts), 0) FROM attempt_counts WHERE sync_state = 'complete'";
  auto baseline = query_int(db.session(), complete_sql);
  count_poller poller(target.url, complete_sql, poll_ns);
  poller.start();
  bench_nodes answerer(ids, a, bench_nodes::mode::answer, s.nodes);
  auto o2 = opts;
  o2.hooks = &answerer;
  auto all_done = [&](int64_t v) { return v - baseline >= total; };
  load l2(std::move(o2));
  double cpu0 = daemon.enabled() ? daemon.cpu() : 0.0;
  auto t0 = now_ns();
  l2.open_all();
  auto t_welcomed = l2.last_welcome_ns();
  // Without a single request within --timeout there is nothing to measure (no tracker?).
  bool done = l2.run_until(t0 + timeout_ns, [&] {
    if (!poller.error().empty())
      return true;
    auto last = poller.latest();
    return last && all_done(last->value);
  });
  auto t_end = now_ns();
  double cpu1 = daemon.enabled() ? daemon.cpu() : 0.0;
  server_stats_save(db);
  poller.stop();
  if (!poller.error().empty())
    throw std::runtime_error("database poller: " + poller.error());
  auto finished = poller.wait_for(all_done, t0, 0);
  session_rows(r, l2, s.nodes);
  r.number("connect time (first connect to last welcome)", "connect_time_s",
           secs(t_welcomed > l2.first_connect_ns() ? t_welcomed - l2.first_connect_ns() : 0), 3, "s");
  if (!done || !finished) {
    if (answerer.requests == 0)
      r.problem("no backfill_request arrived within --timeout (does this nodecoordd have the tracker?)");
    else
      r.problem("not every attempt was complete within --timeout");
  }
  int64_t t_done = finished ? finished->started_ns : t_end;
  double window = secs(t_done - l2.first_connect_ns());
  double from_first = answerer.first_request_ns ? secs(t_done - answerer.first_request_ns) : 0.0;
  r.number("time first connect -> all complete", "time_s", window, 3, "s");
  r.number("attempts completed/s (first connect -> all complete)", "rate_per_s",
           window > 0 ? static_cast<double>(total) / window : 0.0, 0, "attempts/s");
  r.number("time first request -> all complete", "time_from_first_request_s", from_first, 3, "s");
  r.number("attempts completed/s (first request -> all complete)", "rate_from_first_request_per_s",
           from_first > 0 ? static_cast<double>(total) / from_first : 0.0, 0, "attempts/s");
  if (daemon.enabled()) {
    r.number("daemon CPU (phase 2)", "daemon_cpu_percent", (cpu1 - cpu0) / secs(t_end - t0) * 100.0, 1,
             "% of one core");
    r.row("daemon RSS at end", "daemon_rss_kib", daemon.rss(), kib_text(static_cast<double>(daemon.rss())));
  }
  r.count("backfill_requests", "requests", answerer.requests);
  r.count("backfill_responses sent", "responses", answerer.responses);
  r.count("attempts requested", "attempts_requested", answerer.attempts_requested);
  r.count("attempts requested again", "attempts_re_requested", answerer.re_requested);
  r.count("log lines resent", "lines_resent", answerer.lines_resent);
  r.count("logs_after other than expected", "logs_after_unexpected", answerer.logs_after_unexpected);
  latency_rows(r, "welcome -> backfill_request", "welcome_to_request", answerer.welcome_to_request_us);
  latency_rows(r, "bench turnaround (request in -> response written)", "turnaround", answerer.turnaround_us);
  auto jobs = read_jobs(db, answerer.request_ids);
  latency_rows(r, "request mark -> complete (jobs, daemon clock)", "request_latency", jobs.latency_us);
  std::ostringstream js;
  for (auto& [st, n] : jobs.by_status)
    js << (js.tellp() ? ", " : "") << st << " " << n;
  r.text("jobs of these requests", "jobs", js.str().empty() ? "none" : js.str());
  poll_rows(r, poller);
  l2.drain();
  l2.close_all(true);
  trailing_rows(r, l2);
  auto counts = state_counts(db, nodes);
  r.text("attempts by sync_state at end", "end_states", states_text(counts));
  if (get(counts, "complete") != total)
    r.problem(std::to_string(get(counts, "complete")) + " of " + std::to_string(total) + " attempts complete");
  if (answerer.foreign)
    r.problem(std::to_string(answerer.foreign) + " requested attempts belong to another node");
  if (answerer.malformed)
    r.problem(std::to_string(answerer.malformed) + " malformed backfill_requests");
  if (answerer.logs_after_unexpected)
    r.problem(std::to_string(answerer.logs_after_unexpected) + " attempts with an unexpected logs_after");
  if (!a.keep)
    clear_nodes(db, nodes);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

} // namespace nodecoord::bench
