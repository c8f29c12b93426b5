#include "storage/op_queue.hpp"

#include <utility>

namespace nodecoord::storage {

void op_queue::push(entry e, queue_place where) {
  switch (where) {
    case queue_place::front:
      q_.push_front(std::move(e));
      if (urgent_)
        ++urgent_; // still in front of the handshakes, which stay next
      return;
    case queue_place::urgent:
      q_.insert(q_.begin() + static_cast<long>(urgent_), std::move(e));
      ++urgent_;
      return;
    case queue_place::ahead: {
      auto pos = q_.size();
      while (pos > urgent_ && !q_[pos - 1].touches_attempts)
        --pos;
      q_.insert(q_.begin() + static_cast<long>(pos), std::move(e));
      return;
    }
    case queue_place::back: q_.push_back(std::move(e)); return;
  }
}

void op_queue::push_alone(entry e) {
  if (!q_.empty())
    q_.back().commit_after = true;
  e.commit_after = true;
  q_.push_back(std::move(e));
}

void op_queue::take_batch(std::vector<batch_item>& batch, size_t max) {
  while (batch.size() < max && !q_.empty()) {
    auto last = q_.front().commit_after;
    batch.push_back(std::move(q_.front().item));
    q_.pop_front();
    if (urgent_)
      --urgent_;
    if (last)
      break;
  }
}

std::deque<op_queue::entry> op_queue::take_all() {
  auto out = std::move(q_);
  q_.clear();
  urgent_ = 0;
  return out;
}

} // namespace nodecoord::storage
