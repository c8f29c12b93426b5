#pragma once
// One agent's workload: a thread writing attempts and log lines into the agent's store through
// agent::store (the code `nodecoord-agent record` uses), on its own random schedule: 1–4
// attempts open at once, lines in bursts of mixed streams (non-ASCII, empty, quoted and
// tab-holding lines among them), queued -> running -> succeeded/failed/cancelled with a meta
// object, sometimes a meta update while running, 10–200 ms between steps; now and then an attempt
// goes quiet for 1–6 s after a burst (a long compile), long enough to be backfilled meanwhile.
// No Boost.Test here: errors are kept for the test thread to assert on.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <thread>

namespace nodecoord::faults {

struct recorder_options {
  std::string store_path;
  std::string tag; // task ids start with it
  uint64_t seed = 1;
  int burst_max = 300;
};

class recorder {
public:
  explicit recorder(recorder_options o);
  /// Stops without finishing open attempts (the test is being torn down).
  ~recorder();
  recorder(const recorder&) = delete;
  recorder& operator=(const recorder&) = delete;

  /// Asks the recorder to give every open attempt a final state and stop.
  void finish() { finish_ = true; }
  /// True once it stopped (after finish(), or after an error).
  bool done() const { return done_; }
  /// The error that stopped it, if any.
  std::string error() const;

  int64_t attempts() const { return attempts_; }
  int64_t lines() const { return lines_; }

private:
  void loop();

  recorder_options opts_;
  std::atomic<bool> finish_{false};
  std::atomic<bool> abort_{false};
  std::atomic<bool> done_{false};
  std::atomic<int64_t> attempts_{0};
  std::atomic<int64_t> lines_{0};
  mutable std::mutex mu_;
  std::string error_;
  std::thread thread_;
};

} // namespace nodecoord::faults
