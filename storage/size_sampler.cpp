#include "storage/size_sampler.hpp"

#include "common/log.hpp"
#include "storage/database.hpp"
#include "storage/snapshot.hpp"

namespace nodecoord::storage {

size_sampler::size_sampler(storage_url url, clock_fn clock, std::chrono::milliseconds every)
  : url_(std::move(url)), clock_(std::move(clock)), every_(every) {}

size_sampler::~size_sampler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

void size_sampler::start() {
  thread_ = std::thread([this] { run(); });
}

bool size_sampler::sample_now() {
  // A connection per sample: it holds no snapshot and no lock between samples, and a database
  // restart costs this sampler nothing to notice.
  try {
    sample s;
    read_snapshot(url_, clock_, [&](op_context& c) { s = {execute(c, database_size{}), c.now_text}; });
    std::lock_guard<std::mutex> lock(mutex_);
    latest_ = std::move(s);
    last_error_.clear();
    return true;
  } catch (...) {
    auto why = current_exception_message();
    std::lock_guard<std::mutex> lock(mutex_);
    if (last_error_ != why)
      log::warn("database size not measured", {{"error", why}});
    last_error_ = why;
    return false;
  }
}

std::optional<size_sampler::sample> size_sampler::latest() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return latest_;
}

std::string size_sampler::last_error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_error_;
}

void size_sampler::run() {
  for (;;) {
    sample_now();
    std::unique_lock<std::mutex> lock(mutex_);
    if (wake_.wait_for(lock, every_, [this] { return stopping_; }))
      return;
  }
}

} // namespace nodecoord::storage
