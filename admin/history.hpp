#pragma once
// The dashboard's charts (issue 20): the last hour of a few daemon figures, sampled every
// defaults::history_every and kept in memory only (a restart starts them again). No CAF here:
// the admin actor's sampler thread records, the API (GET /api/history) reads.
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace nodecoord::admin {

/// One reading: a gauge and three counters that only grow (differences between readings are
/// rates).
struct history_sample {
  std::string at;           // RFC 3339
  int64_t at_ms = 0;        // the same instant, milliseconds since the epoch
  int64_t connected = -1;   // sessions; -1: not read
  int64_t completed = -1;   // attempts completed by backfill since start; -1: the tracker did not answer
  int64_t answered = -1;    // backfill requests answered since start
  int64_t answered_ms = -1; // their send-to-answer time, summed
};

/// One point of a chart series: the value over the interval that ends at `at`.
struct history_point {
  std::string at;
  int64_t connected = -1;           // at the end of the interval
  double completed_per_minute = -1; // -1: unknown (a reading missing, or the tracker restarted)
  double backfill_latency_ms = -1;  // mean of the requests answered in the interval; -1: none answered
};

class history {
public:
  explicit history(size_t keep = 360) : keep_(keep) {}

  void record(history_sample s);
  /// The points of the last `window` (by the newest sample's time), oldest first.
  std::vector<history_point> points(std::chrono::milliseconds window) const;

private:
  size_t keep_;
  mutable std::mutex mutex_;
  std::deque<history_sample> samples_;
};

} // namespace nodecoord::admin
