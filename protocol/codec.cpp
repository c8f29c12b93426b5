#include "protocol/codec.hpp"

#include "common/states.hpp"

#include "common/clock.hpp"
#include "common/ids.hpp"
#include "common/json_limits.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>

static_assert(nodecoord::protocol::max_depth == nodecoord::max_json_depth);
#include <limits>

namespace nodecoord::protocol {

using json = nlohmann::json;

namespace {

// Field limits: generous for real agents, small enough that one frame cannot make us allocate
// much beyond max_frame_bytes.
constexpr size_t max_name = 255;
constexpr size_t max_text = 4096;
// Counters (seq, log_count): exact in a double, so JavaScript agents and JSON tools agree, and
// far from INT64_MAX, so `log_max_seq + 1` cannot overflow in C++ or SQL.
constexpr int64_t max_counter = int64_t{1} << 53;
constexpr size_t max_features = 32;

/// Thrown inside decode() for a field that is missing or ill-typed; becomes bad_frame.
struct field_error {
  std::string message;
};

class reader {
public:
  reader(const json& obj, const char* type) : obj_(obj), type_(type) {}

  const json* find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  [[noreturn]] void fail(const char* key, const std::string& what) const {
    throw field_error{std::string(type_) + "." + key + ": " + what};
  }

  std::string str(const char* key, size_t max_len = max_text, bool required = true) const {
    auto* v = find(key);
    if (!v) {
      if (required)
        fail(key, "missing");
      return {};
    }
    if (!v->is_string())
      fail(key, "expected a string");
    auto& s = v->get_ref<const std::string&>();
    if (required && s.empty())
      fail(key, "must not be empty");
    if (s.size() > max_len)
      fail(key, "longer than " + std::to_string(max_len) + " bytes");
    return s;
  }

  std::string uuid(const char* key) const {
    auto s = str(key, 36);
    if (!is_uuid(s))
      fail(key, "expected a UUID");
    // One spelling: PostgreSQL reads UUIDs back in lower case, SQLite compares text exactly.
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
    return s;
  }

  int64_t integer(const char* key, int64_t min, bool required = true, int64_t dflt = 0,
                  int64_t max = std::numeric_limits<int64_t>::max()) const {
    auto* v = find(key);
    if (!v) {
      if (required)
        fail(key, "missing");
      return dflt;
    }
    if (!v->is_number_integer())
      fail(key, "expected an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      fail(key, "out of range");
    auto x = v->get<int64_t>();
    if (x < min)
      fail(key, "must be at least " + std::to_string(min));
    if (x > max)
      fail(key, "must be at most " + std::to_string(max));
    return x;
  }

  bool boolean(const char* key) const {
    auto* v = find(key);
    if (!v)
      fail(key, "missing");
    if (!v->is_boolean())
      fail(key, "expected true or false");
    return v->get<bool>();
  }

  std::string time(const char* key, bool required) const {
    auto s = str(key, 64, required);
    if (s.empty())
      return s;
    auto t = parse_time(s);
    if (!t)
      fail(key, "expected an RFC 3339 time in years 0001-9999 (UTC) such as 2026-01-09T12:00:00.000Z");
    return format_time(*t);
  }

  std::string object_text(const char* key) const {
    auto* v = find(key);
    if (!v)
      return {};
    if (!v->is_object())
      fail(key, "expected an object");
    return v->dump();
  }

  template <class Names>
  std::string one_of(const char* key, const Names& allowed) const {
    auto s = str(key, 32);
    for (std::string_view a : allowed)
      if (s == a)
        return s;
    std::string list;
    for (std::string_view a : allowed)
      list += (list.empty() ? "" : ", ") + std::string(a);
    fail(key, "expected one of " + list);
  }

  const json& array(const char* key) const {
    auto* v = find(key);
    if (!v)
      fail(key, "missing");
    if (!v->is_array())
      fail(key, "expected an array");
    return *v;
  }

private:
  const json& obj_;
  const char* type_;
};

/// Decodes `r.array(key)`, an array of objects, with `element(reader&)` per object; errors name
/// the element ("logs.entries[3].seq: ...").
template <class T, class F>
std::vector<T> decode_objects(const reader& r, const char* type, const char* key, F element) {
  auto& arr = r.array(key);
  std::vector<T> out;
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    auto where = std::string(type) + "." + key + "[" + std::to_string(i) + "]";
    if (!arr[i].is_object())
      throw field_error{where + ": expected an object"};
    reader er(arr[i], where.c_str());
    out.push_back(element(er));
  }
  return out;
}

/// nullopt: unknown type.
std::optional<node_message> decode_typed(const std::string& type, const json& j) {
  if (type == "hello") {
    reader r(j, "hello");
    hello h;
    h.protocol = r.integer("protocol", std::numeric_limits<int64_t>::min());
    h.node = r.str("node", max_name);
    h.key = r.str("key", 512);
    h.agent = r.str("agent", max_name, false);
    h.capabilities = r.object_text("capabilities");
    if (r.find("features")) {
      auto& arr = r.array("features");
      if (arr.size() > max_features)
        r.fail("features", "more than " + std::to_string(max_features) + " names");
      for (size_t i = 0; i < arr.size(); ++i) {
        if (!arr[i].is_string() || arr[i].get_ref<const std::string&>().empty()
            || arr[i].get_ref<const std::string&>().size() > 64)
          r.fail("features", "element " + std::to_string(i) + ": expected a name of 1 to 64 bytes");
        h.features.push_back(arr[i].get<std::string>()); // unknown names: a newer agent's, ignored
      }
    }
    return h;
  }
  if (type == "heartbeat") {
    reader r(j, "heartbeat");
    return heartbeat{r.integer("seq", 0, true, 0, max_counter)};
  }
  if (type == "attempt") {
    reader r(j, "attempt");
    attempt a;
    a.attempt_id = r.uuid("attempt_id");
    a.task_id = r.str("task_id", max_name);
    a.state = r.one_of("state", names_of<attempt_state>());
    a.started_at = r.time("started_at", false);
    a.finished_at = r.time("finished_at", false);
    a.meta = r.object_text("meta");
    return a;
  }
  if (type == "logs") {
    reader r(j, "logs");
    logs l;
    l.attempt_id = r.uuid("attempt_id");
    l.entries = decode_objects<log_line>(r, "logs", "entries", [](const reader& er) {
      log_line line;
      line.seq = er.integer("seq", 0, true, 0, max_counter);
      line.ts = er.time("ts", true);
      line.stream = er.one_of("stream", std::array<std::string_view, 3>{"stdout", "stderr", "system"});
      auto* text = er.find("line");
      if (!text || !text->is_string())
        er.fail("line", "expected a string");
      line.line = text->get<std::string>(); // may be empty; bounded by max_frame_bytes
      return line;
    });
    return l;
  }
  if (type == "backfill_response") {
    reader r(j, "backfill_response");
    backfill_response b;
    b.request_id = r.uuid("request_id");
    b.results = decode_objects<backfill_result>(r, "backfill_response", "results", [](const reader& er) {
      backfill_result res;
      res.attempt_id = er.uuid("attempt_id");
      res.ok = er.boolean("ok");
      // ok is a claim about data; log_count is the evidence the coordinator checks it against.
      res.log_count = er.integer("log_count", 0, res.ok, 0, max_counter);
      res.error = er.str("error", max_text, false);
      return res;
    });
    return b;
  }
  if (type == "bye") {
    reader r(j, "bye");
    return bye{r.str("reason", max_text, false)};
  }
  if (type == "check_result") {
    reader r(j, "check_result");
    check_result c;
    c.request_id = r.uuid("request_id");
    c.status =
      r.one_of("status", std::array<std::string_view, 4>{check_status::exited, check_status::timed_out,
                                                         check_status::refused, check_status::failed_to_start});
    c.exit_code = r.integer("exit_code", -1, c.status == check_status::exited, -1, 255);
    if (auto* out = r.find("output")) {
      if (!out->is_string())
        r.fail("output", "expected a string");
      c.output = out->get<std::string>(); // bounded by max_frame_bytes; the session cuts it to output_max
    }
    if (auto* t = r.find("truncated")) {
      if (!t->is_boolean())
        r.fail("truncated", "expected true or false");
      c.truncated = t->get<bool>();
    }
    c.error = r.str("error", max_text, false);
    return c;
  }
  return std::nullopt;
}

std::string line_of(const json& j) {
  // Invalid UTF-8 cannot reach here (decode rejects it), but a server string could carry it;
  // replace rather than throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

} // namespace

decode_result decode(std::string_view line) {
  // nlohmann stops at a NUL byte; valid JSON never holds one raw, so nothing may hide behind it.
  if (line.find('\0') != std::string_view::npos)
    return decode_error{code::bad_frame, "not valid JSON (or not valid UTF-8)", ""};
  auto j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded())
    return decode_error{code::bad_frame, "not valid JSON (or not valid UTF-8)", ""};
  if (!j.is_object())
    return decode_error{code::bad_frame, "a frame must be a JSON object", ""};
  auto t = j.find("type");
  if (t == j.end() || !t->is_string())
    return decode_error{code::bad_frame, "missing string field 'type'", ""};
  const auto& type = t->get_ref<const std::string&>();
  bool plain_type = type.size() <= 64 && type.find('\0') == std::string::npos;
  if (auto why = unsafe_json(j, plain_type ? type : "frame", max_depth))
    return decode_error{code::bad_frame, *why, plain_type ? type : ""};
  try {
    if (auto m = decode_typed(type, j))
      return std::move(*m);
  } catch (const field_error& e) {
    return decode_error{code::bad_frame, e.message, type};
  }
  auto shown = type.size() > 64 ? type.substr(0, 64) + "..." : type;
  return decode_error{code::unknown_type, "unknown frame type '" + shown + "'", ""};
}

const char* type_of(const node_message& m) {
  static constexpr const char* names[] = {"hello", "heartbeat",   "attempt", "logs", "backfill_response",
                                          "bye",   "check_result"};
  return names[m.index()];
}

std::string encode_welcome(const std::string& node_id, int64_t session, int64_t heartbeat_interval_ms,
                           const std::string& server_time) {
  return line_of({{"type", "welcome"},
                  {"protocol", version},
                  {"node_id", node_id},
                  {"session", session},
                  {"heartbeat_interval_ms", heartbeat_interval_ms},
                  {"server_time", server_time}});
}

std::string encode_heartbeat_ack(int64_t seq, const std::string& server_time) {
  return line_of({{"type", "heartbeat_ack"}, {"seq", seq}, {"server_time", server_time}});
}

std::string encode_backfill_request(const std::string& request_id, const std::vector<std::string>& attempt_ids,
                                    const std::vector<std::pair<std::string, int64_t>>& logs_after) {
  json j{{"type", "backfill_request"}, {"request_id", request_id}, {"attempt_ids", attempt_ids}};
  if (!logs_after.empty()) {
    json la = json::object();
    for (auto& [id, seq] : logs_after)
      la[id] = seq;
    j["logs_after"] = std::move(la);
  }
  return line_of(j);
}

std::string encode_error(std::string_view c, std::string_view message, std::string_view ref) {
  json j{{"type", "error"}, {"code", c}, {"message", message}};
  if (!ref.empty())
    j["ref"] = ref;
  return line_of(j);
}

std::string encode_close(std::string_view reason) { return line_of({{"type", "close"}, {"reason", reason}}); }

std::string encode_hello(const hello& h) {
  json j{{"type", "hello"}, {"protocol", h.protocol}, {"node", h.node}, {"key", h.key}, {"agent", h.agent}};
  if (!h.capabilities.empty())
    j["capabilities"] = json::parse(h.capabilities);
  if (!h.features.empty())
    j["features"] = h.features;
  return line_of(j);
}

std::string encode_check_request(const check_request& r) {
  return line_of({{"type", "check_request"},
                  {"request_id", r.request_id},
                  {"name", r.name},
                  {"argv", r.argv},
                  {"timeout_ms", r.timeout_ms},
                  {"output_max", r.output_max}});
}

std::optional<check_request> decode_check_request(std::string_view line, std::string& why) {
  auto j = json::parse(line.begin(), line.end(), nullptr, false);
  if (!j.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  try {
    reader r(j, "check_request");
    check_request c;
    c.request_id = r.uuid("request_id");
    c.name = r.str("name", max_name);
    auto& argv = r.array("argv");
    if (argv.empty())
      r.fail("argv", "must not be empty");
    for (auto& a : argv) {
      if (!a.is_string())
        r.fail("argv", "expected strings");
      c.argv.push_back(a.get<std::string>());
    }
    c.timeout_ms = r.integer("timeout_ms", 1);
    c.output_max = r.integer("output_max", 0);
    return c;
  } catch (const field_error& e) {
    why = e.message;
    return std::nullopt;
  }
}

std::string encode_check_result(const check_result& r) {
  json j{{"type", "check_result"}, {"request_id", r.request_id}, {"status", r.status}};
  if (r.status == check_status::exited)
    j["exit_code"] = r.exit_code;
  j["output"] = r.output;
  j["truncated"] = r.truncated;
  if (!r.error.empty())
    j["error"] = r.error;
  return line_of(j);
}

std::string encode_heartbeat(int64_t seq) { return line_of({{"type", "heartbeat"}, {"seq", seq}}); }

std::string encode_attempt(const attempt& a) {
  json j{{"type", "attempt"}, {"attempt_id", a.attempt_id}, {"task_id", a.task_id}, {"state", a.state}};
  if (!a.started_at.empty())
    j["started_at"] = a.started_at;
  if (!a.finished_at.empty())
    j["finished_at"] = a.finished_at;
  if (!a.meta.empty())
    j["meta"] = json::parse(a.meta);
  return line_of(j);
}

std::string encode_logs(const logs& l) {
  json entries = json::array();
  for (auto& e : l.entries)
    entries.push_back({{"seq", e.seq}, {"ts", e.ts}, {"stream", e.stream}, {"line", e.line}});
  return line_of({{"type", "logs"}, {"attempt_id", l.attempt_id}, {"entries", std::move(entries)}});
}

std::string encode_backfill_response(const backfill_response& r) {
  json results = json::array();
  for (auto& x : r.results) {
    json o{{"attempt_id", x.attempt_id}, {"ok", x.ok}};
    if (x.ok)
      o["log_count"] = x.log_count;
    if (!x.error.empty())
      o["error"] = x.error;
    results.push_back(std::move(o));
  }
  return line_of({{"type", "backfill_response"}, {"request_id", r.request_id}, {"results", std::move(results)}});
}

std::string encode_bye(std::string_view reason) {
  json j{{"type", "bye"}};
  if (!reason.empty())
    j["reason"] = reason;
  return line_of(j);
}

} // namespace nodecoord::protocol
