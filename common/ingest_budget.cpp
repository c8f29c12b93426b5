#include "common/ingest_budget.hpp"

#include "common/metrics.hpp"

#include <algorithm>

namespace nodecoord {

void ingest_budget::take(uint64_t bytes) {
  std::lock_guard lock(mu_);
  bytes_ += bytes;
  ++frames_;
  publish();
}

void ingest_budget::publish() const {
  metrics::daemon().ingest_bytes.store(bytes_, std::memory_order_relaxed);
  metrics::daemon().ingest_frames.store(frames_, std::memory_order_relaxed);
}

std::vector<std::function<void()>> ingest_budget::give(uint64_t bytes) {
  std::vector<std::function<void()>> wake;
  std::lock_guard lock(mu_);
  bytes_ -= std::min(bytes_, bytes);
  frames_ -= std::min<uint64_t>(frames_, 1);
  publish();
  if (!waiters_.empty() && resumable_locked())
    wake.swap(waiters_);
  return wake;
}

bool ingest_budget::over() const {
  std::lock_guard lock(mu_);
  return at_limit(limits_, bytes_, frames_);
}

bool ingest_budget::resumable_locked() const { return under_resume_mark(limits_, bytes_, frames_); }

bool ingest_budget::at_limit(const limits& l, uint64_t bytes, uint64_t frames) {
  return bytes >= l.max_bytes || frames >= l.max_frames;
}

bool ingest_budget::under_resume_mark(const limits& l, uint64_t bytes, uint64_t frames) {
  return bytes <= l.max_bytes - l.max_bytes / 4 && frames <= l.max_frames - l.max_frames / 4;
}

bool ingest_budget::resumable() const {
  std::lock_guard lock(mu_);
  return resumable_locked();
}

void ingest_budget::wait(std::function<void()> wake) {
  {
    std::lock_guard lock(mu_);
    if (!resumable_locked()) {
      waiters_.push_back(std::move(wake));
      return;
    }
  }
  wake();
}

uint64_t ingest_budget::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

uint64_t ingest_budget::frames() const {
  std::lock_guard lock(mu_);
  return frames_;
}

size_t ingest_budget::waiting() const {
  std::lock_guard lock(mu_);
  return waiters_.size();
}

ingest_budget::limits ingest_budget::per_session(const limits& fleet) {
  // A sixteenth of the fleet's bound, but room for a few full frames and a burst of small ones.
  return {std::min(fleet.max_bytes, std::max<uint64_t>(fleet.max_bytes / 16, 4ull * 1024 * 1024)),
          std::min(fleet.max_frames, std::max<uint64_t>(fleet.max_frames / 16, 256))};
}

} // namespace nodecoord
