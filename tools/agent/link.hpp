#pragma once
// What the agent says on one connection, without the socket (tested directly): the hello, live
// streaming of what the store holds beyond what the coordinator confirmed, answers to
// `backfill_request`, heartbeats, and confirmations.
//
// Confirmation. Data frames are not acknowledged one by one (docs/protocol.md), but a
// `heartbeat_ack` means that every frame sent before that heartbeat is committed in the
// coordinator's database, or was answered with an error frame, which arrives before the ack. So
// after sending data the link sends a heartbeat and, when its ack arrives, records in the store
// what those frames carried (`store::confirm`); only then may it forget them. An `unavailable` or
// `unknown_attempt` error naming an attempt clears the attempt's confirmation, so it is sent
// again in full. A connection that ends before the ack leaves everything unconfirmed: it is sent
// again after the reconnect. While the coordinator's database is slow or down the ack is late,
// and the coordinator says so with `error{ack_delayed}` (not a problem of ours).
//
// Checks (feature "checks", docs/agent.md): a `check_request` runs only if the agent's own
// allow-list has its name with exactly its argv; it runs on a thread of its own, and its result
// is sent by the next send_finished_checks of the same connection (a result of an older one is
// dropped: the coordinator that asked has forgotten it).
#include "tools/agent/check_runner.hpp"
#include "tools/agent/store.hpp"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace nodecoord::agent {

struct link_options {
  std::string node;
  std::string key;
  std::string agent = "nodecoord-agent";
  std::string capabilities; // JSON object text, or empty
  size_t max_lines_per_frame = 500;
  size_t max_frame_bytes = 256 * 1024; // well below the coordinator's 1 MiB limit
  size_t poll_attempts = 200;          // attempts read from the store per poll
  int64_t poll_lines = 5000;           // lines per attempt per poll (the rest next time)
  /// The checks this agent runs: name -> the exact argv. Any other name, or another argv, is
  /// refused (the coordinator's config alone cannot make a node run a program).
  std::map<std::string, std::vector<std::string>> checks;
  size_t max_running_checks = 4; // a request beyond this many running is refused
};

/// What a coordinator frame meant for the connection.
struct link_event {
  enum class kind {
    none,
    welcome, // the session is up
    closing, // `close{reason}`: the coordinator ends the connection
    refused, // an error during the handshake (auth_failed, unsupported_protocol, …)
    delayed, // `error{ack_delayed}`: acks wait for the coordinator's database; keep waiting
  };
  kind what = kind::none;
  std::string detail; // close reason or error code
  std::string message;
};

struct link_counters {
  uint64_t attempts_sent = 0;
  uint64_t lines_sent = 0;
  uint64_t requests_answered = 0;
  uint64_t confirmations = 0;
  uint64_t errors = 0;
  uint64_t acks_delayed = 0;
  uint64_t checks_run = 0;     // started
  uint64_t checks_refused = 0; // answered `refused`
};

class coordinator_link {
public:
  coordinator_link(store& s, link_options o);

  /// A new connection: forgets what was sent on the previous one. Returns the hello line.
  std::string start();
  /// Handles one coordinator frame (a JSON line); appends any lines to send to `out`.
  link_event on_line(std::string_view line, std::string& out);
  /// Sends what the store holds that the coordinator has not confirmed and this connection has
  /// not sent yet, then a heartbeat to confirm it. Only after the welcome.
  void poll_store(std::string& out);
  /// The periodic heartbeat.
  void heartbeat(std::string& out);
  /// Sends the results of this connection's checks that finished since the last call (also done
  /// by poll_store).
  void send_finished_checks(std::string& out);
  /// Checks running now, of this connection or an older one.
  size_t checks_running() const;
  std::string bye(const std::string& reason) const;

  bool welcomed() const { return welcomed_; }
  int64_t heartbeat_interval_ms() const { return heartbeat_interval_ms_; }
  const std::string& node_id() const { return node_id_; }
  const link_counters& counters() const { return counters_; }

private:
  struct sent_state {
    int64_t version = 0;
    int64_t logs = 0; // lines below this were sent on this connection
  };
  struct confirmation {
    std::string attempt_id;
    int64_t version;
    int64_t logs;
  };
  void answer_backfill(const nlohmann::json& f, std::string& out);
  /// The attempt frame and lines [from, to) of `a`; returns the lines sent.
  int64_t send_attempt(const attempt_row& a, int64_t from, int64_t to, std::string& out);
  void confirm_after(std::vector<confirmation> c, std::string& out);
  void on_ack(int64_t seq);
  void on_error(const nlohmann::json& f, link_event& ev);
  void on_check_request(std::string_view line, const nlohmann::json& f, std::string& out);
  void refuse_check(const std::string& request_id, const std::string& name, std::string error, std::string& out);

  struct finished_check {
    uint64_t generation; // the start() it was asked after
    std::string request_id;
    std::string name;
    std::vector<std::string> argv;
    check_outcome outcome;
  };
  /// Shared with the check threads, which may outlive the link (they never touch it).
  struct check_state {
    std::mutex m;
    size_t running = 0;
    std::vector<finished_check> done;
  };

  store& store_;
  link_options opts_;
  bool welcomed_ = false;
  std::string node_id_;
  int64_t heartbeat_interval_ms_ = 15000;
  int64_t next_heartbeat_ = 0;
  std::unordered_map<std::string, sent_state> sent_;
  std::map<int64_t, std::vector<confirmation>> awaiting_; // heartbeat seq -> what its ack confirms
  link_counters counters_;
  uint64_t generation_ = 0; // +1 per start(): a result of an older connection is dropped
  std::shared_ptr<check_state> checks_ = std::make_shared<check_state>();
};

} // namespace nodecoord::agent
