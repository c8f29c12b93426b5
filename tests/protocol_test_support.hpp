#pragma once

// Shared by the protocol_test sources: sample ids, decode/refuse checks, round-trip comparisons,
// line-splitter helpers, the base frames and the bad-value tables of every field.

#include "config/defaults.hpp"
#include "protocol/ack_gate.hpp"
#include "protocol/codec.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace p = nodecoord::protocol;
using json = nlohmann::json;
using namespace std::literals;

namespace protocol_test {

inline const std::string A1 = "0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e";
inline const std::string A2 = "7d3c2e1a-5b4f-4c6e-9a8b-1f2e3d4c5b6a";
inline const std::string R1 = "c0ffee00-1234-4abc-8def-0123456789ab";
inline const std::string N1 = "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";

/// The line with control and non-ASCII bytes escaped, for failure messages.
inline std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  return out.size() > 300 ? out.substr(0, 300) + "..." : out;
}

template <class T>
T decode_as(std::string_view line) {
  auto r = p::decode(line);
  if (auto* e = std::get_if<p::decode_error>(&r))
    BOOST_FAIL("decode refused " << printable(line) << ": " << e->code << " / " << e->message << " / ref=" << e->ref);
  auto& m = std::get<p::node_message>(r);
  BOOST_REQUIRE_MESSAGE(std::holds_alternative<T>(m),
                        "decoded " << printable(line) << " as the wrong type: " << p::type_of(m));
  return std::get<T>(m);
}

template <class T>
T decode_json(const json& j) {
  return decode_as<T>(j.dump());
}

inline p::decode_error decode_fails(std::string_view line) {
  auto r = p::decode(line);
  if (auto* m = std::get_if<p::node_message>(&r))
    BOOST_FAIL("decode accepted " << printable(line) << " as " << p::type_of(*m));
  return std::get<p::decode_error>(r);
}

/// The frame is refused with exactly this code, ref and message.
inline void check_refused(std::string_view line, const std::string& code, const std::string& ref,
                          const std::string& message) {
  BOOST_TEST_CONTEXT("frame: " << printable(line)) {
    auto r = p::decode(line);
    if (auto* m = std::get_if<p::node_message>(&r)) {
      BOOST_ERROR("accepted as " << p::type_of(*m) << ", expected " << code << " '" << message << "'");
      return;
    }
    auto& e = std::get<p::decode_error>(r);
    BOOST_TEST(e.code == code);
    BOOST_TEST(e.ref == ref);
    BOOST_TEST(e.message == message);
  }
}

inline void check_bad_frame(const json& j, const std::string& ref, const std::string& message) {
  check_refused(j.dump(), p::code::bad_frame, ref, message);
}

inline void check_accepted(std::string_view line) {
  BOOST_TEST_CONTEXT("frame: " << printable(line)) {
    auto r = p::decode(line);
    if (auto* e = std::get_if<p::decode_error>(&r))
      BOOST_ERROR("refused: " << e->code << " / " << e->message);
  }
}

// ---- comparisons for round trips ----

inline void check_same(const p::hello& a, const p::hello& b) {
  BOOST_TEST(a.protocol == b.protocol);
  BOOST_TEST(a.node == b.node);
  BOOST_TEST(a.key == b.key);
  BOOST_TEST(a.agent == b.agent);
  BOOST_TEST(a.capabilities == b.capabilities);
}

inline void check_same(const p::attempt& a, const p::attempt& b) {
  BOOST_TEST(a.attempt_id == b.attempt_id);
  BOOST_TEST(a.task_id == b.task_id);
  BOOST_TEST(a.state == b.state);
  BOOST_TEST(a.started_at == b.started_at);
  BOOST_TEST(a.finished_at == b.finished_at);
  BOOST_TEST(a.meta == b.meta);
}

inline void check_same(const p::logs& a, const p::logs& b) {
  BOOST_TEST(a.attempt_id == b.attempt_id);
  BOOST_REQUIRE_EQUAL(a.entries.size(), b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i) {
    BOOST_TEST_CONTEXT("entry " << i) {
      BOOST_TEST(a.entries[i].seq == b.entries[i].seq);
      BOOST_TEST(a.entries[i].ts == b.entries[i].ts);
      BOOST_TEST(a.entries[i].stream == b.entries[i].stream);
      BOOST_TEST(a.entries[i].line == b.entries[i].line);
    }
  }
}

inline void check_same(const p::backfill_response& a, const p::backfill_response& b) {
  BOOST_TEST(a.request_id == b.request_id);
  BOOST_REQUIRE_EQUAL(a.results.size(), b.results.size());
  for (size_t i = 0; i < a.results.size(); ++i) {
    BOOST_TEST_CONTEXT("result " << i) {
      BOOST_TEST(a.results[i].attempt_id == b.results[i].attempt_id);
      BOOST_TEST(a.results[i].ok == b.results[i].ok);
      BOOST_TEST(a.results[i].log_count == b.results[i].log_count);
      BOOST_TEST(a.results[i].error == b.results[i].error);
    }
  }
}

// ---- line splitter helpers ----

struct split_run {
  std::vector<std::string> lines;
  p::line_splitter::status last = p::line_splitter::status::ok;
};

/// Feeds `chunks` in order, stopping at the first too_large (the caller would close).
inline split_run feed_all(p::line_splitter& s, const std::vector<std::string>& chunks) {
  split_run r;
  for (auto& c : chunks) {
    r.last = s.feed(c, [&](std::string_view line) { r.lines.emplace_back(line); });
    if (r.last == p::line_splitter::status::too_large)
      break;
  }
  return r;
}

inline split_run feed_all(size_t max, const std::vector<std::string>& chunks) {
  p::line_splitter s(max);
  return feed_all(s, chunks);
}

inline constexpr auto ok = p::line_splitter::status::ok;
inline constexpr auto too_large = p::line_splitter::status::too_large;

// ---- base frames: every field present and valid ----

inline json base_hello() {
  return {{"type", "hello"},           {"protocol", 1},
          {"node", "build-07"},        {"key", "nck_k1a2_s3cr3t"},
          {"agent", "test-agent/1.0"}, {"capabilities", {{"slots", 4}, {"gpu", true}}}};
}

inline json base_heartbeat() { return {{"type", "heartbeat"}, {"seq", 7}}; }

inline json base_attempt() {
  return {{"type", "attempt"},
          {"attempt_id", A1},
          {"task_id", "task-42"},
          {"state", "succeeded"},
          {"started_at", "2026-01-09T12:00:00.000Z"},
          {"finished_at", "2026-01-09T12:05:00.250Z"},
          {"meta", {{"exit_code", 0}}}};
}

inline json base_logs() {
  return {{"type", "logs"},
          {"attempt_id", A1},
          {"entries",
           {{{"seq", 0}, {"ts", "2026-01-09T12:00:01.000Z"}, {"stream", "stdout"}, {"line", "hello"}},
            {{"seq", 1}, {"ts", "2026-01-09T12:00:02.000Z"}, {"stream", "stderr"}, {"line", "warn"}}}}};
}

inline json base_backfill_response() {
  return {{"type", "backfill_response"},
          {"request_id", R1},
          {"results",
           {{{"attempt_id", A1}, {"ok", true}, {"log_count", 12}, {"error", "none"}},
            {{"attempt_id", A2}, {"ok", false}, {"error", "attempt not found"}}}}};
}

inline json base_bye() { return {{"type", "bye"}, {"reason", "agent stopping"}}; }
inline json base_check_result() {
  return {{"type", "check_result"}, {"request_id", "7d444840-9dc0-11d1-b245-5ffdce74fad2"}, {"status", "exited"},
          {"exit_code", 0},         {"output", "Filesystem Size\n/dev/sda1 100G\n"},        {"truncated", false}};
}

// ---- field tables ----

enum class presence { required, optional, value_only };

struct bad_value {
  json value;
  std::string what; // the message after "<field>: "
};

struct field_spec {
  std::string pointer; // JSON pointer into the base frame
  std::string name;    // as the message names it, e.g. "logs.entries[0].seq"
  presence kind;
  std::vector<bad_value> bad;
  std::string missing_what = "missing";
};

inline const json too_big = json(uint64_t(1) << 63);                     // 2^63: one past int64
inline const json uint_max = json(std::numeric_limits<uint64_t>::max()); // 2^64 - 1

inline std::vector<bad_value> integer_bad(bool non_negative) {
  std::vector<bad_value> v{{"1", "expected an integer"},
                           {1.5, "expected an integer"},
                           {1.0, "expected an integer"},
                           {true, "expected an integer"},
                           {json::array(), "expected an integer"},
                           {json::object(), "expected an integer"},
                           {too_big, "out of range"},
                           {uint_max, "out of range"}};
  if (non_negative) {
    v.push_back({-1, "must be at least 0"});
    v.push_back({std::numeric_limits<int64_t>::min(), "must be at least 0"});
  }
  return v;
}

inline const std::string nul_refused = "contains \\u0000, which the database cannot store";

inline std::vector<bad_value> string_bad(bool non_empty) {
  std::vector<bad_value> v{{std::string("a\0b", 3), nul_refused},
                           {std::string(1, '\0'), nul_refused},
                           {5, "expected a string"},
                           {true, "expected a string"},
                           {json::array({"a"}), "expected a string"},
                           {json::object({{"a", "b"}}), "expected a string"}};
  if (non_empty)
    v.push_back({"", "must not be empty"});
  return v;
}

inline std::vector<bad_value> uuid_bad() {
  auto v = string_bad(true);
  v.push_back({"not-a-uuid", "expected a UUID"});
  v.push_back({"0b9f3c1e6a2d4f5b8c7e1d2a3b4c5d6e", "expected a UUID"});     // no dashes
  v.push_back({"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6g", "expected a UUID"}); // 'g'
  v.push_back({"0b9f3c1e-6a2d-4f5b-8c7e1-d2a3b4c5d6e", "expected a UUID"}); // dash moved
  v.push_back({" b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e", "expected a UUID"}); // space
  v.push_back({"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6", "expected a UUID"});  // 35 chars
  v.push_back({"{0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e}", "longer than 36 bytes"});
  v.push_back({"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e0", "longer than 36 bytes"});
  return v;
}

/// `levels` arrays nested in each other: [[[...]]].
inline json nested(size_t levels) {
  json j = json::array();
  for (size_t i = 1; i < levels; ++i)
    j = json::array({std::move(j)});
  return j;
}

/// A counter (seq, log_count): 0 to 2^53.
inline std::vector<bad_value> counter_bad() {
  auto v = integer_bad(true);
  v.push_back({(int64_t{1} << 53) + 1, "must be at most 9007199254740992"});
  v.push_back({std::numeric_limits<int64_t>::max(), "must be at most 9007199254740992"});
  return v;
}

inline std::vector<bad_value> object_bad() {
  return {{"{}", "expected an object"},
          {5, "expected an object"},
          {true, "expected an object"},
          {json::array({1, 2}), "expected an object"}};
}

inline std::vector<bad_value> time_bad() {
  const std::string rfc = "expected an RFC 3339 time in years 0001-9999 (UTC) such as 2026-01-09T12:00:00.000Z";
  auto v = string_bad(false);
  for (auto* t : {"yesterday", "2026-01-09", "2026-01-09T12:00:00", "2026-01-09T12:00Z", "2026-01-09T12:00:00.Z",
                  "2026-01-09T12:00:00ZZ", "2026-01-09T12:00:00Z ", "2026-02-30T12:00:00Z", "2026-13-01T12:00:00Z",
                  "2026-01-09T24:00:00Z", "2026-01-09T12:60:00Z", "2026-01-09T12:00:61Z", "2026-01-09X12:00:00Z",
                  "2026/01/09T12:00:00Z", "2026-01-09T12:00:00+1:00", "2026-01-09T12:00:00+01:0", "1736424000",
                  // Outside years 0001-9999 once in UTC: PostgreSQL refuses what SQLite would store.
                  "0000-01-01T00:00:00Z", "0000-12-31T23:59:59Z", "0001-01-01T00:30:00+01:00",
                  "9999-12-31T23:30:00-01:00", "10000-01-01T00:00:00Z"})
    v.push_back({t, rfc});
  v.push_back({std::string("2026-01-09T12:00:00Z\0", 21), "contains \\u0000, which the database cannot store"});
  v.push_back({json(1736424000), "expected a string"});
  v.push_back({"2026-01-09T12:00:00." + std::string(60, '0') + "Z", "longer than 64 bytes"});
  return v;
}

/// Applies every field spec to `base` and checks the exact refusal (or acceptance).
inline void check_fields(const json& base, const std::string& type, const std::vector<field_spec>& specs) {
  BOOST_TEST_CONTEXT("base frame " << base.dump()) { check_accepted(base.dump()); }
  for (auto& spec : specs) {
    BOOST_TEST_CONTEXT("field " << spec.name) {
      json::json_pointer ptr(spec.pointer);
      if (spec.kind != presence::value_only) {
        json removed = base;
        removed[ptr.parent_pointer()].erase(ptr.back());
        json nulled = base;
        nulled[ptr] = nullptr;
        if (spec.kind == presence::required) {
          check_bad_frame(removed, type, spec.name + ": " + spec.missing_what);
          check_bad_frame(nulled, type, spec.name + ": " + spec.missing_what);
        } else {
          check_accepted(removed.dump());
          check_accepted(nulled.dump());
        }
      }
      for (auto& b : spec.bad) {
        json j = base;
        j[ptr] = b.value;
        check_bad_frame(j, type, spec.name + ": " + b.what);
      }
    }
  }
}

inline std::vector<bad_value> with(std::vector<bad_value> v, std::vector<bad_value> more) {
  v.insert(v.end(), more.begin(), more.end());
  return v;
}

} // namespace protocol_test
