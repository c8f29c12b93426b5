// The socket scenarios of nodecoord-bench (DESIGN §8): connect, steady, admin and reconnect-storm.
// Each plays N nodes over real sockets against a running nodecoordd and reports what it measured.
#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "common/states.hpp"
#include "config/duration.hpp"
#include "nodecoord/version.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "tools/bench/load.hpp"
#include "tools/bench/proc.hpp"
#include "tools/bench/backfill_support.hpp"
#include "tools/bench/scenarios.hpp"

#include <httplib.h>

#include <atomic>
#include <map>
#include <thread>
#include "tools/bench/util.hpp"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

namespace nodecoord::bench {

namespace {

load_options make_options(const load_args& a) {
  auto o = socket_options(a);
  o.agent = std::string("nodecoord-bench/") + version;
  o.max_wait_ns = load_options{}.max_wait_ns; // the backfill scenarios' 5 ms poll does not apply
  return o;
}

void common_rows(report& r, const load_args& a, const load_options& o, uint64_t nofile) {
  r.text("coordinator", "coordinator", a.coordinator);
  r.count("source addresses", "source_addresses", o.sources.size());
  r.count("concurrency (connects in flight)", "concurrency", o.concurrency);
  r.count("bench fd limit", "bench_fd_limit", nofile);
}

} // namespace

int run_connect(const load_args& a, bool as_json) {
  auto opts = make_options(a);
  auto settle = duration_ns(a.settle, "--settle");
  check_pid(a.pid);
  auto nofile = raise_nofile(a.nodes);
  daemon_probe daemon{a.pid};
  report r("connect");
  common_rows(r, a, opts, nofile);

  std::optional<uint64_t> rss_before;
  if (daemon.enabled())
    rss_before = daemon.rss();
  double self0 = self_cpu_seconds();
  double cpu0 = daemon.enabled() ? daemon.cpu() : 0.0;
  load l(std::move(opts));
  l.open_all();
  double self1 = self_cpu_seconds();
  double cpu1 = daemon.enabled() ? daemon.cpu() : 0.0;
  auto connect_ns = l.last_welcome_ns() > l.first_connect_ns() ? l.last_welcome_ns() - l.first_connect_ns() : 0;

  session_rows(r, l, a.nodes);
  double secs = static_cast<double>(connect_ns) / 1e9;
  r.number("time (first connect to last welcome)", "time_s", secs, 3, "s");
  r.number("connect+auth rate", "rate_per_s", secs > 0 ? static_cast<double>(l.counters().authenticated) / secs : 0.0,
           0, "sessions/s");
  latency_rows(r, "latency hello->welcome", "welcome_latency", l.welcome_latencies_us());
  r.number("bench CPU during connect", "bench_cpu_s", self1 - self0, 2, "s");
  if (daemon.enabled())
    r.number("daemon CPU during connect", "daemon_cpu_s", cpu1 - cpu0, 3, "s");

  // Let the daemon finish what the handshakes started (last_seen flushes, logging), then weigh it.
  l.run_until(now_ns() + settle);
  std::optional<uint64_t> rss_after;
  if (daemon.enabled()) {
    rss_after = daemon.rss();
    r.row("daemon RSS before", "daemon_rss_before_kib", *rss_before, kib_text(static_cast<double>(*rss_before)));
    r.row("daemon RSS with sessions open", "daemon_rss_after_kib", *rss_after,
          kib_text(static_cast<double>(*rss_after)));
    double per = l.counters().authenticated ? (static_cast<double>(*rss_after) - static_cast<double>(*rss_before))
                                                / static_cast<double>(l.counters().authenticated)
                                            : 0.0;
    r.number("RSS per session", "rss_per_session_kib", per, 2, "KiB");
    if (auto fds = count_open_fds(a.pid))
      r.count("daemon open fds", "daemon_open_fds", *fds);
    daemon.static_rows(r);
  }
  l.drain();
  l.close_all(true);
  if (daemon.enabled()) {
    // What is left once the sessions are gone (a leak shows here).
    struct timespec ts {
      static_cast<time_t>(settle / 1'000'000'000), static_cast<long>(settle % 1'000'000'000)
    };
    nanosleep(&ts, nullptr);
    auto rss_closed = daemon.rss();
    r.row("daemon RSS after close", "daemon_rss_closed_kib", rss_closed, kib_text(static_cast<double>(rss_closed)));
  }
  trailing_rows(r, l);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

// --- steady -------------------------------------------------------------------------------------

int run_steady(const load_args& a, bool as_json) {
  auto opts = make_options(a);
  auto interval = duration_ns(a.interval, "--interval");
  auto duration = duration_ns(a.duration, "--duration");
  auto warmup = duration_or_zero_ns(a.warmup, "--warmup");
  opts.heartbeat_interval_ns = interval;
  if (a.lines < 0)
    throw usage_error("--lines must be at least 0");
  opts.lines_per_heartbeat = a.lines;
  check_pid(a.pid);
  auto nofile = raise_nofile(a.nodes);
  daemon_probe daemon{a.pid};
  report r("steady");
  common_rows(r, a, opts, nofile);
  r.number("heartbeat interval", "interval_s", static_cast<double>(interval) / 1e9, 3, "s");
  r.number("measurement window", "duration_s", static_cast<double>(duration) / 1e9, 3, "s");
  r.count("log lines before each heartbeat", "lines_per_heartbeat", static_cast<uint64_t>(a.lines));

  std::optional<uint64_t> rss_before;
  if (daemon.enabled())
    rss_before = daemon.rss();
  load l(std::move(opts));
  l.open_all();
  session_rows(r, l, a.nodes);
  auto connect_ns = l.last_welcome_ns() > l.first_connect_ns() ? l.last_welcome_ns() - l.first_connect_ns() : 0;
  r.number("connect time", "connect_time_s", static_cast<double>(connect_ns) / 1e9, 3, "s");

  if (warmup > 0)
    l.run_until(now_ns() + warmup);
  auto t0 = now_ns();
  double cpu0 = daemon.enabled() ? daemon.cpu() : 0.0;
  double self0 = self_cpu_seconds();
  l.set_window(t0, t0 + duration);
  l.run_until(t0 + duration);
  auto t1 = now_ns();
  double cpu1 = daemon.enabled() ? daemon.cpu() : 0.0;
  double self1 = self_cpu_seconds();
  l.drain();
  double window = static_cast<double>(t1 - t0) / 1e9;

  auto& c = l.counters();
  r.count("heartbeats sent in window", "heartbeats_in_window", c.heartbeats_in_window);
  r.number("heartbeat rate", "heartbeats_per_s", static_cast<double>(c.heartbeats_in_window) / window, 0, "/s");
  r.count("heartbeats sent (total)", "heartbeats_sent", c.heartbeats_sent);
  r.count("acks received (total)", "acks", c.acks);
  latency_rows(r, "ack latency", "ack_latency", l.ack_latencies_us());
  r.count("lost acks (none within ack timeout)", "lost_acks", c.lost_acks);
  r.count("late acks", "late_acks", c.late_acks);
  if (a.lines > 0)
    r.count("log lines sent (total)", "lines_sent", c.lines_sent);
  if (daemon.enabled()) {
    r.number("daemon CPU (window)", "daemon_cpu_percent", (cpu1 - cpu0) / window * 100.0, 2, "% of one core");
    r.number("daemon CPU seconds (window)", "daemon_cpu_s", cpu1 - cpu0, 3, "s");
    auto rss = daemon.rss();
    r.row("daemon RSS before", "daemon_rss_before_kib", *rss_before, kib_text(static_cast<double>(*rss_before)));
    r.row("daemon RSS at end", "daemon_rss_after_kib", rss, kib_text(static_cast<double>(rss)));
    if (c.authenticated)
      r.number("RSS per session", "rss_per_session_kib",
               (static_cast<double>(rss) - static_cast<double>(*rss_before)) / static_cast<double>(c.authenticated), 2,
               "KiB");
    daemon.static_rows(r);
  }
  r.number("bench CPU (window)", "bench_cpu_percent", (self1 - self0) / window * 100.0, 2, "% of one core");
  if (l.ack_latencies_us().empty())
    r.problem("no heartbeat was acknowledged in the window");
  l.close_all(true);
  trailing_rows(r, l);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

// --- admin -----------------------------------------------------------------------------------

/// N sessions heartbeating while an operator polls the admin API: the latency of each read
/// endpoint (one request at a time, as a dashboard and a Prometheus scrape do) and the daemon's
/// CPU meanwhile. The API must stay cheap however many nodes are connected.
int run_admin(const load_args& a, bool as_json) {
  auto opts = make_options(a);
  auto interval = duration_ns(a.interval, "--interval");
  opts.heartbeat_interval_ns = interval;
  check_pid(a.pid);
  auto nofile = raise_nofile(a.nodes);
  daemon_probe daemon{a.pid};
  report r("admin");
  common_rows(r, a, opts, nofile);
  std::string host = "127.0.0.1";
  int port = 7401;
  {
    auto url = a.admin_url;
    if (url.rfind("http://", 0) == 0)
      url = url.substr(7);
    auto colon = url.rfind(':');
    if (colon == std::string::npos)
      throw usage_error("--admin must be http://HOST:PORT");
    host = url.substr(0, colon);
    port = std::stoi(url.substr(colon + 1));
  }
  load l(std::move(opts));
  l.open_all();
  session_rows(r, l, a.nodes);
  const std::vector<std::string> paths = {"/api/overview", "/metrics", "/readyz", "/api/nodes", "/api/jobs?limit=20"};
  std::map<std::string, std::vector<double>> latency_us;
  std::map<std::string, uint64_t> failures;
  std::atomic<bool> done{false};
  auto t0 = now_ns();
  double cpu0 = daemon.enabled() ? daemon.cpu() : 0.0;
  l.set_window(t0, t0 + 3'600'000'000'000); // acks count from here on (an hour is never reached)
  // The HTTP client blocks; the sessions keep heartbeating on this thread meanwhile.
  std::thread poller([&] {
    httplib::Client cli(host, port);
    cli.set_read_timeout(30, 0);
    for (size_t i = 0; i < a.requests; ++i)
      for (auto& path : paths) {
        auto start = now_ns();
        auto res = cli.Get(path);
        auto us = static_cast<double>(now_ns() - start) / 1000.0;
        if (!res || res->status != 200)
          ++failures[path];
        else
          latency_us[path].push_back(us);
      }
    done = true;
  });
  while (!done)
    l.run_until(now_ns() + 100'000'000);
  poller.join();
  auto t1 = now_ns();
  double cpu1 = daemon.enabled() ? daemon.cpu() : 0.0;
  double window = static_cast<double>(t1 - t0) / 1e9;
  l.drain();
  r.count("requests per endpoint", "requests", a.requests);
  for (auto& path : paths) {
    auto key = path.substr(1, path.find('?') == std::string::npos ? std::string::npos : path.find('?') - 1);
    std::replace(key.begin(), key.end(), '/', '_');
    latency_rows(r, "GET " + path, "latency_" + key, latency_us[path]);
    if (failures[path])
      r.problem(std::to_string(failures[path]) + " requests to " + path + " failed");
  }
  r.number("polling time", "window_s", window, 3, "s");
  if (daemon.enabled())
    r.number("daemon CPU (window)", "daemon_cpu_percent", (cpu1 - cpu0) / window * 100.0, 2, "% of one core");
  latency_rows(r, "ack latency", "ack_latency", l.ack_latencies_us());
  l.close_all(true);
  trailing_rows(r, l);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

// --- reconnect-storm ----------------------------------------------------------------------------

/// N sessions up, all dropped at once (no bye), all reconnecting at once: the daemon ends N
/// sessions (and resets their requests) while it authenticates N new ones.
int run_reconnect_storm(const load_args& a, bool as_json) {
  auto opts = make_options(a);
  auto settle = duration_ns(a.settle, "--settle");
  check_pid(a.pid);
  auto nofile = raise_nofile(a.nodes); // the first sessions are closed before the second open
  daemon_probe daemon{a.pid};
  report r("reconnect-storm");
  common_rows(r, a, opts, nofile);

  load first(opts);
  first.open_all();
  r.count("sessions before the storm", "sessions_before", first.counters().authenticated);
  if (first.counters().authenticated != a.nodes)
    r.problem("only " + std::to_string(first.counters().authenticated) + " of " + std::to_string(a.nodes)
              + " sessions came up before the storm");
  first.run_until(now_ns() + settle);
  double cpu0 = daemon.enabled() ? daemon.cpu() : 0.0;
  auto t0 = now_ns();
  first.drop_all();
  // Heartbeats twice within the settle time after the storm, to show every session is served.
  opts.heartbeat_interval_ns = std::max<int64_t>(settle / 2, 1'000'000);
  load again(std::move(opts));
  again.open_all();
  auto t1 = again.last_welcome_ns() > t0 ? again.last_welcome_ns() : now_ns();
  double cpu1 = daemon.enabled() ? daemon.cpu() : 0.0;

  session_rows(r, again, a.nodes);
  double secs = static_cast<double>(t1 - t0) / 1e9;
  r.number("time (drop to last welcome)", "time_s", secs, 3, "s");
  r.number("reconnect rate", "rate_per_s", secs > 0 ? static_cast<double>(again.counters().authenticated) / secs : 0.0,
           0, "sessions/s");
  latency_rows(r, "latency hello->welcome", "welcome_latency", again.welcome_latencies_us());
  if (daemon.enabled()) {
    r.number("daemon CPU during the storm", "daemon_cpu_s", cpu1 - cpu0, 3, "s");
    auto rss = daemon.rss();
    r.row("daemon RSS after the storm", "daemon_rss_after_kib", rss, kib_text(static_cast<double>(rss)));
    daemon.static_rows(r);
  }
  // Still served after the storm: heartbeats get acks.
  again.run_until(now_ns() + settle);
  again.drain();
  r.count("acks after the storm", "acks", again.counters().acks);
  again.close_all(true);
  trailing_rows(r, again);
  r.print(as_json);
  return r.valid() ? exit_ok : exit_invalid;
}

} // namespace nodecoord::bench
