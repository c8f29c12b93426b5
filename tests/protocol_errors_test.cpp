#include <boost/test/unit_test.hpp>

// Every refusal of protocol::decode, checked for its exact code, ref and message, because agents
// and operators see them: bad JSON and UTF-8, unknown types, each field's bad-value table, limits.

#include "protocol_test_support.hpp"

using namespace protocol_test;

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
