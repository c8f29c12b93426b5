#pragma once
// Process-wide counters for GET /metrics (Prometheus text format). Actors that are many (one
// node_session per connection) cannot each be asked at scrape time, so they count here with
// relaxed atomics; actors that are one (tracker, storage) report through their status messages
// and the admin renders both. No CAF here.
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace nodecoord::metrics {

/// A counter whose label values are not known in advance (disconnect reasons, error codes).
class labeled_counter {
public:
  void inc(const std::string& label, uint64_t n = 1);
  std::map<std::string, uint64_t> snapshot() const;

private:
  mutable std::mutex mutex_;
  std::map<std::string, uint64_t> values_;
};

/// Cumulative histogram with fixed upper bounds (Prometheus `le`).
class histogram {
public:
  explicit histogram(std::vector<double> bounds);
  void observe(double v);
  struct snapshot_type {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative; // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  snapshot_type snapshot() const;

private:
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<uint64_t> buckets_; // non-cumulative, bounds_.size() + 1
  double sum_ = 0;
  uint64_t count_ = 0;
};

/// Frame types of protocol v1 from nodes, plus what did not decode.
enum class frame_kind : uint8_t {
  hello,
  heartbeat,
  attempt,
  logs,
  backfill_response,
  bye,
  check_result,
  invalid,
  count_
};
const char* to_string(frame_kind);

struct daemon_metrics {
  std::atomic<int64_t> sessions{0};     // authenticated sessions now
  std::atomic<uint64_t> connections{0}; // TCP connections accepted
  labeled_counter connects;             // hello outcomes: ok, auth_failed, ...
  labeled_counter disconnects;          // session ends by reason
  std::array<std::atomic<uint64_t>, static_cast<size_t>(frame_kind::count_)> frames{};
  labeled_counter protocol_errors;              // by error code
  std::atomic<uint64_t> acks_delayed{0};        // ack_delayed notices: heartbeats waiting for commits
  std::atomic<uint64_t> fenced_writes{0};       // writes of superseded sessions refused by the epoch fence
  std::atomic<uint64_t> lease_losses{0};        // times this instance found its lease taken (DESIGN §9)
  std::atomic<uint64_t> instances_recovered{0}; // expired instances this one recovered
  std::atomic<uint64_t> reconnect_probes{0};    // reconnect trigger: probe statements
  std::atomic<uint64_t> reconnect_idle{0};      // reconnect trigger: sessions probed idle (no request)
  std::atomic<uint64_t> reconnect_requests{0};  // reconnect trigger: paced requests ordered
  std::atomic<int64_t> session_capacity{0};     // sessions the descriptor limit allows (0: unknown)
  std::atomic<int64_t> sessions_paused{0};      // sessions not reading now (backpressure)
  std::atomic<uint64_t> session_pauses{0};      // times a session stopped reading
  std::atomic<uint64_t> read_rearms{0};         // reads re-triggered after a resume (node_session.cpp)
  std::atomic<uint64_t> tls_failures{0};        // TLS streams that failed (handshake refused, bad records)
  std::atomic<int64_t> handshakes{0};           // connections not authenticated yet
  std::atomic<uint64_t> ingest_bytes{0};        // frames' bytes handed to storage, not settled
  std::atomic<uint64_t> ingest_frames{0};
  histogram batch_size{{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}};
  histogram commit_seconds{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};

  void frame(frame_kind k) { frames[static_cast<size_t>(k)].fetch_add(1, std::memory_order_relaxed); }
};

/// The daemon's one set of counters.
daemon_metrics& daemon();

/// Writes Prometheus text exposition format.
class text_writer {
public:
  /// `# HELP` and `# TYPE` lines; type is counter, gauge or histogram.
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, double value,
              const std::vector<std::pair<std::string, std::string>>& labels = {});
  void histogram(const std::string& name, const histogram::snapshot_type& h);
  const std::string& text() const { return out_; }

private:
  std::string out_;
};

/// Escapes a label value (backslash, double quote, newline).
std::string escape_label(const std::string& v);

} // namespace nodecoord::metrics
