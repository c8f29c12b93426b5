#pragma once
// The reconnect trigger's global rate limit (DESIGN §4): at most `per_second` starts per second,
// spread with jitter, so a fleet that reconnects at once does not flood the database. Time is
// cut into slots of 1/per_second; each start gets its own slot, at a random offset inside it.
// So any window of length W holds at most W * per_second + 2 starts. No actor inside.
#include <chrono>
#include <cstdint>
#include <random>

namespace nodecoord::backfill {

class pacer {
public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  pacer(uint32_t per_second, uint64_t seed);

  /// Reserves the next start at or after `now` and returns when it is.
  time_point next(time_point now);

  duration period() const { return period_; }

private:
  duration period_;
  time_point free_from_{}; // the start of the first unreserved slot
  std::mt19937_64 rng_;
};

} // namespace nodecoord::backfill
