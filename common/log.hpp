#pragma once
// One line per event with key=value fields (DESIGN §6), to stderr (journald under systemd).
//   log::info("storage ready", {{"backend", "sqlite"}, {"version", 1}});
// prints  2026-11-23T16:28:28.123Z info storage ready backend=sqlite version=1
// or, with format json, {"ts":"...","level":"info","msg":"storage ready","backend":"sqlite",...}
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace nodecoord::log {

enum class level { trace, debug, info, warn, error, off };

struct field {
  std::string_view key;
  std::string value;
  bool quoted; // strings are quoted in JSON and when they contain spaces in text

  field(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
  field(std::string_view k, const char* v) : key(k), value(v ? v : ""), quoted(true) {}
  field(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
  field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  template <std::integral T>
  field(std::string_view k, T v) : key(k), value(std::to_string(v)), quoted(false) {}
  field(std::string_view k, double v);
};

using fields = std::initializer_list<field>;

/// Sets up the stderr logger. `json` switches to one JSON object per line. Under journald
/// (JOURNAL_STREAM matches stderr), text lines carry a <N> priority prefix and no timestamp.
void init(level lvl, bool json);
void set_level(level lvl);
level current_level();
bool enabled(level lvl);

/// Parses "trace|debug|info|warn|error"; returns false if unknown.
bool parse_level(std::string_view s, level& out);

void write(level lvl, std::string_view msg, fields fs);

inline void trace(std::string_view m, fields fs = {}) {
  if (enabled(level::trace))
    write(level::trace, m, fs);
}
inline void debug(std::string_view m, fields fs = {}) {
  if (enabled(level::debug))
    write(level::debug, m, fs);
}
inline void info(std::string_view m, fields fs = {}) {
  if (enabled(level::info))
    write(level::info, m, fs);
}
inline void warn(std::string_view m, fields fs = {}) {
  if (enabled(level::warn))
    write(level::warn, m, fs);
}
inline void error(std::string_view m, fields fs = {}) {
  if (enabled(level::error))
    write(level::error, m, fs);
}

/// Formats one line without writing it (used by write(); exposed for tests).
std::string format_line(level lvl, std::string_view msg, fields fs, bool json, bool journal,
                        std::string_view timestamp);

} // namespace nodecoord::log
