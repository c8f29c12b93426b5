#pragma once
// The load engine of nodecoord-bench: many node sessions on one thread (epoll, non-blocking
// sockets). It connects, says hello, waits for welcome, heartbeats on a schedule spread evenly over
// the interval, matches acks to heartbeats and measures latencies. It never decides whether a
// figure is good: it counts what happened, and the caller reports it.
#include "tls/stream.hpp"

#include <nlohmann/json_fwd.hpp>

#include <netinet/in.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <vector>

namespace nodecoord::bench {

/// Monotonic time in nanoseconds.
int64_t now_ns();

struct node_key {
  std::string name;
  std::string key;
};

class load;

/// What a scenario's simulated nodes do beyond heartbeating (backfill scenarios). Called on the
/// load's thread, from inside its event loop; a hook may send frames on any session.
class session_hooks {
public:
  virtual ~session_hooks() = default;
  /// Session `idx` was welcomed (it is active now).
  virtual void on_welcome(load&, uint32_t /*idx*/) {}
  /// A frame other than welcome, heartbeat_ack, close or error arrived on an active session.
  /// Returns false if the scenario did not expect it (counted as an unexpected frame).
  virtual bool on_frame(load&, uint32_t /*idx*/, const std::string& /*type*/, const nlohmann::json& /*frame*/) {
    return false;
  }
};

struct load_options {
  sockaddr_in coordinator{};
  /// Several instances (DESIGN §9): session i connects to coordinators[i % size]; empty: coordinator.
  std::vector<sockaddr_in> coordinators;
  std::vector<node_key> keys;   // one session per key, in this order
  size_t concurrency = 200;     // connections between connect() and welcome at once
  std::vector<in_addr> sources; // local addresses to bind, round robin; empty: kernel's choice
  int64_t welcome_timeout_ns = 30'000'000'000;
  int64_t ack_timeout_ns = 5'000'000'000;
  int64_t heartbeat_interval_ns = 0; // 0: heartbeat_interval_ms from each welcome (keepalive)
  std::string agent = "nodecoord-bench";
  session_hooks* hooks = nullptr; // null: backfill_request frames are ignored
  /// > 0: before each heartbeat, a `logs` frame of this many lines of the session's own attempt
  /// (its `attempt` frame goes first, once), so an ack waits for the commit of real data.
  int64_t lines_per_heartbeat = 0;
  int64_t max_wait_ns = 1'000'000'000; // longest epoll_wait (how often run_until checks `done`)
  /// Non-null: every session speaks TLS (a client context), verifying `tls_server_name`.
  std::shared_ptr<const tls::context> tls;
  std::string tls_server_name;
  /// Resume the TLS session of an earlier connection when there is one (as the agent does).
  bool tls_resume = true;
};

struct load_counters {
  uint64_t started = 0;          // connect() called
  uint64_t connect_failed = 0;   // connect() or the TCP handshake failed
  uint64_t authenticated = 0;    // welcome received
  uint64_t auth_refused = 0;     // an error frame instead of welcome
  uint64_t welcome_timeouts = 0; // no answer to hello within welcome_timeout
  uint64_t closed_by_peer = 0;   // the coordinator closed an authenticated session
  uint64_t error_frames = 0;     // error frames after welcome
  uint64_t unexpected_frames = 0;
  uint64_t io_errors = 0; // send/recv failures
  uint64_t heartbeats_sent = 0;
  uint64_t acks = 0;
  uint64_t lost_acks = 0; // no ack within ack_timeout (or the session ended first)
  uint64_t late_acks = 0; // an ack for a heartbeat already counted as lost
  uint64_t heartbeats_in_window = 0;
  uint64_t lines_sent = 0;     // lines_per_heartbeat
  uint64_t tls_handshakes = 0; // TLS sessions welcomed ...
  uint64_t tls_resumed = 0;    // ... of which resumed an earlier session
};

class load {
public:
  explicit load(load_options opts);
  ~load();
  load(const load&) = delete;
  load& operator=(const load&) = delete;

  /// Starts every session and returns once each one is authenticated or has failed.
  void open_all();
  /// Serves sessions (heartbeats, acks) until the monotonic time `until_ns`.
  void run_until(int64_t until_ns);
  /// Same, but returns as soon as `done()` is true (checked after each event-loop round, at
  /// least every max_wait_ns). Returns done().
  bool run_until(int64_t until_ns, const std::function<bool()>& done);
  /// Heartbeats sent in [begin, end) have their ack latency recorded.
  void set_window(int64_t begin_ns, int64_t end_ns);
  /// Stops sending heartbeats and waits at most ack_timeout for the outstanding acks; those still
  /// missing count as lost.
  void drain();
  /// Sends bye on every open session (if `bye`) and closes all sockets.
  void close_all(bool bye);
  /// Closes every socket at once, without bye and without counting unanswered heartbeats as
  /// lost (a disconnect storm).
  void drop_all();

  /// Queues one frame (a whole line with its '\n') on session `idx`; ignored if it is closed.
  void send(uint32_t idx, const std::string& line) { send_frame(idx, line); }
  bool is_active(uint32_t idx) const { return conns_[idx].st == state::active; }
  size_t size() const { return conns_.size(); }
  /// Bytes queued in the bench that the kernel did not take yet, over all sessions.
  size_t unsent_bytes() const;

  const load_counters& counters() const { return counters_; }
  /// Problems by kind ("connect: Connection refused", "close: idle_timeout", ...), counted.
  const std::map<std::string, uint64_t>& problems() const { return problems_; }
  const std::vector<double>& welcome_latencies_us() const { return welcome_us_; }
  const std::vector<double>& ack_latencies_us() const { return ack_us_; }
  int64_t first_connect_ns() const { return first_connect_; }
  int64_t last_welcome_ns() const { return last_welcome_; }
  size_t active() const { return active_; }

private:
  enum class state : uint8_t { idle, connecting, hello_sent, active, closing, done };
  struct conn {
    int fd = -1;
    state st = state::idle;
    bool want_out = false;
    int64_t t_start = 0;
    int64_t t_hello = 0;
    int64_t interval_ns = 0;
    int64_t seq = 0;
    std::string in;
    std::string out;
    std::deque<std::pair<int64_t, int64_t>> inflight; // (seq, sent at)
    std::string attempt_id;                           // lines_per_heartbeat: the attempt its lines belong to
    int64_t next_line = 0;
    std::string last_close_reason;
    std::unique_ptr<tls::stream> tls; // with load_options::tls
  };
  struct timer {
    int64_t at;
    uint32_t idx;
    bool operator>(const timer& o) const { return at > o.at; }
  };
  struct pending_ack {
    int64_t deadline;
    uint32_t idx;
    int64_t seq;
  };

  void start_one();
  void poll_once(int64_t until_ns);
  void on_event(uint32_t idx, uint32_t events);
  void on_connected(uint32_t idx);
  void on_readable(uint32_t idx);
  void on_line(uint32_t idx, std::string_view line);
  void on_ack(uint32_t idx, int64_t seq);
  void send_frame(uint32_t idx, const std::string& line);
  void write_raw(uint32_t idx, std::string_view bytes);
  /// With TLS: writes what the stream has for the socket; false (session failed) if it failed.
  bool flush_tls(uint32_t idx);
  void flush_out(uint32_t idx);
  void set_want_out(uint32_t idx, bool want);
  void fail(uint32_t idx, const std::string& problem);
  void finish(uint32_t idx);
  void schedule_first_heartbeat(uint32_t idx);
  void send_lines(uint32_t idx);
  void fire_timers(int64_t now);
  void expire_acks(int64_t now);
  void expire_welcomes(int64_t now);
  int64_t next_wakeup(int64_t until_ns) const;
  void problem(const std::string& what) { ++problems_[what]; }

  load_options opts_;
  int ep_ = -1;
  std::vector<conn> conns_;
  size_t next_start_ = 0;
  size_t in_progress_ = 0; // connecting or hello_sent
  size_t active_ = 0;
  size_t outstanding_ = 0; // heartbeats awaiting an ack
  bool sending_ = true;
  int64_t base_ns_ = 0;
  int64_t window_begin_ = 0;
  int64_t window_end_ = 0;
  int64_t first_connect_ = 0;
  int64_t last_welcome_ = 0;
  std::priority_queue<timer, std::vector<timer>, std::greater<>> timers_;
  std::deque<pending_ack> acks_due_; // in send order, so deadlines are ordered
  std::deque<uint32_t> welcome_due_; // in start order
  load_counters counters_;
  std::map<std::string, uint64_t> problems_;
  std::vector<double> welcome_us_;
  std::vector<double> ack_us_;
  tls::saved_session tls_session_; // the last session a server gave us, to resume
};

} // namespace nodecoord::bench
