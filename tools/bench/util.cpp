#include "tools/bench/util.hpp"

#include "config/duration.hpp"
#include "nodecoord/version.hpp"
#include "tools/bench/proc.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace nodecoord::bench {

// --- report -------------------------------------------------------------------------------------

report::report(std::string scenario) : scenario_(std::move(scenario)) { json_["scenario"] = scenario_; }

void report::row(const std::string& label, const std::string& key, nlohmann::json value, const std::string& text) {
  rows_.emplace_back(label, text);
  json_[key] = std::move(value);
}

void report::count(const std::string& label, const std::string& key, uint64_t v) {
  row(label, key, v, std::to_string(v));
}

void report::number(const std::string& label, const std::string& key, double v, int decimals, const std::string& unit) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(decimals) << v;
  if (!unit.empty())
    s << " " << unit;
  double scale = std::pow(10.0, decimals);
  row(label, key, std::isfinite(v) ? nlohmann::json(std::round(v * scale) / scale) : nlohmann::json(nullptr), s.str());
}

void report::text(const std::string& label, const std::string& key, const std::string& v) { row(label, key, v, v); }

void report::heading(const std::string& title) { rows_.emplace_back(std::string(), title); }

void report::problems(const std::map<std::string, uint64_t>& p) {
  for (auto& [what, n] : p)
    detail_[what] += n;
  json_["problems"] = detail_;
}

void report::print(bool as_json) {
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
  std::cout << std::left << std::setw(static_cast<int>(width) + 2) << "metric"
            << "value\n";
  std::cout << std::string(width + 2 + 24, '-') << "\n";
  for (auto& [label, v] : rows_) {
    if (label.empty())
      std::cout << "[" << v << "]\n";
    else
      std::cout << std::setw(static_cast<int>(width) + 2) << label << v << "\n";
  }
  std::cout << std::setw(static_cast<int>(width) + 2) << "result" << result << "\n";
  if (!detail_.empty()) {
    std::cout << "problems:\n";
    for (auto& [what, n] : detail_)
      std::cout << "  " << n << " x " << what << "\n";
  }
}

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

std::string thousands(uint64_t v) {
  auto digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0)
      out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

// --- command-line values ------------------------------------------------------------------------

int64_t duration_ns(const std::string& text, const char* option) {
  std::string why;
  auto d = config::parse_duration(text, &why);
  if (!d)
    throw usage_error(std::string(option) + ": " + why);
  return static_cast<int64_t>(d->count()) * 1'000'000;
}

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

namespace {

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

} // namespace

std::vector<sockaddr_in> parse_coordinators(const std::string& text) {
  std::vector<sockaddr_in> out;
  for (size_t from = 0; from <= text.size();) {
    auto comma = std::min(text.find(',', from), text.size());
    out.push_back(parse_coordinator(text.substr(from, comma - from)));
    from = comma + 1;
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

std::vector<node_key> read_keys(const std::string& path, size_t nodes, size_t skip) {
  std::ifstream in(path);
  if (!in)
    throw usage_error("cannot read the keys file " + path + " (run 'provision' first)");
  std::vector<node_key> keys;
  std::string line;
  size_t lineno = 0;
  size_t skipped = 0;
  while (keys.size() < nodes && std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#')
      continue;
    auto tab = line.find('\t');
    if (tab == std::string::npos || tab == 0 || tab + 1 == line.size())
      throw usage_error(path + ":" + std::to_string(lineno) + ": expected NAME<TAB>KEY");
    if (skipped < skip) {
      ++skipped;
      continue;
    }
    keys.push_back({line.substr(0, tab), line.substr(tab + 1)});
  }
  if (keys.size() < nodes)
    throw usage_error(path + " holds " + std::to_string(skipped + keys.size()) + " keys, fewer than --skip "
                      + std::to_string(skip) + " + --nodes " + std::to_string(nodes));
  return keys;
}

uint64_t raise_nofile(size_t sessions) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < sessions + 32)
    throw usage_error("the open file limit (" + std::to_string(lim.rlim_cur) + ") is too low for "
                      + std::to_string(sessions) + " sessions; raise the hard limit (ulimit -Hn)");
  return lim.rlim_cur;
}

void sleep_ns(int64_t ns) {
  if (ns <= 0)
    return;
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

uint64_t daemon_probe::rss() const {
  auto v = read_rss_kib(pid);
  if (!v)
    throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/status (did the daemon exit?)");
  return *v;
}

double daemon_probe::cpu() const {
  auto v = read_cpu_seconds(pid);
  if (!v)
    throw std::runtime_error("cannot read /proc/" + std::to_string(pid) + "/stat (did the daemon exit?)");
  return *v;
}

void daemon_probe::static_rows(report& r) const {
  if (auto lim = read_nofile_limit(pid))
    r.count("daemon fd limit", "daemon_fd_limit", *lim);
  if (auto t = read_threads(pid))
    r.count("daemon threads", "daemon_threads", *t);
}

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
  if (c.tls_handshakes > 0) {
    r.count("TLS sessions", "tls_sessions", c.tls_handshakes);
    r.count("TLS sessions resumed", "tls_resumed", c.tls_resumed);
  }
  if (c.authenticated != requested)
    r.problem(std::to_string(requested - c.authenticated) + " of " + std::to_string(requested)
              + " sessions did not authenticate");
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

db_target open_target(const std::string& config_path, const std::string& state_dir) {
  db_target t;
  t.cfg = config::default_config();
  if (!config_path.empty()) {
    auto res = config::load_file(config_path);
    if (!res.ok()) {
      for (auto& e : res.errors)
        std::cerr << e.to_string() << "\n";
      throw usage_error("configuration errors in " + config_path);
    }
    t.cfg = res.config;
  }
  try {
    t.url = storage::parse_storage_url(t.cfg.storage.url, state_dir, t.cfg.storage.connect_timeout);
  } catch (const std::invalid_argument& e) {
    throw usage_error(std::string("storage.url: ") + e.what());
  }
  return t;
}

} // namespace nodecoord::bench
