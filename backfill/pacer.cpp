#include "backfill/pacer.hpp"

#include <algorithm>

namespace nodecoord::backfill {

pacer::pacer(uint32_t per_second, uint64_t seed)
  : period_(std::chrono::duration_cast<duration>(std::chrono::seconds(1)) / std::max<uint32_t>(per_second, 1)),
    rng_(seed) {
  if (period_ <= duration::zero())
    period_ = duration(1);
}

pacer::time_point pacer::next(time_point now) {
  auto slot = std::max(now, free_from_);
  free_from_ = slot + period_;
  std::uniform_int_distribution<duration::rep> offset(0, period_.count() - 1);
  return slot + duration(offset(rng_));
}

} // namespace nodecoord::backfill
