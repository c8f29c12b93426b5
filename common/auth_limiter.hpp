#pragma once
// The limit on failed hellos (docs/operations.md, "Authentication failures"): at most
// `per_minute` failures per address in a fixed one-minute window; an address over it is answered
// auth_failed without a database lookup. IPv6 addresses count per /64 (one host usually holds a
// whole /64), IPv4-mapped ones as IPv4. Memory is bounded: at most `capacity` addresses are
// tracked. When the table is full of live windows, further failing addresses share one overflow
// window with the same limit, so an attacker with many addresses cannot flush the table and
// reset anyone's limit; nothing live is ever evicted. No actor inside.
#include "common/clock.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace nodecoord {

class auth_limiter {
public:
  explicit auth_limiter(uint32_t per_minute, size_t capacity = 65536);

  /// What an address is counted by: "203.0.113.7", "2001:db8:1:2::/64".
  static std::string key_of(std::string_view peer);

  /// True: refuse this address's hello without looking at its key.
  bool limited(std::string_view peer, sys_time now);
  /// Counts a failed hello of this address.
  void failed(std::string_view peer, sys_time now);

  size_t tracked() const { return map_.size(); }
  /// Failures counted in the shared overflow window (the table was full).
  uint64_t overflowed() const { return overflowed_; }

private:
  struct window {
    sys_time start{};
    uint32_t count = 0;
  };
  bool live(const window& w, sys_time now) const;
  void sweep(sys_time now);

  uint32_t per_minute_;
  size_t capacity_;
  std::unordered_map<std::string, window> map_;
  window overflow_;
  uint64_t overflowed_ = 0;
  sys_time last_sweep_{};
};

} // namespace nodecoord
