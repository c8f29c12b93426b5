#include "common/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace nodecoord::metrics {

void labeled_counter::inc(const std::string& label, uint64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  values_[label] += n;
}

std::map<std::string, uint64_t> labeled_counter::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return values_;
}

histogram::histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1, 0) {
  std::sort(bounds_.begin(), bounds_.end());
}

void histogram::observe(double v) {
  auto i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  std::lock_guard<std::mutex> lock(mutex_);
  ++buckets_[i];
  sum_ += v;
  ++count_;
}

histogram::snapshot_type histogram::snapshot() const {
  snapshot_type s;
  s.bounds = bounds_;
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t acc = 0;
  for (auto b : buckets_) {
    acc += b;
    s.cumulative.push_back(acc);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

const char* to_string(frame_kind k) {
  switch (k) {
    case frame_kind::hello: return "hello";
    case frame_kind::heartbeat: return "heartbeat";
    case frame_kind::attempt: return "attempt";
    case frame_kind::logs: return "logs";
    case frame_kind::backfill_response: return "backfill_response";
    case frame_kind::bye: return "bye";
    case frame_kind::check_result: return "check_result";
    case frame_kind::invalid: return "invalid";
    case frame_kind::count_: break;
  }
  return "unknown";
}

daemon_metrics& daemon() {
  static daemon_metrics m;
  return m;
}

std::string escape_label(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

std::string number(double v) {
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v))
    return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

} // namespace

void text_writer::family(const std::string& name, const std::string& type, const std::string& help) {
  out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void text_writer::sample(const std::string& name, double value,
                         const std::vector<std::pair<std::string, std::string>>& labels) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (auto& [k, v] : labels) {
      out_ += first ? "" : ",";
      first = false;
      out_ += k + "=\"" + escape_label(v) + "\"";
    }
    out_ += '}';
  }
  out_ += ' ' + number(value) + '\n';
}

void text_writer::histogram(const std::string& name, const histogram::snapshot_type& h) {
  for (size_t i = 0; i < h.bounds.size(); ++i)
    sample(name + "_bucket", static_cast<double>(h.cumulative[i]), {{"le", number(h.bounds[i])}});
  sample(name + "_bucket", static_cast<double>(h.cumulative.back()), {{"le", "+Inf"}});
  sample(name + "_sum", h.sum);
  sample(name + "_count", static_cast<double>(h.count));
}

} // namespace nodecoord::metrics
