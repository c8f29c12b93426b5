#pragma once
// Wire protocol v1 (DESIGN §2, docs/protocol.md): JSON Lines over TCP. Plain C++, no actors:
// line splitting across arbitrary read boundaries, decoding and validating every node ->
// coordinator message, encoding every coordinator -> node message.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace nodecoord::protocol {

inline constexpr int64_t version = 1;
/// Deepest nesting of arrays and objects in a frame, the frame object itself being level 1
/// (docs/protocol.md, limits). Deeper frames are refused as bad_frame. Bundles use the same.
inline constexpr size_t max_depth = 32; // = max_json_depth (common/json_limits.hpp)

// --- error codes and close reasons (DESIGN §2) ---
namespace code {
inline constexpr const char* hello_required = "hello_required";
inline constexpr const char* auth_failed = "auth_failed";
inline constexpr const char* unsupported_protocol = "unsupported_protocol";
inline constexpr const char* frame_too_large = "frame_too_large";
inline constexpr const char* bad_frame = "bad_frame";
inline constexpr const char* unknown_type = "unknown_type";
inline constexpr const char* forbidden = "forbidden";
inline constexpr const char* unknown_request = "unknown_request";
inline constexpr const char* unknown_attempt = "unknown_attempt";
inline constexpr const char* unavailable = "unavailable";
// The database refused the frame's values (a statement error of this frame alone): not stored,
// and resending it unchanged cannot help.
inline constexpr const char* refused = "refused";
// Not an error of the node: acknowledgements wait for the database (docs/protocol.md).
inline constexpr const char* ack_delayed = "ack_delayed";
} // namespace code

namespace close_reason {
inline constexpr const char* shutdown = "shutdown";
inline constexpr const char* superseded = "superseded";
inline constexpr const char* idle_timeout = "idle_timeout";
inline constexpr const char* protocol_errors = "protocol_errors";
inline constexpr const char* disabled = "disabled";
inline constexpr const char* tls_required = "tls_required";
inline constexpr const char* drained = "drained"; // an operator drained the node: do not reconnect
} // namespace close_reason

// --- framing ---

/// Splits a byte stream into lines. Lines may arrive split across reads or several per read; a
/// trailing '\r' is dropped; blank lines are skipped. A line longer than `max_frame_bytes`
/// (without its terminator) is an error: the stream cannot be resynchronised safely, so the
/// caller closes the connection.
class line_splitter {
public:
  explicit line_splitter(size_t max_frame_bytes) : max_(max_frame_bytes) {}

  /// The longest line from now on (a session raises it after authentication).
  void set_max(size_t max_frame_bytes) { max_ = max_frame_bytes; }
  size_t max() const { return max_; }

  enum class status { ok, too_large };

  /// Appends `bytes` and calls `on_line(std::string_view)` for every complete line, in order.
  template <class F>
  status feed(std::string_view bytes, F&& on_line) {
    size_t start = 0;
    while (start < bytes.size()) {
      auto nl = bytes.find('\n', start);
      if (nl == std::string_view::npos) {
        // A line of exactly max bytes may wait for its '\n' with its '\r' already here.
        auto total = buf_.size() + (bytes.size() - start);
        if (total > max_ + 1 || (total == max_ + 1 && bytes.back() != '\r'))
          return overflow();
        buf_.append(bytes.substr(start));
        return status::ok;
      }
      auto piece = bytes.substr(start, nl - start);
      start = nl + 1;
      std::string_view line;
      if (buf_.empty()) {
        line = piece;
      } else {
        buf_.append(piece);
        line = buf_;
      }
      if (!line.empty() && line.back() == '\r')
        line.remove_suffix(1);
      if (line.size() > max_)
        return overflow();
      if (!line.empty())
        on_line(line);
      buf_.clear();
    }
    return status::ok;
  }

  /// Bytes of an incomplete line held back.
  size_t buffered() const { return buf_.size(); }

private:
  status overflow() {
    buf_.clear();
    buf_.shrink_to_fit();
    return status::too_large;
  }
  size_t max_;
  std::string buf_;
};

// --- node -> coordinator ---

/// Optional frames of protocol v1 an agent can take, named in its hello's `features`: the
/// coordinator sends them only to an agent that named them (an older agent is never sent one).
namespace feature {
inline constexpr const char* checks = "checks"; // check_request / check_result
} // namespace feature

struct hello {
  int64_t protocol = 0;
  std::string node;
  std::string key;
  std::string agent;
  std::string capabilities;          // JSON object text; empty if absent
  std::vector<std::string> features; // optional frames the agent takes (feature::…)
};

struct heartbeat {
  int64_t seq = 0;
};

struct attempt {
  std::string attempt_id;
  std::string task_id;
  std::string state;      // queued | running | succeeded | failed | cancelled
  std::string started_at; // RFC 3339, normalised to UTC milliseconds; empty if absent
  std::string finished_at;
  std::string meta; // JSON object text; empty if absent
};

struct log_line {
  int64_t seq = 0;
  std::string ts;     // normalised RFC 3339
  std::string stream; // stdout | stderr | system
  std::string line;
};

struct logs {
  std::string attempt_id;
  std::vector<log_line> entries;
};

struct backfill_result {
  std::string attempt_id;
  bool ok = false;
  int64_t log_count = 0; // required when ok
  std::string error;
};

struct backfill_response {
  std::string request_id;
  std::vector<backfill_result> results;
};

struct bye {
  std::string reason;
};

/// How a check ended on the node (docs/protocol.md, checks).
namespace check_status {
inline constexpr const char* exited = "exited";                   // ran; exit_code is its exit status
inline constexpr const char* timed_out = "timed_out";             // killed at the timeout
inline constexpr const char* refused = "refused";                 // not in the agent's own allow-list
inline constexpr const char* failed_to_start = "failed_to_start"; // the program could not be run
} // namespace check_status

/// The answer to a check_request (feature::checks).
struct check_result {
  std::string request_id;
  std::string status;     // check_status::…
  int64_t exit_code = -1; // with exited
  std::string output;     // stdout and stderr as they came, at most the request's output_max
  bool truncated = false; // the program wrote more than output_max
  std::string error;      // why, for refused and failed_to_start
};

using node_message = std::variant<hello, heartbeat, attempt, logs, backfill_response, bye, check_result>;

/// Why a frame was refused: `code` is bad_frame or unknown_type; `ref` the frame's type if known.
struct decode_error {
  std::string code;
  std::string message;
  std::string ref;
};

using decode_result = std::variant<node_message, decode_error>;

/// Decodes and validates one line (without its terminator).
decode_result decode(std::string_view line);

/// The `type` of a decoded message ("hello", "heartbeat", ...).
const char* type_of(const node_message& m);

// --- coordinator -> node (each returns one line including the trailing '\n') ---

std::string encode_welcome(const std::string& node_id, int64_t session, int64_t heartbeat_interval_ms,
                           const std::string& server_time);
std::string encode_heartbeat_ack(int64_t seq, const std::string& server_time);
/// `logs_after`: (attempt_id, highest contiguous stored seq); attempts with none are left out.
std::string encode_backfill_request(const std::string& request_id, const std::vector<std::string>& attempt_ids,
                                    const std::vector<std::pair<std::string, int64_t>>& logs_after);
std::string encode_error(std::string_view code, std::string_view message, std::string_view ref = {});
std::string encode_close(std::string_view reason);

/// A check to run (feature::checks): the program and its arguments, run without a shell.
struct check_request {
  std::string request_id;
  std::string name;
  std::vector<std::string> argv;
  int64_t timeout_ms = 0;
  int64_t output_max = 0; // bytes of output kept
};
std::string encode_check_request(const check_request& r);
/// The node side's reading of a check_request line (nullopt with `why` if it is not one).
std::optional<check_request> decode_check_request(std::string_view line, std::string& why);

// --- node side (agents, tests, the load generator) ---

std::string encode_hello(const hello& h);
std::string encode_heartbeat(int64_t seq);
std::string encode_attempt(const attempt& a);
std::string encode_logs(const logs& l);
std::string encode_backfill_response(const backfill_response& r);
std::string encode_bye(std::string_view reason);
std::string encode_check_result(const check_result& r);

} // namespace nodecoord::protocol
