// nodecoord-bench: the load generator of nodecoordd (DESIGN §8). It plays many nodes against a
// running coordinator over real sockets and reports what it measured; BENCHMARKS.md holds the
// figures and the commands that produced them.
//
//   provision  create N nodes in the configured database (one batch) and write their keys
//   connect    open N sessions (connect + hello + welcome): rate, latency, daemon RSS per session
//   steady     N sessions heartbeating: ack latency, lost acks, daemon CPU and RSS
//
// It asserts nothing about timing: a run is invalid (exit 1) only when something went wrong
// (a session failed to authenticate, an ack was lost, the coordinator ended a session, an error
// frame arrived). One thread, epoll, non-blocking sockets; no CAF.
#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "config/config.hpp"
#include "config/duration.hpp"
#include "nodecoord/version.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "tools/bench/load.hpp"
#include "tools/bench/proc.hpp"

#include <CLI/App.hpp>
#include <CLI/Config.hpp>
#include <CLI/Formatter.hpp>
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
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace nodecoord;
using namespace nodecoord::bench;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_invalid = 1; // the run happened but is invalid (failures, lost acks, errors)
constexpr int exit_usage = 2;   // bad command line, unreadable keys, database or setup problem

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- results: one table (or one JSON object) per run ---------------------------------------------

class report {
public:
  explicit report(std::string scenario) : scenario_(std::move(scenario)) {
    json_["scenario"] = scenario_;
  }

  /// A row: `label` in the table, `key` in JSON, `value` already rendered for the table.
  void row(const std::string& label, const std::string& key, nlohmann::json value, const std::string& text) {
    rows_.emplace_back(label, text);
    json_[key] = std::move(value);
  }
  void count(const std::string& label, const std::string& key, uint64_t v) {
    row(label, key, v, std::to_string(v));
  }
  void number(const std::string& label, const std::string& key, double v, int decimals, const std::string& unit) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(decimals) << v;
    if (!unit.empty())
      s << " " << unit;
    row(label, key, std::round(v * std::pow(10.0, decimals)) / std::pow(10.0, decimals), s.str());
  }
  void text(const std::string& label, const std::string& key, const std::string& v) { row(label, key, v, v); }
  void problem(const std::string& why) { invalid_.push_back(why); }
  void problems(const std::map<std::string, uint64_t>& p) { json_["problems"] = p; detail_ = p; }

  bool valid() const { return invalid_.empty(); }

  void print(bool as_json) {
    json_["valid"] = valid();
    json_["invalid_because"] = invalid_;
    if (as_json) {
      std::cout << json_.dump(2) << "\n";
      return;
    }
    std::string result = valid() ? "ok" : "INVALID: ";
    for (size_t i = 0; i < invalid_.size(); ++i)
      result += (i ? "; " : "") + invalid_[i];
    size_t width = 6;
    for (auto& [label, v] : rows_)
      width = std::max(width, label.size());
    std::cout << "nodecoord-bench " << version << " " << scenario_ << "\n";
    std::cout << std::left << std::setw(static_cast<int>(width) + 2) << "metric" << "value\n";
    std::cout << std::string(width + 2 + 24, '-') << "\n";
    for (auto& [label, v] : rows_)
      std::cout << std::setw(static_cast<int>(width) + 2) << label << v << "\n";
    std::cout << std::setw(static_cast<int>(width) + 2) << "result" << result << "\n";
    if (!detail_.empty()) {
      std::cout << "problems:\n";
      for (auto& [what, n] : detail_)
        std::cout << "  " << n << " x " << what << "\n";
    }
  }

private:
  std::string scenario_;
  std::vector<std::pair<std::string, std::string>> rows_;
  std::vector<std::string> invalid_;
  std::map<std::string, uint64_t> detail_;
  nlohmann::json json_;
};

/// Nearest-rank percentile of sorted values (p in 0..100).
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty())
    return 0;
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

void latency_rows(report& r, const std::string& what, const std::string& key, std::vector<double> us) {
  std::sort(us.begin(), us.end());
  r.count(what + " samples", key + "_samples", us.size());
  for (auto [p, name] : {std::pair{50.0, "p50"}, {90.0, "p90"}, {99.0, "p99"}})
    r.number(what + " " + name, key + "_" + name + "_ms", percentile(us, p) / 1000.0, 3, "ms");
  r.number(what + " max", key + "_max_ms", us.empty() ? 0.0 : us.back() / 1000.0, 3, "ms");
}

// --- command-line values ------------------------------------------------------------------------

int64_t duration_ns(const std::string& text, const char* option) {
  std::string why;
  auto d = config::parse_duration(text, &why);
  if (!d)
    throw usage_error(std::string(option) + ": " + why);
  return static_cast<int64_t>(d->count()) * 1'000'000;
}

/// Like duration_ns, but also accepts a zero ("0", "0s", "0ms").
int64_t duration_or_zero_ns(const std::string& text, const char* option) {
  auto digits_end = text.find_first_not_of('0');
  if (!text.empty() && digits_end != 0) {
    auto unit = digits_end == std::string::npos ? std::string() : text.substr(digits_end);
    if (unit.empty() || unit == "ms" || unit == "s" || unit == "m" || unit == "h")
      return 0;
  }
  return duration_ns(text, option);
}

sockaddr_in parse_coordinator(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw usage_error("--coordinator: expected HOST:PORT, got '" + text + "'");
  auto host = text.substr(0, colon);
  auto port_text = text.substr(colon + 1);
  char* end = nullptr;
  long port = std::strtol(port_text.c_str(), &end, 10);
  if (*end != '\0' || port < 1 || port > 65535)
    throw usage_error("--coordinator: bad port '" + port_text + "'");
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res)
    throw usage_error("--coordinator: cannot resolve '" + host + "' (IPv4 only)");
  sockaddr_in addr = *reinterpret_cast<sockaddr_in*>(res->ai_addr);
  freeaddrinfo(res);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

/// Loopback source addresses 127.0.0.2 .. 127.0.0.(1+count) to spread connections over.
std::vector<in_addr> loopback_sources(size_t count) {
  std::vector<in_addr> out;
  for (size_t i = 0; i < count; ++i) {
    in_addr a{};
    a.s_addr = htonl((127u << 24) | static_cast<uint32_t>(2 + i));
    out.push_back(a);
  }
  return out;
}

std::vector<in_addr> choose_sources(const std::string& spec, const sockaddr_in& coordinator, size_t nodes) {
  bool loopback = (ntohl(coordinator.sin_addr.s_addr) >> 24) == 127;
  if (spec == "none")
    return {};
  if (spec == "auto") {
    // One address is good for ~28k connections to one coordinator port; spreading also keeps the
    // TIME_WAIT sockets of repeated runs from piling up on one address.
    if (!loopback || nodes < 1000)
      return {};
    return loopback_sources(254);
  }
  char* end = nullptr;
  long n = std::strtol(spec.c_str(), &end, 10);
  if (*end != '\0' || n < 0 || n > 254)
    throw usage_error("--sources: expected auto, none or 0..254");
  if (n > 0 && !loopback)
    throw usage_error("--sources: loopback source addresses need a loopback coordinator");
  return loopback_sources(static_cast<size_t>(n));
}

std::vector<node_key> read_keys(const std::string& path, size_t nodes) {
  std::ifstream in(path);
  if (!in)
    throw usage_error("cannot read the keys file " + path + " (run 'provision' first)");
  std::vector<node_key> keys;
  std::string line;
  size_t lineno = 0;
  while (keys.size() < nodes && std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#')
      continue;
    auto tab = line.find('\t');
    if (tab == std::string::npos || tab == 0 || tab + 1 == line.size())
      throw usage_error(path + ":" + std::to_string(lineno) + ": expected NAME<TAB>KEY");
    keys.push_back({line.substr(0, tab), line.substr(tab + 1)});
  }
  if (keys.size() < nodes)
    throw usage_error(path + " holds " + std::to_string(keys.size()) + " keys, fewer than --nodes " +
                      std::to_string(nodes));
  return keys;
}

/// Raises the soft open-file limit to the hard one; fails if N sessions cannot fit.
uint64_t raise_nofile(size_t sessions) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < sessions + 32)
    throw usage_error("the open file limit (" + std::to_string(lim.rlim_cur) + ") is too low for " +
                      std::to_string(sessions) + " sessions; raise the hard limit (ulimit -Hn)");
  return lim.rlim_cur;
}

// --- daemon figures from /proc ------------------------------------------------------------------

struct daemon_probe {
  int pid = 0;
  bool enabled() const { return pid > 0; }

  uint64_t rss() const {
    auto v = read_rss_kib(pid);
    if (!v)
      throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/status (did the daemon exit?)");
    return *v;
  }
  double cpu() const {
    auto v = read_cpu_seconds(pid);
    if (!v)
      throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/stat (did the daemon exit?)");
    return *v;
  }
  void static_rows(report& r) const {
    if (auto lim = read_nofile_limit(pid))
      r.count("daemon fd limit", "daemon_fd_limit", *lim);
    if (auto t = read_threads(pid))
      r.count("daemon threads", "daemon_threads", *t);
  }
};

void check_pid(int pid) {
  if (pid > 0 && !read_rss_kib(pid))
    throw usage_error("--pid " + std::to_string(pid) + ": cannot read /proc/" + std::to_string(pid) + "/status");
}

/// The session rows shared by connect and steady; marks the run invalid on any failure.
void session_rows(report& r, const load& l, size_t requested) {
  auto& c = l.counters();
  r.count("sessions requested", "sessions_requested", requested);
  r.count("sessions authenticated", "sessions_authenticated", c.authenticated);
  r.count("connect failures", "connect_failures", c.connect_failed);
  r.count("hello refused", "hello_refused", c.auth_refused);
  r.count("welcome timeouts", "welcome_timeouts", c.welcome_timeouts);
  if (c.authenticated != requested)
    r.problem(std::to_string(requested - c.authenticated) + " of " + std::to_string(requested) +
              " sessions did not authenticate");
}

void trailing_rows(report& r, const load& l) {
  auto& c = l.counters();
  r.count("sessions ended by coordinator", "sessions_ended_by_coordinator", c.closed_by_peer);
  r.count("error frames", "error_frames", c.error_frames);
  r.count("unexpected frames", "unexpected_frames", c.unexpected_frames);
  r.count("socket errors", "socket_errors", c.io_errors);
  if (c.closed_by_peer)
    r.problem(std::to_string(c.closed_by_peer) + " sessions ended by the coordinator");
  if (c.error_frames)
    r.problem(std::to_string(c.error_frames) + " error frames");
  if (c.unexpected_frames)
    r.problem(std::to_string(c.unexpected_frames) + " unexpected frames");
  if (c.io_errors)
    r.problem(std::to_string(c.io_errors) + " socket errors");
  if (c.lost_acks)
    r.problem(std::to_string(c.lost_acks) + " lost acks");
  r.problems(l.problems());
}

std::string kib_text(double kib) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(0) << kib << " KiB (" << std::setprecision(1) << kib / 1024.0 << " MiB)";
  return s.str();
}

// --- provision ----------------------------------------------------------------------------------

struct provision_args {
  std::string config_path;
  std::string state_dir;
  std::string keys_path;
  size_t nodes = 0;
  std::string prefix = "bench-";
  size_t batch = 10000;
};

int run_provision(const provision_args& a, bool as_json) {
  auto cfg = config::default_config();
  if (!a.config_path.empty()) {
    auto res = config::load_file(a.config_path);
    if (!res.ok()) {
      for (auto& e : res.errors)
        std::cerr << e.to_string() << "\n";
      throw usage_error("configuration errors in " + a.config_path);
    }
    cfg = res.config;
  }
  std::string keys_path = a.keys_path;
  if (keys_path.empty()) {
    if (a.state_dir.empty())
      throw usage_error("provision: give --state-dir (the keys go to DIR/bench-keys.tsv) or --keys FILE");
    keys_path = (std::filesystem::path(a.state_dir) / "bench-keys.tsv").string();
  }
  auto url = storage::parse_storage_url(cfg.storage.url, a.state_dir, cfg.storage.connect_timeout);
  auto t0 = now_ns();
  storage::database db(url, system_now);
  db.connect();
  db.migrate();
  storage::batch_executor exec(db);

  struct outcome {
    std::string name;
    std::string key;
    bool created = false;
    bool enabled = false;
  };
  std::vector<outcome> out(a.nodes);
  size_t batches = 0;
  for (size_t first = 0; first < a.nodes; first += a.batch) {
    size_t last = std::min(a.nodes, first + a.batch);
    std::vector<storage::batch_item> items(last - first);
    for (size_t i = first; i < last; ++i) {
      auto& o = out[i];
      o.name = a.prefix + std::to_string(i);
      auto key = generate_api_key();
      o.key = key.key;
      // Idempotent: a node that exists gets a new key (and is enabled), so the file is valid.
      items[i - first].run = [&o, key](storage::op_context& c) {
        auto made = storage::execute(c, storage::node_create{o.name, "", key.key_id, key.key_hash});
        o.created = made.created;
        if (made.created)
          return;
        auto r = storage::execute(c, storage::node_set_key{o.name, key.key_id, key.key_hash});
        if (!r.found)
          throw std::runtime_error("node " + o.name + ": neither created nor found");
        if (r.node.status == "disabled") {
          storage::execute(c, storage::node_enable{o.name});
          o.enabled = true;
        }
      };
    }
    auto rep = exec.execute(std::span<storage::batch_item>(items));
    ++batches;
    if (rep.stop != storage::stop_reason::none)
      throw std::runtime_error("database unavailable: " + rep.stop_message);
    for (auto& e : rep.errors)
      if (!e.empty())
        throw std::runtime_error("provisioning failed: " + e);
  }
  auto t1 = now_ns();

  // Written to a temporary file and renamed: a reader never sees half a file. Mode 0600: keys.
  auto tmp = keys_path + ".tmp";
  {
    auto old_mask = umask(077);
    std::ofstream f(tmp, std::ios::trunc);
    umask(old_mask);
    if (!f)
      throw usage_error("cannot write " + tmp);
    for (auto& o : out)
      f << o.name << '\t' << o.key << '\n';
    f.close();
    if (!f)
      throw usage_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, keys_path);

  size_t created = 0, enabled = 0;
  for (auto& o : out) {
    created += o.created;
    enabled += o.enabled;
  }
  report r("provision");
  r.text("storage", "storage", url.redacted());
  r.count("nodes", "nodes", a.nodes);
  r.count("created", "created", created);
  r.count("re-keyed (already existed)", "rekeyed", a.nodes - created);
  r.count("re-enabled", "reenabled", enabled);
  r.count("batches", "batches", batches);
  r.number("time", "time_s", static_cast<double>(t1 - t0) / 1e9, 3, "s");
  r.text("keys file", "keys_file", keys_path);
  r.print(as_json);
  return exit_ok;
}

// --- connect ------------------------------------------------------------------------------------

struct load_args {
  std::string coordinator;
  std::string keys_path;
  size_t nodes = 0;
  int pid = 0;
  size_t concurrency = 200;
  std::string sources = "auto";
  std::string welcome_timeout = "30s";
  // connect
  std::string settle = "1s";
  // steady
  std::string interval = "10s";
  std::string duration = "60s";
  std::string warmup = "0s";
  std::string ack_timeout = "5s";
};

load_options make_options(const load_args& a) {
  load_options o;
  o.coordinator = parse_coordinator(a.coordinator);
  o.keys = read_keys(a.keys_path, a.nodes);
  if (a.concurrency == 0)
    throw usage_error("--concurrency must be at least 1");
  o.concurrency = a.concurrency;
  o.sources = choose_sources(a.sources, o.coordinator, a.nodes);
  o.welcome_timeout_ns = duration_ns(a.welcome_timeout, "--welcome-timeout");
  o.ack_timeout_ns = duration_ns(a.ack_timeout, "--ack-timeout");
  o.agent = std::string("nodecoord-bench/") + version;
  return o;
}

void common_rows(report& r, const load_args& a, const load_options& o, uint64_t nofile) {
  r.text("coordinator", "coordinator", a.coordinator);
  r.count("source addresses", "source_addresses", o.sources.size());
  r.count("concurrency (connects in flight)", "concurrency", o.concurrency);
  r.count("bench fd limit", "bench_fd_limit", nofile);
}

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
  load l(std::move(opts));
  l.open_all();
  double self1 = self_cpu_seconds();
  auto connect_ns = l.last_welcome_ns() > l.first_connect_ns() ? l.last_welcome_ns() - l.first_connect_ns() : 0;

  session_rows(r, l, a.nodes);
  double secs = static_cast<double>(connect_ns) / 1e9;
  r.number("time (first connect to last welcome)", "time_s", secs, 3, "s");
  r.number("connect+auth rate", "rate_per_s", secs > 0 ? static_cast<double>(l.counters().authenticated) / secs : 0.0,
           0, "sessions/s");
  latency_rows(r, "latency hello->welcome", "welcome_latency", l.welcome_latencies_us());
  r.number("bench CPU during connect", "bench_cpu_s", self1 - self0, 2, "s");

  // Let the daemon finish what the handshakes started (last_seen flushes, logging), then weigh it.
  l.run_until(now_ns() + settle);
  std::optional<uint64_t> rss_after;
  if (daemon.enabled()) {
    rss_after = daemon.rss();
    r.row("daemon RSS before", "daemon_rss_before_kib", *rss_before, kib_text(static_cast<double>(*rss_before)));
    r.row("daemon RSS with sessions open", "daemon_rss_after_kib", *rss_after, kib_text(static_cast<double>(*rss_after)));
    double per = l.counters().authenticated
                   ? (static_cast<double>(*rss_after) - static_cast<double>(*rss_before)) /
                       static_cast<double>(l.counters().authenticated)
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
    struct timespec ts{static_cast<time_t>(settle / 1'000'000'000), static_cast<long>(settle % 1'000'000'000)};
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
  check_pid(a.pid);
  auto nofile = raise_nofile(a.nodes);
  daemon_probe daemon{a.pid};
  report r("steady");
  common_rows(r, a, opts, nofile);
  r.number("heartbeat interval", "interval_s", static_cast<double>(interval) / 1e9, 3, "s");
  r.number("measurement window", "duration_s", static_cast<double>(duration) / 1e9, 3, "s");

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

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"nodecoord-bench " + std::string(version) + ": load generator for nodecoordd (DESIGN §8)"};
  bool as_json = false;
  provision_args prov;
  load_args la;
  app.add_option("-c,--config", prov.config_path, "nodecoordd configuration file (provision: its [storage] url)");
  app.add_option("--state-dir", prov.state_dir, "state directory (relative SQLite paths; DIR/bench-keys.tsv)");
  app.add_flag("--json", as_json, "print the result as one JSON object instead of a table");
  app.require_subcommand(1);

  auto* provision = app.add_subcommand("provision", "create N nodes in the database and write their keys");
  provision->add_option("--nodes", prov.nodes, "number of nodes")->required()->check(CLI::Range(1, 10'000'000));
  provision->add_option("--prefix", prov.prefix, "node name prefix (names are PREFIX0 .. PREFIX<N-1>)");
  provision->add_option("--keys", prov.keys_path, "keys file to write (default STATE_DIR/bench-keys.tsv)");
  provision->add_option("--batch", prov.batch, "nodes per database transaction")->check(CLI::Range(1, 10'000'000));

  auto add_load_options = [&](CLI::App* sub) {
    sub->add_option("--coordinator", la.coordinator, "nodecoordd node address HOST:PORT")->required();
    sub->add_option("--keys", la.keys_path, "keys file (NAME<TAB>KEY lines) from provision")->required();
    sub->add_option("--nodes", la.nodes, "number of sessions (the first N keys)")->required()->check(CLI::Range(1, 10'000'000));
    sub->add_option("--pid", la.pid, "daemon process id: report its RSS (and CPU) from /proc");
    sub->add_option("--concurrency", la.concurrency, "connections between connect() and welcome at once (default 200)");
    sub->add_option("--sources", la.sources,
                    "loopback source addresses 127.0.0.2.. to spread connections over: auto (254 when N >= 1000), "
                    "none, or a count");
    sub->add_option("--welcome-timeout", la.welcome_timeout, "per session, connect to welcome (default 30s)");
    sub->add_option("--ack-timeout", la.ack_timeout, "a heartbeat without ack for this long is lost (default 5s)");
  };
  auto* connect = app.add_subcommand("connect", "open N sessions: connect+auth rate, latency, daemon RSS per session");
  add_load_options(connect);
  connect->add_option("--settle", la.settle, "wait after the last welcome before weighing the daemon (default 1s)");
  auto* steady = app.add_subcommand("steady", "N sessions heartbeating: ack latency, lost acks, daemon CPU and RSS");
  add_load_options(steady);
  steady->add_option("--interval", la.interval, "heartbeat interval per session (default 10s)");
  steady->add_option("--duration", la.duration, "measurement window (default 60s)");
  steady->add_option("--warmup", la.warmup, "heartbeat this long after the last welcome before measuring (default 0s)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);
    std::cerr << "nodecoord-bench: " << e.what() << "\nRun 'nodecoord-bench --help' for usage.\n";
    return exit_usage;
  }
  try {
    if (provision->parsed())
      return run_provision(prov, as_json);
    if (connect->parsed())
      return run_connect(la, as_json);
    return run_steady(la, as_json);
  } catch (const usage_error& e) {
    std::cerr << "nodecoord-bench: " << e.what() << "\n";
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "nodecoord-bench: " << e.what() << "\n";
    return exit_usage;
  }
}
