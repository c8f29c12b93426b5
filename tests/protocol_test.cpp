#define BOOST_TEST_MODULE protocol_test
#include <boost/test/unit_test.hpp>

// Wire protocol v1 codec (protocol/codec.hpp; DESIGN §2; docs/protocol.md): line splitting and
// decoding of every valid node -> coordinator frame. The refusals are in protocol_errors_test.cpp,
// encoding and the documentation's examples in protocol_encode_test.cpp, the ack gate in
// protocol_ack_gate_test.cpp; all four make one binary.

#include "protocol_test_support.hpp"

using namespace protocol_test;

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
  BOOST_TEST(p::type_of(p::node_message{p::check_result{}}) == "check_result"s);
  for (auto& base : {base_hello(), base_heartbeat(), base_attempt(), base_logs(), base_backfill_response(), base_bye(),
                     base_check_result()}) {
    auto r = p::decode(base.dump());
    BOOST_REQUIRE(std::holds_alternative<p::node_message>(r));
    BOOST_TEST(p::type_of(std::get<p::node_message>(r)) == base["type"].get<std::string>());
  }
}

BOOST_AUTO_TEST_SUITE_END()

// --- checks (feature::checks, docs/protocol.md) ---

BOOST_AUTO_TEST_CASE(hello_features_are_optional_names) {
  auto h = base_hello();
  auto plain = std::get<p::hello>(std::get<p::node_message>(p::decode(h.dump())));
  BOOST_TEST(plain.features.empty());
  h["features"] = {"checks", "something-newer"};
  auto with = std::get<p::hello>(std::get<p::node_message>(p::decode(h.dump())));
  BOOST_TEST((with.features == std::vector<std::string>{"checks", "something-newer"}));
  // Encoded back only when there are some: an older coordinator sees the hello it knows.
  BOOST_TEST(p::encode_hello(plain).find("features") == std::string::npos);
  BOOST_TEST(p::encode_hello(with).find(R"("features":["checks","something-newer"])") != std::string::npos);
  for (auto bad : {json("checks"), json::array({1}), json::array({""}), json::array({std::string(65, 'x')}),
                   json(std::vector<std::string>(33, "x"))}) {
    h["features"] = bad;
    auto r = p::decode(h.dump());
    BOOST_REQUIRE(std::holds_alternative<p::decode_error>(r));
    BOOST_TEST(std::get<p::decode_error>(r).message.find("hello.features") == 0, std::get<p::decode_error>(r).message);
  }
}

BOOST_AUTO_TEST_CASE(check_results_decode_and_refuse_bad_values) {
  auto ok = std::get<p::check_result>(std::get<p::node_message>(p::decode(base_check_result().dump())));
  BOOST_TEST(ok.request_id == "7d444840-9dc0-11d1-b245-5ffdce74fad2");
  BOOST_TEST(ok.status == "exited");
  BOOST_TEST(ok.exit_code == 0);
  BOOST_TEST(ok.output == "Filesystem Size\n/dev/sda1 100G\n");
  BOOST_TEST(!ok.truncated);
  // Round trip through the agent's encoder, for each status.
  for (auto status : {"exited", "timed_out", "refused", "failed_to_start"}) {
    p::check_result c{"7D444840-9DC0-11D1-B245-5FFDCE74FAD2", status, 3, "out\xc3\xa9", true, "why"};
    auto back = std::get<p::check_result>(std::get<p::node_message>(p::decode(p::encode_check_result(c))));
    BOOST_TEST(back.request_id == "7d444840-9dc0-11d1-b245-5ffdce74fad2");
    BOOST_TEST(back.status == status);
    BOOST_TEST(back.exit_code == (std::string(status) == "exited" ? 3 : -1));
    BOOST_TEST(back.output == "out\xc3\xa9");
    BOOST_TEST(back.truncated);
    BOOST_TEST(back.error == "why");
  }
  struct bad {
    const char* field;
    json value;
    const char* says;
  };
  for (auto& b : std::vector<bad>{{"request_id", "nope", "check_result.request_id: expected a UUID"},
                                  {"status", "ok", "check_result.status: expected one of"},
                                  {"exit_code", nullptr, "check_result.exit_code: missing"},
                                  {"exit_code", 256, "check_result.exit_code: must be at most 255"},
                                  {"exit_code", "0", "check_result.exit_code: expected an integer"},
                                  {"output", 5, "check_result.output: expected a string"},
                                  {"truncated", "no", "check_result.truncated: expected true or false"}}) {
    auto j = base_check_result();
    j[b.field] = b.value;
    auto r = p::decode(j.dump());
    BOOST_REQUIRE_MESSAGE(std::holds_alternative<p::decode_error>(r), b.field);
    auto& e = std::get<p::decode_error>(r);
    BOOST_TEST(e.code == p::code::bad_frame);
    BOOST_TEST(e.message.find(b.says) == 0, e.message);
    BOOST_TEST(e.ref == "check_result");
  }
}

BOOST_AUTO_TEST_CASE(check_requests_round_trip_and_the_agent_refuses_bad_ones) {
  p::check_request req{"7d444840-9dc0-11d1-b245-5ffdce74fad2", "disk", {"df", "-h", "/"}, 10000, 65536};
  auto line = p::encode_check_request(req);
  BOOST_TEST(line.back() == '\n');
  std::string why;
  auto back = p::decode_check_request(std::string_view(line).substr(0, line.size() - 1), why);
  BOOST_REQUIRE_MESSAGE(back, why);
  BOOST_TEST(back->request_id == req.request_id);
  BOOST_TEST(back->name == "disk");
  BOOST_TEST((back->argv == std::vector<std::string>{"df", "-h", "/"}));
  BOOST_TEST(back->timeout_ms == 10000);
  BOOST_TEST(back->output_max == 65536);
  auto j = json::parse(line);
  for (auto& [field, value, says] : std::vector<std::tuple<std::string, json, std::string>>{
         {"argv", json::array(), "check_request.argv: must not be empty"},
         {"argv", json::array({1}), "check_request.argv: expected strings"},
         {"timeout_ms", 0, "check_request.timeout_ms: must be at least 1"},
         {"output_max", -1, "check_request.output_max: must be at least 0"},
         {"name", nullptr, "check_request.name: missing"}}) {
    auto k = j;
    k[field] = value;
    std::string w;
    BOOST_TEST(!p::decode_check_request(k.dump(), w), field);
    BOOST_TEST(w == says);
  }
  std::string w;
  BOOST_TEST(!p::decode_check_request("[1]", w));
  BOOST_TEST(w == "not a JSON object");
}
