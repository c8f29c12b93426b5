#pragma once
// The size of one fault round, from the arguments after `--` (Boost.Test passes them through):
//   fault_test --run_test=round_sqlite -- --agents 8 --daemon-kills 300 --agent-kills 30
// Defaults are the short CI round.
#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord::faults {

struct round_options {
  int agents = 4;
  int daemon_kills = 30;
  int pg_restarts = 5; // PostgreSQL rounds only
  int agent_kills = 3;
  double cuts_per_minute = 6; // per relay; 0: no cuts
  int settle_bound_s = 240;
  uint64_t seed = 0;     // 0: a random seed (always printed)
  int burst_max = 300;   // lines per recorder burst: 1 .. burst_max
  int gap_min_ms = 1500; // between two fault events
  int gap_max_ms = 4000;
  // When a daemon kill lands: `random` (whenever its turn comes), `ack` (right after the daemon
  // acknowledged a heartbeat that followed data frames; faults/relay.hpp), `mixed` (either, by
  // coin toss).
  std::string kill_timing = "mixed";
  // Several instances on one PostgreSQL (round_instances; DESIGN §9): daemon_kills counts
  // instance kills, and `pauses` instances are SIGSTOPped past their lease, then SIGCONTed.
  int instances = 3;
  int pauses = 4;
  std::string summary; // write the summary as JSON here
  std::string log_dir; // keep every daemon and agent log here
};

/// Parses `args` (what follows `--`); throws std::invalid_argument naming the bad argument.
round_options parse_round_options(const std::vector<std::string>& args);

/// The usage text (for the error message).
const char* round_usage();

} // namespace nodecoord::faults
