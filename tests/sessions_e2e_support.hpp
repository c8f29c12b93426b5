#pragma once

// Shared by the sessions_e2e_test sources: checks of welcome, error and close frames, attempt and
// logs frames, nodes provisioned straight into the database.

#include "e2e_daemon.hpp"
#include "common/api_key.hpp"
#include "common/clock.hpp"
#include "common/ids.hpp"
#include "node_client.hpp"
#include "process.hpp"
#include "test_db.hpp"
#include "protocol/codec.hpp"
#include "storage/batch_executor.hpp"
#include "storage/database.hpp"
#include "storage/operations.hpp"
#include "storage/query.hpp"
#include "storage/url.hpp"

#include <nlohmann/json.hpp>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <poll.h>
#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace nodecoord;
using namespace nodecoord::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace sessions_e2e {

/// Requires `f` to be a welcome for `node_id` with session `epoch`.
inline void require_welcome(const json& f, const std::string& node_id, int64_t epoch, int64_t heartbeat_ms = 200) {
  BOOST_TEST_REQUIRE(f.value("type", "") == "welcome", "expected welcome, got " << f.dump());
  BOOST_TEST(f.value("protocol", int64_t{-1}) == 1, f.dump());
  BOOST_TEST(f.value("node_id", std::string()) == node_id, f.dump());
  BOOST_TEST(f.value("session", int64_t{-1}) == epoch, f.dump());
  BOOST_TEST(f.value("heartbeat_interval_ms", int64_t{-1}) == heartbeat_ms, f.dump());
  BOOST_TEST(is_wire_time(f.value("server_time", json())), f.dump());
}

inline void require_error(const json& f, const std::string& code) {
  BOOST_TEST_REQUIRE(f.value("type", "") == "error", "expected error{" << code << "}, got " << f.dump());
  BOOST_TEST(f.value("code", "") == code, f.dump());
  BOOST_TEST((f.contains("message") && f["message"].is_string() && !f["message"].get<std::string>().empty()), f.dump());
}

inline void require_close(const json& f, const std::string& reason) {
  BOOST_TEST_REQUIRE(f.value("type", "") == "close", "expected close{" << reason << "}, got " << f.dump());
  BOOST_TEST(f.value("reason", "") == reason, f.dump());
}

/// The server closes the socket after its last frame, and sends nothing more.
inline void require_closed(node_client& c) {
  BOOST_TEST_REQUIRE(c.wait_closed(close_bound),
                     "the server did not close the connection within "
                       << std::chrono::duration_cast<std::chrono::seconds>(close_bound).count() << " s");
  auto extra = c.take_frame();
  BOOST_TEST(!extra.has_value(), "unexpected frame before the close: " << (extra ? extra->dump() : ""));
  BOOST_TEST(c.buffered().empty(), "unterminated bytes before the close: " << c.buffered());
}

/// The reconnect trigger runs once, shortly after a welcome, and requests the node's partial
/// attempts. For a node with none yet, waits until it has run (and found nothing), so it cannot
/// mark attempts the test sends afterwards: under load it can run late.
/// Connects and authenticates `n`; requires welcome with session `epoch`.
inline node_client connect_node(daemon_under_test& d, const node_info& n, int64_t epoch) {
  node_client c(d.port());
  require_welcome(c.hello(n.name, n.key), n.id, epoch);
  return c;
}

inline std::string attempt_frame(const std::string& id, const std::string& task, const std::string& state,
                                 const std::string& started = "", const std::string& finished = "",
                                 const std::string& meta = "") {
  protocol::attempt a;
  a.attempt_id = id;
  a.task_id = task;
  a.state = state;
  a.started_at = started;
  a.finished_at = finished;
  a.meta = meta;
  return protocol::encode_attempt(a);
}

/// A log line's text, derived from attempt and seq, so stored lines can be checked.
inline std::string line_text(const std::string& attempt, int64_t seq) {
  return "line " + std::to_string(seq) + " of " + attempt.substr(0, 8);
}

inline std::string logs_frame(const std::string& attempt, int64_t from, int64_t to_inclusive,
                              const std::string& text_suffix = "") {
  protocol::logs l;
  l.attempt_id = attempt;
  for (int64_t s = from; s <= to_inclusive; ++s)
    l.entries.push_back({s, "2026-01-09T12:00:0" + std::to_string(s % 10) + ".000Z", s % 2 ? "stderr" : "stdout",
                         line_text(attempt, s) + text_suffix});
  return protocol::encode_logs(l);
}

/// Raises this process's open-file limit to the hard limit; returns the new soft limit.
inline rlim_t raise_nofile() {
  rlimit lim{};
  BOOST_REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    BOOST_REQUIRE(setrlimit(RLIMIT_NOFILE, &lim) == 0);
  }
  BOOST_REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
  return lim.rlim_cur;
}

/// Creates `n` nodes in one transaction through the storage library (nodecoordctl takes ~90 ms
/// per node). Keys are generated exactly as nodecoordctl does. The daemon must not run yet.
inline std::vector<node_info> provision_directly(const daemon_under_test& d, std::size_t n) {
  auto url = storage::parse_storage_url("sqlite://nodecoord.db", d.state_dir(), 5s);
  storage::database db(url, system_now);
  db.connect();
  db.migrate();
  storage::batch_executor exec(db);
  std::vector<node_info> nodes(n);
  std::vector<new_api_key> keys(n);
  std::vector<bool> created(n, false);
  std::vector<storage::batch_item> items(n);
  for (std::size_t i = 0; i < n; ++i) {
    keys[i] = generate_api_key();
    nodes[i].name = "fleet-" + std::to_string(i);
    nodes[i].key = keys[i].key;
    items[i].run = [&, i](storage::op_context& c) {
      auto r = storage::execute(c, storage::node_create{nodes[i].name, "", keys[i].key_id, keys[i].key_hash});
      created[i] = r.created;
      nodes[i].id = r.node.id;
    };
  }
  auto rep = exec.execute(items);
  BOOST_TEST_REQUIRE((rep.stop == storage::stop_reason::none), rep.stop_message);
  BOOST_TEST_REQUIRE(rep.done == n);
  for (std::size_t i = 0; i < n; ++i) {
    BOOST_TEST_REQUIRE(rep.errors[i].empty(), rep.errors[i]);
    BOOST_TEST_REQUIRE(created[i], nodes[i].name << " was not created");
  }
  return nodes;
}

} // namespace sessions_e2e
