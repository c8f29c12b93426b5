#include "admin/history.hpp"

namespace nodecoord::admin {

void history::record(history_sample s) {
  std::lock_guard<std::mutex> lock(mutex_);
  samples_.push_back(std::move(s));
  while (samples_.size() > keep_)
    samples_.pop_front();
}

std::vector<history_point> history::points(std::chrono::milliseconds window) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<history_point> out;
  if (samples_.empty())
    return out;
  auto from = samples_.back().at_ms - window.count();
  for (size_t i = 0; i < samples_.size(); ++i) {
    auto& s = samples_[i];
    if (s.at_ms < from)
      continue;
    history_point p;
    p.at = s.at;
    p.connected = s.connected;
    if (i > 0) {
      auto& prev = samples_[i - 1];
      auto dt = s.at_ms - prev.at_ms;
      // Counters only grow; one that fell (the tracker was restarted) or is missing is no rate.
      if (dt > 0 && prev.completed >= 0 && s.completed >= prev.completed)
        p.completed_per_minute = static_cast<double>(s.completed - prev.completed) * 60'000.0 / static_cast<double>(dt);
      if (prev.answered >= 0 && s.answered > prev.answered && prev.answered_ms >= 0
          && s.answered_ms >= prev.answered_ms)
        p.backfill_latency_ms =
          static_cast<double>(s.answered_ms - prev.answered_ms) / static_cast<double>(s.answered - prev.answered);
    }
    out.push_back(std::move(p));
  }
  return out;
}

} // namespace nodecoord::admin
