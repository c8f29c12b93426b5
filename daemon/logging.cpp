#include "daemon/logging.hpp"

#include "common/log.hpp"

namespace nodecoord {

namespace {

log::level to_log_level(config::log_level l) {
  switch (l) {
    case config::log_level::trace: return log::level::trace;
    case config::log_level::debug: return log::level::debug;
    case config::log_level::info: return log::level::info;
    case config::log_level::warn: return log::level::warn;
    case config::log_level::error: return log::level::error;
  }
  return log::level::info;
}

} // namespace

void apply_log_config(const config::log_config& cfg) {
  log::init(to_log_level(cfg.level), cfg.format == config::log_format::json);
}

} // namespace nodecoord
