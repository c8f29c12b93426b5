// libFuzzer target: the TOML configuration loader (config::load_string, config/config.hpp) on
// arbitrary text, and the duration parser it uses (config::parse_duration).
//
// Checks: a valid file gives a configuration inside every range and rule of
// docs/configuration.md; every error has a message and, for a syntax error, a position inside
// the text; loading is deterministic; a parsed duration formats and parses back to itself.
#include "config/config.hpp"
#include "config/duration.hpp"
#include "fuzz/check.hpp"
#include "fuzz/known_issue.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace nodecoord::config;

namespace {

using nodecoord::fuzz::check;
using nodecoord::fuzz::fail;

constexpr duration max_duration = std::chrono::hours{24 * 365};

void check_duration(duration d, const char* key) {
  check(d.count() > 0 && d <= max_duration, "a duration out of range was accepted", key);
}

void check_valid(const daemon_config& c) {
  auto& s = c.server;
  check(!s.listen.host.empty(), "server.listen without a host");
  check(s.max_connections >= 1, "server.max_connections < 1");
  check(s.max_frame_bytes >= 1024, "server.max_frame_bytes < 1024");
  check(s.max_outbound_bytes >= 1024 && s.max_outbound_bytes >= s.max_frame_bytes, "server.max_outbound_bytes");
  check_duration(s.hello_timeout, "server.hello_timeout");
  check_duration(s.heartbeat_interval, "server.heartbeat_interval");
  check_duration(s.idle_timeout, "server.idle_timeout");
  check(s.idle_timeout > s.heartbeat_interval, "server.idle_timeout <= heartbeat_interval");
  check(s.max_protocol_errors >= 1, "server.max_protocol_errors < 1");
  check_duration(s.shutdown_timeout, "server.shutdown_timeout");
  auto& st = c.storage;
  check(st.url.rfind("sqlite://", 0) == 0 || st.url == "sqlite::memory:" || st.url.rfind("postgresql://", 0) == 0
          || st.url.rfind("postgres://", 0) == 0,
        "storage.url with another scheme", st.url);
  check(st.batch_max >= 1, "storage.batch_max < 1");
  check_duration(st.connect_timeout, "storage.connect_timeout");
  check_duration(st.reconnect_initial, "storage.reconnect_initial");
  check_duration(st.reconnect_max, "storage.reconnect_max");
  check(st.reconnect_initial <= st.reconnect_max, "storage.reconnect_initial > reconnect_max");
  auto& b = c.backfill;
  check_duration(b.reconcile_interval, "backfill.reconcile_interval");
  check_duration(b.request_timeout, "backfill.request_timeout");
  check(b.batch_size >= 1 && b.max_failures >= 1 && b.reconnect_rate >= 1 && b.max_inflight_per_node >= 1,
        "a [backfill] count < 1");
  check(!c.admin.listen.host.empty(), "admin.listen without a host");
  // Addresses print back in the form the file uses and load again.
  for (auto* e : {&s.listen, &c.admin.listen}) {
    auto text = "[server]\nlisten = \"" + e->to_string() + "\"\n";
    auto again = load_string(text, "again.toml");
    check(again.ok(), "an accepted address does not load again", text,
          again.errors.empty() ? "" : again.errors[0].to_string());
    check(again.config.server.listen.host == e->host && again.config.server.listen.port == e->port,
          "an accepted address loads again as another", text);
  }
}

void check_errors(const load_result& r, std::string_view text) {
  // Lines of the text (a position may point just past the last one).
  uint32_t lines = 1;
  for (char ch : text)
    lines += ch == '\n';
  for (auto& e : r.errors) {
    check(!e.message.empty(), "an error without a message", e.to_string());
    check(e.file == "fuzz.toml", "an error names another file", e.to_string());
    check(e.line <= lines + 1, "an error points past the end of the text", e.to_string());
    check(!e.to_string().empty(), "to_string() is empty");
  }
}

/// Debian 12's toml++ 3.3.0 reaches TOML_UNREACHABLE (__builtin_unreachable: undefined
/// behaviour) in impl::is_non_ascii_horizontal_whitespace() for a code point of U+00A1-U+0499,
/// U+2D4E-U+3147 or U+FB56-U+FEFE where it looks for whitespace (upstream
/// marzer/tomlplusplus#190 and #295, fixed by #305, not in 3.3.0). Third-party: the harness
/// skips such text so that the search goes on (NODECOORD_FUZZ_STRICT=1: abort).
bool has_toml_unreachable_code_point(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    char32_t c = 0;
    size_t n = 1;
    if (b < 0x80) {
      c = b;
    } else if ((b & 0xE0) == 0xC0) {
      c = b & 0x1F;
      n = 2;
    } else if ((b & 0xF0) == 0xE0) {
      c = b & 0x0F;
      n = 3;
    } else if ((b & 0xF8) == 0xF0) {
      c = b & 0x07;
      n = 4;
    }
    for (size_t k = 1; k < n && i + k < s.size(); ++k)
      c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += n;
    if ((c >= 0xA1 && c <= 0x499) || (c >= 0x2D4E && c <= 0x3147 && c != 0x3000) || (c >= 0xFB56 && c <= 0xFEFE))
      return true;
  }
  return false;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (has_toml_unreachable_code_point(text)) {
    nodecoord::fuzz::known_issue("toml++ 3.3.0 TOML_UNREACHABLE in is_non_ascii_horizontal_whitespace");
    return 0;
  }
  auto r = load_string(text, "fuzz.toml");
  check_errors(r, text);
  if (r.ok())
    check_valid(r.config);
  // Deterministic: the same text, the same errors.
  auto r2 = load_string(text, "fuzz.toml");
  check(r.errors.size() == r2.errors.size(), "loading twice gives different errors");
  for (size_t i = 0; i < r.errors.size(); ++i)
    check(r.errors[i].to_string() == r2.errors[i].to_string(), "loading twice gives different errors");

  // The duration grammar on its own (short inputs only: it is a small language).
  if (size <= 64) {
    std::string why;
    auto d = parse_duration(text, &why);
    if (d) {
      check(d->count() >= 0, "a negative duration parsed", text);
      auto shown = format_duration(*d);
      auto back = parse_duration(shown);
      check(back && *back == *d, "format_duration does not parse back", text, shown);
    } else {
      check(!why.empty(), "a refused duration without a reason", text);
    }
  }
  return 0;
}
