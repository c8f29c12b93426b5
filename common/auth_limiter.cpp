#include "common/auth_limiter.hpp"

#include <arpa/inet.h>

#include <array>
#include <chrono>
#include <cstring>

namespace nodecoord {

auth_limiter::auth_limiter(uint32_t per_minute, size_t capacity)
  : per_minute_(per_minute), capacity_(capacity == 0 ? 1 : capacity) {}

std::string auth_limiter::key_of(std::string_view peer) {
  std::string s(peer);
  if (s.size() > 2 && s.front() == '[' && s.back() == ']')
    s = s.substr(1, s.size() - 2);
  if (auto pct = s.find('%'); pct != std::string::npos)
    s.resize(pct); // a zone index names an interface, not a host
  std::array<unsigned char, 16> a6{};
  if (s.find(':') != std::string::npos && inet_pton(AF_INET6, s.c_str(), a6.data()) == 1) {
    static constexpr unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char buf[INET6_ADDRSTRLEN] = {};
    if (std::memcmp(a6.data(), mapped, 12) == 0) {
      inet_ntop(AF_INET, a6.data() + 12, buf, sizeof buf);
      return buf;
    }
    std::memset(a6.data() + 8, 0, 8);
    inet_ntop(AF_INET6, a6.data(), buf, sizeof buf);
    return std::string(buf) + "/64";
  }
  return s; // IPv4, or whatever the transport named it by
}

bool auth_limiter::live(const window& w, sys_time now) const {
  return w.count > 0 && now - w.start < std::chrono::minutes(1);
}

bool auth_limiter::limited(std::string_view peer, sys_time now) {
  auto it = map_.find(key_of(peer));
  if (it != map_.end()) {
    if (live(it->second, now))
      return it->second.count >= per_minute_;
    map_.erase(it);
  }
  // Untracked while the table is full: the shared window decides.
  return map_.size() >= capacity_ && live(overflow_, now) && overflow_.count >= per_minute_;
}

void auth_limiter::sweep(sys_time now) {
  if (now - last_sweep_ < std::chrono::seconds(1))
    return; // a full table is swept at most once a second, not once per failure
  last_sweep_ = now;
  for (auto it = map_.begin(); it != map_.end();)
    it = live(it->second, now) ? std::next(it) : map_.erase(it);
}

void auth_limiter::failed(std::string_view peer, sys_time now) {
  auto key = key_of(peer);
  auto it = map_.find(key);
  if (it == map_.end()) {
    if (map_.size() >= capacity_)
      sweep(now);
    if (map_.size() >= capacity_) {
      if (!live(overflow_, now))
        overflow_ = {now, 0};
      ++overflow_.count;
      ++overflowed_;
      return;
    }
    it = map_.emplace(std::move(key), window{}).first;
  }
  auto& w = it->second;
  if (!live(w, now))
    w = {now, 0};
  ++w.count;
}

} // namespace nodecoord
