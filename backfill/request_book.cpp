#include "backfill/request_book.hpp"

namespace nodecoord::backfill {

const char* to_string(answer_check c) {
  switch (c) {
    case answer_check::accepted: return "accepted";
    case answer_check::unknown: return "unknown";
    case answer_check::foreign: return "foreign";
    case answer_check::stale_epoch: return "stale_epoch";
    case answer_check::not_sent: return "not_sent";
  }
  return "?";
}

bool request_book::open(request r) {
  if (requests_.count(r.id))
    return false;
  r.sent = false;
  r.attempt_ids.clear();
  by_node_[r.node_id].insert(r.id);
  auto id = r.id;
  requests_.emplace(std::move(id), std::move(r));
  return true;
}

bool request_book::sent(const std::string& id, std::vector<std::string> attempt_ids, time_point now,
                        std::chrono::nanoseconds timeout) {
  auto it = requests_.find(id);
  if (it == requests_.end() || it->second.sent)
    return false;
  auto& r = it->second;
  r.attempt_ids = std::move(attempt_ids);
  r.sent = true;
  r.sent_at = now;
  r.deadline = now + std::chrono::duration_cast<time_point::duration>(timeout);
  deadlines_.emplace(r.deadline, id);
  return true;
}

request request_book::take(std::unordered_map<std::string, request>::iterator it) {
  request r = std::move(it->second);
  requests_.erase(it);
  if (auto n = by_node_.find(r.node_id); n != by_node_.end()) {
    n->second.erase(r.id);
    if (n->second.empty())
      by_node_.erase(n);
  }
  if (r.sent) {
    auto [b, e] = deadlines_.equal_range(r.deadline);
    for (auto d = b; d != e; ++d)
      if (d->second == r.id) {
        deadlines_.erase(d);
        break;
      }
  }
  return r;
}

std::optional<request> request_book::close(const std::string& id) {
  auto it = requests_.find(id);
  if (it == requests_.end())
    return std::nullopt;
  return take(it);
}

std::optional<std::vector<request>> request_book::take_exactly(const std::vector<std::string>& ids) {
  std::set<std::string> unique(ids.begin(), ids.end());
  for (auto& id : unique) {
    auto it = requests_.find(id);
    if (it == requests_.end() || !it->second.sent)
      return std::nullopt;
  }
  std::vector<request> out;
  for (auto& id : unique)
    out.push_back(take(requests_.find(id)));
  return out;
}

answer_check request_book::answer(const std::string& id, const std::string& node_id, int64_t epoch, request* out) {
  auto it = requests_.find(id);
  if (it == requests_.end())
    return answer_check::unknown;
  auto& r = it->second;
  if (r.node_id != node_id)
    return answer_check::foreign;
  if (r.epoch != epoch)
    return answer_check::stale_epoch;
  if (!r.sent)
    return answer_check::not_sent;
  auto taken = take(it);
  if (out)
    *out = std::move(taken);
  return answer_check::accepted;
}

template <class Pred>
std::vector<request> request_book::take_of_node(const std::string& node_id, Pred pred) {
  std::vector<request> out;
  auto n = by_node_.find(node_id);
  if (n == by_node_.end())
    return out;
  std::vector<std::string> ids;
  for (auto& id : n->second)
    if (pred(requests_.at(id)))
      ids.push_back(id);
  for (auto& id : ids)
    out.push_back(take(requests_.find(id))); // may erase by_node_[node_id]: ids is a copy
  return out;
}

std::vector<request> request_book::take_session(const std::string& node_id, int64_t epoch) {
  return take_of_node(node_id, [&](const request& r) { return r.epoch == epoch; });
}

std::vector<request> request_book::take_older(const std::string& node_id, int64_t epoch) {
  return take_of_node(node_id, [&](const request& r) { return r.epoch < epoch; });
}

std::vector<request> request_book::take_expired(time_point now) {
  std::vector<std::string> ids;
  for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= now; ++it)
    ids.push_back(it->second);
  std::vector<request> out;
  for (auto& id : ids)
    out.push_back(take(requests_.find(id)));
  return out;
}

std::vector<request> request_book::take_all() {
  std::vector<request> out;
  out.reserve(requests_.size());
  for (auto& [id, r] : requests_)
    out.push_back(std::move(r));
  requests_.clear();
  by_node_.clear();
  deadlines_.clear();
  return out;
}

size_t request_book::inflight(const std::string& node_id, int64_t epoch) const {
  auto n = by_node_.find(node_id);
  if (n == by_node_.end())
    return 0;
  size_t count = 0;
  for (auto& id : n->second)
    if (requests_.at(id).epoch == epoch)
      ++count;
  return count;
}

std::optional<time_point> request_book::next_deadline() const {
  if (deadlines_.empty())
    return std::nullopt;
  return deadlines_.begin()->first;
}

const request* request_book::find(const std::string& id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : &it->second;
}

} // namespace nodecoord::backfill
