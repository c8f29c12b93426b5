// libFuzzer target: the TOML configuration loader (config::load_string, config/config.hpp) on
// arbitrary text, and the duration parser it uses (config::parse_duration).
//
// Checks: a valid file gives a configuration inside every range and rule of
// docs/configuration.md; every error has a message and, for a syntax error, a position inside
// the text; loading is deterministic; a parsed duration formats and parses back to itself.
#include "config/config.hpp"
#include "config/duration.hpp"
#include "fuzz/check.hpp"

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

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // Finding 7 (toml++ 3.3.0's undefined whitespace test) is guarded by config/toml_guard.hpp now:
  // no skip, so an unguarded path aborts here as UBSan's report.
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
