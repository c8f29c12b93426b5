#pragma once
// The storage actor's errors as their own CAF error category (as VAST's `ec`), so a caller tells
// an operation the database refused (its data) from a storage that stopped (not its fault)
// without matching generic codes or messages.
#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <cstdint>
#include <string>

namespace nodecoord {

enum class storage_errc : uint8_t {
  refused = 1, // this operation's own statement failed (the batch's others applied): its data
  stopped,     // never applied: the storage stopped for good (fatal error, or the daemon stops)
  startup,     // migration or startup recovery failed (fatal)
  superseded,  // refused by the epoch fence: the session is not its node's current one (DESIGN §9)
};

inline constexpr caf::atom_value storage_error_category = caf::atom("storage");

/// An error of the category, with the database's message as its context.
caf::error make_error(storage_errc code, std::string message);

/// True if `e` is `code` of the storage category.
bool is(const caf::error& e, storage_errc code);

/// The database's message of a storage error ("" for other errors).
std::string storage_message(const caf::error& e);

/// Registers the category's renderer ("storage refused: <message>").
void add_storage_error_category(caf::actor_system_config& cfg);

} // namespace nodecoord
