#include "daemon/systemd_notify.hpp"

#include <systemd/sd-daemon.h>

#include <string>

namespace nodecoord::systemd {

namespace {

void send(const std::string& msg) {
  // unset_environment=0: the watchdog and later notifications need NOTIFY_SOCKET again.
  sd_notify(0, msg.c_str());
}

} // namespace

void notify_ready(std::string_view status) { send("READY=1\nSTATUS=" + std::string(status)); }

void notify_stopping(std::string_view status) { send("STOPPING=1\nSTATUS=" + std::string(status)); }

void notify_reloading() { send("RELOADING=1"); }

void notify_status(std::string_view status) { send("STATUS=" + std::string(status)); }

void notify_watchdog() { send("WATCHDOG=1"); }

std::optional<std::chrono::microseconds> watchdog_interval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
    return std::chrono::microseconds(usec);
  return std::nullopt;
}

} // namespace nodecoord::systemd
