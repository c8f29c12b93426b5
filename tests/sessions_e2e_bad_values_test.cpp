#include <boost/test/unit_test.hpp>

// One validation for both backends (issue 15): every value one backend would refuse or mishandle
// gets the same error frame on SQLite and PostgreSQL, and the daemon keeps serving.

#include "sessions_e2e_support.hpp"

using namespace sessions_e2e;

// --- one validation for both backends (issue 15) -------------------------------------------

namespace {

/// A value one backend would refuse or mishandle, in the frame a node would send it in.
struct bad_value_row {
  const char* what;
  std::string line;
  std::string message_start; // the error message names the field
  std::string message_has;
};

std::string attempt_with(const std::string& id, const std::string& field, const std::string& raw_json) {
  return R"({"type":"attempt","attempt_id":")" + id + R"(","task_id":"t","state":"running",")" + field
         + "\":" + raw_json + "}";
}

std::string logs_with(const std::string& id, const std::string& seq, const std::string& ts, const std::string& line) {
  return R"({"type":"logs","attempt_id":")" + id + R"(","entries":[{"seq":)" + seq + R"(,"ts":")" + ts
         + R"(","stream":"stdout","line":)" + line + "}]}";
}

/// Sends every row, each followed by a heartbeat, to a daemon on `storage_url` and checks the
/// same answer on every backend: bad_frame naming the field, then the ack; nothing stored; the
/// session usable throughout. Then a frame of the same attempt with good values is stored.
void every_bad_value_gets_the_same_answer(const std::string& storage_url) {
  daemon_under_test d(with(base_settings(), {{"max_protocol_errors", "100"}}), storage_url);
  auto alpha = d.add_node("alpha");
  d.start();
  const auto id = new_uuid();
  const std::string deep = std::string(400000, '[') + std::string(400000, ']');
  const std::string ok_ts = "2026-01-09T12:00:00.000Z";
  std::vector<bad_value_row> rows = {
    {"meta nested 400,000 deep", attempt_with(id, "meta", "{\"a\":" + deep + "}"), "attempt.meta.a[0]",
     "nested deeper than 32 levels"},
    {"U+0000 in meta", attempt_with(id, "meta", R"({"a":"x\u0000"})"), "attempt.meta.a:", "\\u0000"},
    {"U+0000 in a meta key", attempt_with(id, "meta", R"({"k\u0000":1})"), "attempt.meta.?:", "\\u0000"},
    {"U+0000 in task_id", R"({"type":"attempt","attempt_id":")" + id + R"(","task_id":"t\u0000","state":"queued"})",
     "attempt.task_id:", "\\u0000"},
    {"year 0000", attempt_with(id, "started_at", "\"0000-06-01T00:00:00Z\""), "attempt.started_at:", "0001-9999"},
    {"year 0 after the offset", attempt_with(id, "started_at", "\"0001-01-01T00:30:00+01:00\""),
     "attempt.started_at:", "0001-9999"},
    {"year 10000 after the offset", attempt_with(id, "finished_at", "\"9999-12-31T23:30:00-01:00\""),
     "attempt.finished_at:", "0001-9999"},
    {"seq INT64_MAX", logs_with(id, "9223372036854775807", ok_ts, "\"x\""),
     "logs.entries[0].seq:", "at most 9007199254740992"},
    {"seq 2^53 + 1", logs_with(id, "9007199254740993", ok_ts, "\"x\""),
     "logs.entries[0].seq:", "at most 9007199254740992"},
    {"U+0000 in a line", logs_with(id, "0", ok_ts, R"("a\u0000b")"), "logs.entries[0].line:", "\\u0000"},
    {"a line's time in year 0", logs_with(id, "0", "0000-01-01T00:00:00Z", "\"x\""),
     "logs.entries[0].ts:", "0001-9999"},
    {"heartbeat seq 2^53 + 1", R"({"type":"heartbeat","seq":9007199254740993})",
     "heartbeat.seq:", "at most 9007199254740992"},
    {"log_count INT64_MAX",
     R"({"type":"backfill_response","request_id":")" + new_uuid() + R"(","results":[{"attempt_id":")" + id
       + R"(","ok":true,"log_count":9223372036854775807}]})",
     "backfill_response.results[0].log_count:", "at most 9007199254740992"},
  };
  auto c = connect_node(d, alpha, 1);
  int64_t seq = 100;
  for (auto& r : rows) {
    BOOST_TEST_CONTEXT(r.what) {
      c.send_line(r.line);
      auto f = c.read_frame(frame_bound);
      require_error(f, "bad_frame");
      auto message = f.value("message", "");
      BOOST_TEST(message.rfind(r.message_start, 0) == 0, message);
      BOOST_TEST(message.find(r.message_has) != std::string::npos, message);
      c.heartbeat_roundtrip(++seq); // usable, and nothing waits for a commit
    }
  }
  BOOST_TEST(d.count("SELECT COUNT(*) FROM node_task_attempts") == 0);
  BOOST_TEST(d.count("SELECT COUNT(*) FROM attempt_logs") == 0);

  // The same attempt with good values, its id in upper case: stored once, in lower case.
  std::string upper = id;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char ch) { return std::toupper(ch); });
  c.send_line(attempt_frame(upper, "t", "running", "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z",
                            R"({"deep":[[[[1]]]],"text":"\\u0000 is six characters here"})"));
  c.send_line(logs_with(upper, "9007199254740992", ok_ts, "\"the last seq there is\""));
  c.heartbeat_roundtrip(++seq);
  auto as_text = [&](const char* col) {
    return storage_url.empty()
             ? std::string(col)
             : "to_char(" + std::string(col) + R"( AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))";
  };
  BOOST_TEST(d.rows("SELECT id, " + as_text("started_at") + ", " + as_text("finished_at") + " FROM node_task_attempts")
             == std::vector<std::string>{id + " | 0001-01-01T00:00:00.000Z | 9999-12-31T23:59:59.999Z"});
  BOOST_TEST(d.rows("SELECT attempt_id, seq, line FROM attempt_logs")
             == std::vector<std::string>{id + " | 9007199254740992 | the last seq there is"});

  // Before authentication the same check: a nested hello is refused, the daemon keeps serving.
  node_client h(d.port());
  h.send_line(R"({"type":"hello","protocol":1,"node":"alpha","key":")" + alpha.key + R"(","capabilities":{"x":)"
              + std::string(4000, '[') + std::string(4000, ']') + "}}");
  auto refused = h.read_frame(frame_bound);
  require_error(refused, "hello_required");
  BOOST_TEST(refused.value("message", "").find("nested deeper than 32 levels") != std::string::npos, refused.dump());
  require_closed(h);
  c.heartbeat_roundtrip(++seq);
  c.send_line(protocol::encode_bye("done"));
  require_closed(c);
  d.stop();
}

} // namespace

BOOST_AUTO_TEST_CASE(every_bad_value_gets_the_same_answer_sqlite) { every_bad_value_gets_the_same_answer(""); }

BOOST_AUTO_TEST_CASE(every_bad_value_gets_the_same_answer_postgresql) {
  test_database t(storage::backend::postgresql);
  every_bad_value_gets_the_same_answer(t.url());
}
