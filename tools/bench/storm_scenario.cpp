// `disconnect-storm`: N nodes each own A partial attempts (seeded directly in the database). They
// connect and never answer the daemon's requests; once every attempt is pending_backfill, all
// sockets are closed at once and the poller measures the time until none is. Then the same rows
// are marked pending again and one direct UPDATE resets them, for the ratio (DESIGN §4, §8).
#include "tools/bench/backfill_support.hpp"

namespace nodecoord::bench {

// --- disconnect-storm --------------------------------------------------------------------------

int run_storm(const db_args& d, const socket_args& s, const storm_args& a, bool as_json) {
  if (a.attempts == 0 || a.direct_repeats == 0)
    throw usage_error("--attempts and --direct-repeats must be at least 1");
  auto opts = socket_options(s);
  auto poll_ns = duration_ns(a.poll, "--poll");
  auto timeout_ns = duration_ns(a.timeout, "--timeout");
  check_pid(s.pid);
  auto nofile = raise_nofile(s.nodes);
  daemon_probe daemon{s.pid};
  auto target = open_target(d.config_path, d.state_dir);
  storage::database db(target.url, system_now);
  db.connect();
  const auto& dl = db.sql_dialect();

  auto t_setup = now_ns();
  auto nodes = find_nodes(db, names_of(opts.keys));
  auto cleared = clear_nodes(db, nodes);
  check_database_is_ours(db, nodes);
  auto ids = new_attempt_ids(nodes.size(), a.attempts);
  seed_spec spec;
  spec.attempts = a.attempts;
  spec.logs = 0;
  seed_attempts(db, nodes, ids, spec);
  settle_tables(db);
  const auto total = static_cast<int64_t>(nodes.size() * a.attempts);
  report r("disconnect-storm");
  r.text("coordinator", "coordinator", s.coordinator);
  r.text("storage", "storage", target.url.redacted());
  r.count("nodes", "nodes", s.nodes);
  r.count("attempts per node", "attempts_per_node", a.attempts);
  r.count("attempts", "attempts", static_cast<uint64_t>(total));
  r.count("bench fd limit", "bench_fd_limit", nofile);
  r.count("rows of earlier runs removed", "rows_removed",
          static_cast<uint64_t>(cleared.attempts + cleared.log_lines + cleared.jobs));
  r.number("setup (seed partial attempts)", "setup_s", secs(now_ns() - t_setup), 2, "s");

  bench_nodes silent(ids, backfill_args{}, bench_nodes::mode::silent, s.nodes);
  auto o = opts;
  o.hooks = &silent;
  load l(std::move(o));
  r.heading("connect; every attempt requested, none answered");
  auto t0 = now_ns();
  l.open_all();
  session_rows(r, l, s.nodes);
  // The daemon sends a request only after its mark committed, so once every attempt has been
  // requested, every attempt is pending (checked once below). No polling here: a count over
  // the growing pending rows would take CPU from the daemon while it marks.
  bool all_requested =
    l.run_until(t0 + timeout_ns, [&] { return silent.attempts_requested >= static_cast<uint64_t>(total); });
  auto t_pending = now_ns();
  auto pending_before =
    query_int(db.session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'");
  r.number("time first connect -> all requested", "time_to_pending_s", secs(t_pending - t0), 3, "s");
  r.number("connect time (first connect to last welcome)", "connect_time_s",
           secs(l.last_welcome_ns() > l.first_connect_ns() ? l.last_welcome_ns() - l.first_connect_ns() : 0), 3, "s");
  r.count("backfill_requests", "requests", silent.requests);
  r.count("attempts requested", "attempts_requested", silent.attempts_requested);
  r.count("attempts pending_backfill before the storm", "pending_before", static_cast<uint64_t>(pending_before));
  if (!all_requested || pending_before != total) {
    r.problem((silent.requests == 0 ? std::string("no backfill_request arrived (does this nodecoordd have the "
                                                  "tracker?); ")
                                    : std::string())
              + std::to_string(silent.attempts_requested) + " attempts requested and " + std::to_string(pending_before)
              + " pending_backfill of " + std::to_string(total) + " after --timeout");
    l.drop_all();
    trailing_rows(r, l);
    if (!a.keep)
      clear_nodes(db, nodes);
    r.print(as_json);
    return exit_invalid;
  }
  trailing_rows(r, l); // before the drop: anything wrong up to here makes the run invalid

  // The storm. The poller asks only whether any row is still pending (one index probe), so that
  // watching costs the daemon next to nothing. ORDER BY the index's columns keeps PostgreSQL on
  // the index whatever its statistics say (without it, a plan made while most rows were pending
  // scans the whole table once they are not).
  r.heading("storm: all sockets closed at once");
  count_poller poller(target.url,
                      "SELECT COUNT(*) FROM (SELECT 1 FROM node_task_attempts WHERE sync_state = 'pending_backfill' "
                      "ORDER BY sync_state, created_at LIMIT 1) AS p",
                      poll_ns);
  server_stats_reset(db);
  poller.start();
  double cpu0 = daemon.enabled() ? daemon.cpu() : 0.0;
  auto t_drop = now_ns();
  l.drop_all();
  auto t_dropped = now_ns();
  auto none_left = poller.wait_for([](int64_t v) { return v == 0; }, t_drop, t_drop + timeout_ns);
  double cpu1 = daemon.enabled() ? daemon.cpu() : 0.0;
  poller.stop();
  server_stats_save(db);
  if (!poller.error().empty())
    throw std::runtime_error("database poller: " + poller.error());
  poll_rows(r, poller);
  r.number("closing the sockets took", "close_s", secs(t_dropped - t_drop), 3, "s");
  double storm_s = 0;
  if (!none_left) {
    r.problem("attempts still pending_backfill " + a.timeout + " after the storm");
  } else {
    storm_s = secs(none_left->started_ns - t_drop);
    r.number("first close -> no row pending_backfill", "storm_s", storm_s, 3, "s");
  }
  if (daemon.enabled()) {
    r.number("daemon CPU seconds (storm)", "daemon_cpu_s", cpu1 - cpu0, 2, "s");
    r.row("daemon RSS after the storm", "daemon_rss_kib", daemon.rss(), kib_text(static_cast<double>(daemon.rss())));
  }

  // The daemon's disconnect bookkeeping ends before the comparison starts.
  int64_t online = 0, running = 0;
  bool quiet = serve_until(l, now_ns() + timeout_ns, 50'000'000, [&] {
    online = online_nodes(db, nodes);
    running = sum_over_nodes(db, nodes, "COUNT(*)", "jobs", "status = 'running'");
    return online == 0 && running == 0;
  });
  if (!quiet)
    r.problem(std::to_string(online) + " nodes still online and " + std::to_string(running)
              + " jobs still running after --timeout");
  auto counts = state_counts(db, nodes);
  r.text("attempts by sync_state after the storm", "storm_end_states", states_text(counts));
  if (get(counts, "partial") != total)
    r.problem("after the storm " + std::to_string(get(counts, "partial")) + " of " + std::to_string(total)
              + " attempts are partial");
  auto jobs = sum_over_nodes(db, nodes, "COUNT(*)", "jobs", "status = 'cancelled'");
  r.count("jobs cancelled", "jobs_cancelled", static_cast<uint64_t>(jobs));

  // The comparison: the same rows pending again (untimed), then they are reset (timed):
  //   direct   one UPDATE of all of them, autocommitted;
  //   ops      the storage operations the daemon's storm produces, through the batch executor
  //            (storage.batch_max per transaction): per node one reset_requests (its request)
  //            and one node_end_session, as the tracker and registry send them now;
  //   one-op   the same with the resets of all nodes coalesced into one reset_requests.
  // Pending again means backfill_request_id = node_id, so a node's id is its "request".
  auto remark = [&]() -> bool {
    int64_t remarked = 0;
    auto now = format_time(db.now());
    db.session() << (target.url.kind == storage::backend::sqlite ? "BEGIN IMMEDIATE" : "BEGIN");
    for (auto& chunk : storage::chunks(node_ids(nodes), in_chunk))
      remarked += storage::query(db.session(), "UPDATE node_task_attempts SET sync_state = 'pending_backfill', "
                                               "backfill_request_id = node_id, sync_requested_at = :now, "
                                               "updated_at = :now2 WHERE sync_state = 'partial' AND node_id IN "
                                                 + storage::query::in_list("n", chunk.size()))
                    .bind("now", now)
                    .bind("now2", now)
                    .bind_list("n", chunk)
                    .exec();
    db.session() << "COMMIT";
    if (remarked != total)
      r.problem("comparison: " + std::to_string(remarked) + " of " + std::to_string(total)
                + " rows marked pending again");
    return remarked == total;
  };
  auto pending_now = [&] {
    return query_int(db.session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'");
  };
  auto median_of = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  auto times_text = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::ostringstream each;
    each.setf(std::ios::fixed);
    each.precision(3);
    for (size_t k = 0; k < v.size(); ++k)
      each << (k ? ", " : "") << v[k];
    return each.str();
  };

  r.heading("direct: one UPDATE of the same rows");
  std::vector<double> direct;
  for (size_t k = 0; k < a.direct_repeats && r.valid(); ++k) {
    if (!remark())
      break;
    auto now = format_time(db.now());
    auto u0 = now_ns();
    auto reset = storage::query(db.session(), "UPDATE node_task_attempts SET sync_state = 'partial', "
                                              "backfill_request_id = NULL, updated_at = "
                                                + dl.ts_param("now") + " WHERE sync_state = 'pending_backfill'")
                   .bind("now", now)
                   .exec();
    auto u1 = now_ns();
    if (reset != total) {
      r.problem("direct: the UPDATE reset " + std::to_string(reset) + " of " + std::to_string(total) + " rows");
      break;
    }
    direct.push_back(secs(u1 - u0));
  }
  double direct_s = median_of(direct);
  r.text("direct UPDATE times (s, sorted)", "direct_times", times_text(direct));
  r.number("direct UPDATE (median)", "direct_s", direct_s, 3, "s");

  auto fresh = find_nodes(db, names_of(opts.keys)); // current epochs, for node_end_session
  size_t batch = std::max<size_t>(target.cfg.storage.batch_max, 1);
  auto run_ops = [&](bool coalesced) -> double {
    if (!remark())
      return 0.0;
    std::vector<storage::batch_item> items;
    storage::reset_requests all{{}, "cancelled", "session ended: socket_closed"};
    if (coalesced) {
      for (auto& n : fresh)
        all.request_ids.push_back(n.id);
      items.push_back({[&all](storage::op_context& c) { storage::execute(c, all); }, {}, {}});
    }
    for (auto& n : fresh) {
      if (!coalesced)
        items.push_back(
          {[id = n.id](storage::op_context& c) {
             storage::execute(c, storage::reset_requests{{id}, "cancelled", "session ended: socket_closed"});
           },
           {},
           {}});
      items.push_back({[id = n.id, epoch = n.epoch](storage::op_context& c) {
                         storage::execute(c, storage::node_end_session{id, epoch, "socket_closed"});
                       },
                       {},
                       {}});
    }
    storage::batch_executor exec(db);
    auto u0 = now_ns();
    for (size_t first = 0; first < items.size(); first += batch) {
      auto n = std::min(batch, items.size() - first);
      auto rep = exec.execute(std::span<storage::batch_item>(items.data() + first, n));
      if (rep.stop != storage::stop_reason::none || rep.done != n)
        throw std::runtime_error("comparison: storage stopped: " + rep.stop_message);
      for (auto& e : rep.errors)
        if (!e.empty())
          throw std::runtime_error("comparison: an operation failed: " + e);
    }
    auto u1 = now_ns();
    if (auto left = pending_now(); left != 0)
      r.problem("comparison: " + std::to_string(left) + " rows still pending after the storage operations");
    return secs(u1 - u0);
  };
  std::vector<double> per_node, one_op;
  for (size_t k = 0; k < a.direct_repeats && r.valid(); ++k) {
    per_node.push_back(run_ops(false));
    one_op.push_back(run_ops(true));
  }
  r.heading("storage operations of the storm, replayed by the bench (batch executor)");
  r.count("operations per transaction (storage.batch_max)", "ops_batch", batch);
  r.text("per node: reset_requests + node_end_session, times (s)", "ops_per_node_times", times_text(per_node));
  r.number("per node: reset_requests + node_end_session (median)", "ops_per_node_s", median_of(per_node), 3, "s");
  r.text("one reset_requests for all + node_end_session, times (s)", "ops_one_reset_times", times_text(one_op));
  r.number("one reset_requests for all + node_end_session (median)", "ops_one_reset_s", median_of(one_op), 3, "s");

  r.heading("ratios (this run)");
  r.number("storm / direct UPDATE", "ratio", direct_s > 0 && storm_s > 0 ? storm_s / direct_s : 0.0, 2, "x");
  if (direct_s > 0) {
    r.number("replayed ops, per node / direct UPDATE", "ratio_ops_per_node", median_of(per_node) / direct_s, 2, "x");
    r.number("replayed ops, one reset / direct UPDATE", "ratio_ops_one_reset", median_of(one_op) / direct_s, 2, "x");
  }
  if (!a.keep)
    clear_nodes(db, nodes);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

} // namespace nodecoord::bench
