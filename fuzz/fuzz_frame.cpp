// libFuzzer target: the wire protocol's decoder and line splitter (protocol/codec.hpp).
//
// 1. decode() of the whole input. A frame that decodes is encoded again with the node-side
//    encoder of its type; that line must be one line, decode again, and give the same message
//    (decode is a normaliser: ids lower case, times as "...T..:..:...mmmZ", documents compact).
//    Every error frame the session would answer with (encode_error of the decode error) must be
//    one line of valid JSON.
// 2. line_splitter over the input in pseudo-random chunkings (max_frame_bytes and the chunking
//    seed are taken from the end of the input): the lines and the overflow must equal a
//    one-shot reference split, whatever the chunking; every line is decoded as well.
#include "fuzz/check.hpp"
#include "protocol/codec.hpp"

#include <fuzzer/FuzzedDataProvider.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace nodecoord;
namespace p = nodecoord::protocol;

namespace {

using nodecoord::fuzz::check;
using nodecoord::fuzz::fail;

/// One line: exactly one '\n', at the end, and the text before it is a JSON object.
std::string_view one_json_line(const std::string& s, const char* what) {
  check(!s.empty() && s.back() == '\n', what, s);
  std::string_view body(s.data(), s.size() - 1);
  check(body.find('\n') == std::string_view::npos, what, s);
  check(body.find('\r') == std::string_view::npos, what, s);
  auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  check(!j.is_discarded() && j.is_object(), what, s);
  return body;
}

std::string encode(const p::node_message& m) {
  return std::visit(
    [](const auto& x) -> std::string {
      using T = std::decay_t<decltype(x)>;
      if constexpr (std::is_same_v<T, p::hello>)
        return p::encode_hello(x);
      else if constexpr (std::is_same_v<T, p::heartbeat>)
        return p::encode_heartbeat(x.seq);
      else if constexpr (std::is_same_v<T, p::attempt>)
        return p::encode_attempt(x);
      else if constexpr (std::is_same_v<T, p::logs>)
        return p::encode_logs(x);
      else if constexpr (std::is_same_v<T, p::backfill_response>)
        return p::encode_backfill_response(x);
      else if constexpr (std::is_same_v<T, p::check_result>)
        return p::encode_check_result(x);
      else
        return p::encode_bye(x.reason);
    },
    m);
}

bool same(const p::node_message& a, const p::node_message& b) {
  if (a.index() != b.index())
    return false;
  return std::visit(
    [&](const auto& x) -> bool {
      using T = std::decay_t<decltype(x)>;
      const auto& y = std::get<T>(b);
      if constexpr (std::is_same_v<T, p::hello>)
        return x.protocol == y.protocol && x.node == y.node && x.key == y.key && x.agent == y.agent
               && x.capabilities == y.capabilities && x.features == y.features;
      else if constexpr (std::is_same_v<T, p::heartbeat>)
        return x.seq == y.seq;
      else if constexpr (std::is_same_v<T, p::attempt>)
        return x.attempt_id == y.attempt_id && x.task_id == y.task_id && x.state == y.state
               && x.started_at == y.started_at && x.finished_at == y.finished_at && x.meta == y.meta;
      else if constexpr (std::is_same_v<T, p::logs>) {
        if (x.attempt_id != y.attempt_id || x.entries.size() != y.entries.size())
          return false;
        for (size_t i = 0; i < x.entries.size(); ++i) {
          auto &e = x.entries[i], &f = y.entries[i];
          if (e.seq != f.seq || e.ts != f.ts || e.stream != f.stream || e.line != f.line)
            return false;
        }
        return true;
      } else if constexpr (std::is_same_v<T, p::backfill_response>) {
        if (x.request_id != y.request_id || x.results.size() != y.results.size())
          return false;
        for (size_t i = 0; i < x.results.size(); ++i) {
          auto &r = x.results[i], &s = y.results[i];
          // log_count is written only when ok (decode defaults it to 0 otherwise).
          if (r.attempt_id != s.attempt_id || r.ok != s.ok || r.error != s.error
              || (r.ok && r.log_count != s.log_count))
            return false;
        }
        return true;
      } else if constexpr (std::is_same_v<T, p::check_result>) {
        // exit_code is written only with exited (decode defaults it to -1 otherwise).
        return x.request_id == y.request_id && x.status == y.status && x.output == y.output
               && x.truncated == y.truncated && x.error == y.error
               && (x.status != p::check_status::exited || x.exit_code == y.exit_code);
      } else {
        return x.reason == y.reason;
      }
    },
    a);
}

void decode_and_roundtrip(std::string_view line) {
  auto r = p::decode(line);
  if (auto* err = std::get_if<p::decode_error>(&r)) {
    check(err->code == p::code::bad_frame || err->code == p::code::unknown_type, "unexpected error code", err->code);
    // What the session writes back.
    one_json_line(p::encode_error(err->code, err->message, err->ref), "encode_error: not one JSON line");
    return;
  }
  auto& msg = std::get<p::node_message>(r);
  check(p::type_of(msg) != nullptr, "type_of");
  auto again = encode(msg);
  auto body = one_json_line(again, "re-encoded frame is not one JSON line");
  auto r2 = p::decode(body);
  if (auto* err = std::get_if<p::decode_error>(&r2)) {
    fail("re-encoded frame does not decode", again, err->message);
  }
  check(same(msg, std::get<p::node_message>(r2)), "re-encoded frame decodes to another message", line, again);
  // Encoding is a fixed point after one round.
  check(encode(std::get<p::node_message>(r2)) == again, "encode(decode(encode(m))) != encode(m)", again);
}

/// The reference split of the whole stream: complete lines (trailing '\r' dropped, blank ones
/// skipped) up to the first one over `max`; then the incomplete tail.
struct reference {
  std::vector<std::string> lines;
  bool too_large = false;
  size_t tail = 0;
};

reference split_once(std::string_view s, size_t max) {
  reference out;
  size_t start = 0;
  while (true) {
    auto nl = s.find('\n', start);
    if (nl == std::string_view::npos)
      break;
    auto line = s.substr(start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.size() > max) {
      out.too_large = true;
      return out;
    }
    if (!line.empty())
      out.lines.emplace_back(line);
  }
  auto tail = s.substr(start);
  // An incomplete line may wait for its '\n' only while it could still become a line of at most
  // max bytes: max + 1 bytes are allowed only if the last is the '\r' of "\r\n".
  if (tail.size() > max + 1 || (tail.size() == max + 1 && tail.back() != '\r')) {
    out.too_large = true;
    return out;
  }
  out.tail = tail.size();
  return out;
}

void splitter(FuzzedDataProvider& fdp) {
  auto max = fdp.ConsumeIntegralInRange<size_t>(1, 512);
  auto seed = fdp.ConsumeIntegral<uint32_t>();
  auto stream = fdp.ConsumeRemainingBytesAsString();
  auto want = split_once(stream, max);
  for (int round = 0; round < 3; ++round) {
    p::line_splitter sp(max);
    std::vector<std::string> got;
    bool too_large = false;
    uint32_t x = seed + static_cast<uint32_t>(round) * 0x9e3779b9u;
    size_t pos = 0;
    while (pos < stream.size() && !too_large) {
      x = x * 1664525u + 1013904223u;
      // Round 0: one byte at a time; then chunks from 0 to about 2 * max bytes.
      size_t n = round == 0 ? 1 : (x >> 8) % (2 * max + 3);
      n = std::min(n, stream.size() - pos);
      auto st = sp.feed(std::string_view(stream).substr(pos, n), [&](std::string_view line) {
        check(!line.empty() && line.size() <= max, "splitter: empty or oversized line", line);
        got.emplace_back(line);
      });
      pos += n;
      too_large = st == p::line_splitter::status::too_large;
      if (too_large)
        check(sp.buffered() == 0, "splitter: overflow kept its buffer");
    }
    check(too_large == want.too_large, "splitter: overflow differs from the reference", stream);
    check(got == want.lines, "splitter: lines differ from the reference", stream);
    if (!too_large)
      check(sp.buffered() == want.tail, "splitter: buffered() differs from the incomplete tail", stream);
  }
  for (auto& line : want.lines)
    decode_and_roundtrip(line);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view whole(reinterpret_cast<const char*>(data), size);
  decode_and_roundtrip(whole);
  FuzzedDataProvider fdp(data, size);
  splitter(fdp);
  return 0;
}
