#pragma once
// Applies the [log] table (at startup and on SIGHUP).
#include "config/config.hpp"

namespace nodecoord {

void apply_log_config(const config::log_config& cfg);

} // namespace nodecoord
