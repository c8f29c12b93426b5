#pragma once
// The status values of DESIGN §3 as enums, each with its one spelling (the database column, the
// wire protocol and the admin API all use these words). Code compares enums; a string is turned
// into one at the edge with parse<E>(), and back with to_string().
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nodecoord {

/// node_task_attempts.sync_state (the coordinator's view; storage/sync_rules.hpp moves it).
enum class sync_state : uint8_t { partial, pending_backfill, complete, failed };
/// node_task_attempts.state (what the node reports).
enum class attempt_state : uint8_t { queued, running, succeeded, failed, cancelled };
/// nodes.status.
enum class node_status : uint8_t { online, offline, disabled };
/// jobs.type.
enum class job_type : uint8_t { backfill, reconcile, bundle_export, bundle_import, check };
/// jobs.status.
enum class job_status : uint8_t { queued, running, succeeded, failed, cancelled, expired, abandoned };

/// Every value of E with its spelling, in declaration order.
template <class E>
struct state_names;

template <>
struct state_names<sync_state> {
  static constexpr std::array<std::string_view, 4> names{"partial", "pending_backfill", "complete", "failed"};
};
template <>
struct state_names<attempt_state> {
  static constexpr std::array<std::string_view, 5> names{"queued", "running", "succeeded", "failed", "cancelled"};
};
template <>
struct state_names<node_status> {
  static constexpr std::array<std::string_view, 3> names{"online", "offline", "disabled"};
};
template <>
struct state_names<job_type> {
  static constexpr std::array<std::string_view, 5> names{"backfill", "reconcile", "bundle_export", "bundle_import",
                                                         "check"};
};
template <>
struct state_names<job_status> {
  static constexpr std::array<std::string_view, 7> names{"queued",    "running", "succeeded", "failed",
                                                         "cancelled", "expired", "abandoned"};
};

template <class E>
concept named_state = requires {
  state_names<E>::names;
};

/// The spelling of `e`.
template <named_state E>
constexpr const char* to_string(E e) {
  return state_names<E>::names[static_cast<size_t>(e)].data(); // the literals are NUL-terminated
}

/// The value spelled `text`; nullopt for anything else (case matters: the columns are lower case).
template <named_state E>
constexpr std::optional<E> parse(std::string_view text) {
  auto& names = state_names<E>::names;
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == text)
      return static_cast<E>(i);
  return std::nullopt;
}

/// True if `text` spells `e` (a column or field read as text, compared through its enum).
template <named_state E>
constexpr bool is(std::string_view text, E e) {
  return parse<E>(text) == e;
}

/// All spellings of E, e.g. for a CHECK list or an error message ("one of …").
template <named_state E>
constexpr const auto& names_of() {
  return state_names<E>::names;
}

/// All spellings of E as strings (for validators that take a list).
template <named_state E>
std::vector<std::string> all_names() {
  auto& names = state_names<E>::names;
  return {names.begin(), names.end()};
}

/// An attempt in one of these states changes no more on the node.
constexpr bool is_final(attempt_state s) {
  return s == attempt_state::succeeded || s == attempt_state::failed || s == attempt_state::cancelled;
}

/// A job in one of these states never changes again.
constexpr bool is_final(job_status s) { return s != job_status::queued && s != job_status::running; }

} // namespace nodecoord
