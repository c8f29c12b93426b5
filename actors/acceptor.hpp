#pragma once
// acceptor (DESIGN §1): owns the listening socket, forks one node_session per connection and
// refuses connections beyond max_connections (closed at once, counted).
#include "config/defaults.hpp"
#include "actors/node_session.hpp"

#include <caf/fwd.hpp>

#include <string>

namespace nodecoord {

struct acceptor_options {
  std::string host = "127.0.0.1";
  uint16_t port = 0; // 0: any free port (ask with port_atom)
  uint32_t max_connections = defaults::max_connections;
  uint32_t max_handshakes = defaults::max_handshakes; // connections not authenticated yet (a flood of hellos)
  session_options session;
};

/// Spawns the acceptor broker; it quits with an error if it cannot listen.
caf::actor spawn_acceptor(caf::actor_system& sys, acceptor_options opts);

} // namespace nodecoord
