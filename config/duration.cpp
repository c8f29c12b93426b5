#include "config/duration.hpp"

#include <array>
#include <cstdint>
#include <limits>

namespace nodecoord::config {

namespace {

struct unit {
  std::string_view name;
  int64_t millis;
};

// Largest first: a duration string names its units in this order, each at most once.
constexpr std::array<unit, 4> units{{{"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::optional<std::chrono::milliseconds> fail(std::string* why, std::string message) {
  if (why)
    *why = std::move(message);
  return std::nullopt;
}

} // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string* why) {
  constexpr auto hint = "use an integer with a unit: ms, s, m or h (e.g. \"250ms\", \"10s\", \"1m30s\")";
  if (text.empty())
    return fail(why, std::string{"empty duration; "} + hint);
  for (char c : text)
    if (is_space(c))
      return fail(why, "whitespace is not allowed in a duration; write e.g. \"10s\" or \"1m30s\"");
  if (text.front() == '-')
    return fail(why, "negative durations are not allowed");
  int64_t total = 0;
  size_t next_unit = 0; // index into `units` of the smallest unit still allowed
  size_t pos = 0;
  while (pos < text.size()) {
    // The count.
    size_t digits_begin = pos;
    int64_t count = 0;
    bool count_overflow = false;
    while (pos < text.size() && is_digit(text[pos])) {
      if (__builtin_mul_overflow(count, int64_t{10}, &count)
          || __builtin_add_overflow(count, int64_t{text[pos] - '0'}, &count))
        count_overflow = true;
      ++pos;
    }
    if (pos == digits_begin) {
      if (text[pos] == '+')
        return fail(why, "a sign is not allowed in a duration; write e.g. \"10s\"");
      if (!is_alpha(text[pos]))
        return fail(why, std::string{"unexpected character '"} + text[pos] + "' in duration; " + hint);
      return fail(why, std::string{"expected a number at \""} + std::string{text.substr(pos)} + "\"; " + hint);
    }
    std::string_view number = text.substr(digits_begin, pos - digits_begin);
    if (pos < text.size() && (text[pos] == '.' || text[pos] == ','))
      return fail(why, "fractional values are not allowed in a duration; use a smaller unit (e.g. \"1500ms\" "
                       "instead of \"1.5s\")");
    // The unit.
    size_t unit_begin = pos;
    while (pos < text.size() && is_alpha(text[pos]))
      ++pos;
    std::string_view name = text.substr(unit_begin, pos - unit_begin);
    if (name.empty()) {
      if (pos == text.size())
        return fail(why, "missing unit after " + std::string{number} + "; " + hint);
      return fail(why, std::string{"unexpected character '"} + text[pos] + "' in duration; " + hint);
    }
    size_t index = 0;
    while (index < units.size() && units[index].name != name)
      ++index;
    if (index == units.size())
      return fail(why, "unknown unit \"" + std::string{name} + "\"; " + hint);
    if (index < next_unit)
      return fail(why, "units must appear from largest to smallest (h, m, s, ms), each at most once; \""
                         + std::string{name} + "\" is out of place");
    next_unit = index + 1;
    int64_t part = 0;
    if (count_overflow || __builtin_mul_overflow(count, units[index].millis, &part)
        || __builtin_add_overflow(total, part, &total))
      return fail(why, "duration too large (at most " + std::to_string(std::numeric_limits<int64_t>::max()) + "ms)");
  }
  return std::chrono::milliseconds{total};
}

std::string format_duration(std::chrono::milliseconds d) {
  int64_t value = d.count();
  std::string out;
  // Work in unsigned so that the most negative value can be negated.
  uint64_t rest = static_cast<uint64_t>(value);
  if (value < 0) {
    out = "-";
    rest = 0 - rest;
  }
  if (rest == 0)
    return "0s";
  if (rest % 1000 != 0)
    return out + std::to_string(rest) + "ms";
  for (const auto& u : units) {
    auto size = static_cast<uint64_t>(u.millis);
    if (rest >= size) {
      out += std::to_string(rest / size);
      out += u.name;
      rest %= size;
    }
  }
  return out;
}

} // namespace nodecoord::config
