#pragma once
// A TCP relay between one agent and the daemon, on 127.0.0.1:0. Every new connection goes to the
// daemon's *current* node port (an atomic the round updates after each restart; 0 while the
// daemon is down: the agent's connection is closed at once, as a refused connect would be).
// Bytes pass both ways through bounded buffers, so a side that stops reading pushes back on the
// other like TCP does, without stalling the opposite direction.
//
// Cuts: at random times (a mean interval per relay) a cut is armed in a random direction; the
// next chunk read in that direction is forwarded only up to a point inside a JSON line (the byte
// before the cut is not '\n'), then both sockets are closed. What else was buffered is dropped.
//
// Timed kills: when the round arms the shared `ack_trigger`, the first relay that reads from the
// daemon a heartbeat_ack answering a heartbeat the agent sent after data frames (the ack the agent
// takes as "the coordinator has read that data") passes the ack on to the agent and SIGKILLs the
// daemon at once: the crash lands between the daemon's acknowledgement and its commit, if there is
// such a window.
// No Boost.Test here: it runs on its own thread.
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>

namespace nodecoord::faults {

/// Shared by the relays of a round; see above.
struct ack_trigger {
  std::atomic<pid_t> pid{0}; // the daemon to kill
  std::atomic<bool> armed{false};
  std::atomic<bool> fired{false};
  std::atomic<int64_t> fired_at_ms{0}; // system clock, ms since the epoch
};

class fault_relay {
public:
  fault_relay(std::shared_ptr<std::atomic<uint16_t>> target, uint64_t seed,
              std::shared_ptr<ack_trigger> trigger = nullptr);
  ~fault_relay();
  fault_relay(const fault_relay&) = delete;
  fault_relay& operator=(const fault_relay&) = delete;

  uint16_t port() const { return port_; }
  /// Cuts per minute (0: none); a change drops a cut that is armed but not done.
  void set_cut_rate(double per_minute) { cut_rate_x1000_ = static_cast<int64_t>(per_minute * 1000); }

  int64_t connections() const { return connections_; }
  int64_t refused() const { return refused_; }
  int64_t cuts_to_daemon() const { return cuts_[0]; }
  int64_t cuts_to_agent() const { return cuts_[1]; }
  /// Bytes passed agent -> daemon and daemon -> agent.
  int64_t bytes_to_daemon() const { return bytes_[0]; }
  int64_t bytes_to_agent() const { return bytes_[1]; }

private:
  void loop();

  std::shared_ptr<std::atomic<uint16_t>> target_;
  std::shared_ptr<ack_trigger> trigger_;
  std::mt19937_64 rng_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int64_t> cut_rate_x1000_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> connections_{0};
  std::atomic<int64_t> refused_{0};
  std::atomic<int64_t> cuts_[2] = {0, 0};
  std::atomic<int64_t> bytes_[2] = {0, 0};
  std::thread thread_;
};

} // namespace nodecoord::faults
