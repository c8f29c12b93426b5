#pragma once
// Durations in configuration files are strings: "250ms", "10s", "5m", "1h", or sums such as "1m30s".
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace nodecoord::config {

/// Parses a duration string. Returns nullopt and sets `why` on malformed input (including negative
/// values, missing units, and overflow).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text, std::string* why = nullptr);

/// The shortest exact rendering: 1500ms -> "1500ms", 60000ms -> "1m", 90000ms -> "1m30s".
std::string format_duration(std::chrono::milliseconds d);

} // namespace nodecoord::config
