#define BOOST_TEST_MODULE supervisor_test
#include <boost/test/unit_test.hpp>

// The supervisor (actors/supervisor.hpp) under CAF's deterministic scheduler and test multiplexer,
// with the real storage (SQLite), registry, tracker, scheduler and acceptor, and a stand-in for the
// admin API: it starts them in order and reports ready, reloads on SIGHUP, pings the watchdog,
// stops with exit code 1 when a part cannot start, and on SIGTERM shuts down in order: sessions
// closed with close{shutdown}, nodes offline, what was accepted committed, exit code 0.

#include "actors/supervisor.hpp"
#include "common/ids.hpp"
#include "common/metrics.hpp"
#include "storage/query.hpp"
#include "deterministic.hpp"
#include "process.hpp"
#include "protocol/codec.hpp"
#include "test_certs.hpp"
#include "test_db.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/test_multiplexer.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <memory>

using namespace nodecoord;
using namespace std::chrono_literals;
using json = nlohmann::json;
using caf::io::connection_handle;
using strings = std::vector<std::string>;

namespace {

constexpr uint16_t node_port = 4242; // the 0.17 test multiplexer needs a fixed port

/// What the supervisor did outside the actor system, in order.
struct recorded {
  strings events; // "ready: ...", "reloading", "stopping: ...", "watchdog", "log: <level>"
  std::optional<int> exit_code;
  std::vector<bool> admin_accepting; // status_atom sent to the admin API
  strings admin_tokens;              // token_atom sent to the admin API
  int on_done_calls = 0;
};

/// The database first: it outlives the actor system (the storage actor's connection).
struct supervisor_database {
  test::test_database t{storage::backend::sqlite};
};

struct supervisor_fixture : supervisor_database, test::deterministic_system {
  supervisor_fixture() : deterministic_system(io::simulated), mpx(*mpx_or_null) {}

  ~supervisor_fixture() {
    if (sup && !rec->exit_code) {
      caf::anon_send(sup, signal_atom::value, SIGTERM);
      run();
    }
  }

  /// The daemon's options with the hooks recording into `rec`; `admin_listens`: whether the
  /// stand-in admin API reports a port or fails as one that cannot listen would.
  supervisor_options options(bool admin_listens = true) {
    supervisor_options o;
    o.config = config::default_config();
    o.config.storage.url = t.url();
    o.config.server.listen.host = "127.0.0.1";
    o.config.server.listen.port = node_port;
    o.state_dir = dir.path();
    o.detached_storage = false;
    auto r = rec;
    o.on_done = [r](int code) {
      r->exit_code = code;
      ++r->on_done_calls;
    };
    o.hooks.ready = [r](const std::string& s) { r->events.push_back("ready: " + s); };
    o.hooks.reloading = [r] { r->events.push_back("reloading"); };
    o.hooks.stopping = [r](const std::string& s) { r->events.push_back("stopping: " + s); };
    o.hooks.watchdog = [r] { r->events.push_back("watchdog"); };
    o.hooks.apply_log = [r](const config::log_config& l) {
      r->events.push_back("log: " + std::string(config::to_string(l.level)));
    };
    // The stand-in takes an argument: CAF 0.17 dereferences a null tuple when a function actor
    // takes none, which UBSan reports.
    o.spawn_admin = [r, admin_listens](caf::actor_system& s, admin_options) {
      return s.spawn(
        [r, admin_listens](admin_actor::pointer, int) -> admin_actor::behavior_type {
          return {
            [=](port_atom) -> caf::result<uint16_t> {
              if (!admin_listens)
                return caf::make_error(caf::sec::cannot_open_port, "stand-in admin API cannot listen");
              return uint16_t{8080};
            },
            [=](status_atom, bool accepting) { r->admin_accepting.push_back(accepting); },
            [=](token_atom, const std::string& token) { r->admin_tokens.push_back(token); },
          };
        },
        0);
    };
    return o;
  }

  /// options() for instance "inst-a" with a 1 s lease interval (3 s expiry).
  supervisor_options lease_options() {
    auto o = options();
    o.instance_id = "inst-a";
    o.config.server.lease_interval = std::chrono::milliseconds(1000);
    o.config.server.lease_expiry = std::chrono::milliseconds(3000);
    return o;
  }

  void start(supervisor_options o) {
    mpx.provide_acceptor(node_port, acc);
    sup = spawn_supervisor(sys, std::move(o));
    run();
  }

  void signal(int signo) {
    caf::anon_send(sup, signal_atom::value, signo);
    run();
  }

  connection_handle connect() { return connect_to(acc); }

  /// Writes `text` as the configuration file the supervisor re-reads on SIGHUP.
  std::string write_config(const std::string& text) {
    auto path = dir.path() + "/nodecoordd.toml";
    std::ofstream(path) << text;
    return path;
  }

  std::shared_ptr<recorded> rec = std::make_shared<recorded>();
  test::temp_dir dir;
  caf::io::network::test_multiplexer& mpx;
  caf::io::accept_handle acc = caf::io::accept_handle::from_int(1);
  supervisor_actor sup;
};

const std::string ready_event = "ready: ready; listening on port " + std::to_string(node_port);

} // namespace

BOOST_FIXTURE_TEST_CASE(starts_in_order_and_shuts_down_in_order_on_sigterm, supervisor_fixture) {
  start(options());
  BOOST_TEST(rec->events == strings{ready_event}, boost::test_tools::per_element());
  BOOST_TEST(!rec->exit_code.has_value());

  // A node works against what the supervisor started: storage, registry, acceptor.
  auto n = test::add_test_node(t, "alpha");
  auto c = connect();
  send(c, protocol::encode_hello({protocol::version, n.name, n.key, "test", ""}));
  auto welcome = frames(c);
  BOOST_TEST_REQUIRE(welcome.size() == 1u);
  BOOST_TEST(welcome[0]["type"] == "welcome");
  auto a = new_uuid();
  send(c, protocol::encode_attempt({a, "task-1", "running", "", "", ""})
            + protocol::encode_logs({a, {{0, "2026-01-09T12:00:00.000Z", "stdout", "line 0"}}}));

  signal(SIGTERM);
  // Sessions closed with close{shutdown} (the backfill request the reconnect trigger may have
  // sent before it is not part of the order checked here), the node offline with that reason,
  // the frames accepted before it committed, exit code 0, the admin API told first.
  auto out = frames(c);
  BOOST_TEST_REQUIRE(!out.empty());
  BOOST_TEST(out.back()["type"] == "close");
  BOOST_TEST(out.back()["reason"] == "shutdown");
  BOOST_TEST(closed(c));
  auto row = t.run(storage::node_lookup_by_name{"alpha"});
  BOOST_TEST(row.node.status == "offline");
  BOOST_TEST(row.node.disconnect_reason == "shutdown");
  auto stored = t.run(storage::attempt_get{a});
  BOOST_TEST(stored.found);
  BOOST_TEST(stored.attempt.log_count == 1);
  BOOST_TEST(rec->exit_code.value_or(-1) == 0);
  BOOST_TEST(rec->on_done_calls == 1);
  BOOST_TEST(rec->events == (strings{ready_event, "stopping: stopping"}), boost::test_tools::per_element());
  BOOST_TEST(rec->admin_accepting == std::vector<bool>{false});
  // A second signal changes nothing (main exits at once on a second SIGTERM itself).
  signal(SIGTERM);
  BOOST_TEST(rec->on_done_calls == 1);
}

BOOST_FIXTURE_TEST_CASE(a_database_that_cannot_start_ends_with_exit_code_1, supervisor_fixture) {
  t.exec_sql("INSERT INTO schema_migrations (version, description, applied_at) VALUES "
             "(999, 'future', '2030-01-01T00:00:00.000Z')");
  start(options());
  BOOST_TEST(rec->exit_code.value_or(-1) == 1);
  BOOST_TEST(rec->events.empty(), "never ready");
  BOOST_TEST(rec->on_done_calls == 1);
}

BOOST_FIXTURE_TEST_CASE(an_admin_api_that_cannot_listen_stops_everything_with_exit_code_1, supervisor_fixture) {
  start(options(false));
  BOOST_TEST(rec->exit_code.value_or(-1) == 1);
  BOOST_TEST(rec->events.empty(), "never ready");
  BOOST_TEST(rec->on_done_calls == 1);
}

BOOST_FIXTURE_TEST_CASE(sighup_applies_the_log_settings_and_the_token_and_rejects_a_broken_file, supervisor_fixture) {
  auto o = options();
  auto token_path = dir.path() + "/admin.token";
  std::ofstream(token_path) << "0123456789abcdef-first\n";
  o.config_path = write_config("");
  o.config.admin.token_file = token_path;
  o.admin_token = "0123456789abcdef-first";
  start(std::move(o));
  rec->events.clear();

  // A valid file: the log level applies at once, a rotated token reaches the admin API.
  std::ofstream(token_path) << "0123456789abcdef-second\n";
  write_config("[log]\nlevel = \"debug\"\n[admin]\ntoken_file = \"" + token_path + "\"\n");
  signal(SIGHUP);
  BOOST_TEST(rec->events == (strings{"reloading", "log: debug", "ready: ready"}), boost::test_tools::per_element());
  BOOST_TEST(rec->admin_tokens == strings{"0123456789abcdef-second"}, boost::test_tools::per_element());

  // A file with an error is rejected as a whole: nothing applies, the daemon stays ready.
  rec->events.clear();
  write_config("[log]\nlevel = \"trace\"\n[server\n");
  signal(SIGHUP);
  BOOST_TEST(rec->events == (strings{"reloading", "ready: ready"}), boost::test_tools::per_element());
  BOOST_TEST(rec->admin_tokens.size() == 1u);

  // A token file that became unusable keeps the token in effect.
  rec->events.clear();
  std::ofstream(token_path) << "short\n";
  write_config("[admin]\ntoken_file = \"" + token_path + "\"\n");
  signal(SIGHUP);
  BOOST_TEST(rec->events == (strings{"reloading", "log: info", "ready: ready"}), boost::test_tools::per_element());
  BOOST_TEST(rec->admin_tokens.size() == 1u);
  BOOST_TEST(!rec->exit_code.has_value());
}

// Issue 17: SIGHUP rebuilds the node port's TLS context from [server.tls]; unusable files keep
// the running one, and a configuration without a certificate turns TLS off.
BOOST_FIXTURE_TEST_CASE(sighup_rebuilds_the_tls_context_and_keeps_it_when_the_files_are_unusable, supervisor_fixture) {
  const auto& certs = test::test_certs::get();
  auto o = options();
  o.config_path = write_config("");
  auto setting = std::make_shared<tls::server_setting>();
  o.node_tls = setting;
  start(std::move(o));
  BOOST_TEST(setting->get().ctx == nullptr);
  auto tls_toml = [&](const std::string& cert, const std::string& extra = "") {
    return "[server.tls]\ncert_file = \"" + certs.crt(cert) + "\"\nkey_file = \"" + certs.key(cert) + "\"\n" + extra;
  };
  write_config(tls_toml("server", "required = false\n"));
  signal(SIGHUP);
  auto first = setting->get();
  BOOST_TEST_REQUIRE(first.ctx != nullptr);
  BOOST_TEST(!first.required);
  BOOST_TEST(!first.ctx->verifies_clients());
  // Rotation, with mutual TLS.
  write_config(tls_toml("server2", "client_ca_file = \"" + certs.crt("ca") + "\"\n"));
  signal(SIGHUP);
  auto second = setting->get();
  BOOST_TEST_REQUIRE(second.ctx != nullptr);
  BOOST_TEST(second.ctx != first.ctx);
  BOOST_TEST(second.ctx->verifies_clients());
  BOOST_TEST(second.required);
  // An expired certificate, or a key of another certificate: the running context stays.
  write_config(tls_toml("expired"));
  signal(SIGHUP);
  BOOST_TEST(setting->get().ctx == second.ctx);
  write_config("[server.tls]\ncert_file = \"" + certs.crt("server") + "\"\nkey_file = \"" + certs.key("server2")
               + "\"\n");
  signal(SIGHUP);
  BOOST_TEST(setting->get().ctx == second.ctx);
  // No certificate any more: plain TCP for new connections.
  write_config("");
  signal(SIGHUP);
  BOOST_TEST(setting->get().ctx == nullptr);
  BOOST_TEST(!rec->exit_code.has_value());
}

BOOST_FIXTURE_TEST_CASE(the_watchdog_is_pinged_every_half_interval_while_storage_answers, supervisor_fixture) {
  auto o = options();
  o.hooks.watchdog_interval = std::chrono::microseconds(20s);
  start(std::move(o));
  rec->events.clear();
  advance(10s);
  BOOST_TEST(rec->events == strings{"watchdog"});
  advance(10s);
  BOOST_TEST(rec->events == (strings{"watchdog", "watchdog"}));
}

// Without a watchdog interval (not started by systemd with WatchdogSec) nothing is sent.
BOOST_FIXTURE_TEST_CASE(no_watchdog_interval_no_pings, supervisor_fixture) {
  start(options());
  advance(60s);
  BOOST_TEST(rec->events == strings{ready_event});
}

// Several instances (DESIGN §9): the lease is renewed every lease_interval. When another instance
// has recovered this one (it was paused past its lease), the renewal fails: every session is
// closed as superseded, the instance rejoins with a new incarnation, and the next renewal holds.
BOOST_FIXTURE_TEST_CASE(a_lost_lease_closes_every_session_and_rejoins, supervisor_fixture) {
  start(lease_options());
  BOOST_TEST(rec->events == strings{ready_event}, boost::test_tools::per_element());
  auto incarnation = [&] {
    int64_t n = -1;
    storage::query(t.db().session(), "SELECT incarnation FROM instances WHERE id = 'inst-a'")
      .each([&](const soci::row& r) { n = storage::col_int(r, 0); });
    return n;
  };
  BOOST_TEST_REQUIRE(incarnation() == 1);
  auto n = test::add_test_node(t, "alpha");
  auto c = connect();
  send(c, protocol::encode_hello({protocol::version, n.name, n.key, "test", ""}));
  BOOST_TEST_REQUIRE(frames(c).at(0)["type"] == "welcome");
  BOOST_TEST(t.run(storage::node_lookup_by_name{"alpha"}).node.status == "online");

  // Renewals hold while nobody took the lease.
  auto losses = metrics::daemon().lease_losses.load();
  advance(std::chrono::milliseconds(2100));
  BOOST_TEST(metrics::daemon().lease_losses.load() == losses);
  BOOST_TEST(!closed(c));

  // Another instance recovered this one (as instance_renew does for an expired lease).
  t.exec_sql("UPDATE instances SET incarnation = incarnation + 1, recovered_at = '2026-01-09T12:00:00.000Z', "
             "recovered_by = 'inst-b' WHERE id = 'inst-a'");
  advance(std::chrono::milliseconds(1000));
  BOOST_TEST(metrics::daemon().lease_losses.load() == losses + 1);
  auto out = frames(c);
  BOOST_TEST_REQUIRE(!out.empty());
  BOOST_TEST(out.back()["type"] == "close");
  BOOST_TEST(out.back()["reason"] == "superseded");
  BOOST_TEST(closed(c));
  BOOST_TEST(incarnation() == 3); // rejoined
  // The next renewals hold again, and the daemon keeps serving.
  advance(std::chrono::milliseconds(2100));
  BOOST_TEST(metrics::daemon().lease_losses.load() == losses + 1);
  BOOST_TEST(!rec->exit_code.has_value());
  auto c2 = connect();
  send(c2, protocol::encode_hello({protocol::version, n.name, n.key, "test", ""}));
  BOOST_TEST(frames(c2).at(0)["type"] == "welcome");
}

// A renewal that comes due between a lost lease's rejoin and its answer (a slow database) must
// not go out with the old incarnation: storage would refuse it without a recovered_by (the rejoin
// cleared it), and the instance would take itself for a twin and stop with exit code 1. Seen in
// the instances fault round (2026-12-07): CPU contention made the rejoin take 650 ms.
BOOST_FIXTURE_TEST_CASE(a_renewal_waits_for_the_rejoin_after_a_lost_lease, supervisor_fixture) {
  start(lease_options());
  auto incarnation = [&] {
    int64_t n = -1;
    storage::query(t.db().session(), "SELECT incarnation FROM instances WHERE id = 'inst-a'")
      .each([&](const soci::row& r) { n = storage::col_int(r, 0); });
    return n;
  };
  auto losses = metrics::daemon().lease_losses.load();
  t.exec_sql("UPDATE instances SET incarnation = incarnation + 1, recovered_at = '2026-01-09T12:00:00.000Z', "
             "recovered_by = 'inst-b' WHERE id = 'inst-a'");
  // Up to the renewal that finds the lease lost, and not one step further: the rejoin is at
  // storage, unanswered.
  sched.clock().advance_time(std::chrono::milliseconds(1000));
  while (metrics::daemon().lease_losses.load() == losses && sched.try_run_once())
    ;
  BOOST_TEST_REQUIRE(metrics::daemon().lease_losses.load() == losses + 1);
  BOOST_TEST_REQUIRE(incarnation() == 2); // not rejoined yet
  // The next renewal comes due now, before storage has answered the rejoin.
  sched.clock().advance_time(std::chrono::milliseconds(1000));
  run();
  BOOST_TEST(!rec->exit_code.has_value(), "the instance took itself for a twin");
  BOOST_TEST(incarnation() == 3); // rejoined
  // And the renewals after it hold.
  advance(std::chrono::milliseconds(3100));
  BOOST_TEST(metrics::daemon().lease_losses.load() == losses + 1);
  BOOST_TEST(!rec->exit_code.has_value());
}

// A second process started with the same instance id took the lease (a newer incarnation that no
// instance recovered): this one stops, with exit code 1.
BOOST_FIXTURE_TEST_CASE(a_twin_with_the_same_instance_id_stops_this_one, supervisor_fixture) {
  start(lease_options());
  t.exec_sql("UPDATE instances SET incarnation = incarnation + 1 WHERE id = 'inst-a'");
  advance(std::chrono::milliseconds(1000));
  BOOST_TEST(rec->exit_code.value_or(-1) == 1);
  BOOST_TEST(rec->events.back() == "stopping: stopping");
}
