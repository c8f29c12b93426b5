#pragma once
// What a reload (SIGHUP) can change while the daemon runs, and what needs a restart.
#include "config/config.hpp"

#include <string>
#include <vector>

namespace nodecoord::config {

/// The keys (or tables) whose value differs between the running configuration and the file just
/// read, among those that only take effect after a restart, in file order. The log settings and
/// the admin token file are applied at once and never listed.
std::vector<std::string> restart_needed(const daemon_config& running, const daemon_config& next);

} // namespace nodecoord::config
