#pragma once
// Time in nodecoord: the coordinator's own clock is the only time source (DESIGN §3 rule 6), and
// it is injectable so that tests control it. Times travel as RFC 3339 UTC with milliseconds.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace nodecoord {

using sys_time = std::chrono::time_point<std::chrono::system_clock, std::chrono::milliseconds>;
using clock_fn = std::function<sys_time()>;

/// The wall clock, truncated to milliseconds.
sys_time system_now();

/// "2026-01-09T12:00:00.000Z"
std::string format_time(sys_time t);

/// Accepts RFC 3339 with 'Z' or a numeric offset, optional fraction (truncated to ms), and the
/// space-separated form PostgreSQL prints ("2026-01-09 12:00:00.5+00"). Only years 0001-9999
/// once in UTC: what both backends store.
std::optional<sys_time> parse_time(std::string_view s);

} // namespace nodecoord
