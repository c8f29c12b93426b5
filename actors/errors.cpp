#include "actors/errors.hpp"

#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace nodecoord {

namespace {

const char* name_of(uint8_t code) {
  switch (static_cast<storage_errc>(code)) {
    case storage_errc::refused: return "refused";
    case storage_errc::stopped: return "stopped";
    case storage_errc::startup: return "startup";
    case storage_errc::superseded: return "superseded";
  }
  return "unknown";
}

std::string message_in(const caf::message& ctx) {
  return ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0) : std::string{};
}

} // namespace

caf::error make_error(storage_errc code, std::string message) {
  return caf::error(static_cast<uint8_t>(code), storage_error_category, caf::make_message(std::move(message)));
}

bool is(const caf::error& e, storage_errc code) {
  return e.category() == storage_error_category && e.code() == static_cast<uint8_t>(code);
}

std::string storage_message(const caf::error& e) {
  return e.category() == storage_error_category ? message_in(e.context()) : std::string{};
}

void add_storage_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(storage_error_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    auto m = message_in(ctx);
    return std::string("storage ") + name_of(code) + (m.empty() ? "" : ": " + m);
  });
}

} // namespace nodecoord
