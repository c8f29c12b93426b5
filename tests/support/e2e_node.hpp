#pragma once
// A node played by node_client against a daemon_under_test (end-to-end tests that need a
// connected node: backfill_e2e_test, admin_e2e_test).
#include "e2e_daemon.hpp"
#include "node_client.hpp"

namespace nodecoord::test {

/// Connects and says hello with the node's key; requires a welcome.
inline node_client connect_and_hello(daemon_under_test& d, const node_info& n) {
  node_client c(d.port());
  auto w = c.hello(n.name, n.key);
  BOOST_TEST_REQUIRE(w.value("type", "") == "welcome", w.dump());
  return c;
}

/// Reads frames until a backfill_request arrives (heartbeat acks and the like are skipped).
inline json next_request(node_client& c) {
  for (int i = 0; i < 20; ++i) {
    auto f = c.read_frame(std::chrono::seconds(20));
    if (f.value("type", "") == "backfill_request")
      return f;
    BOOST_TEST_REQUIRE(f.value("type", "") != "error", "unexpected error: " << f.dump());
  }
  BOOST_FAIL("no backfill_request");
  return {};
}

} // namespace nodecoord::test
