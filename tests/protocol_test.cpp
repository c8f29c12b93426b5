#define BOOST_TEST_MODULE protocol_test
#include <boost/test/unit_test.hpp>

// Wire protocol v1 codec (protocol/codec.hpp; DESIGN §2; docs/protocol.md): line splitting,
// decoding and validation of every node -> coordinator frame, encoding of every frame in both
// directions. Every refusal is checked for its exact code, ref and message, because agents and
// operators see them.

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

namespace {

const std::string A1 = "0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e";
const std::string A2 = "7d3c2e1a-5b4f-4c6e-9a8b-1f2e3d4c5b6a";
const std::string R1 = "c0ffee00-1234-4abc-8def-0123456789ab";
const std::string N1 = "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b";

/// The line with control and non-ASCII bytes escaped, for failure messages.
std::string printable(std::string_view s) {
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

p::decode_error decode_fails(std::string_view line) {
  auto r = p::decode(line);
  if (auto* m = std::get_if<p::node_message>(&r))
    BOOST_FAIL("decode accepted " << printable(line) << " as " << p::type_of(*m));
  return std::get<p::decode_error>(r);
}

/// The frame is refused with exactly this code, ref and message.
void check_refused(std::string_view line, const std::string& code, const std::string& ref, const std::string& message) {
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

void check_bad_frame(const json& j, const std::string& ref, const std::string& message) {
  check_refused(j.dump(), p::code::bad_frame, ref, message);
}

void check_accepted(std::string_view line) {
  BOOST_TEST_CONTEXT("frame: " << printable(line)) {
    auto r = p::decode(line);
    if (auto* e = std::get_if<p::decode_error>(&r))
      BOOST_ERROR("refused: " << e->code << " / " << e->message);
  }
}

// ---- comparisons for round trips ----

void check_same(const p::hello& a, const p::hello& b) {
  BOOST_TEST(a.protocol == b.protocol);
  BOOST_TEST(a.node == b.node);
  BOOST_TEST(a.key == b.key);
  BOOST_TEST(a.agent == b.agent);
  BOOST_TEST(a.capabilities == b.capabilities);
}

void check_same(const p::attempt& a, const p::attempt& b) {
  BOOST_TEST(a.attempt_id == b.attempt_id);
  BOOST_TEST(a.task_id == b.task_id);
  BOOST_TEST(a.state == b.state);
  BOOST_TEST(a.started_at == b.started_at);
  BOOST_TEST(a.finished_at == b.finished_at);
  BOOST_TEST(a.meta == b.meta);
}

void check_same(const p::logs& a, const p::logs& b) {
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

void check_same(const p::backfill_response& a, const p::backfill_response& b) {
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
split_run feed_all(p::line_splitter& s, const std::vector<std::string>& chunks) {
  split_run r;
  for (auto& c : chunks) {
    r.last = s.feed(c, [&](std::string_view line) { r.lines.emplace_back(line); });
    if (r.last == p::line_splitter::status::too_large)
      break;
  }
  return r;
}

split_run feed_all(size_t max, const std::vector<std::string>& chunks) {
  p::line_splitter s(max);
  return feed_all(s, chunks);
}

constexpr auto ok = p::line_splitter::status::ok;
constexpr auto too_large = p::line_splitter::status::too_large;

// ---- base frames: every field present and valid ----

json base_hello() {
  return {{"type", "hello"},           {"protocol", 1},
          {"node", "build-07"},        {"key", "nck_k1a2_s3cr3t"},
          {"agent", "test-agent/1.0"}, {"capabilities", {{"slots", 4}, {"gpu", true}}}};
}

json base_heartbeat() { return {{"type", "heartbeat"}, {"seq", 7}}; }

json base_attempt() {
  return {{"type", "attempt"},
          {"attempt_id", A1},
          {"task_id", "task-42"},
          {"state", "succeeded"},
          {"started_at", "2026-01-09T12:00:00.000Z"},
          {"finished_at", "2026-01-09T12:05:00.250Z"},
          {"meta", {{"exit_code", 0}}}};
}

json base_logs() {
  return {{"type", "logs"},
          {"attempt_id", A1},
          {"entries",
           {{{"seq", 0}, {"ts", "2026-01-09T12:00:01.000Z"}, {"stream", "stdout"}, {"line", "hello"}},
            {{"seq", 1}, {"ts", "2026-01-09T12:00:02.000Z"}, {"stream", "stderr"}, {"line", "warn"}}}}};
}

json base_backfill_response() {
  return {{"type", "backfill_response"},
          {"request_id", R1},
          {"results",
           {{{"attempt_id", A1}, {"ok", true}, {"log_count", 12}, {"error", "none"}},
            {{"attempt_id", A2}, {"ok", false}, {"error", "attempt not found"}}}}};
}

json base_bye() { return {{"type", "bye"}, {"reason", "agent stopping"}}; }

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

const json too_big = json(uint64_t(1) << 63);                     // 2^63: one past int64
const json uint_max = json(std::numeric_limits<uint64_t>::max()); // 2^64 - 1

std::vector<bad_value> integer_bad(bool non_negative) {
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

const std::string nul_refused = "contains \\u0000, which the database cannot store";

std::vector<bad_value> string_bad(bool non_empty) {
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

std::vector<bad_value> uuid_bad() {
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
json nested(size_t levels) {
  json j = json::array();
  for (size_t i = 1; i < levels; ++i)
    j = json::array({std::move(j)});
  return j;
}

/// A counter (seq, log_count): 0 to 2^53.
std::vector<bad_value> counter_bad() {
  auto v = integer_bad(true);
  v.push_back({(int64_t{1} << 53) + 1, "must be at most 9007199254740992"});
  v.push_back({std::numeric_limits<int64_t>::max(), "must be at most 9007199254740992"});
  return v;
}

std::vector<bad_value> object_bad() {
  return {{"{}", "expected an object"},
          {5, "expected an object"},
          {true, "expected an object"},
          {json::array({1, 2}), "expected an object"}};
}

std::vector<bad_value> time_bad() {
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
void check_fields(const json& base, const std::string& type, const std::vector<field_spec>& specs) {
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

std::vector<bad_value> with(std::vector<bad_value> v, std::vector<bad_value> more) {
  v.insert(v.end(), more.begin(), more.end());
  return v;
}

} // namespace

// =====================================================================================
BOOST_AUTO_TEST_SUITE(line_splitter)

BOOST_AUTO_TEST_CASE(frame_split_byte_by_byte) {
  const std::string frame = R"({"type":"heartbeat","seq":1})";
  p::line_splitter s(1024);
  std::vector<std::string> lines;
  auto text = frame + "\n";
  for (size_t i = 0; i < text.size(); ++i) {
    auto st = s.feed(text.substr(i, 1), [&](std::string_view l) { lines.emplace_back(l); });
    BOOST_TEST((st == ok));
    if (i + 1 < text.size()) {
      BOOST_TEST(lines.empty());
      BOOST_TEST(s.buffered() == i + 1);
    }
  }
  BOOST_TEST(lines == std::vector<std::string>{frame}, boost::test_tools::per_element());
  BOOST_TEST(s.buffered() == 0u);
  BOOST_TEST(decode_as<p::heartbeat>(lines.at(0)).seq == 1);
}

BOOST_AUTO_TEST_CASE(several_frames_in_one_read_and_a_partial_tail) {
  p::line_splitter s(1024);
  auto r = feed_all(s, {"a\nbb\nccc\ndd"});
  BOOST_TEST((r.last == ok));
  BOOST_TEST(r.lines == (std::vector<std::string>{"a", "bb", "ccc"}), boost::test_tools::per_element());
  BOOST_TEST(s.buffered() == 2u);
  auto r2 = feed_all(s, {"d\ne", "e\n"});
  BOOST_TEST(r2.lines == (std::vector<std::string>{"ddd", "ee"}), boost::test_tools::per_element());
  BOOST_TEST(s.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(empty_read_changes_nothing) {
  p::line_splitter s(16);
  auto r = feed_all(s, {"ab", "", "c\n", ""});
  BOOST_TEST((r.last == ok));
  BOOST_TEST(r.lines == (std::vector<std::string>{"abc"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(crlf_is_tolerated) {
  auto r = feed_all(1024, {"a\r\nb\r\n", "c\r", "\n", "d", "\r", "\n"});
  BOOST_TEST((r.last == ok));
  BOOST_TEST(r.lines == (std::vector<std::string>{"a", "b", "c", "d"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(only_one_trailing_cr_is_dropped_and_inner_cr_is_kept) {
  auto r = feed_all(1024, {"a\r\r\nb\rc\n\rd\n"});
  BOOST_TEST(r.lines == (std::vector<std::string>{"a\r", "b\rc", "\rd"}), boost::test_tools::per_element());
  // JSON treats \r as whitespace, so a frame with an extra \r still decodes.
  BOOST_TEST(decode_as<p::heartbeat>("{\"type\":\"heartbeat\",\"seq\":3}\r").seq == 3);
}

BOOST_AUTO_TEST_CASE(blank_lines_are_skipped) {
  p::line_splitter s(1024);
  auto r = feed_all(s, {"\n\n\r\n", "a\n\n", "\r", "\n", "\n", "b\n\r\n"});
  BOOST_TEST((r.last == ok));
  BOOST_TEST(r.lines == (std::vector<std::string>{"a", "b"}), boost::test_tools::per_element());
  BOOST_TEST(s.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(exactly_max_in_one_piece_is_accepted) {
  const std::string line(16, 'x');
  auto r = feed_all(16, {line + "\n"});
  BOOST_TEST((r.last == ok));
  BOOST_TEST(r.lines == std::vector<std::string>{line}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(max_plus_one_in_one_piece_is_refused) {
  p::line_splitter s(16);
  auto r = feed_all(s, {std::string(17, 'x') + "\n"});
  BOOST_TEST((r.last == too_large));
  BOOST_TEST(r.lines.empty());
  BOOST_TEST(s.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(exactly_max_with_crlf_in_one_piece_is_accepted) {
  const std::string line(16, 'x');
  auto r = feed_all(16, {line + "\r\n"});
  BOOST_TEST((r.last == ok));
  BOOST_TEST(r.lines == std::vector<std::string>{line}, boost::test_tools::per_element());
  auto r2 = feed_all(16, {std::string(17, 'x') + "\r\n"});
  BOOST_TEST((r2.last == too_large));
  BOOST_TEST(r2.lines.empty());
}

BOOST_AUTO_TEST_CASE(exactly_max_growing_across_reads_is_accepted) {
  p::line_splitter s(16);
  auto r = feed_all(s, {std::string(10, 'x'), std::string(6, 'y')});
  BOOST_TEST((r.last == ok));
  BOOST_TEST(s.buffered() == 16u);
  auto r2 = feed_all(s, {"\n"});
  BOOST_TEST((r2.last == ok));
  BOOST_TEST(r2.lines == std::vector<std::string>{std::string(10, 'x') + std::string(6, 'y')},
             boost::test_tools::per_element());
  BOOST_TEST(s.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(max_plus_one_growing_across_reads_is_refused_before_the_newline) {
  p::line_splitter s(16);
  auto r = feed_all(s, {std::string(10, 'x'), std::string(7, 'y')});
  BOOST_TEST((r.last == too_large));
  BOOST_TEST(r.lines.empty());
  BOOST_TEST(s.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(max_plus_one_byte_by_byte_is_refused_at_the_extra_byte) {
  p::line_splitter s(16);
  for (int i = 0; i < 16; ++i)
    BOOST_TEST((s.feed("x", [](std::string_view) { BOOST_ERROR("no line expected"); }) == ok));
  BOOST_TEST(s.buffered() == 16u);
  BOOST_TEST((s.feed("x", [](std::string_view) { BOOST_ERROR("no line expected"); }) == too_large));
  BOOST_TEST(s.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(newline_in_the_same_chunk_as_the_rest) {
  {
    auto r = feed_all(16, {std::string(10, 'x'), std::string(6, 'y') + "\n"});
    BOOST_TEST((r.last == ok));
    BOOST_TEST(r.lines == std::vector<std::string>{std::string(10, 'x') + std::string(6, 'y')},
               boost::test_tools::per_element());
  }
  {
    p::line_splitter s(16);
    auto r = feed_all(s, {std::string(10, 'x'), std::string(7, 'y') + "\nnext\n"});
    BOOST_TEST((r.last == too_large));
    BOOST_TEST(r.lines.empty());
    BOOST_TEST(s.buffered() == 0u);
  }
  {
    auto r = feed_all(16, {std::string(10, 'x'), std::string(6, 'y') + "\r\n"});
    BOOST_TEST((r.last == ok));
    BOOST_TEST(r.lines.size() == 1u);
  }
}

// A 16-byte line terminated by "\r\n" is accepted when the terminator arrives in one piece; it
// must also be accepted when the read boundary falls between '\r' and '\n' ("lines may arrive
// split across reads"). The splitter counts the pending '\r' against the limit.
BOOST_AUTO_TEST_CASE(exactly_max_with_cr_and_lf_in_separate_reads_is_accepted) {
  const std::string line(16, 'x');
  {
    auto r = feed_all(16, {line + "\r", "\n"});
    BOOST_TEST((r.last == ok));
    BOOST_TEST(r.lines == std::vector<std::string>{line}, boost::test_tools::per_element());
  }
  {
    auto r = feed_all(16, {std::string(8, 'x'), std::string(8, 'x'), "\r", "\n"});
    BOOST_TEST((r.last == ok));
    BOOST_TEST(r.lines == std::vector<std::string>{line}, boost::test_tools::per_element());
  }
  {
    // ...but 16 bytes followed by '\r' and then more data is 17 bytes of line: refused.
    p::line_splitter s(16);
    auto r = feed_all(s, {line + "\r", "y\n"});
    BOOST_TEST((r.last == too_large));
    BOOST_TEST(r.lines.empty());
    BOOST_TEST(s.buffered() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(lines_before_an_oversized_one_are_delivered_first) {
  p::line_splitter s(16);
  auto r = feed_all(s, {"first\n" + std::string(17, 'x') + "\nafter\n"});
  BOOST_TEST((r.last == too_large));
  BOOST_TEST(r.lines == std::vector<std::string>{"first"}, boost::test_tools::per_element());
  BOOST_TEST(s.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(default_max_frame_bytes_is_one_mebibyte) {
  BOOST_TEST(nodecoord::defaults::max_frame_bytes == 1024u * 1024u);
  const size_t max = nodecoord::defaults::max_frame_bytes;
  auto chunks_of = [](const std::string& s, size_t n) {
    std::vector<std::string> v;
    for (size_t i = 0; i < s.size(); i += n)
      v.push_back(s.substr(i, n));
    return v;
  };
  // A real logs frame of exactly 1 MiB, in 64 KiB reads.
  json j = base_logs();
  j["entries"] = json::array({{{"seq", 0}, {"ts", "2026-01-09T12:00:01.000Z"}, {"stream", "stdout"}, {"line", ""}}});
  auto overhead = j.dump().size();
  j["entries"][0]["line"] = std::string(max - overhead, 'z');
  auto frame = j.dump();
  BOOST_REQUIRE_EQUAL(frame.size(), max);
  {
    p::line_splitter s(max);
    auto r = feed_all(s, chunks_of(frame + "\n", 64 * 1024));
    BOOST_TEST((r.last == ok));
    BOOST_REQUIRE_EQUAL(r.lines.size(), 1u);
    BOOST_TEST(decode_as<p::logs>(r.lines[0]).entries.at(0).line.size() == max - overhead);
    BOOST_TEST(s.buffered() == 0u);
  }
  {
    j["entries"][0]["line"] = std::string(max - overhead + 1, 'z');
    p::line_splitter s(max);
    auto r = feed_all(s, chunks_of(j.dump() + "\n", 64 * 1024));
    BOOST_TEST((r.last == too_large));
    BOOST_TEST(r.lines.empty());
    BOOST_TEST(s.buffered() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(encoded_frames_survive_arbitrary_read_boundaries) {
  p::logs l{A1,
            {{0, "2026-01-09T12:00:00.000Z", "stdout", "line with \n newline and \r return"},
             {1, "2026-01-09T12:00:00.001Z", "system", "ünïcödé ✓ 😀"}}};
  std::string stream = p::encode_heartbeat(1) + "\r\n" + p::encode_logs(l) + p::encode_bye("done");
  // Every chunk size from 1 to the whole stream, so every boundary is exercised.
  for (size_t n = 1; n <= stream.size(); n += (n < 40 ? 1 : 17)) {
    BOOST_TEST_CONTEXT("chunk size " << n) {
      p::line_splitter s(4096);
      std::vector<std::string> chunks;
      for (size_t i = 0; i < stream.size(); i += n)
        chunks.push_back(stream.substr(i, n));
      auto r = feed_all(s, chunks);
      BOOST_TEST((r.last == ok));
      BOOST_REQUIRE_EQUAL(r.lines.size(), 3u);
      BOOST_TEST(decode_as<p::heartbeat>(r.lines[0]).seq == 1);
      check_same(decode_as<p::logs>(r.lines[1]), l);
      BOOST_TEST(decode_as<p::bye>(r.lines[2]).reason == "done");
      BOOST_TEST(s.buffered() == 0u);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()

// =====================================================================================
BOOST_AUTO_TEST_SUITE(decode_valid)

BOOST_AUTO_TEST_CASE(hello_with_capabilities) {
  auto h = decode_as<p::hello>(
    R"({"type":"hello","protocol":1,"node":"build-07","key":"nck_k1a2_s3cr3t","agent":"nodecoord-agent/0.1.0","capabilities":{"slots":4,"gpu":true,"labels":["x","y"]}})");
  BOOST_TEST(h.protocol == 1);
  BOOST_TEST(h.node == "build-07");
  BOOST_TEST(h.key == "nck_k1a2_s3cr3t");
  BOOST_TEST(h.agent == "nodecoord-agent/0.1.0");
  BOOST_REQUIRE(!h.capabilities.empty());
  BOOST_TEST(json::parse(h.capabilities) == json({{"slots", 4}, {"gpu", true}, {"labels", {"x", "y"}}}));
}

BOOST_AUTO_TEST_CASE(hello_without_optional_fields) {
  auto h = decode_as<p::hello>(R"({"type":"hello","protocol":1,"node":"n","key":"k"})");
  BOOST_TEST(h.agent == "");
  BOOST_TEST(h.capabilities == "");
  auto h2 =
    decode_as<p::hello>(R"({"node":"n","key":"k","type":"hello","protocol":1,"agent":null,"capabilities":null})");
  BOOST_TEST(h2.agent == "");
  BOOST_TEST(h2.capabilities == "");
  auto h3 = decode_as<p::hello>(R"({"type":"hello","protocol":1,"node":"n","key":"k","capabilities":{}})");
  BOOST_TEST(h3.capabilities == "{}");
}

BOOST_AUTO_TEST_CASE(hello_with_another_protocol_decodes_and_the_session_refuses_it) {
  // unsupported_protocol is the session's answer; the codec reports the number faithfully.
  BOOST_TEST(decode_as<p::hello>(R"({"type":"hello","protocol":2,"node":"n","key":"k"})").protocol == 2);
  BOOST_TEST(decode_as<p::hello>(R"({"type":"hello","protocol":0,"node":"n","key":"k"})").protocol == 0);
  BOOST_TEST(decode_as<p::hello>(R"({"type":"hello","protocol":-9223372036854775808,"node":"n","key":"k"})").protocol
             == std::numeric_limits<int64_t>::min());
}

BOOST_AUTO_TEST_CASE(heartbeat_seq) {
  BOOST_TEST(decode_as<p::heartbeat>(R"({"type":"heartbeat","seq":0})").seq == 0);
  BOOST_TEST(decode_as<p::heartbeat>(R"({"seq":42,"type":"heartbeat"})").seq == 42);
  BOOST_TEST(decode_as<p::heartbeat>(R"({"type":"heartbeat","seq":9007199254740992})").seq
             == int64_t{1} << 53); // the largest counter (2^53)
  BOOST_TEST(decode_as<p::heartbeat>(" \t{ \"type\" : \"heartbeat\" , \"seq\" : 5 } ").seq == 5);
}

BOOST_AUTO_TEST_CASE(attempt_with_all_fields) {
  auto a = decode_as<p::attempt>(
    R"({"type":"attempt","attempt_id":"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e","task_id":"task-42","state":"succeeded","started_at":"2026-01-09T13:00:00+01:00","finished_at":"2026-01-09T12:05:00.25Z","meta":{"exit_code":0,"host":"h1"}})");
  BOOST_TEST(a.attempt_id == A1);
  BOOST_TEST(a.task_id == "task-42");
  BOOST_TEST(a.state == "succeeded");
  BOOST_TEST(a.started_at == "2026-01-09T12:00:00.000Z");
  BOOST_TEST(a.finished_at == "2026-01-09T12:05:00.250Z");
  BOOST_TEST(json::parse(a.meta) == json({{"exit_code", 0}, {"host", "h1"}}));
}

BOOST_AUTO_TEST_CASE(attempt_without_optional_fields) {
  auto a = decode_as<p::attempt>(
    R"({"type":"attempt","attempt_id":"0B9F3C1E-6A2D-4F5B-8C7E-1D2A3B4C5D6E","task_id":"t","state":"queued"})");
  // Upper case is a UUID too, and the same one: ids are kept in lower case (PostgreSQL reads
  // UUIDs back in lower case, SQLite compares text exactly).
  BOOST_TEST(a.attempt_id == "0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e");
  BOOST_TEST(a.state == "queued");
  BOOST_TEST(a.started_at == "");
  BOOST_TEST(a.finished_at == "");
  BOOST_TEST(a.meta == "");
  auto b = decode_as<p::attempt>(
    R"({"type":"attempt","attempt_id":"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e","task_id":"t","state":"running","started_at":null,"finished_at":null,"meta":null})");
  BOOST_TEST(b.started_at == "");
  BOOST_TEST(b.finished_at == "");
  BOOST_TEST(b.meta == "");
  // An empty string for an optional time counts as absent.
  auto c = decode_as<p::attempt>(
    R"({"type":"attempt","attempt_id":"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e","task_id":"t","state":"running","started_at":""})");
  BOOST_TEST(c.started_at == "");
}

BOOST_AUTO_TEST_CASE(attempt_every_state) {
  for (auto* st : {"queued", "running", "succeeded", "failed", "cancelled"}) {
    json j = base_attempt();
    j["state"] = st;
    BOOST_TEST(decode_json<p::attempt>(j).state == st);
  }
}

BOOST_AUTO_TEST_CASE(times_are_normalised_to_utc_milliseconds) {
  const std::vector<std::pair<std::string, std::string>> cases{
    {"2026-01-09T13:00:00+01:00", "2026-01-09T12:00:00.000Z"},
    {"2026-01-09T12:00:00Z", "2026-01-09T12:00:00.000Z"},
    {"2026-01-09T12:00:00.000Z", "2026-01-09T12:00:00.000Z"},
    {"2026-01-09t12:00:00.5z", "2026-01-09T12:00:00.500Z"},
    {"2026-01-09T12:00:00.123456789Z", "2026-01-09T12:00:00.123Z"},
    {"2026-01-09T12:00:00.1239Z", "2026-01-09T12:00:00.123Z"},
    {"2026-01-09T07:30:00-04:30", "2026-01-09T12:00:00.000Z"},
    {"2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000Z"},
    {"2025-12-31T23:30:00-01:00", "2026-01-01T00:30:00.000Z"},
    {"2028-02-29T12:00:00Z", "2028-02-29T12:00:00.000Z"},
    {"2026-01-09T12:00:00+00:00", "2026-01-09T12:00:00.000Z"},
    {"2026-01-09T12:00:00-00:00", "2026-01-09T12:00:00.000Z"},
    {"2026-01-09 12:00:00.5+00", "2026-01-09T12:00:00.500Z"}, // PostgreSQL's text form
    {"2026-01-09T14:00:00+0200", "2026-01-09T12:00:00.000Z"},
    {"2026-12-31T23:59:60Z", "2027-01-01T00:00:00.000Z"}, // a leap second lands on the next one
  };
  for (auto& [in, out] : cases) {
    BOOST_TEST_CONTEXT("time " << in) {
      json j = base_attempt();
      j["started_at"] = in;
      j["finished_at"] = in;
      auto a = decode_json<p::attempt>(j);
      BOOST_TEST(a.started_at == out);
      BOOST_TEST(a.finished_at == out);
      json l = base_logs();
      l["entries"][1]["ts"] = in;
      BOOST_TEST(decode_json<p::logs>(l).entries.at(1).ts == out);
    }
  }
}

BOOST_AUTO_TEST_CASE(logs_with_several_entries) {
  auto l = decode_as<p::logs>(
    R"({"type":"logs","attempt_id":"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e","entries":[)"
    R"({"seq":0,"ts":"2026-01-09T12:00:01Z","stream":"stdout","line":"building"},)"
    R"({"seq":1,"ts":"2026-01-09T13:00:02.5+01:00","stream":"stderr","line":"warning: \"x\"\n\ttab"},)"
    R"({"seq":2,"ts":"2026-01-09T12:00:03.000Z","stream":"system","line":""},)"
    R"({"seq":3,"ts":"2026-01-09T12:00:04.000Z","stream":"stdout","line":"\u00fcnic\u00f6de \u2713 \ud83d\ude00 ."}]})");
  BOOST_TEST(l.attempt_id == A1);
  BOOST_REQUIRE_EQUAL(l.entries.size(), 4u);
  BOOST_TEST(l.entries[0].seq == 0);
  BOOST_TEST(l.entries[0].ts == "2026-01-09T12:00:01.000Z");
  BOOST_TEST(l.entries[0].stream == "stdout");
  BOOST_TEST(l.entries[0].line == "building");
  BOOST_TEST(l.entries[1].seq == 1);
  BOOST_TEST(l.entries[1].ts == "2026-01-09T12:00:02.500Z");
  BOOST_TEST(l.entries[1].stream == "stderr");
  BOOST_TEST(l.entries[1].line == "warning: \"x\"\n\ttab");
  BOOST_TEST(l.entries[2].stream == "system");
  BOOST_TEST(l.entries[2].line == ""); // an empty log line is a line
  BOOST_TEST(l.entries[3].line
             == "\xc3\xbc"
                "nic\xc3\xb6"
                "de \xe2\x9c\x93 \xf0\x9f\x98\x80 ."s);
}

BOOST_AUTO_TEST_CASE(logs_with_no_entries_and_long_lines) {
  BOOST_TEST(
    decode_json<p::logs>(json{{"type", "logs"}, {"attempt_id", A1}, {"entries", json::array()}}).entries.empty());
  // A log line has no limit of its own: only max_frame_bytes bounds it.
  json j = base_logs();
  j["entries"][0]["line"] = std::string(100000, 'a');
  BOOST_TEST(decode_json<p::logs>(j).entries.at(0).line.size() == 100000u);
}

BOOST_AUTO_TEST_CASE(backfill_response_with_ok_and_failure_results) {
  auto b = decode_as<p::backfill_response>(
    R"({"type":"backfill_response","request_id":"c0ffee00-1234-4abc-8def-0123456789ab","results":[)"
    R"({"attempt_id":"0b9f3c1e-6a2d-4f5b-8c7e-1d2a3b4c5d6e","ok":true,"log_count":12},)"
    R"({"attempt_id":"7d3c2e1a-5b4f-4c6e-9a8b-1f2e3d4c5b6a","ok":false,"error":"attempt not found"},)"
    R"({"attempt_id":"5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b","ok":true,"log_count":0},)"
    R"({"attempt_id":"5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b","ok":false},)"
    R"({"attempt_id":"5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b","ok":false,"log_count":3,"error":null}]})");
  BOOST_TEST(b.request_id == R1);
  BOOST_REQUIRE_EQUAL(b.results.size(), 5u);
  BOOST_TEST(b.results[0].attempt_id == A1);
  BOOST_TEST(b.results[0].ok);
  BOOST_TEST(b.results[0].log_count == 12);
  BOOST_TEST(b.results[0].error == "");
  BOOST_TEST(b.results[1].attempt_id == A2);
  BOOST_TEST(!b.results[1].ok);
  BOOST_TEST(b.results[1].log_count == 0);
  BOOST_TEST(b.results[1].error == "attempt not found");
  BOOST_TEST(b.results[2].ok);
  BOOST_TEST(b.results[2].log_count == 0); // an attempt with no log lines
  BOOST_TEST(!b.results[3].ok);
  BOOST_TEST(b.results[3].error == "");
  BOOST_TEST(!b.results[4].ok);
  BOOST_TEST(b.results[4].log_count == 3); // allowed with a failure, and still validated
}

BOOST_AUTO_TEST_CASE(backfill_response_with_no_results) {
  BOOST_TEST(decode_json<p::backfill_response>(
               json{{"type", "backfill_response"}, {"request_id", R1}, {"results", json::array()}})
               .results.empty());
}

BOOST_AUTO_TEST_CASE(bye_with_and_without_reason) {
  BOOST_TEST(decode_as<p::bye>(R"({"type":"bye","reason":"agent upgrade"})").reason == "agent upgrade");
  BOOST_TEST(decode_as<p::bye>(R"({"type":"bye"})").reason == "");
  BOOST_TEST(decode_as<p::bye>(R"({"type":"bye","reason":null})").reason == "");
  BOOST_TEST(decode_as<p::bye>(R"({"type":"bye","reason":""})").reason == "");
}

BOOST_AUTO_TEST_CASE(unknown_fields_are_ignored) {
  BOOST_TEST(decode_as<p::heartbeat>(R"({"type":"heartbeat","seq":1,"future":{"x":[1,2]},"load":0.5})").seq == 1);
  json j = base_logs();
  j["entries"][0]["extra"] = "x";
  BOOST_TEST(decode_json<p::logs>(j).entries.size() == 2u);
  json b = base_backfill_response();
  b["results"][0]["duration_ms"] = 5;
  BOOST_TEST(decode_json<p::backfill_response>(b).results.size() == 2u);
}

BOOST_AUTO_TEST_CASE(valid_utf8_is_accepted) {
  auto b = decode_as<p::bye>("{\"type\":\"bye\",\"reason\":\"\xc3\xa9t\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80\"}");
  BOOST_TEST(b.reason == "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80");
}

BOOST_AUTO_TEST_CASE(type_of_names_every_message) {
  BOOST_TEST(p::type_of(p::node_message{p::hello{}}) == "hello"s);
  BOOST_TEST(p::type_of(p::node_message{p::heartbeat{}}) == "heartbeat"s);
  BOOST_TEST(p::type_of(p::node_message{p::attempt{}}) == "attempt"s);
  BOOST_TEST(p::type_of(p::node_message{p::logs{}}) == "logs"s);
  BOOST_TEST(p::type_of(p::node_message{p::backfill_response{}}) == "backfill_response"s);
  BOOST_TEST(p::type_of(p::node_message{p::bye{}}) == "bye"s);
  for (auto& base :
       {base_hello(), base_heartbeat(), base_attempt(), base_logs(), base_backfill_response(), base_bye()}) {
    auto r = p::decode(base.dump());
    BOOST_REQUIRE(std::holds_alternative<p::node_message>(r));
    BOOST_TEST(p::type_of(std::get<p::node_message>(r)) == base["type"].get<std::string>());
  }
}

BOOST_AUTO_TEST_SUITE_END()

// =====================================================================================
BOOST_AUTO_TEST_SUITE(decode_errors)

BOOST_AUTO_TEST_CASE(invalid_json) {
  const std::string msg = "not valid JSON (or not valid UTF-8)";
  for (auto* line : {"",
                     " ",
                     "not json",
                     "{",
                     "}",
                     R"({"type":"heartbeat","seq":1)",
                     R"({"type":"heartbeat","seq":1}})",
                     R"({"type":"heartbeat","seq":1} {})",
                     R"({"type":"heartbeat","seq":1}x)",
                     R"({"type":"heartbeat","seq":1,})",
                     R"({'type':'heartbeat','seq':1})",
                     R"({type:"heartbeat",seq:1})",
                     R"({"type":"heartbeat","seq":01})",
                     R"({"type":"heartbeat" "seq":1})",
                     R"({"type":"heartbeat","seq":NaN})",
                     R"({"type":"heartbeat","seq":Infinity})",
                     R"({"type":"heartbeat","seq":1 /* comment */})",
                     R"({"type":"heartbeat","seq":+1})",
                     R"({"type":"bye","reason":"tab	inside"})",
                     R"({"type":"bye","reason":"bad \q escape"})",
                     R"({"type":"bye","reason":"\u12"})"})
    check_refused(line, p::code::bad_frame, "", msg);
  // A raw control character inside a string must be escaped.
  check_refused("{\"type\":\"bye\",\"reason\":\"a\nb\"}", p::code::bad_frame, "", msg);
  check_refused("{\"type\":\"bye\",\"reason\":\"a"s + '\0' + "b\"}", p::code::bad_frame, "", msg);
}

// nlohmann::json treats a NUL byte as the end of its input, so whatever follows a NUL was ignored
// and a frame with trailing garbage was accepted. A frame is one JSON object and nothing else.
BOOST_AUTO_TEST_CASE(nul_byte_after_the_object_is_refused) {
  const std::string msg = "not valid JSON (or not valid UTF-8)";
  check_refused(R"({"type":"heartbeat","seq":1})"s + '\0' + "garbage", p::code::bad_frame, "", msg);
  check_refused(R"({"type":"heartbeat","seq":1})"s + '\0', p::code::bad_frame, "", msg);
  check_refused(R"({"type":"heartbeat","seq":1})"s + '\0' + R"({"type":"bye"})", p::code::bad_frame, "", msg);
}

BOOST_AUTO_TEST_CASE(invalid_utf8_inside_a_string) {
  const std::string msg = "not valid JSON (or not valid UTF-8)";
  const std::vector<std::string> bad{
    "\xff\xfe",         // never valid
    "\xc0\xaf",         // overlong '/'
    "\xe0\x80\xaf",     // overlong, 3 bytes
    "\xed\xa0\x80",     // UTF-16 surrogate encoded in UTF-8
    "\xf4\x90\x80\x80", // above U+10FFFF
    "\xe2\x82",         // truncated sequence
    "\x80",             // lone continuation byte
    "ok\xc3",           // truncated at the end of the string
  };
  for (auto& b : bad) {
    check_refused(R"({"type":"bye","reason":")" + b + R"("})", p::code::bad_frame, "", msg);
    check_refused(R"({"type":"logs","attempt_id":")" + A1
                    + R"(","entries":[{"seq":0,"ts":"2026-01-09T12:00:00Z","stream":"stdout","line":")" + b + R"("}]})",
                  p::code::bad_frame, "", msg);
  }
  // ...in a key, and outside any string
  check_refused("{\"type\":\"bye\",\"\xff\xfe\":1}", p::code::bad_frame, "", msg);
  check_refused("{\"type\":\"bye\"}\xff", p::code::bad_frame, "", msg);
  // escaped lone surrogates are not valid Unicode either
  check_refused(R"({"type":"bye","reason":"\ud800"})", p::code::bad_frame, "", msg);
  check_refused(R"({"type":"bye","reason":"\udc00x"})", p::code::bad_frame, "", msg);
}

BOOST_AUTO_TEST_CASE(non_object_json) {
  const std::string msg = "a frame must be a JSON object";
  for (auto* line : {"[]", R"([{"type":"heartbeat","seq":1}])", "1", "-2.5", R"("hello")", "null", "true", "false"})
    check_refused(line, p::code::bad_frame, "", msg);
}

BOOST_AUTO_TEST_CASE(missing_or_non_string_type) {
  const std::string msg = "missing string field 'type'";
  for (auto* line :
       {"{}", R"({"seq":1})", R"({"Type":"heartbeat","seq":1})", R"({"type":null,"seq":1})", R"({"type":1,"seq":1})",
        R"({"type":true})", R"({"type":["heartbeat"]})", R"({"type":{"name":"heartbeat"}})"})
    check_refused(line, p::code::bad_frame, "", msg);
}

BOOST_AUTO_TEST_CASE(unknown_types) {
  // Coordinator -> node types are unknown in this direction, as is anything not exactly spelled.
  for (auto* t : {"welcome", "heartbeat_ack", "backfill_request", "error", "close", "Hello", "HELLO", "hello ", " bye",
                  "heartbeats", "log", "attempts", "backfill", "ping", "", "null", "h\xc3\xa9llo"}) {
    json j{{"type", t}, {"seq", 1}, {"protocol", 1}, {"node", "n"}, {"key", "k"}};
    check_refused(j.dump(), p::code::unknown_type, "", "unknown frame type '"s + t + "'");
  }
  // A long type is cut in the message.
  std::string long_type(100, 't');
  check_refused(json{{"type", long_type}}.dump(), p::code::unknown_type, "",
                "unknown frame type '" + std::string(64, 't') + "...'");
  check_refused(json{{"type", std::string(64, 'u')}}.dump(), p::code::unknown_type, "",
                "unknown frame type '" + std::string(64, 'u') + "'");
}

BOOST_AUTO_TEST_CASE(hello_fields) {
  check_fields(base_hello(), "hello",
               {{"/protocol", "hello.protocol", presence::required, integer_bad(false)},
                {"/node", "hello.node", presence::required,
                 with(string_bad(true), {{std::string(256, 'n'), "longer than 255 bytes"}})},
                {"/key", "hello.key", presence::required,
                 with(string_bad(true), {{std::string(513, 'k'), "longer than 512 bytes"}})},
                {"/agent", "hello.agent", presence::optional,
                 with(string_bad(false), {{std::string(256, 'a'), "longer than 255 bytes"}})},
                {"/capabilities", "hello.capabilities", presence::optional, object_bad()}});
}

BOOST_AUTO_TEST_CASE(heartbeat_fields) {
  check_fields(base_heartbeat(), "heartbeat", {{"/seq", "heartbeat.seq", presence::required, counter_bad()}});
}

BOOST_AUTO_TEST_CASE(attempt_fields) {
  const std::string states = "expected one of queued, running, succeeded, failed, cancelled";
  check_fields(base_attempt(), "attempt",
               {{"/attempt_id", "attempt.attempt_id", presence::required, uuid_bad()},
                {"/task_id", "attempt.task_id", presence::required,
                 with(string_bad(true), {{std::string(256, 't'), "longer than 255 bytes"}})},
                {"/state", "attempt.state", presence::required,
                 with(string_bad(true), {{"done", states},
                                         {"RUNNING", states},
                                         {"running ", states},
                                         {"success", states},
                                         {"canceled", states},
                                         {std::string(33, 'q'), "longer than 32 bytes"}})},
                {"/started_at", "attempt.started_at", presence::optional, time_bad()},
                {"/finished_at", "attempt.finished_at", presence::optional, time_bad()},
                {"/meta", "attempt.meta", presence::optional, object_bad()}});
}

BOOST_AUTO_TEST_CASE(logs_fields) {
  const std::string streams = "expected one of stdout, stderr, system";
  check_fields(
    base_logs(), "logs",
    {{"/attempt_id", "logs.attempt_id", presence::required, uuid_bad()},
     {"/entries",
      "logs.entries",
      presence::required,
      {{json::object(), "expected an array"},
       {"[]", "expected an array"},
       {5, "expected an array"},
       {json::object({{"seq", 0}}), "expected an array"}}},
     {"/entries/0",
      "logs.entries[0]",
      presence::value_only,
      {{5, "expected an object"}, {"x", "expected an object"}, {json::array(), "expected an object"}}},
     {"/entries/1", "logs.entries[1]", presence::value_only, {{nullptr, "expected an object"}}},
     {"/entries/0/seq", "logs.entries[0].seq", presence::required, counter_bad()},
     {"/entries/1/seq", "logs.entries[1].seq", presence::required, {{-1, "must be at least 0"}}},
     {"/entries/0/ts", "logs.entries[0].ts", presence::required, with(time_bad(), {{"", "must not be empty"}})},
     {"/entries/0/stream", "logs.entries[0].stream", presence::required,
      with(
        string_bad(true),
        {{"stdin", streams}, {"STDOUT", streams}, {"out", streams}, {std::string(33, 's'), "longer than 32 bytes"}})},
     {"/entries/1/stream", "logs.entries[1].stream", presence::required, {{"err", streams}}},
     {"/entries/0/line",
      "logs.entries[0].line",
      presence::required,
      {{5, "expected a string"},
       {true, "expected a string"},
       {json::array({"a"}), "expected a string"},
       {json::object(), "expected a string"}},
      "expected a string"}});
}

BOOST_AUTO_TEST_CASE(backfill_response_fields) {
  check_fields(
    base_backfill_response(), "backfill_response",
    {{"/request_id", "backfill_response.request_id", presence::required, uuid_bad()},
     {"/results",
      "backfill_response.results",
      presence::required,
      {{json::object(), "expected an array"}, {"x", "expected an array"}, {1, "expected an array"}}},
     {"/results/0",
      "backfill_response.results[0]",
      presence::value_only,
      {{5, "expected an object"}, {A1, "expected an object"}, {json::array(), "expected an object"}}},
     {"/results/1", "backfill_response.results[1]", presence::value_only, {{nullptr, "expected an object"}}},
     {"/results/0/attempt_id", "backfill_response.results[0].attempt_id", presence::required, uuid_bad()},
     {"/results/1/attempt_id",
      "backfill_response.results[1].attempt_id",
      presence::required,
      {{"x", "expected a UUID"}}},
     {"/results/0/ok",
      "backfill_response.results[0].ok",
      presence::required,
      {{"true", "expected true or false"},
       {1, "expected true or false"},
       {0, "expected true or false"},
       {json::object(), "expected true or false"}}},
     {"/results/1/ok", "backfill_response.results[1].ok", presence::required, {{"false", "expected true or false"}}},
     // ok: true REQUIRES log_count (the evidence rule)
     {"/results/0/log_count", "backfill_response.results[0].log_count", presence::required, counter_bad()},
     {"/results/0/error", "backfill_response.results[0].error", presence::optional,
      with(string_bad(false), {{std::string(4097, 'e'), "longer than 4096 bytes"}})},
     {"/results/1/error", "backfill_response.results[1].error", presence::optional,
      with(string_bad(false), {{std::string(4097, 'e'), "longer than 4096 bytes"}})}});
}

BOOST_AUTO_TEST_CASE(bye_fields) {
  check_fields(base_bye(), "bye",
               {{"/reason", "bye.reason", presence::optional,
                 with(string_bad(false), {{std::string(4097, 'r'), "longer than 4096 bytes"}})}});
}

BOOST_AUTO_TEST_CASE(ok_true_without_log_count_is_refused_evidence_rule) {
  check_refused(R"({"type":"backfill_response","request_id":")" + R1 + R"(","results":[{"attempt_id":")" + A1
                  + R"(","ok":true}]})",
                p::code::bad_frame, "backfill_response", "backfill_response.results[0].log_count: missing");
  // The first offending result is named, even after good ones.
  check_refused(R"({"type":"backfill_response","request_id":")" + R1 + R"(","results":[{"attempt_id":")" + A1
                  + R"(","ok":false},{"attempt_id":")" + A2 + R"(","ok":true,"log_count":null}]})",
                p::code::bad_frame, "backfill_response", "backfill_response.results[1].log_count: missing");
  // A failure does not need one, but a present log_count is still validated.
  check_accepted(R"({"type":"backfill_response","request_id":")" + R1 + R"(","results":[{"attempt_id":")" + A1
                 + R"(","ok":false}]})");
  check_refused(R"({"type":"backfill_response","request_id":")" + R1 + R"(","results":[{"attempt_id":")" + A1
                  + R"(","ok":false,"log_count":-1}]})",
                p::code::bad_frame, "backfill_response", "backfill_response.results[0].log_count: must be at least 0");
  check_refused(R"({"type":"backfill_response","request_id":")" + R1 + R"(","results":[{"attempt_id":")" + A1
                  + R"(","ok":false,"log_count":"3"}]})",
                p::code::bad_frame, "backfill_response", "backfill_response.results[0].log_count: expected an integer");
}

// RFC 3339: time-numoffset = ("+" / "-") time-hour ":" time-minute, hour 00-23, minute 00-59.
// An offset that is cut off or out of range is not a time; before this test parse_time accepted
// "+01:" (as +01:00), "+99:00" and "+01:75" and shifted the time by the nonsense amount.
BOOST_AUTO_TEST_CASE(malformed_time_offsets_are_refused) {
  const std::string rfc = "expected an RFC 3339 time in years 0001-9999 (UTC) such as 2026-01-09T12:00:00.000Z";
  for (auto* t : {"2026-01-09T12:00:00+01:", "2026-01-09T12:00:00+24:00", "2026-01-09T12:00:00+99:00",
                  "2026-01-09T12:00:00-01:60", "2026-01-09T12:00:00+01:75"}) {
    json j = base_attempt();
    j["started_at"] = t;
    check_bad_frame(j, "attempt", "attempt.started_at: " + rfc);
  }
}

BOOST_AUTO_TEST_CASE(integers_beyond_64_bits) {
  // Too large even for uint64: nlohmann reads them as floating point.
  check_refused(R"({"type":"heartbeat","seq":18446744073709551616})", p::code::bad_frame, "heartbeat",
                "heartbeat.seq: expected an integer");
  check_refused(R"({"type":"heartbeat","seq":9223372036854775808})", p::code::bad_frame, "heartbeat",
                "heartbeat.seq: out of range");
  check_refused(R"({"type":"heartbeat","seq":-9223372036854775809})", p::code::bad_frame, "heartbeat",
                "heartbeat.seq: expected an integer");
  check_refused(R"({"type":"heartbeat","seq":1e3})", p::code::bad_frame, "heartbeat",
                "heartbeat.seq: expected an integer");
  check_refused(R"({"type":"heartbeat","seq":-0.0})", p::code::bad_frame, "heartbeat",
                "heartbeat.seq: expected an integer");
  check_refused(R"({"type":"hello","protocol":9223372036854775808,"node":"n","key":"k"})", p::code::bad_frame, "hello",
                "hello.protocol: out of range");
  check_refused(R"({"type":"hello","protocol":1.0,"node":"n","key":"k"})", p::code::bad_frame, "hello",
                "hello.protocol: expected an integer");
}

BOOST_AUTO_TEST_CASE(string_limits_are_in_bytes_and_inclusive) {
  // Exactly at the limit is accepted.
  json h = base_hello();
  h["node"] = std::string(255, 'n');
  h["key"] = std::string(512, 'k');
  h["agent"] = std::string(255, 'a');
  auto hh = decode_json<p::hello>(h);
  BOOST_TEST(hh.node.size() == 255u);
  BOOST_TEST(hh.key.size() == 512u);
  BOOST_TEST(hh.agent.size() == 255u);
  json a = base_attempt();
  a["task_id"] = std::string(255, 't');
  BOOST_TEST(decode_json<p::attempt>(a).task_id.size() == 255u);
  json b = base_backfill_response();
  b["results"][1]["error"] = std::string(4096, 'e');
  BOOST_TEST(decode_json<p::backfill_response>(b).results.at(1).error.size() == 4096u);
  BOOST_TEST(decode_json<p::bye>(json{{"type", "bye"}, {"reason", std::string(4096, 'r')}}).reason.size() == 4096u);
  json t = base_attempt();
  t["started_at"] = "2026-01-09T12:00:00." + std::string(64 - 21, '1') + "Z"; // exactly 64 bytes
  BOOST_REQUIRE_EQUAL(t["started_at"].get<std::string>().size(), 64u);
  BOOST_TEST(decode_json<p::attempt>(t).started_at == "2026-01-09T12:00:00.111Z");

  // Multi-byte characters count by bytes: 128 x "é" is 256 bytes.
  std::string e128;
  for (int i = 0; i < 128; ++i)
    e128 += "\xc3\xa9";
  h = base_hello();
  h["node"] = e128;
  check_bad_frame(h, "hello", "hello.node: longer than 255 bytes");
  h["node"] = e128.substr(2); // 254 bytes
  BOOST_TEST(decode_json<p::hello>(h).node == e128.substr(2));
}

// Issue 15: a hello whose capabilities nest ~400,000 deep (800 KB, under max_frame_bytes) crashed
// the daemon with a stack overflow when it was serialized again. Depth is checked without
// recursion, anywhere in the frame, and the deepest value is named.
BOOST_AUTO_TEST_CASE(nesting_deeper_than_the_limit_is_refused_without_recursion) {
  const std::string deep = std::string(400000, '[') + std::string(400000, ']');
  check_refused(R"({"type":"hello","protocol":1,"node":"n","key":"k","capabilities":{"x":)" + deep + "}}",
                p::code::bad_frame, "hello", "hello.capabilities.x" + [] {
                  std::string path;
                  for (int i = 0; i < 30; ++i)
                    path += "[0]";
                  return path;
                }() + ": nested deeper than 32 levels");
  check_refused(R"({"type":"attempt","attempt_id":")" + A1 + R"(","task_id":"t","state":"queued","meta":{"a":)" + deep
                  + "}}",
                p::code::bad_frame, "attempt",
                "attempt.meta.a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                "[0][0][0][0][0][0][0][0][0][0][0][0]: nested deeper than 32 levels");
  // Deep where no field is read, and in an unknown frame type: refused all the same.
  check_refused(R"({"type":"heartbeat","seq":1,"extra":)" + deep + "}", p::code::bad_frame, "heartbeat",
                "heartbeat.extra[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                "[0][0][0][0]: nested deeper than 32 levels");
  check_refused(R"({"type":"nope","x":)" + deep + "}", p::code::bad_frame, "nope",
                "nope.x[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
                "[0]: nested deeper than 32 levels");
  // Exactly 32 levels (the frame, meta, 30 arrays) is accepted and survives encoding.
  json j = base_attempt();
  j["meta"] = json::object({{"a", nested(30)}});
  check_accepted(j.dump());
  auto m = std::get<p::attempt>(std::get<p::node_message>(p::decode(j.dump())));
  BOOST_TEST(json::parse(m.meta) == j["meta"]);
  j["meta"] = json::object({{"a", nested(31)}});
  BOOST_TEST_REQUIRE(std::holds_alternative<p::decode_error>(p::decode(j.dump())));
  // Objects count as levels as well as arrays.
  json o = json::object();
  for (int i = 0; i < 31; ++i)
    o = json::object({{"o", std::move(o)}});
  j["meta"] = o;
  BOOST_TEST_REQUIRE(std::holds_alternative<p::decode_error>(p::decode(j.dump())));
}

// PostgreSQL's text and JSONB cannot hold U+0000; SQLite can. Refused anywhere, named exactly.
BOOST_AUTO_TEST_CASE(nul_characters_are_refused_anywhere_in_a_frame) {
  json j = base_attempt();
  j["meta"] = json::object({{"a", json::array({1, std::string("x\0", 2)})}});
  check_bad_frame(j, "attempt", "attempt.meta.a[1]: " + nul_refused);
  j["meta"] = json::object({{std::string("k\0", 2), 1}});
  check_bad_frame(j, "attempt", "attempt.meta.?: a key contains \\u0000, which the database cannot store");
  json h = base_hello();
  h["capabilities"] = json::object({{"labels", json::array({"linux", std::string("\0", 1)})}});
  check_bad_frame(h, "hello", "hello.capabilities.labels[1]: " + nul_refused);
  // The escaped form on the wire is what a node sends.
  check_refused(R"({"type":"bye","reason":"a\u0000b"})", p::code::bad_frame, "bye", "bye.reason: " + nul_refused);
  // An escaped backslash followed by "u0000" is six ordinary characters.
  check_accepted(R"({"type":"bye","reason":"a\\u0000b"})");
  // Unknown fields too: nothing is ignored that could be stored later.
  check_refused(R"({"type":"heartbeat","seq":1,"x":"\u0000"})", p::code::bad_frame, "heartbeat",
                "heartbeat.x: " + nul_refused);
}

BOOST_AUTO_TEST_CASE(counters_and_times_at_their_bounds_are_accepted) {
  check_accepted(R"({"type":"heartbeat","seq":9007199254740992})");
  json l = base_logs();
  l["entries"][0]["seq"] = int64_t{1} << 53;
  l["entries"][0]["ts"] = "0001-01-01T00:00:00.000Z";
  l["entries"][1]["ts"] = "9999-12-31T23:59:59.999Z";
  check_accepted(l.dump());
  json a = base_attempt();
  a["started_at"] = "0001-01-01T01:00:00+01:00";
  a["finished_at"] = "9999-12-31T22:59:59-01:00";
  check_accepted(a.dump());
}

BOOST_AUTO_TEST_CASE(first_bad_field_is_named_in_field_order) {
  // Several bad fields: the message names one field, so a single fix is obvious each time.
  check_refused(R"({"type":"attempt","attempt_id":"x","task_id":5,"state":"done"})", p::code::bad_frame, "attempt",
                "attempt.attempt_id: expected a UUID");
  check_refused(R"({"type":"logs","attempt_id":")" + A1
                  + R"(","entries":[{"seq":0,"ts":"2026-01-09T12:00:00Z","stream":"stdout","line":"a"},{"seq":-5}]})",
                p::code::bad_frame, "logs", "logs.entries[1].seq: must be at least 0");
}

BOOST_AUTO_TEST_SUITE_END()

// =====================================================================================
BOOST_AUTO_TEST_SUITE(encode)

namespace {

/// One line, '\n'-terminated, no other newline, valid JSON object; returns it parsed.
json parse_line(const std::string& line) {
  BOOST_TEST_INFO("line: " << printable(line));
  BOOST_REQUIRE(!line.empty());
  BOOST_TEST(line.back() == '\n');
  BOOST_TEST(std::count(line.begin(), line.end(), '\n') == 1);
  BOOST_TEST(line.find('\r') == std::string::npos);
  auto j = json::parse(line, nullptr, false);
  BOOST_REQUIRE(!j.is_discarded());
  BOOST_REQUIRE(j.is_object());
  return j;
}

std::set<std::string> keys_of(const json& j) {
  std::set<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it)
    k.insert(it.key());
  return k;
}

} // namespace

BOOST_AUTO_TEST_CASE(welcome) {
  auto j = parse_line(p::encode_welcome(N1, 17, 10000, "2026-01-09T12:00:00.000Z"));
  BOOST_TEST(
    keys_of(j)
      == (std::set<std::string>{"type", "protocol", "node_id", "session", "heartbeat_interval_ms", "server_time"}),
    boost::test_tools::per_element());
  BOOST_TEST(j["type"] == "welcome");
  BOOST_TEST(j["protocol"].is_number_integer());
  BOOST_TEST(j["protocol"] == 1);
  BOOST_TEST(j["node_id"] == N1);
  BOOST_TEST(j["session"] == 17);
  BOOST_TEST(j["heartbeat_interval_ms"] == 10000);
  BOOST_TEST(j["server_time"] == "2026-01-09T12:00:00.000Z");
  auto big = parse_line(p::encode_welcome(N1, std::numeric_limits<int64_t>::max(), 1, "t"));
  BOOST_TEST(big["session"].get<int64_t>() == std::numeric_limits<int64_t>::max());
}

BOOST_AUTO_TEST_CASE(heartbeat_ack) {
  auto j = parse_line(p::encode_heartbeat_ack(42, "2026-01-09T12:00:10.000Z"));
  BOOST_TEST(keys_of(j) == (std::set<std::string>{"type", "seq", "server_time"}), boost::test_tools::per_element());
  BOOST_TEST(j["type"] == "heartbeat_ack");
  BOOST_TEST(j["seq"] == 42);
  BOOST_TEST(j["server_time"] == "2026-01-09T12:00:10.000Z");
}

BOOST_AUTO_TEST_CASE(backfill_request_without_logs_after) {
  auto line = p::encode_backfill_request(R1, {A1, A2}, {});
  BOOST_TEST(line.find("logs_after") == std::string::npos);
  auto j = parse_line(line);
  BOOST_TEST(keys_of(j) == (std::set<std::string>{"type", "request_id", "attempt_ids"}),
             boost::test_tools::per_element());
  BOOST_TEST(j["type"] == "backfill_request");
  BOOST_TEST(j["request_id"] == R1);
  BOOST_TEST(j["attempt_ids"] == json::array({A1, A2}));
  // No attempts is still an array.
  BOOST_TEST(parse_line(p::encode_backfill_request(R1, {}, {}))["attempt_ids"] == json::array());
}

BOOST_AUTO_TEST_CASE(backfill_request_with_logs_after) {
  auto j = parse_line(p::encode_backfill_request(R1, {A2, A1, N1}, {{A1, 41}, {N1, 0}}));
  BOOST_TEST(keys_of(j) == (std::set<std::string>{"type", "request_id", "attempt_ids", "logs_after"}),
             boost::test_tools::per_element());
  BOOST_TEST(j["attempt_ids"] == json::array({A2, A1, N1})); // order kept
  BOOST_TEST(j["logs_after"].is_object());
  BOOST_TEST(j["logs_after"] == json({{A1, 41}, {N1, 0}}));
  BOOST_TEST(!j["logs_after"].contains(A2));
}

BOOST_AUTO_TEST_CASE(error_with_and_without_ref) {
  auto j = parse_line(p::encode_error(p::code::bad_frame, "heartbeat.seq: missing", "heartbeat"));
  BOOST_TEST(keys_of(j) == (std::set<std::string>{"type", "code", "message", "ref"}), boost::test_tools::per_element());
  BOOST_TEST(j["type"] == "error");
  BOOST_TEST(j["code"] == "bad_frame");
  BOOST_TEST(j["message"] == "heartbeat.seq: missing");
  BOOST_TEST(j["ref"] == "heartbeat");
  auto k = parse_line(p::encode_error(p::code::auth_failed, "authentication failed"));
  BOOST_TEST(keys_of(k) == (std::set<std::string>{"type", "code", "message"}), boost::test_tools::per_element());
  BOOST_TEST(k["code"] == "auth_failed");
}

BOOST_AUTO_TEST_CASE(error_message_with_newline_and_invalid_utf8_stays_one_valid_line) {
  auto line = p::encode_error(p::code::bad_frame, "two\nlines\r and \xff\xfe bad bytes", "x\ny");
  auto j = parse_line(line);
  BOOST_TEST(j["message"] == "two\nlines\r and \xef\xbf\xbd\xef\xbf\xbd bad bytes"); // U+FFFD each
  BOOST_TEST(j["ref"] == "x\ny");
}

BOOST_AUTO_TEST_CASE(every_error_code_and_close_reason) {
  for (auto* c : {p::code::hello_required, p::code::auth_failed, p::code::unsupported_protocol,
                  p::code::frame_too_large, p::code::bad_frame, p::code::unknown_type, p::code::forbidden,
                  p::code::unknown_request, p::code::unknown_attempt, p::code::unavailable}) {
    auto j = parse_line(p::encode_error(c, "m"));
    BOOST_TEST(j["code"] == c);
  }
  const std::vector<std::string> codes{
    p::code::hello_required,  p::code::auth_failed,     p::code::unsupported_protocol,
    p::code::frame_too_large, p::code::bad_frame,       p::code::unknown_type,
    p::code::forbidden,       p::code::unknown_request, p::code::unknown_attempt,
    p::code::unavailable};
  const std::vector<std::string> expected{
    "hello_required", "auth_failed", "unsupported_protocol", "frame_too_large", "bad_frame",
    "unknown_type",   "forbidden",   "unknown_request",      "unknown_attempt", "unavailable"};
  BOOST_TEST(codes == expected, boost::test_tools::per_element());
  const std::vector<std::string> reasons{p::close_reason::shutdown, p::close_reason::superseded,
                                         p::close_reason::idle_timeout, p::close_reason::protocol_errors,
                                         p::close_reason::disabled};
  const std::vector<std::string> expected_reasons{"shutdown", "superseded", "idle_timeout", "protocol_errors",
                                                  "disabled"};
  BOOST_TEST(reasons == expected_reasons, boost::test_tools::per_element());
  for (auto& r : reasons) {
    auto j = parse_line(p::encode_close(r));
    BOOST_TEST(keys_of(j) == (std::set<std::string>{"type", "reason"}), boost::test_tools::per_element());
    BOOST_TEST(j["type"] == "close");
    BOOST_TEST(j["reason"] == r);
  }
  BOOST_TEST(p::version == 1);
}

BOOST_AUTO_TEST_CASE(coordinator_frames_are_not_accepted_back) {
  // A node echoing coordinator frames gets unknown_type, not something that looks like success.
  for (auto& line : {p::encode_welcome(N1, 1, 1000, "2026-01-09T12:00:00.000Z"),
                     p::encode_heartbeat_ack(1, "2026-01-09T12:00:00.000Z"), p::encode_backfill_request(R1, {A1}, {}),
                     p::encode_error("bad_frame", "m", "r"), p::encode_close("shutdown")}) {
    auto e = decode_fails(std::string_view(line).substr(0, line.size() - 1));
    BOOST_TEST(e.code == "unknown_type");
  }
}

BOOST_AUTO_TEST_CASE(hello_round_trip) {
  p::hello h{1, "build-07", "nck_k1a2_s3cr3t", "nodecoord-agent/0.1.0", R"({"gpu":true,"slots":4})"};
  auto line = p::encode_hello(h);
  auto j = parse_line(line);
  BOOST_TEST(j["type"] == "hello");
  BOOST_TEST(j["capabilities"].is_object());
  check_same(decode_as<p::hello>(std::string_view(line).substr(0, line.size() - 1)), h);
  p::hello bare{1, "n", "k", "", ""};
  auto line2 = p::encode_hello(bare);
  BOOST_TEST(!parse_line(line2).contains("capabilities"));
  check_same(decode_as<p::hello>(std::string_view(line2).substr(0, line2.size() - 1)), bare);
}

BOOST_AUTO_TEST_CASE(heartbeat_round_trip) {
  for (int64_t seq : {int64_t(0), int64_t(1), int64_t{1} << 53}) {
    auto line = p::encode_heartbeat(seq);
    auto j = parse_line(line);
    BOOST_TEST(keys_of(j) == (std::set<std::string>{"type", "seq"}), boost::test_tools::per_element());
    BOOST_TEST(decode_as<p::heartbeat>(std::string_view(line).substr(0, line.size() - 1)).seq == seq);
  }
}

BOOST_AUTO_TEST_CASE(attempt_round_trip) {
  p::attempt full{
    A1, "task-42", "failed", "2026-01-09T12:00:00.000Z", "2026-01-09T12:05:00.250Z", R"({"exit_code":2,"why":"oom"})"};
  auto line = p::encode_attempt(full);
  parse_line(line);
  check_same(decode_as<p::attempt>(std::string_view(line).substr(0, line.size() - 1)), full);
  p::attempt minimal{A2, "t", "queued", "", "", ""};
  auto line2 = p::encode_attempt(minimal);
  BOOST_TEST(keys_of(parse_line(line2)) == (std::set<std::string>{"type", "attempt_id", "task_id", "state"}),
             boost::test_tools::per_element());
  check_same(decode_as<p::attempt>(std::string_view(line2).substr(0, line2.size() - 1)), minimal);
}

BOOST_AUTO_TEST_CASE(logs_round_trip) {
  p::logs l{A1,
            {{0, "2026-01-09T12:00:00.000Z", "stdout", "plain"},
             {1, "2026-01-09T12:00:00.001Z", "stderr", "quotes \" backslash \\ tab \t newline \n cr \r"},
             {2, "2026-01-09T12:00:00.002Z", "system", ""},
             {3, "2026-01-09T12:00:00.003Z", "stdout", "\xc3\xbc \xe2\x9c\x93 \xf0\x9f\x98\x80"s}}};
  auto line = p::encode_logs(l);
  auto j = parse_line(line);
  BOOST_TEST(j["entries"].size() == 4u);
  BOOST_TEST(keys_of(j["entries"][0]) == (std::set<std::string>{"seq", "ts", "stream", "line"}),
             boost::test_tools::per_element());
  check_same(decode_as<p::logs>(std::string_view(line).substr(0, line.size() - 1)), l);
}

BOOST_AUTO_TEST_CASE(backfill_response_round_trip) {
  p::backfill_response r{R1,
                         {{A1, true, 12, ""},
                          {A2, false, 0, "attempt not found"},
                          {N1, true, 0, ""},
                          {A1, true, int64_t{1} << 53, "with a note"}}};
  auto line = p::encode_backfill_response(r);
  auto j = parse_line(line);
  BOOST_TEST(j["results"][0]["log_count"] == 12);
  BOOST_TEST(!j["results"][1].contains("log_count")); // only with ok
  BOOST_TEST(!j["results"][0].contains("error"));
  BOOST_TEST(j["results"][2]["log_count"] == 0);
  check_same(decode_as<p::backfill_response>(std::string_view(line).substr(0, line.size() - 1)), r);
}

BOOST_AUTO_TEST_CASE(bye_round_trip) {
  auto line = p::encode_bye("agent stopping");
  BOOST_TEST(parse_line(line)["reason"] == "agent stopping");
  BOOST_TEST(decode_as<p::bye>(std::string_view(line).substr(0, line.size() - 1)).reason == "agent stopping");
  auto line2 = p::encode_bye("");
  BOOST_TEST(keys_of(parse_line(line2)) == (std::set<std::string>{"type"}), boost::test_tools::per_element());
  BOOST_TEST(decode_as<p::bye>(std::string_view(line2).substr(0, line2.size() - 1)).reason == "");
}

BOOST_AUTO_TEST_SUITE_END()

// =====================================================================================
// docs/protocol.md is the guide for people writing agents in other languages: its example lines
// must be exactly what this codec accepts and produces.
BOOST_AUTO_TEST_SUITE(documentation)

namespace {

struct doc_line {
  int number;
  std::string text;
};

/// Lines inside ```jsonl and ```text fences of docs/protocol.md.
std::vector<doc_line> fenced_lines(const std::string& lang) {
  std::ifstream in(NODECOORD_SOURCE_DIR "/docs/protocol.md");
  BOOST_REQUIRE_MESSAGE(in, "cannot open docs/protocol.md");
  std::vector<doc_line> out;
  std::string line;
  bool inside = false;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.rfind("```", 0) == 0) {
      inside = !inside && line == "```" + lang;
      continue;
    }
    if (inside && !line.empty())
      out.push_back({n, line});
  }
  return out;
}

const std::set<std::string> node_types{"hello", "heartbeat", "attempt", "logs", "backfill_response", "bye"};

/// A coordinator line must be byte for byte what the encoders produce from its fields.
void check_coordinator_line(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  BOOST_REQUIRE_MESSAGE(!j.is_discarded() && j.is_object(), "not a JSON object");
  auto type = j.value("type", "");
  std::string expected;
  if (type == "welcome") {
    BOOST_TEST(j["protocol"] == 1);
    expected = p::encode_welcome(j.at("node_id").get<std::string>(), j.at("session").get<int64_t>(),
                                 j.at("heartbeat_interval_ms").get<int64_t>(), j.at("server_time").get<std::string>());
  } else if (type == "heartbeat_ack") {
    expected = p::encode_heartbeat_ack(j.at("seq").get<int64_t>(), j.at("server_time").get<std::string>());
  } else if (type == "backfill_request") {
    std::vector<std::pair<std::string, int64_t>> la;
    if (j.contains("logs_after"))
      for (auto& [k, v] : j["logs_after"].items())
        la.emplace_back(k, v.get<int64_t>());
    expected = p::encode_backfill_request(j.at("request_id").get<std::string>(),
                                          j.at("attempt_ids").get<std::vector<std::string>>(), la);
  } else if (type == "error") {
    expected = p::encode_error(j.at("code").get<std::string>(), j.at("message").get<std::string>(),
                               j.value("ref", std::string()));
  } else if (type == "close") {
    expected = p::encode_close(j.at("reason").get<std::string>());
  } else {
    BOOST_ERROR("not a coordinator frame type: " << type);
    return;
  }
  BOOST_TEST(text + "\n" == expected);
}

} // namespace

BOOST_AUTO_TEST_CASE(example_lines_are_exact) {
  auto lines = fenced_lines("jsonl");
  BOOST_TEST(lines.size() >= 12u);
  std::set<std::string> seen;
  for (auto& l : lines) {
    BOOST_TEST_CONTEXT("docs/protocol.md:" << l.number << ": " << l.text) {
      auto j = json::parse(l.text, nullptr, false);
      BOOST_REQUIRE(!j.is_discarded());
      auto type = j.value("type", "");
      seen.insert(type);
      if (node_types.count(type)) {
        check_accepted(l.text);
        // Documented examples use the normalised time form, so what an agent sends is what is stored.
        if (type == "attempt") {
          auto a = decode_as<p::attempt>(l.text);
          BOOST_TEST(a.started_at == j.value("started_at", ""));
          BOOST_TEST(a.finished_at == j.value("finished_at", ""));
        }
        if (type == "logs")
          for (auto& e : decode_as<p::logs>(l.text).entries)
            BOOST_TEST(l.text.find("\"ts\":\"" + e.ts + "\"") != std::string::npos);
      } else {
        check_coordinator_line(l.text);
      }
    }
  }
  for (auto* t : {"hello", "heartbeat", "attempt", "logs", "backfill_response", "bye", "welcome", "heartbeat_ack",
                  "backfill_request", "error", "close"})
    BOOST_CHECK_MESSAGE(seen.count(t) == 1u, "no example of " << t);
}

BOOST_AUTO_TEST_CASE(transcript_is_exact) {
  auto lines = fenced_lines("text");
  int node = 0, coordinator = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto& l = lines[i];
    if (l.text.rfind("> ", 0) != 0 && l.text.rfind("< ", 0) != 0)
      continue;
    auto text = l.text.substr(2);
    BOOST_TEST_CONTEXT("docs/protocol.md:" << l.number << ": " << l.text) {
      if (l.text[0] == '<') {
        ++coordinator;
        check_coordinator_line(text);
        continue;
      }
      ++node;
      // A node line answered by a decode error must produce exactly that error.
      json answer;
      if (i + 1 < lines.size() && lines[i + 1].text.rfind("< ", 0) == 0)
        answer = json::parse(lines[i + 1].text.substr(2), nullptr, false);
      auto code = answer.is_object() ? answer.value("code", "") : "";
      if (code == p::code::bad_frame || code == p::code::unknown_type) {
        auto e = decode_fails(text);
        BOOST_TEST(e.code == code);
        BOOST_TEST(e.message == answer.value("message", ""));
        BOOST_TEST(e.ref == answer.value("ref", ""));
      } else {
        check_accepted(text);
      }
    }
  }
  BOOST_TEST(node >= 10);
  BOOST_TEST(coordinator >= 5);
}

BOOST_AUTO_TEST_SUITE_END()

// --- durable acknowledgement: the session's ack gate --------------------------------------------

BOOST_AUTO_TEST_SUITE(ack_gate)

using gate = nodecoord::protocol::ack_gate;
using std::chrono::seconds;
const gate::time_point t0{};

BOOST_AUTO_TEST_CASE(nothing_outstanding_is_acknowledged_at_once) {
  gate g;
  BOOST_TEST(g.heartbeat(1, t0));
  auto t = g.open();
  g.settle(t);
  BOOST_TEST(g.heartbeat(2, t0));
  BOOST_TEST(g.released().empty());
  BOOST_TEST(g.unsettled() == 0u);
  BOOST_TEST(g.held() == 0u);
}

BOOST_AUTO_TEST_CASE(a_heartbeat_waits_for_every_frame_before_it_and_none_after) {
  gate g;
  auto a = g.open();
  auto b = g.open();
  BOOST_TEST(!g.heartbeat(7, t0));
  auto c = g.open(); // after the heartbeat: it does not wait for this one
  BOOST_TEST(!g.heartbeat(8, t0));
  BOOST_TEST(g.unsettled() == 3u);
  g.settle(b); // out of order: a is still open
  BOOST_TEST(g.released().empty());
  g.settle(a);
  BOOST_TEST(g.released() == std::vector<int64_t>{7});
  BOOST_TEST(g.held() == 1u);
  g.settle(c);
  BOOST_TEST(g.released() == std::vector<int64_t>{8});
  g.settle(c); // repeated and unknown tickets change nothing
  g.settle(99);
  BOOST_TEST(g.unsettled() == 0u);
  BOOST_TEST(g.heartbeat(9, t0));
}

BOOST_AUTO_TEST_CASE(heartbeats_are_answered_in_arrival_order) {
  gate g;
  auto a = g.open();
  BOOST_TEST(!g.heartbeat(1, t0));
  // Nothing new opened, but heartbeat 1 is still held: 2 must wait behind it.
  BOOST_TEST(!g.heartbeat(2, t0));
  g.settle(a);
  BOOST_TEST(g.released() == (std::vector<int64_t>{1, 2}));
}

BOOST_AUTO_TEST_CASE(many_frames_settled_in_any_order) {
  gate g;
  std::vector<gate::ticket> tickets;
  std::vector<int64_t> expected;
  for (int i = 0; i < 5000; ++i) {
    tickets.push_back(g.open());
    if (i % 100 == 99) {
      BOOST_TEST(!g.heartbeat(i, t0));
      expected.push_back(i);
    }
  }
  // Settle from the back: nothing may be released until the very first frame is settled.
  std::vector<int64_t> got;
  for (size_t i = tickets.size(); i-- > 1;) {
    g.settle(tickets[i]);
    auto r = g.released();
    got.insert(got.end(), r.begin(), r.end());
  }
  BOOST_TEST(got.empty());
  BOOST_TEST(g.unsettled() == 1u);
  g.settle(tickets[0]);
  BOOST_TEST(g.released() == expected);
  BOOST_TEST(g.unsettled() == 0u);
}

BOOST_AUTO_TEST_CASE(the_delay_notice_comes_once_per_interval_while_an_ack_waits) {
  gate g;
  auto a = g.open();
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(60), seconds(10)), "nothing held");
  BOOST_TEST(!g.heartbeat(1, t0));
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(9), seconds(10)));
  BOOST_TEST(g.delay_notice_due(t0 + seconds(10), seconds(10)));
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(15), seconds(10)));
  BOOST_TEST(g.delay_notice_due(t0 + seconds(20), seconds(10)));
  g.settle(a);
  BOOST_TEST(g.released() == std::vector<int64_t>{1});
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(40), seconds(10)), "released: nothing to notice");
  auto b = g.open();
  BOOST_TEST(!g.heartbeat(2, t0 + seconds(41)));
  BOOST_TEST(!g.delay_notice_due(t0 + seconds(45), seconds(10)), "a new wait is timed from its heartbeat");
  BOOST_TEST(g.delay_notice_due(t0 + seconds(51), seconds(10)));
  g.settle(b);
}

BOOST_AUTO_TEST_SUITE_END()
