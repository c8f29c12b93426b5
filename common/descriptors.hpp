#pragma once
// One descriptor per node session: how many sessions the process's descriptor limit allows.
#include <cstdint>

namespace nodecoord {

/// Descriptors kept for everything that is not a node session: the database connections, the
/// admin HTTP server, the log, signalfd, epoll and the listening sockets.
inline constexpr uint64_t descriptor_reserve = 64;

struct descriptor_limits {
  uint64_t soft_before = 0; // the soft limit the process was started with
  uint64_t soft = 0;        // the soft limit now (raised to the hard one where allowed)
  uint64_t hard = 0;
  uint64_t sessions = 0; // node sessions that fit: min(soft - reserve, max_connections)
};

/// Sessions that fit under a soft limit of `soft` descriptors, at most `max_connections`.
uint64_t sessions_allowed(uint64_t soft, uint64_t max_connections);

/// Raises the soft RLIMIT_NOFILE to the hard one and reports both and the sessions they allow.
descriptor_limits raise_descriptor_limit(uint64_t max_connections);

} // namespace nodecoord
