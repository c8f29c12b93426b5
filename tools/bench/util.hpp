#pragma once
// What every nodecoord-bench scenario shares: exit codes, the result report (a table or one JSON
// object), percentiles, command-line value parsing, the keys file, and the configured database.
#include "config/config.hpp"
#include "storage/url.hpp"
#include "tools/bench/load.hpp"

#include <nlohmann/json.hpp>

#include <netinet/in.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace nodecoord::bench {

constexpr int exit_ok = 0;
constexpr int exit_invalid = 1; // the run happened but is invalid (failures, lost acks, errors)
constexpr int exit_usage = 2;   // bad command line, unreadable keys, database or setup problem

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// --- results: one table (or one JSON object) per run ---------------------------------------------

class report {
public:
  explicit report(std::string scenario);

  /// A row: `label` in the table, `key` in JSON, `value` already rendered for the table.
  void row(const std::string& label, const std::string& key, nlohmann::json value, const std::string& text);
  void count(const std::string& label, const std::string& key, uint64_t v);
  void number(const std::string& label, const std::string& key, double v, int decimals, const std::string& unit);
  void text(const std::string& label, const std::string& key, const std::string& v);
  /// A section heading in the table (nothing in JSON).
  void heading(const std::string& title);
  void problem(const std::string& why) { invalid_.push_back(why); }
  void problems(const std::map<std::string, uint64_t>& p);

  bool valid() const { return invalid_.empty(); }
  void print(bool as_json);

private:
  std::string scenario_;
  std::vector<std::pair<std::string, std::string>> rows_; // label empty: heading in value
  std::vector<std::string> invalid_;
  std::map<std::string, uint64_t> detail_;
  nlohmann::json json_;
};

/// Nearest-rank percentile of sorted values (p in 0..100).
double percentile(const std::vector<double>& sorted, double p);

/// Rows "<what> samples / p50 / p90 / p99 / max" (values in microseconds, shown in ms).
void latency_rows(report& r, const std::string& what, const std::string& key, std::vector<double> us);

/// "12,345" for tables.
std::string thousands(uint64_t v);

// --- command-line values ------------------------------------------------------------------------

int64_t duration_ns(const std::string& text, const char* option);
/// Like duration_ns, but also accepts a zero ("0", "0s", "0ms").
int64_t duration_or_zero_ns(const std::string& text, const char* option);

sockaddr_in parse_coordinator(const std::string& text);
/// "HOST:PORT[,HOST:PORT…]": several instances sharing one database (DESIGN §9).
std::vector<sockaddr_in> parse_coordinators(const std::string& text);
std::vector<in_addr> choose_sources(const std::string& spec, const sockaddr_in& coordinator, size_t nodes);
/// The first `nodes` NAME<TAB>KEY lines of the keys file from `provision`.
/// `nodes` keys of the keys file, after its first `skip` (several bench processes split one file).
std::vector<node_key> read_keys(const std::string& path, size_t nodes, size_t skip = 0);
/// Raises the soft open-file limit to the hard one; fails if N sessions cannot fit.
uint64_t raise_nofile(size_t sessions);

/// Sleeps for `ns` nanoseconds (monotonic).
void sleep_ns(int64_t ns);

// --- the daemon under test and the sessions ------------------------------------------------------

/// Figures about the daemon from /proc/PID (pid 0: disabled).
struct daemon_probe {
  int pid = 0;
  bool enabled() const { return pid > 0; }
  uint64_t rss() const;              // KiB; throws if the daemon is gone
  double cpu() const;                // utime + stime seconds; throws if the daemon is gone
  void static_rows(report& r) const; // fd limit, threads
};

/// Usage error unless /proc/PID/status is readable (pid 0: nothing to check).
void check_pid(int pid);

/// The session rows shared by the socket scenarios; marks the run invalid on any failure.
void session_rows(report& r, const load& l, size_t requested);
/// Coordinator-ended sessions, error/unexpected frames, socket errors, lost acks: invalid.
void trailing_rows(report& r, const load& l);

std::string kib_text(double kib);

// --- the configured database --------------------------------------------------------------------

/// The configuration file (defaults if `config_path` is empty) and its storage URL, relative
/// SQLite paths resolved against `state_dir`.
struct db_target {
  config::daemon_config cfg;
  storage::storage_url url;
};
db_target open_target(const std::string& config_path, const std::string& state_dir);

} // namespace nodecoord::bench
