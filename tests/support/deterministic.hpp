#pragma once
// The one deterministic CAF fixture of the actor tests (toolchain.md §deterministic testing): the
// test scheduler with its simulated clock, optionally the test multiplexer (simulated sockets),
// a scoped actor, and helpers to run until nothing is left to do, to move time and to ask an
// actor. No sleeps and no wall clock.
#include "actors/storage.hpp"
#include "test_db.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/network/test_multiplexer.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/scoped_actor.hpp>

#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nodecoord::test {

class deterministic_system {
public:
  enum class io { none, simulated }; // simulated: brokers on the test multiplexer

  explicit deterministic_system(io with = io::none);

  /// Runs actors (and brokers and simulated I/O) until nothing is left to do; timers excepted.
  void run();

  /// Moves simulated time forward by `d`, firing what comes due in time order, including timers
  /// armed on the way (the test clock alone fires only what was due when it moved).
  void advance(caf::timespan d);

  /// Asks `dest` and runs until it answered; fails the test on an error. R: the answer's type.
  template <class R, class Dest, class... Ts>
  R ask(const Dest& dest, Ts&&... xs) {
    std::optional<R> out;
    auto rh = self->request(dest, caf::infinite, std::forward<Ts>(xs)...);
    run();
    rh.receive([&](R& r) { out = std::move(r); },
               [](caf::error& e) { BOOST_FAIL("request failed: " << caf::to_string(e)); });
    BOOST_REQUIRE(out.has_value());
    return std::move(*out);
  }

  // With io::simulated: connections to a broker listening on `acc` (mpx.provide_acceptor).

  /// A new connection to `acc`, accepted and run.
  caf::io::connection_handle connect_to(caf::io::accept_handle acc);

  /// `bytes` arrive on `c`; everything runs.
  void send(caf::io::connection_handle c, const std::string& bytes);

  /// The bytes written to `c` since the last call.
  std::string written(caf::io::connection_handle c);

  /// The JSON lines written to `c` since the last call; every one must end with '\n'.
  std::vector<nlohmann::json> frames(caf::io::connection_handle c);

  /// The broker closed `c` (stopped reading it).
  bool closed(caf::io::connection_handle c);

  /// Spawns a storage actor on `t` (not detached) and runs its startup; fails the test if it fails.
  storage_actor start_storage(const test_database& t, storage_options opts = {});

  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  caf::scheduler::test_coordinator& sched;
  caf::io::network::test_multiplexer* mpx_or_null; // with io::simulated only

private:
  int next_connection_ = 100;
  caf::io::network::test_multiplexer& mpx();
  static caf::actor_system_config& init(caf::actor_system_config& cfg, io with);
};

} // namespace nodecoord::test
