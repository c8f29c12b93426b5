// End-to-end tests of the nodecoordd binary: command line, configuration errors, startup on
// SQLite and PostgreSQL, sd_notify (READY/STOPPING/RELOADING/WATCHDOG) and signals. Every case
// starts the real daemon (NODECOORDD_PATH) and waits only on bounded events: a notification
// datagram, a line on stderr or the process exit.
#define BOOST_TEST_MODULE daemon_test
#include <boost/test/unit_test.hpp>

#include "nodecoord/version.hpp"
#include "process.hpp"
#include "test_certs.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

using namespace nodecoord::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string daemon_path = NODECOORDD_PATH;
const std::string example_config = NODECOORD_SOURCE_DIR "/config/nodecoord.example.toml";

// Bounds, not delays: each wait returns as soon as its event happens.
constexpr auto startup_bound = 30s;    // READY=1 (migrations on a fresh database included)
constexpr auto notify_bound = 10s;     // a notification that follows a signal
constexpr auto exit_bound = 25s;       // shutdown_timeout defaults to 15s
constexpr auto quick_exit_bound = 10s; // --version, --check-config, refused starts

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::size_t occurrences(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string_view::npos;
       pos = haystack.find(needle, pos + needle.size()))
    ++n;
  return n;
}

/// The environment of a daemon under test: nothing inherited that would change its behaviour
/// (a test run itself started by systemd has NOTIFY_SOCKET, WATCHDOG_USEC, ...), plus
/// NOTIFY_SOCKET pointing at `ns` if given.
environment daemon_env(const notify_socket* ns, environment extra = {}) {
  environment env = {
    {"NOTIFY_SOCKET", std::nullopt},   {"WATCHDOG_USEC", std::nullopt},  {"WATCHDOG_PID", std::nullopt},
    {"STATE_DIRECTORY", std::nullopt}, {"JOURNAL_STREAM", std::nullopt}, {"LISTEN_FDS", std::nullopt},
    {"LISTEN_PID", std::nullopt},      {"LISTEN_FDNAMES", std::nullopt},
  };
  if (ns)
    env["NOTIFY_SOCKET"] = ns->path();
  for (auto& [k, v] : extra)
    env[k] = v;
  return env;
}

/// A TOML basic string holding `s`.
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

/// Requires READY=1 within the startup bound, with the daemon's stderr in the failure message.
void require_ready(notify_socket& ns, child_process& d) {
  bool ready = ns.wait_for("READY=1", startup_bound);
  if (!ready) {
    ns.drain();
    BOOST_FAIL("no READY=1 within " << startup_bound.count() << " s; datagrams:" << ns.describe() << "\nstderr:\n"
                                    << d.stderr_tail());
  }
  BOOST_TEST_REQUIRE(d.wait_for_stderr("nodecoordd ready", notify_bound), d.stderr_tail());
}

/// Sends `signo` after READY and requires an orderly shutdown: STOPPING=1, exit code 0,
/// "nodecoordd stopped" on stderr.
void require_clean_stop(notify_socket& ns, child_process& d, int signo) {
  d.send_signal(signo);
  BOOST_TEST(ns.wait_for("STOPPING=1", notify_bound),
             "no STOPPING=1 after signal " << signo << "; datagrams:" << ns.describe());
  int code = d.wait_exit(exit_bound);
  auto err = d.stderr_text();
  BOOST_TEST(code == 0, "exit code " << code << "; stderr:\n" << d.stderr_tail());
  BOOST_TEST(contains(err, "shutting down"), err);
  BOOST_TEST(contains(err, "nodecoordd stopped"), err);
  BOOST_TEST(contains(err, "exit_code=0"), err);
}

/// Every notification came from the daemon's own process: with NotifyAccess=main, systemd
/// ignores anything else (SO_PASSCRED gives the sender's pid).
void check_senders(notify_socket& ns, const child_process& d) {
  ns.drain();
  for (const auto& dg : ns.datagrams())
    BOOST_TEST(dg.sender == d.pid(),
               "datagram '" << dg.text << "' came from pid " << dg.sender << ", the daemon is " << d.pid());
}

} // namespace

// --- startup and shutdown ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(starts_and_stops_on_sqlite_with_the_example_config) {
  temp_dir state("nodecoordd-state");
  notify_socket ns;
  auto db = state.file("nodecoord.db");
  child_process d(daemon_path, {"--config", example_config, "--state-dir", state.path()}, daemon_env(&ns));

  require_ready(ns, d);
  // The relative "sqlite://nodecoord.db" resolved against --state-dir, and the schema exists
  // before READY=1 (storage starts, migrates and recovers before anything else).
  BOOST_TEST_REQUIRE(fs::is_regular_file(db), db << " does not exist after READY=1");
  BOOST_TEST(fs::file_size(db) > 0u);
  auto err = d.stderr_text();
  BOOST_TEST(contains(err, "nodecoordd starting"), err);
  BOOST_TEST(contains(err, "storage=sqlite://" + db), err);
  BOOST_TEST(contains(err, "config=" + example_config), err);
  // READY=1 carries a status line for `systemctl status`.
  BOOST_TEST(ns.count("STATUS=ready") >= 1u, ns.describe());

  require_clean_stop(ns, d, SIGTERM);
  BOOST_TEST(contains(d.stderr_text(), "storage drained"), d.stderr_text());
  BOOST_TEST(fs::is_regular_file(db));
  check_senders(ns, d);
  // No WATCHDOG_USEC in the environment: no watchdog pings.
  BOOST_TEST(ns.count("WATCHDOG=1") == 0u, ns.describe());
  // STOPPING=1 exactly once, and READY=1 never after it.
  BOOST_TEST(ns.count("STOPPING=1") == 1u, ns.describe());
  bool stopping_seen = false;
  for (const auto& dg : ns.datagrams()) {
    stopping_seen |= contains(dg.text, "STOPPING=1");
    BOOST_TEST(!(stopping_seen && contains(dg.text, "READY=1")), "READY=1 after STOPPING=1:" << ns.describe());
  }
}

BOOST_AUTO_TEST_CASE(starts_and_stops_on_postgresql) {
  const char* pg = std::getenv("NODECOORD_TEST_PG_URL");
  BOOST_TEST_REQUIRE((pg && *pg), "NODECOORD_TEST_PG_URL is not set: this test needs a PostgreSQL database "
                                  "(scripts/run-tests.sh sets it; for a manual run, source the env file of a "
                                  "dev server). It fails rather than skips.");
  std::string url = pg;
  temp_dir dir("nodecoordd-pg");
  // The daemon migrates idempotently; the base URL's default (public) schema is fine here.
  auto config = dir.write("nodecoord.toml", "[storage]\nurl = " + toml_string(url) + "\n");
  notify_socket ns;
  child_process d(daemon_path, {"--config", config, "--state-dir", dir.path()}, daemon_env(&ns));

  require_ready(ns, d);
  auto err = d.stderr_text();
  BOOST_TEST(contains(err, "backend=postgresql"), err);
  // Not SQLite in disguise: nothing was created in the state directory.
  BOOST_TEST(!fs::exists(dir.file("nodecoord.db")));
  // A password in the URL never reaches the log.
  if (auto scheme = url.find("://"); scheme != std::string::npos) {
    auto at = url.find('@', scheme + 3);
    auto colon = url.find(':', scheme + 3);
    if (at != std::string::npos && colon != std::string::npos && colon < at) {
      auto password = url.substr(colon + 1, at - colon - 1);
      if (!password.empty())
        BOOST_TEST(!contains(err, ":" + password + "@"), "the log shows the database password");
    }
  }

  require_clean_stop(ns, d, SIGTERM);
  check_senders(ns, d);
}

BOOST_AUTO_TEST_CASE(sigint_stops_like_sigterm) {
  temp_dir state("nodecoordd-state");
  notify_socket ns;
  child_process d(daemon_path, {"--config", example_config, "--state-dir", state.path()}, daemon_env(&ns));
  require_ready(ns, d);
  require_clean_stop(ns, d, SIGINT);
  // The shutdown was caused by SIGINT (strsignal: "Interrupt"), not by anything else.
  BOOST_TEST(contains(d.stderr_text(), "Interrupt"), d.stderr_text());
  check_senders(ns, d);
}

// --- sd_notify watchdog ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(pings_the_watchdog) {
  temp_dir state("nodecoordd-state");
  notify_socket ns;
  // 200 ms: systemd expects a ping at least every 200 ms (the daemon pings every 100 ms).
  // No WATCHDOG_PID: the watchdog applies to whichever process reads the variable.
  child_process d(daemon_path, {"--config", example_config, "--state-dir", state.path()},
                  daemon_env(&ns, {{"WATCHDOG_USEC", "200000"}}));
  require_ready(ns, d);
  BOOST_TEST_REQUIRE(ns.wait_for("WATCHDOG=1", notify_bound), "no first WATCHDOG=1:" << ns.describe());
  BOOST_TEST_REQUIRE(ns.wait_for("WATCHDOG=1", notify_bound), "no second WATCHDOG=1:" << ns.describe());
  BOOST_TEST(ns.count("WATCHDOG=1") >= 2u);
  require_clean_stop(ns, d, SIGTERM);
  check_senders(ns, d);
}

// --- SIGHUP reload -----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(sighup_reloads_and_rejects_a_broken_file) {
  temp_dir dir("nodecoordd-reload");
  auto config = dir.write("nodecoord.toml", "[storage]\nurl = \"sqlite://nodecoord.db\"\n[log]\nlevel = \"info\"\n");
  notify_socket ns;
  child_process d(daemon_path, {"--config", config, "--state-dir", dir.path()}, daemon_env(&ns));
  require_ready(ns, d);

  // A valid change: the log level is applied at run time.
  dir.write("nodecoord.toml", "[storage]\nurl = \"sqlite://nodecoord.db\"\n[log]\nlevel = \"debug\"\n");
  d.send_signal(SIGHUP);
  BOOST_TEST_REQUIRE(ns.wait_for("RELOADING=1", notify_bound), "no RELOADING=1:" << ns.describe());
  BOOST_TEST_REQUIRE(ns.wait_for("READY=1", notify_bound), "no READY=1 after RELOADING=1:" << ns.describe());
  BOOST_TEST_REQUIRE(d.wait_for_stderr("configuration reloaded", notify_bound), d.stderr_tail());
  BOOST_TEST(contains(d.stderr_text(), "log_level=debug"), d.stderr_tail());
  BOOST_TEST(!contains(d.stderr_text(), "reload rejected"), d.stderr_tail());

  // A broken file: rejected, the daemon keeps running with what it has.
  dir.write("nodecoord.toml", "[log]\nlevel = \"verbose\"\n");
  d.send_signal(SIGHUP);
  BOOST_TEST_REQUIRE(ns.wait_for("RELOADING=1", notify_bound), "no second RELOADING=1:" << ns.describe());
  BOOST_TEST_REQUIRE(ns.wait_for("READY=1", notify_bound), "no READY=1 after the rejected reload:" << ns.describe());
  BOOST_TEST_REQUIRE(d.wait_for_stderr("reload rejected", notify_bound), d.stderr_tail());
  auto err = d.stderr_text();
  // The error is named with file:line:column.
  BOOST_TEST(contains(err, config + ":2:9: log.level"), err);
  BOOST_TEST(occurrences(err, "configuration reloaded") == 1u, err);
  BOOST_TEST(!d.reaped());

  require_clean_stop(ns, d, SIGTERM);
  BOOST_TEST(ns.count("RELOADING=1") == 2u, ns.describe());
  check_senders(ns, d);
}

// --- --check-config ----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(check_config_accepts_the_example) {
  notify_socket ns;
  child_process d(daemon_path, {"--check-config", example_config}, daemon_env(&ns));
  int code = d.wait_exit(quick_exit_bound);
  BOOST_TEST(code == 0, "exit code " << code << "; stderr:\n" << d.stderr_text());
  BOOST_TEST(contains(d.stdout_text(), example_config + ": configuration OK"), d.stdout_text());
  BOOST_TEST(d.stderr_text().empty(), d.stderr_text());
  // Checking a file does not start the daemon: nothing told systemd anything.
  ns.drain();
  BOOST_TEST(ns.datagrams().empty(), ns.describe());
}

BOOST_AUTO_TEST_CASE(check_config_reports_every_error) {
  temp_dir dir("nodecoordd-check");
  auto path = dir.write("bad.toml", "[server]\nlisten = \"127.0.0.1:70000\"\nbogus = 1\n");
  child_process d(daemon_path, {"--check-config", path}, daemon_env(nullptr));
  int code = d.wait_exit(quick_exit_bound);
  auto err = d.stderr_text();
  BOOST_TEST(code == 2, "exit code " << code << "; stderr:\n" << err);
  auto listen_at = err.find(path + ":2:10: server.listen: ");
  auto bogus_at = err.find(path + ":3:1: server.bogus: ");
  BOOST_TEST(listen_at != std::string::npos, err);
  BOOST_TEST(bogus_at != std::string::npos, err);
  BOOST_TEST(listen_at < bogus_at, "errors are not in file order:\n" << err);
  BOOST_TEST(contains(err, "70000"), err);
  BOOST_TEST(contains(err, "unknown key 'bogus'"), err);
  BOOST_TEST(contains(err, "2 errors"), err);
  BOOST_TEST(!contains(d.stdout_text(), "configuration OK"), d.stdout_text());
}

BOOST_AUTO_TEST_CASE(check_config_on_a_missing_file) {
  temp_dir dir("nodecoordd-check");
  auto path = dir.file("missing.toml");
  child_process d(daemon_path, {"--check-config", path}, daemon_env(nullptr));
  int code = d.wait_exit(quick_exit_bound);
  auto err = d.stderr_text();
  BOOST_TEST(code == 2, "exit code " << code << "; stderr:\n" << err);
  BOOST_TEST(contains(err, path + ": cannot read the configuration file: No such file or directory"), err);
  BOOST_TEST(!contains(d.stdout_text(), "configuration OK"), d.stdout_text());
}

// Issue 17: --check-config checks the TLS files (readable, the key matches, not expired), and
// the daemon refuses to start with files it cannot use.
BOOST_AUTO_TEST_CASE(check_config_checks_the_tls_files_and_the_daemon_refuses_unusable_ones) {
  const auto& certs = nodecoord::test::test_certs::get();
  temp_dir dir("nodecoordd-check");
  auto tls_config = [&](const std::string& cert, const std::string& key) {
    return dir.write("tls.toml", "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert_file = \"" + certs.crt(cert)
                                   + "\"\nkey_file = \"" + certs.key(key) + "\"\n[admin]\nlisten = \"127.0.0.1:0\"\n");
  };
  {
    child_process d(daemon_path, {"--check-config", tls_config("server", "server")}, daemon_env(nullptr));
    BOOST_TEST(d.wait_exit(quick_exit_bound) == 0, d.stderr_text());
    BOOST_TEST(contains(d.stdout_text(), "configuration OK (TLS certificate valid until 20"), d.stdout_text());
  }
  const std::vector<std::pair<std::pair<std::string, std::string>, std::string>> bad = {
    {{"expired", "expired"},
     "server.tls.cert_file: the certificate in " + certs.crt("expired") + " expired at 2020-01-02T00:00:00Z"},
    {{"server", "server2"}, "server.tls.key_file: " + certs.key("server2") + " does not belong to the certificate"},
  };
  for (auto& [files, message] : bad) {
    auto path = tls_config(files.first, files.second);
    child_process check(daemon_path, {"--check-config", path}, daemon_env(nullptr));
    BOOST_TEST(check.wait_exit(quick_exit_bound) == 2, check.stderr_text());
    BOOST_TEST(contains(check.stderr_text(), message), check.stderr_text());
    child_process start(daemon_path, {"--config", path, "--state-dir", dir.path()}, daemon_env(nullptr));
    BOOST_TEST(start.wait_exit(quick_exit_bound) == 1, start.stderr_text());
    BOOST_TEST(contains(start.stderr_text(), message), start.stderr_text());
  }
}

// --- command line and refused starts -----------------------------------------------------

BOOST_AUTO_TEST_CASE(version_prints_the_version) {
  child_process d(daemon_path, {"--version"}, daemon_env(nullptr));
  int code = d.wait_exit(quick_exit_bound);
  BOOST_TEST(code == 0, d.stderr_text());
  BOOST_TEST(d.stdout_text() == "nodecoordd " + std::string(nodecoord::version) + "\n");
}

BOOST_AUTO_TEST_CASE(unknown_option_is_a_usage_error) {
  notify_socket ns;
  child_process d(daemon_path, {"--bogus-option"}, daemon_env(&ns));
  int code = d.wait_exit(quick_exit_bound);
  auto err = d.stderr_text();
  BOOST_TEST(code == 2, "exit code " << code << "; stderr:\n" << err);
  BOOST_TEST(contains(err, "--bogus-option"), err);
  BOOST_TEST(contains(err, "--help"), err);
  BOOST_TEST(!contains(err, "nodecoordd starting"), err);
  ns.drain();
  BOOST_TEST(ns.datagrams().empty(), ns.describe());
}

BOOST_AUTO_TEST_CASE(explicit_config_must_exist) {
  temp_dir dir("nodecoordd-cli");
  auto path = dir.file("missing.toml");
  notify_socket ns;
  child_process d(daemon_path, {"--config", path, "--state-dir", dir.path()}, daemon_env(&ns));
  int code = d.wait_exit(quick_exit_bound);
  auto err = d.stderr_text();
  BOOST_TEST(code == 2, "exit code " << code << "; stderr:\n" << err);
  BOOST_TEST(contains(err, path + ": cannot read the configuration file"), err);
  BOOST_TEST(contains(err, "not starting"), err);
  BOOST_TEST(!contains(err, "nodecoordd starting"), err);
  BOOST_TEST(!fs::exists(dir.file("nodecoord.db")));
  ns.drain();
  BOOST_TEST(ns.count("READY=1") == 0u, ns.describe());
}

BOOST_AUTO_TEST_CASE(config_errors_refuse_to_start) {
  temp_dir dir("nodecoordd-cli");
  auto path = dir.write("bad.toml", "[server]\nlisten = \"127.0.0.1:70000\"\nbogus = 1\n");
  notify_socket ns;
  child_process d(daemon_path, {"--config", path, "--state-dir", dir.path()}, daemon_env(&ns));
  int code = d.wait_exit(quick_exit_bound);
  auto err = d.stderr_text();
  BOOST_TEST(code == 2, "exit code " << code << "; stderr:\n" << err);
  BOOST_TEST(contains(err, path + ":2:10: server.listen"), err);
  BOOST_TEST(contains(err, path + ":3:1: server.bogus"), err);
  BOOST_TEST(contains(err, "not starting: 2 configuration error(s)"), err);
  BOOST_TEST(!fs::exists(dir.file("nodecoord.db")));
  ns.drain();
  BOOST_TEST(ns.count("READY=1") == 0u, ns.describe());
}

BOOST_AUTO_TEST_CASE(missing_sqlite_directory_refuses_to_start) {
  temp_dir dir("nodecoordd-cli");
  // A directory that certainly does not exist: inside a fresh temp directory.
  auto missing = dir.file("nonexistent-dir");
  auto config = dir.write("nodecoord.toml", "[storage]\nurl = " + toml_string("sqlite://" + missing + "/x.db") + "\n");
  notify_socket ns;
  child_process d(daemon_path, {"--config", config, "--state-dir", dir.path()}, daemon_env(&ns));
  int code = d.wait_exit(quick_exit_bound);
  auto err = d.stderr_text();
  BOOST_TEST(code == 1, "exit code " << code << "; stderr:\n" << err);
  BOOST_TEST(contains(err, "the directory " + missing + " "), err);
  BOOST_TEST(contains(err, "does not exist"), err);
  BOOST_TEST(!fs::exists(missing), "the daemon created " << missing);
  ns.drain();
  BOOST_TEST(ns.count("READY=1") == 0u, ns.describe());
}

BOOST_AUTO_TEST_CASE(a_second_daemon_on_the_same_sqlite_file_refuses_to_start) {
  temp_dir dir("nodecoordd-lock");
  auto config = dir.write("nodecoord.toml", "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
                                            "[storage]\nurl = \"sqlite://shared.db\"\n");
  notify_socket ns;
  child_process first(daemon_path, {"--config", config, "--state-dir", dir.path()}, daemon_env(&ns));
  require_ready(ns, first);

  // Same file, spelled differently (absolute path), so the lock is on the file, not the text.
  auto other = dir.write("other.toml", "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
                                       "[storage]\nurl = "
                                         + toml_string("sqlite://" + dir.file("shared.db")) + "\n");
  notify_socket ns2;
  child_process second(daemon_path, {"--config", other, "--state-dir", "/"}, daemon_env(&ns2));
  int code = second.wait_exit(quick_exit_bound);
  auto err = second.stderr_text();
  BOOST_TEST(code == 1, "exit code " << code << "; stderr:\n" << err);
  BOOST_TEST(contains(err, "another nodecoordd (pid " + std::to_string(first.pid()) + ")"), err);
  BOOST_TEST(contains(err, "SQLite serves one instance only"), err);
  ns2.drain();
  BOOST_TEST(ns2.count("READY=1") == 0u, ns2.describe());

  // The first one never noticed, and once it is gone the file is free again (no stale lock).
  require_clean_stop(ns, first, SIGTERM);
  notify_socket ns3;
  child_process third(daemon_path, {"--config", other, "--state-dir", "/"}, daemon_env(&ns3));
  require_ready(ns3, third);
  third.send_signal(SIGKILL);
  third.wait_exit(exit_bound);
  notify_socket ns4;
  child_process fourth(daemon_path, {"--config", other, "--state-dir", "/"}, daemon_env(&ns4));
  require_ready(ns4, fourth); // a killed daemon leaves no lock behind
  require_clean_stop(ns4, fourth, SIGTERM);
}
