#include "protocol/ack_gate.hpp"

namespace nodecoord::protocol {

ack_gate::ticket ack_gate::open() {
  flags_.push_back(0);
  return next_++;
}

void ack_gate::settle(ticket t) {
  if (t < base_ || t >= next_)
    return;
  auto& flag = flags_[flags_head_ + (t - base_)];
  if (flag)
    return;
  flag = 1;
  ++settled_ahead_;
  while (flags_head_ < flags_.size() && flags_[flags_head_]) {
    ++flags_head_;
    ++base_;
    --settled_ahead_;
  }
  compact();
}

void ack_gate::compact() {
  if (flags_head_ == flags_.size()) {
    flags_.clear();
    flags_head_ = 0;
    // A burst may have grown the buffer; 10,000 idle sessions should not each keep theirs.
    if (flags_.capacity() > 256)
      flags_.shrink_to_fit();
  } else if (flags_head_ >= 64 && flags_head_ * 2 >= flags_.size()) {
    flags_.erase(flags_.begin(), flags_.begin() + static_cast<long>(flags_head_));
    flags_head_ = 0;
  }
}

bool ack_gate::heartbeat(int64_t seq, time_point now) {
  if (held() == 0 && base_ == next_)
    return true;
  held_.push_back({next_, seq, now});
  return false;
}

std::vector<int64_t> ack_gate::released() {
  std::vector<int64_t> out;
  while (held_head_ < held_.size() && held_[held_head_].barrier <= base_)
    out.push_back(held_[held_head_++].seq);
  if (held_head_ == held_.size()) {
    held_.clear();
    held_head_ = 0;
    if (held_.capacity() > 64)
      held_.shrink_to_fit();
    last_notice_.reset(); // the next delay is noticed afresh
  }
  return out;
}

bool ack_gate::delay_notice_due(time_point now, std::chrono::steady_clock::duration interval) {
  if (held() == 0 || now - held_[held_head_].since < interval)
    return false;
  if (last_notice_ && now - *last_notice_ < interval)
    return false;
  last_notice_ = now;
  return true;
}

} // namespace nodecoord::protocol
