#pragma once
// Findings of the fuzz targets in code they may not change (docs/reliability.md "Fuzzing (issue
// 15)" lists them with reproducers). By default a target that reaches one stops checking that
// input and goes on, so one known bug does not hide every other finding; with
// NODECOORD_FUZZ_STRICT=1 in the environment it aborts instead (run the reproducer that way).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <string_view>

namespace nodecoord::fuzz {

inline bool strict() {
  static const bool on = [] {
    const char* v = std::getenv("NODECOORD_FUZZ_STRICT");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

/// Call where the known issue `name` shows; returns only when not strict (the caller then skips
/// the rest of its checks for this input).
inline void known_issue(const char* name) {
  if (strict()) {
    std::fprintf(stderr, "known issue: %s (NODECOORD_FUZZ_STRICT=1)\n", name);
    std::abort();
  }
}

/// format_time() of a time whose year is outside 0000-9999 ("-001-12-31T23:59:00.000Z",
/// "10000-01-01T..."): parse_time() accepts "0000-01-01T00:00:00+00:01", normalises it to UTC
/// and the result no longer parses (docs/reliability.md, fuzzing finding 4; common/clock.cpp).
inline bool has_time_outside_4_digit_years(std::string_view text) {
  static const std::regex year(R"re("(-[0-9]{3,}|[0-9]{5,})-[0-9]{2}-[0-9]{2}T)re");
  std::string s(text);
  return std::regex_search(s, year);
}

} // namespace nodecoord::fuzz
