#pragma once
// The real nodecoordd for end-to-end tests: its own state directory and configuration, started
// and stopped as a child process, nodecoordctl against the same files, and bounded polls of the
// database it writes. Built once (tests/support/e2e_daemon.cpp, library nc_test_e2e) for every end-to-end
// test.
#include "common/api_key.hpp"
#include "common/ids.hpp"
#include "process.hpp"
#include "storage/query.hpp"
#include "storage/url.hpp"

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace nodecoord::test {

using namespace std::chrono_literals;
using json = nlohmann::json;

/// The binaries under test (nc_test_e2e is compiled with their paths).
extern const std::string daemon_path;
extern const std::string ctl_path;

// Bounds, not delays: each wait returns as soon as its event happens.
inline constexpr auto startup_bound = 30s; // "nodecoordd ready" (a fresh database is migrated first)
inline constexpr auto frame_bound = 10s;   // a reply to a frame we sent
inline constexpr auto close_bound = 10s;   // the server closing a socket after its last frame
inline constexpr auto db_bound = 15s;      // state the daemon writes asynchronously (offline rows)
inline constexpr auto exit_bound = 25s;    // shutdown_timeout defaults to 15 s
inline constexpr auto ctl_bound = 30s;     // one nodecoordctl run

/// The environment of a child under test: nothing inherited that would change its behaviour.
environment clean_env();

/// A finished child: its exit code (-1: still running at the bound, then killed) and output.
struct program_result {
  int code = -1;
  std::string out;
  std::string err;
};

/// `program args…` with `input` on its stdin (through a file, so a prompt reads it as a
/// terminal user would type it), in clean_env(), waited for at most `bound`.
program_result run_with_stdin(const std::string& program, const std::vector<std::string>& args,
                              const std::string& input, std::chrono::milliseconds bound = ctl_bound);

/// RFC 3339 UTC with milliseconds, as the coordinator writes times.
/// (A hand-written check: std::regex trips GCC 12's -Wmaybe-uninitialized in sanitizer builds.)
bool is_wire_time(const nlohmann::json& v);

/// The lines of `text` that contain `needle`, each on its own indented line (failure messages).
std::string lines_with(const std::string& text, std::string_view needle);

/// Polls `pred` (a database read) until it holds or `bound` passes.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::milliseconds bound = db_bound) {
  auto deadline = std::chrono::steady_clock::now() + bound;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(20ms); // the polling period, not a wait for an event
  }
}

struct node_info {
  std::string name;
  std::string id;
  std::string key;
};

struct node_row {
  bool found = false;
  std::string id;
  std::string status;
  int64_t epoch = -1;
  std::string connected_at;
  std::string disconnected_at;
  std::string disconnect_reason;
  std::string disabled_at;
};

std::ostream& operator<<(std::ostream& os, const node_row& r);

/// Server settings of a test's configuration; a test overrides what it needs.
using settings = std::map<std::string, std::string>;

settings base_settings();

settings with(settings s, const settings& changes);

/// One nodecoordd with its own state directory and configuration; nodecoordctl runs against
/// the same files. Storage: SQLite at <dir>/nodecoord.db, or `storage_url` (e.g. a PostgreSQL
/// test schema). `extra_toml` is appended to the configuration (other tables); `admin` adds keys to
/// its [admin] table.
class daemon_under_test {
public:
  explicit daemon_under_test(const settings& server = base_settings(), const std::string& storage_url = "",
                             const std::string& extra_toml = "", const settings& admin = {});

  const std::string& state_dir() const { return dir_.path(); }
  const std::string& config() const { return config_; }
  std::string db_path() const { return dir_.file("nodecoord.db"); }
  child_process& process() { return *proc_; }
  uint16_t port() const { return port_; }

  /// Starts the daemon and waits until it listens; reads the ports it got from its log. A no-op
  /// while it runs (add_node already started it).
  void start();

  uint16_t admin_port() const { return admin_port_; }
  std::string admin_url() const { return "http://127.0.0.1:" + std::to_string(admin_port_); }

  /// SIGTERM; requires exit code 0.
  void stop();

  /// `nodecoordctl --admin URL --json ARGS...` against this daemon (started if it is not);
  /// requires exit code 0; its stdout.
  json ctl(std::vector<std::string> args);

  /// `nodecoordctl node add NAME` (starts the daemon if needed): the node's id and its key.
  node_info add_node(const std::string& name);

  void disable_node(const std::string& name) { ctl({"node", "disable", name}); }

  /// A fresh look at the database (SQLite WAL: safe while the daemon writes).
  std::unique_ptr<soci::session> db() const;

  node_row node(const std::string& name) const;

  int64_t count(const std::string& sql) const;

  /// Every row of the query, every column, NULL shown as "NULL": for "nothing changed" checks.
  std::vector<std::string> rows(const std::string& sql) const;

  /// Waits (bounded poll) until `name`'s row satisfies `pred`; fails with the last row seen.
  template <class Pred>
  node_row wait_node(const std::string& name, Pred&& pred, const char* what) {
    node_row last;
    bool ok = eventually([&] {
      last = node(name);
      return pred(last);
    });
    BOOST_TEST_REQUIRE(ok, "node " << name << ": " << what << " not reached within " << db_bound.count()
                                   << " s; row: " << last << "\nstderr:\n"
                                   << proc_->stderr_tail());
    return last;
  }

  /// Waits until the reconnect trigger of `node_id`'s new session ran and found nothing partial:
  /// after this, attempts the test sends are not marked by that trigger behind its back.
  void wait_reconnect_trigger(const std::string& node_id);

  node_row wait_offline(const std::string& name, const std::string& reason);

private:
  temp_dir dir_;
  std::string config_;
  storage::storage_url url_;
  std::unique_ptr<child_process> proc_;
  uint16_t port_ = 0;
  uint16_t admin_port_ = 0;

  static uint16_t port_from_log(const std::string& err, const std::string& needle);
};

} // namespace nodecoord::test
