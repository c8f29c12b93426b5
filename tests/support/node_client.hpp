#pragma once
// A small blocking TCP client that plays a node against a real nodecoordd (end-to-end tests).
// It speaks the wire protocol (JSON Lines, docs/protocol.md): lines go out as given, coordinator
// frames come back parsed with nlohmann::json. Every wait is a poll() with a bound; a bound that
// passes fails the current Boost.Test test case (BOOST_FAIL) unless the method says otherwise.
// Bytes read while waiting (e.g. in wait_closed) are kept, so no frame is ever lost.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <vector>
#include <string>
#include <string_view>

namespace nodecoord::test {

class node_client {
public:
  /// Connects to 127.0.0.1:`port` within `bound`; fails the test otherwise.
  explicit node_client(uint16_t port, std::chrono::milliseconds bound = std::chrono::seconds(10));
  ~node_client();
  node_client(const node_client&) = delete;
  node_client& operator=(const node_client&) = delete;
  node_client(node_client&& other) noexcept;
  node_client& operator=(node_client&& other) noexcept;

  /// The socket (non-blocking), for poll()-driven use of many clients; -1 once closed.
  int fd() const { return fd_; }

  /// Sends `line` plus a '\n' if it has none. Fails the test if the bytes cannot all be sent
  /// within `bound` or the connection is gone.
  void send_line(std::string_view line, std::chrono::milliseconds bound = std::chrono::seconds(10));
  /// Sends `bytes` as they are; fails the test as send_line does.
  void send_raw(std::string_view bytes, std::chrono::milliseconds bound = std::chrono::seconds(10));
  /// Sends as much of `bytes` as the peer takes within `bound`; stops early (without failing)
  /// when the peer closed or reset the connection. Returns the number of bytes sent.
  std::size_t send_until_closed(std::string_view bytes, std::chrono::milliseconds bound);

  /// The next coordinator frame, parsed. Fails the test if none arrives within `bound`, the
  /// connection ends first, or the line is not a JSON object.
  nlohmann::json read_frame(std::chrono::milliseconds bound = std::chrono::seconds(10));
  /// Like read_frame, but nullopt (instead of failing) when no complete line arrived within
  /// `bound` or the connection ended.
  std::optional<nlohmann::json> try_read_frame(std::chrono::milliseconds bound);

  /// Waits at most `bound` for the server to close the connection (read returns 0, or the
  /// connection was reset). Frames that arrive meanwhile are kept for read_frame(). False if the
  /// connection is still open after `bound`.
  bool wait_closed(std::chrono::milliseconds bound);
  /// True once the peer's end of the connection was seen (EOF or reset).
  bool peer_closed() const { return eof_; }

  /// Sends hello{protocol, node, key, agent} and returns the reply frame (welcome or error).
  nlohmann::json hello(const std::string& node, const std::string& key, int64_t protocol = 1,
                       std::chrono::milliseconds bound = std::chrono::seconds(10));

  /// Sends a heartbeat with `seq` and requires a heartbeat_ack with the same seq as the next frame.
  void heartbeat_roundtrip(int64_t seq, std::chrono::milliseconds bound = std::chrono::seconds(10));

  // --- poll()-driven use (many clients at once) ---

  /// Reads what is available without blocking. False once the peer has closed.
  bool read_available();
  /// Removes and returns the next complete frame already read, if any (fails the test if it is
  /// not a JSON object).
  std::optional<nlohmann::json> take_frame();
  /// Complete or partial bytes read but not yet taken as frames.
  const std::string& buffered() const { return in_; }

  /// Closes our end now (the destructor does too).
  void close();

  /// Frames of these types are not returned by read_frame/take_frame but kept in aside()
  /// (tests of sessions, which do not answer backfill requests, set "backfill_request").
  /// New clients start with `default_aside`.
  std::set<std::string> aside_types;
  static inline std::set<std::string> default_aside;
  std::vector<nlohmann::json>& aside() { return aside_; }

private:
  std::optional<std::string> take_line();

  int fd_ = -1;
  uint16_t port_ = 0;
  std::string in_;
  bool eof_ = false;
  std::vector<nlohmann::json> aside_;
};

} // namespace nodecoord::test
