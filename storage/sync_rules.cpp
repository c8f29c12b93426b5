#include "storage/sync_rules.hpp"

#include <algorithm>
#include <cmath>

namespace nodecoord::storage {

const char* to_string(backfill_outcome o) {
  switch (o) {
    case backfill_outcome::completed: return "completed";
    case backfill_outcome::reset: return "reset";
    case backfill_outcome::failed: return "failed";
    case backfill_outcome::stale: return "stale";
  }
  return "?";
}

namespace sync_rules {

sync_row created(std::string owner) {
  sync_row r;
  r.owner = std::move(owner);
  return r;
}

bool reopen(sync_row& r) {
  if (r.state != sync_state::complete && r.state != sync_state::failed)
    return false;
  r.state = sync_state::partial;
  r.failures = 0;
  return true;
}

bool mark(sync_row& r, std::string_view request_id) {
  if (r.state != sync_state::partial || request_id.empty())
    return false;
  r.state = sync_state::pending_backfill;
  r.request_id = request_id;
  return true;
}

bool pending_under(const sync_row& r, std::string_view request_id, std::string_view sender) {
  return r.state == sync_state::pending_backfill && !request_id.empty() && r.request_id == request_id
         && r.owner == sender;
}

namespace {

/// One more failure: back to partial, or failed once it reaches `max_failures`.
backfill_outcome count_failure(sync_row& r, int64_t max_failures) {
  ++r.failures;
  r.request_id.clear();
  if (r.failures >= max_failures) {
    r.state = sync_state::failed;
    return backfill_outcome::failed;
  }
  r.state = sync_state::partial;
  return backfill_outcome::reset;
}

} // namespace

backfill_outcome answer(sync_row& r, const std::optional<node_answer>& a, int64_t max_failures) {
  if (r.state != sync_state::pending_backfill)
    return backfill_outcome::stale;
  if (a && a->ok && r.log_count >= a->log_count) {
    r.state = sync_state::complete;
    r.request_id.clear();
    r.failures = 0;
    return backfill_outcome::completed;
  }
  return count_failure(r, max_failures);
}

backfill_outcome end_request(sync_row& r, bool failure, int64_t max_failures) {
  if (r.state != sync_state::pending_backfill)
    return backfill_outcome::stale;
  if (failure)
    return count_failure(r, max_failures);
  r.state = sync_state::partial;
  r.request_id.clear();
  return backfill_outcome::reset;
}

bool requeue(sync_row& r) {
  if (r.state != sync_state::failed)
    return false;
  r.state = sync_state::partial;
  r.failures = 0;
  return true;
}

bool recover(sync_row& r) {
  if (r.state != sync_state::pending_backfill)
    return false;
  r.state = sync_state::partial;
  r.request_id.clear();
  return true;
}

int64_t request_size(int64_t limit, int64_t failures, int64_t max_failures) {
  if (limit <= 1 || failures <= 0)
    return std::max<int64_t>(limit, 1);
  if (max_failures <= 1 || failures >= max_failures - 1)
    return 1;
  auto exponent = static_cast<double>(max_failures - 1 - failures) / static_cast<double>(max_failures - 1);
  auto size = static_cast<int64_t>(std::floor(std::pow(static_cast<double>(limit), exponent) + 1e-9));
  return std::clamp<int64_t>(size, 1, limit);
}

} // namespace sync_rules

} // namespace nodecoord::storage
