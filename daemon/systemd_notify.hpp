#pragma once
// sd_notify(3) for Type=notify: READY=1, STOPPING=1, WATCHDOG=1, STATUS=... Does nothing when
// not started by systemd (no NOTIFY_SOCKET).
#include <chrono>
#include <optional>
#include <string_view>

namespace nodecoord::systemd {

void notify_ready(std::string_view status);
void notify_stopping(std::string_view status);
void notify_reloading();
void notify_status(std::string_view status);
void notify_watchdog();

/// The watchdog interval systemd expects pings at (WATCHDOG_USEC), if enabled for this process.
std::optional<std::chrono::microseconds> watchdog_interval();

} // namespace nodecoord::systemd
