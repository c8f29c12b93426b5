#pragma once
// The database's size, measured off the write path (issue 19): a thread with its own connection
// runs database_size every `every` and keeps the last answer. On SQLite the per-table sizes come
// from dbstat, a walk of every page (seconds at millions of rows); in the storage actor that walk
// stalled every session's writes. A WAL reader on its own connection blocks no writer.
#include "common/clock.hpp"
#include "storage/admin_ops.hpp"
#include "storage/url.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace nodecoord::storage {

class size_sampler {
public:
  struct sample {
    database_size::result_type sizes;
    std::string measured_at; // RFC 3339
  };

  size_sampler(storage_url url, clock_fn clock, std::chrono::milliseconds every);
  ~size_sampler(); // stops and joins the thread
  size_sampler(const size_sampler&) = delete;
  size_sampler& operator=(const size_sampler&) = delete;

  /// Starts the thread: a first sample at once, then one every `every`.
  void start();
  /// Measures now, on the caller's thread (tests, and the thread's own loop).
  bool sample_now();
  /// The last sample; none before the first succeeded.
  std::optional<sample> latest() const;
  /// The last failure ("" after a success).
  std::string last_error() const;

private:
  void run();

  storage_url url_;
  clock_fn clock_;
  std::chrono::milliseconds every_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::optional<sample> latest_;
  std::string last_error_;
  std::thread thread_;
};

} // namespace nodecoord::storage
