#pragma once
// One allow-listed check (docs/agent.md, Checks): a program run without a shell, its stdout and
// stderr captured together up to a bound, ended by a timeout. Plain C++, no store, no socket;
// safe to call from several threads at once.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord::agent {

struct check_outcome {
  std::string status;     // protocol::check_status: exited | timed_out | failed_to_start
  int64_t exit_code = -1; // with exited: the exit status, or 128 + signal if killed by one
  std::string output;     // stdout and stderr as they came, at most output_max bytes
  bool truncated = false; // the program wrote more than output_max
  std::string error;      // why, for timed_out and failed_to_start
};

/// Runs `argv` (argv[0] looked up in PATH) with stdin from /dev/null, in its own process group.
/// It ends when the program has exited and closed its output, or at `timeout`, when the whole
/// group is killed with SIGKILL. Whatever of the group is left when the program exits is killed
/// too. Output beyond `output_max` is read and thrown away, so the program never blocks on it.
check_outcome run_check(const std::vector<std::string>& argv, std::chrono::milliseconds timeout, size_t output_max);

} // namespace nodecoord::agent
