#include <boost/test/unit_test.hpp>

// Encoding of every frame in both directions, round trips, and the examples and transcript of
// docs/protocol.md decoded and encoded exactly.

#include "protocol_test_support.hpp"

using namespace protocol_test;

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

const std::set<std::string> node_types{"hello", "heartbeat",   "attempt", "logs", "backfill_response",
                                       "bye",   "check_result"};

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
  } else if (type == "check_request") {
    expected = p::encode_check_request({j.at("request_id").get<std::string>(), j.at("name").get<std::string>(),
                                        j.at("argv").get<std::vector<std::string>>(), j.at("timeout_ms").get<int64_t>(),
                                        j.at("output_max").get<int64_t>()});
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
  for (auto* t : {"hello", "heartbeat", "attempt", "logs", "backfill_response", "bye", "check_result", "welcome",
                  "heartbeat_ack", "backfill_request", "error", "close", "check_request"})
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
