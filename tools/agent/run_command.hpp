#pragma once
// `nodecoord-agent run -- CMD ARGS…`: one attempt around one command. Its stdout and stderr
// become log lines (each stream split at '\n', written to the store in small batches so the
// connected agent streams them while the command runs); a last `system` line says how it ended.
#include "tools/agent/store.hpp"

#include <string>
#include <vector>

namespace nodecoord::agent {

/// Runs `command` (no shell) as a new attempt of `task`. The attempt ends `succeeded` on exit
/// code 0, `failed` otherwise, with meta {"exit_code": N} (or {"signal": N}). Returns the
/// command's exit code (128 + signal if it was killed; 127 if it could not be started).
int run_command(store& st, const std::string& task, const std::vector<std::string>& command);

} // namespace nodecoord::agent
