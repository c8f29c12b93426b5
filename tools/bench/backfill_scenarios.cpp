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
#include "common/clock.hpp"
#include "protocol/codec.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"
#include "tools/bench/db.hpp"
#include "tools/bench/load.hpp"
#include "tools/bench/scenarios.hpp"
#include "tools/bench/util.hpp"

#include <nlohmann/json.hpp>
#include <soci/soci.h>

#include <algorithm>
#include <set>
#include <span>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace nodecoord::bench {

namespace {

constexpr size_t in_chunk = 500;

load_options socket_options(const socket_args& s) {
  load_options o;
  o.coordinator = parse_coordinator(s.coordinator);
  o.keys = read_keys(s.keys_path, s.nodes);
  if (s.concurrency == 0)
    throw usage_error("--concurrency must be at least 1");
  o.concurrency = s.concurrency;
  o.sources = choose_sources(s.sources, o.coordinator, s.nodes);
  o.welcome_timeout_ns = duration_ns(s.welcome_timeout, "--welcome-timeout");
  o.ack_timeout_ns = duration_ns(s.ack_timeout, "--ack-timeout");
  o.agent = "nodecoord-bench";
  o.max_wait_ns = 5'000'000; // check the poller's verdict at least every 5 ms
  return o;
}

std::vector<std::string> names_of(const std::vector<node_key>& keys) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (auto& k : keys)
    out.push_back(k.name);
  return out;
}

std::vector<std::string> node_ids(const std::vector<bench_node>& nodes) {
  std::vector<std::string> out;
  out.reserve(nodes.size());
  for (auto& n : nodes)
    out.push_back(n.id);
  return out;
}

/// SUM(expr) over the nodes' attempts (chunked IN lists), e.g. "COUNT(*)" or "SUM(log_count)".
int64_t sum_over_nodes(storage::database& db, const std::vector<bench_node>& nodes, const std::string& expr,
                       const std::string& table = "node_task_attempts", const std::string& where = "") {
  int64_t total = 0;
  for (auto& chunk : storage::chunks(node_ids(nodes), in_chunk))
    storage::query(db.session(), "SELECT " + expr + " FROM " + table + " WHERE node_id IN "
                                   + storage::query::in_list("n", chunk.size())
                                   + (where.empty() ? "" : " AND " + where))
      .bind_list("n", chunk)
      .each([&](const soci::row& r) { total += storage::col_int(r, 0); });
  return total;
}

/// Nodes of the bench still online, backfill jobs of theirs still running.
int64_t online_nodes(storage::database& db, const std::vector<bench_node>& nodes) {
  int64_t total = 0;
  for (auto& chunk : storage::chunks(node_ids(nodes), in_chunk))
    storage::query(db.session(), "SELECT COUNT(*) FROM nodes WHERE status = 'online' AND id IN "
                                   + storage::query::in_list("n", chunk.size()))
      .bind_list("n", chunk)
      .each([&](const soci::row& r) { total += storage::col_int(r, 0); });
  return total;
}

std::string states_text(const std::map<std::string, int64_t>& counts) {
  std::ostringstream s;
  bool first = true;
  for (auto& [state, n] : counts) {
    s << (first ? "" : ", ") << state << " " << n;
    first = false;
  }
  return first ? std::string("none") : s.str();
}

int64_t get(const std::map<std::string, int64_t>& m, const std::string& k) {
  auto i = m.find(k);
  return i == m.end() ? 0 : i->second;
}

double secs(int64_t ns) { return static_cast<double>(ns) / 1e9; }

/// Serves `l` until `done()` holds or the deadline passes, checking every `step_ns`.
bool serve_until(load& l, int64_t deadline_ns, int64_t step_ns, const std::function<bool()>& done) {
  while (!done()) {
    auto now = now_ns();
    if (now >= deadline_ns)
      return false;
    l.run_until(std::min(deadline_ns, now + step_ns));
  }
  return true;
}

// --- the simulated nodes ---------------------------------------------------------------------

class bench_nodes : public session_hooks {
public:
  enum class mode { seed, answer, silent };

  bench_nodes(const attempt_table& ids, const backfill_args& a, mode m, size_t nodes)
    : ids_(ids), a_(a), mode_(m), welcome_at_(nodes, 0), first_request_seen_(nodes, false),
      ts_(format_time(system_now())) {
    for (size_t i = 0; i < ids_.size(); ++i)
      for (size_t j = 0; j < ids_[i].size(); ++j)
        owner_[ids_[i][j]] = {static_cast<uint32_t>(i), static_cast<uint32_t>(j)};
  }

  void on_welcome(load& l, uint32_t idx) override {
    welcome_at_[idx] = now_ns();
    if (mode_ != mode::seed)
      return;
    for (size_t j = 0; j < ids_[idx].size(); ++j) {
      send_attempt(l, idx, j);
      send_logs(l, idx, j, 0, static_cast<int64_t>(a_.sent_logs));
    }
  }

  bool on_frame(load& l, uint32_t idx, const std::string& type, const nlohmann::json& j) override {
    if (type != "backfill_request")
      return false;
    auto t = now_ns();
    ++requests;
    if (first_request_ns == 0)
      first_request_ns = t;
    last_request_ns = t;
    if (!first_request_seen_[idx]) {
      first_request_seen_[idx] = true;
      welcome_to_request_us.push_back(static_cast<double>(t - welcome_at_[idx]) / 1000.0);
    }
    auto rid = j.find("request_id");
    auto ids = j.find("attempt_ids");
    if (rid == j.end() || !rid->is_string() || ids == j.end() || !ids->is_array()) {
      ++malformed;
      return true;
    }
    const nlohmann::json* after = nullptr;
    if (auto la = j.find("logs_after"); la != j.end()) {
      if (!la->is_object()) {
        ++malformed;
        return true;
      }
      after = &*la;
    }
    auto request_id = rid->get<std::string>();
    request_ids.push_back(request_id);
    protocol::backfill_response resp;
    resp.request_id = request_id;
    for (auto& v : *ids) {
      if (!v.is_string()) {
        ++malformed;
        continue;
      }
      auto id = v.get<std::string>();
      ++attempts_requested;
      if (!requested_.insert(id).second)
        ++re_requested;
      if (mode_ != mode::answer)
        continue;
      auto o = owner_.find(id);
      if (o == owner_.end() || o->second.first != idx) {
        ++foreign;
        resp.results.push_back({id, false, 0, "not an attempt of this node"});
        continue;
      }
      // logs_after: the highest contiguous stored seq; phase 1 stored 0 .. sent_logs-1.
      int64_t from = 0;
      std::optional<int64_t> given;
      if (after) {
        if (auto s = after->find(id); s != after->end() && s->is_number_integer())
          given = s->get<int64_t>();
      }
      std::optional<int64_t> expected;
      if (a_.sent_logs > 0)
        expected = static_cast<int64_t>(a_.sent_logs) - 1;
      if (given != expected)
        ++logs_after_unexpected;
      if (given)
        from = *given + 1;
      if (a_.resend_attempts)
        send_attempt(l, idx, o->second.second);
      lines_resent += send_logs(l, idx, o->second.second, from, static_cast<int64_t>(a_.logs));
      resp.results.push_back({id, true, static_cast<int64_t>(a_.logs), ""});
    }
    if (mode_ == mode::seed) {
      ++ignored; // phase 1: the bye that follows ends the request
      return true;
    }
    if (mode_ == mode::silent)
      return true;
    l.send(idx, protocol::encode_backfill_response(resp));
    ++responses;
    turnaround_us.push_back(static_cast<double>(now_ns() - t) / 1000.0);
    return true;
  }

  // What happened (read by the scenario after the run).
  uint64_t requests = 0, responses = 0, attempts_requested = 0, re_requested = 0, foreign = 0, malformed = 0;
  uint64_t logs_after_unexpected = 0, lines_resent = 0, ignored = 0;
  int64_t first_request_ns = 0, last_request_ns = 0;
  std::vector<std::string> request_ids;
  std::vector<double> welcome_to_request_us;
  std::vector<double> turnaround_us;

private:
  void send_attempt(load& l, uint32_t idx, size_t j) {
    protocol::attempt at;
    at.attempt_id = ids_[idx][j];
    at.task_id = "bench-task-" + std::to_string(j);
    at.state = "succeeded";
    at.started_at = ts_;
    at.finished_at = ts_;
    l.send(idx, protocol::encode_attempt(at));
  }

  /// Lines [from, to) of attempt j, in frames of at most frame_lines. Returns lines sent.
  uint64_t send_logs(load& l, uint32_t idx, size_t j, int64_t from, int64_t to) {
    uint64_t sent = 0;
    auto& id = ids_[idx][j];
    auto per = static_cast<int64_t>(std::max<size_t>(a_.frame_lines, 1));
    for (int64_t first = from; first < to; first += per) {
      protocol::logs lg;
      lg.attempt_id = id;
      for (int64_t s = first; s < std::min(to, first + per); ++s)
        lg.entries.push_back({s, ts_, "stdout", bench_line(id, s, a_.line_bytes)});
      sent += lg.entries.size();
      l.send(idx, protocol::encode_logs(lg));
    }
    return sent;
  }

  const attempt_table& ids_;
  backfill_args a_;
  mode mode_;
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>> owner_; // attempt -> (node, index)
  std::unordered_set<std::string> requested_;
  std::vector<int64_t> welcome_at_;
  std::vector<bool> first_request_seen_;
  std::string ts_;
};

/// Per-job mark -> finish times from the jobs table (the daemon's clock, ms resolution).
struct job_figures {
  std::map<std::string, int64_t> by_status;
  std::vector<double> latency_us; // finished_at - created_at of finished jobs
  int64_t found = 0;
};

job_figures read_jobs(storage::database& db, const std::vector<std::string>& ids) {
  job_figures out;
  const auto& dl = db.sql_dialect();
  for (auto& chunk : storage::chunks(ids, in_chunk))
    storage::query(db.session(), "SELECT status, " + dl.ts("created_at") + ", " + dl.ts("finished_at")
                                   + " FROM jobs WHERE id IN " + storage::query::in_list("j", chunk.size()))
      .bind_list("j", chunk)
      .each([&](const soci::row& r) {
        ++out.found;
        ++out.by_status[storage::col_str(r, 0)];
        auto c = parse_time(storage::col_str(r, 1));
        auto f = parse_time(storage::col_str(r, 2));
        if (c && f)
          out.latency_us.push_back(static_cast<double>((*f - *c).count()) * 1000.0);
      });
  return out;
}

void poll_rows(report& r, const count_poller& p) {
  auto samples = p.samples();
  std::vector<double> q;
  q.reserve(samples.size());
  for (auto& s : samples)
    q.push_back(static_cast<double>(s.finished_ns - s.started_ns) / 1000.0);
  std::sort(q.begin(), q.end());
  r.number("database poll interval", "poll_interval_ms", static_cast<double>(p.interval_ns()) / 1e6, 1, "ms");
  r.count("database polls", "polls", samples.size());
  r.number("database poll query p50", "poll_query_p50_ms", percentile(q, 50) / 1000.0, 2, "ms");
  r.number("database poll query max", "poll_query_max_ms", q.empty() ? 0.0 : q.back() / 1000.0, 2, "ms");
}

void check_database_is_ours(storage::database& db, const std::vector<bench_node>& nodes) {
  auto pending =
    query_int(db.session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'pending_backfill'");
  if (pending > 0)
    throw usage_error("the database holds " + std::to_string(pending)
                      + " pending_backfill attempts of other nodes (is another daemon or bench using it?); "
                        "the backfill scenarios poll whole-table counts and need a database without them");
  (void)nodes;
}

} // namespace

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
  r.heading("phase 2: reconnect, every backfill_request answered");
  auto baseline = query_int(db.session(), "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'");
  count_poller poller(target.url, "SELECT COUNT(*) FROM node_task_attempts WHERE sync_state = 'complete'", poll_ns);
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
  poller.start();
  double cpu0 = daemon.enabled() ? daemon.cpu() : 0.0;
  auto t_drop = now_ns();
  l.drop_all();
  auto t_dropped = now_ns();
  auto none_left = poller.wait_for([](int64_t v) { return v == 0; }, t_drop, t_drop + timeout_ns);
  double cpu1 = daemon.enabled() ? daemon.cpu() : 0.0;
  poller.stop();
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
