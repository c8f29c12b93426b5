#include "actors/supervisor.hpp"

#include "actors/acceptor.hpp"
#include "actors/admin.hpp"
#include "actors/registry.hpp"
#include "actors/scheduler.hpp"
#include "actors/shutdown.hpp"
#include "actors/storage.hpp"
#include "actors/tracker.hpp"
#include "common/clock.hpp"
#include "common/ingest_budget.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "nodecoord/version.hpp"
#include "protocol/codec.hpp"
#include "config/defaults.hpp"
#include "config/reload.hpp"

#include <caf/actor_system.hpp>
#include <caf/exit_reason.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <csignal>
#include <optional>

namespace nodecoord {

namespace {

struct supervisor_state {
  static inline const char* name = "supervisor";
  supervisor_options opts;
  storage_actor storage;
  registry_actor registry;
  tracker_actor tracker;
  scheduler_actor scheduler;
  caf::actor acceptor;
  admin_actor admin;
  std::string started_at;
  bool ready = false;
  bool stopping = false;
  bool done = false;
  int64_t incarnation = 0; // of this instance's lease
  bool renewing = false;   // a renewal (or the rejoin after a lost lease) is at storage
  int failure = 0;         // the exit code a stop caused by an error ends with

  void finish(int code) {
    if (!done) {
      done = true;
      if (admin)
        caf::anon_send_exit(admin, caf::exit_reason::user_shutdown);
      opts.on_done(std::max(code, failure));
    }
  }
};

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

/// SIGHUP: the admin token is read again (a rotated token needs no restart); a file that cannot
/// be used keeps the token in effect.
void reload_admin_token(self_ptr self, const std::string& path) {
  auto& st = self->state;
  std::string token;
  if (!path.empty()) {
    std::string why;
    auto t = config::read_admin_token(path, why);
    if (!t) {
      log::error("reload: admin token not changed", {{"error", why}});
      return;
    }
    token = *t;
  }
  st.opts.config.admin.token_file = path;
  if (token == st.opts.admin_token)
    return;
  st.opts.admin_token = token;
  if (st.admin)
    self->send(st.admin, token_atom::value, token);
  log::info("admin token reloaded", {{"token", token.empty() ? "none" : "required"}});
}

/// SIGHUP: [server.tls] and [admin.tls] are read again (a rotated certificate needs no restart).
/// New connections get the new context; live sessions keep theirs. Unusable files keep the running setting.
void reload_tls(tls::server_setting& running, config::tls_config& now, const config::tls_config& next,
                const char* table) {
  std::string why;
  auto setting = tls::setting_from(next, table, why);
  if (!setting) {
    log::error("reload: TLS not changed", {{"table", table}, {"error", why}});
    return;
  }
  // The admin port cannot change between HTTP and HTTPS while it listens (restart_needed says so).
  if (std::string_view(table) == "admin.tls" && (setting->ctx == nullptr) != (running.get().ctx == nullptr))
    return;
  running.set(*setting);
  now = next;
  if (setting->ctx)
    log::info("TLS reloaded", {{"table", table},
                               {"cert_file", next.cert_file},
                               {"not_after", setting->ctx->not_after()},
                               {"mutual", setting->ctx->verifies_clients()},
                               {"required", setting->required}});
  else
    log::info("TLS off: the node port speaks plain TCP");
}

void reload(self_ptr self) {
  auto& st = self->state;
  if (st.stopping) {
    log::info("reload ignored: shutting down");
    return;
  }
  st.opts.hooks.reloading();
  if (st.opts.config_path.empty()) {
    log::info("reload: no configuration file; nothing to do");
  } else {
    auto res = config::load_file(st.opts.config_path);
    if (!res.ok()) {
      for (auto& e : res.errors)
        log::error("reload: configuration error", {{"error", e.to_string()}});
      log::warn("reload rejected; the running configuration stays in effect", {{"file", st.opts.config_path}});
    } else {
      auto& now = st.opts.config;
      auto& next = res.config;
      std::string restart_keys;
      for (auto& k : config::restart_needed(now, next))
        restart_keys += (restart_keys.empty() ? "" : ",") + k;
      // Logged before the new level applies, so a quieter level still shows the confirmation.
      log::info("configuration reloaded",
                {{"file", st.opts.config_path}, {"log_level", config::to_string(next.log.level)}});
      if (!restart_keys.empty())
        log::warn("changed settings take effect after a restart", {{"keys", restart_keys}});
      // The log settings and the admin token change at run time; the rest needs a restart.
      st.opts.hooks.apply_log(next.log);
      now.log = next.log;
      reload_admin_token(self, next.admin.token_file);
      reload_tls(*st.opts.node_tls, now.server.tls, next.server.tls, "server.tls");
      reload_tls(*st.opts.admin_tls, now.admin.tls, next.admin.tls, "admin.tls");
    }
  }
  if (st.ready)
    st.opts.hooks.ready("ready");
}

/// Startup failed or was interrupted: stop whatever was spawned.
void stop_all(self_ptr self, int code) {
  auto& st = self->state;
  auto stop = [&](const auto& a) {
    if (a)
      self->send_exit(a, caf::exit_reason::user_shutdown);
  };
  stop(st.acceptor);
  stop(st.registry);
  stop(st.scheduler);
  stop(st.tracker);
  stop(st.storage);
  st.finish(code);
  self->quit();
}

void shutdown(self_ptr self, int signo) {
  auto& st = self->state;
  if (st.stopping)
    return;
  st.stopping = true;
  st.opts.hooks.stopping("stopping");
  log::info("shutting down", {{"signal", strsignal(signo)}});
  if (st.admin)
    self->send(st.admin, status_atom::value, false); // /readyz: 503 from now on
  if (!st.ready) {
    // Startup had not finished (e.g. waiting for the database): nothing was accepted yet.
    stop_all(self, 0);
    return;
  }
  // The acceptor, the registry, the tracker, then storage drains (actors/shutdown.hpp).
  shutdown_in_order(self, {st.acceptor, st.registry, st.scheduler, st.tracker, st.storage},
                    [=](const shutdown_report& r) {
                      self->state.finish(r.drained ? 0 : 1);
                      self->quit();
                    });
}

void schedule_lease(self_ptr self) {
  auto& st = self->state;
  if (!st.opts.instance_id.empty() && !st.stopping)
    self->delayed_send(self, st.opts.config.server.lease_interval, lease_atom::value);
}

/// The lease (DESIGN §9): renewed every lease_interval through storage's queue. Lost to another
/// instance (this one was paused or cut off for longer than lease_expiry, and its rows were
/// recovered): every session is closed as superseded (their writes fail the fence anyway) and the
/// instance rejoins with a new incarnation. Lost to a process that started with the same id: the
/// operator gave two daemons one id; this one stops.
void renew_lease(self_ptr self) {
  auto& st = self->state;
  schedule_lease(self);
  if (st.renewing || st.stopping)
    return;
  st.renewing = true;
  auto expiry = std::chrono::duration_cast<std::chrono::milliseconds>(st.opts.config.server.lease_expiry).count();
  self->request(st.storage, caf::infinite, storage::instance_renew{st.incarnation, expiry})
    .then(
      [=](const storage::instance_renew::result_type& r) {
        auto& s = self->state;
        s.renewing = false;
        for (auto& rec : r.recovered) {
          metrics::daemon().instances_recovered.fetch_add(1, std::memory_order_relaxed);
          // An instance that stopped cleanly leaves nothing to recover: a warning only when it
          // held something (it died, or was cut off, with work in hand).
          auto& rc = rec.recovery;
          log::fields fs{{"instance", rec.id},
                         {"reset_pending", rc.attempts_reset},
                         {"abandoned_jobs", rc.jobs_abandoned},
                         {"offlined_nodes", rc.nodes_offlined}};
          if (rc.attempts_reset + rc.jobs_abandoned + rc.nodes_offlined > 0)
            log::warn("recovered an instance whose lease expired", std::move(fs));
          else
            log::info("recovered an instance whose lease expired", std::move(fs));
        }
        if (r.held || s.stopping)
          return;
        metrics::daemon().lease_losses.fetch_add(1, std::memory_order_relaxed);
        if (r.now.recovered_by.empty()) {
          log::error(
            "another nodecoordd started with this instance id; stopping (give every instance its own "
            "server.instance_id or state directory)",
            {{"instance", s.opts.instance_id}, {"other_listen", r.now.listen}, {"other_started_at", r.now.started_at}});
          s.failure = 1;
          shutdown(self, SIGTERM);
          return;
        }
        log::error("lease lost: another instance recovered this one while it was unresponsive; closing every "
                   "session and rejoining",
                   {{"instance", s.opts.instance_id},
                    {"recovered_by", r.now.recovered_by},
                    {"recovered_at", r.now.recovered_at}});
        self->request(s.registry, caf::infinite, shutdown_atom::value, std::string(protocol::close_reason::superseded))
          .then(
            [](uint64_t n) {
              log::info("sessions closed after the lease was lost", {{"sessions", n}});
            },
            [](caf::error&) {});
        // No renewal until the rejoin answers: one sent meanwhile would carry the old incarnation,
        // fail without a recovered_by (the rejoin cleared it), and look like a twin (a slow
        // database made this happen in the instances fault round).
        s.renewing = true;
        self->request(s.storage, caf::infinite, storage::instance_rejoin{})
          .then(
            [=](const storage::instance_rejoin::result_type& j) {
              self->state.renewing = false;
              self->state.incarnation = j.incarnation;
              log::info("instance rejoined",
                        {{"instance", self->state.opts.instance_id}, {"incarnation", j.incarnation}});
            },
            [=](caf::error& e) {
              self->state.renewing = false;
              log::error("rejoin failed; will retry at the next renewal", {{"error", to_string(e)}});
            });
      },
      [=](caf::error& e) {
        self->state.renewing = false;
        log::warn("lease renewal failed", {{"error", to_string(e)}});
      });
}

void schedule_watchdog(self_ptr self) {
  if (auto w = self->state.opts.hooks.watchdog_interval)
    self->delayed_send(self, *w / 2, watchdog_atom::value);
}

/// After the acceptor listens: the admin API; READY=1 once both listen.
void start_admin(self_ptr self, uint16_t node_port) {
  auto& st = self->state;
  auto& cfg = st.opts.config;
  admin_options ao;
  ao.host = cfg.admin.listen.host;
  ao.port = cfg.admin.listen.port;
  ao.token = st.opts.admin_token;
  ao.max_body_bytes = cfg.admin.max_body_bytes;
  ao.max_rows_per_action = cfg.admin.max_rows_per_action;
  ao.max_rows_per_action_hard = cfg.admin.max_rows_per_action_hard;
  ao.checks = cfg.checks;
  ao.allowed_hosts = cfg.admin.allowed_hosts;
  ao.tls = st.opts.admin_tls;
  ao.started_at = st.started_at;
  ao.instance_id = st.opts.instance_id;
  if (auto url = storage::parse_storage_url(cfg.storage.url, st.opts.state_dir, cfg.storage.connect_timeout);
      url.shared())
    ao.reader_url = url; // else (sqlite::memory:) sizes and exports go through the storage actor
  ao.storage = st.storage;
  ao.registry = st.registry;
  ao.tracker = st.tracker;
  ao.scheduler = st.scheduler;
  st.admin = st.opts.spawn_admin(self->system(), ao);
  self->request(st.admin, std::chrono::seconds(10), port_atom::value)
    .then(
      [=](uint16_t) {
        auto& s = self->state;
        if (s.stopping)
          return;
        s.ready = true;
        log::info("nodecoordd ready", {{"listen", s.opts.config.server.listen.host + ":" + std::to_string(node_port)}});
        s.opts.hooks.ready("ready; listening on port " + std::to_string(node_port));
        schedule_watchdog(self);
      },
      [=](caf::error& e) {
        log::error("not starting: cannot serve the admin API",
                   {{"listen", self->state.opts.config.admin.listen.to_string()}, {"error", to_string(e)}});
        stop_all(self, 1);
      });
}

/// After storage is ready: the registry, then the acceptor, then the admin API.
void start_listening(self_ptr self) {
  auto& st = self->state;
  auto& cfg = st.opts.config;
  tracker_options to;
  to.storage = st.storage;
  to.request_timeout = cfg.backfill.request_timeout;
  to.max_failures = cfg.backfill.max_failures;
  to.max_inflight_per_node = cfg.backfill.max_inflight_per_node;
  to.coalesce_window = defaults::coalesce_window;
  st.tracker = spawn_tracker(self->system(), to);
  scheduler_options so;
  so.storage = st.storage;
  so.tracker = st.tracker;
  so.reconcile_interval = cfg.backfill.reconcile_interval;
  so.batch_size = cfg.backfill.batch_size;
  so.reconnect_rate = cfg.backfill.reconnect_rate;
  st.scheduler = spawn_scheduler(self->system(), so);
  registry_options ro;
  ro.storage = st.storage;
  ro.coalesce_window = defaults::coalesce_window;
  ro.max_lookups = cfg.storage.batch_max;
  st.registry = spawn_registry(self->system(), ro);
  // The tracker first: it knows a session before the scheduler orders anything for it.
  self->send(st.registry, subscribe_atom::value, caf::actor_cast<caf::actor>(st.tracker));
  self->send(st.registry, subscribe_atom::value, caf::actor_cast<caf::actor>(st.scheduler));
  acceptor_options ao;
  ao.host = cfg.server.listen.host;
  ao.port = cfg.server.listen.port;
  ao.max_connections = cfg.server.max_connections;
  ao.max_handshakes = cfg.server.max_handshakes;
  ao.session.ingest =
    std::make_shared<ingest_budget>(ingest_budget::limits{cfg.storage.max_queued_bytes, cfg.storage.max_queued_frames});
  ao.session.max_frame_bytes = cfg.server.max_frame_bytes;
  ao.session.max_outbound_bytes = cfg.server.max_outbound_bytes;
  ao.session.hello_timeout = cfg.server.hello_timeout;
  ao.session.heartbeat_interval = cfg.server.heartbeat_interval;
  ao.session.idle_timeout = cfg.server.idle_timeout;
  ao.session.max_protocol_errors = cfg.server.max_protocol_errors;
  ao.session.registry = st.registry;
  ao.session.storage = st.storage;
  ao.session.tracker = st.tracker;
  ao.session.tls = st.opts.node_tls;
  st.acceptor = spawn_acceptor(self->system(), ao);
  self->request(st.acceptor, std::chrono::seconds(10), port_atom::value)
    .then([=](uint16_t port) { start_admin(self, port); },
          [=](caf::error& e) {
            log::error("not starting: cannot listen for nodes",
                       {{"listen", self->state.opts.config.server.listen.to_string()}, {"error", to_string(e)}});
            stop_all(self, 1);
          });
}

supervisor_actor::behavior_type supervisor_impl(self_ptr self, supervisor_options opts) {
  auto& st = self->state;
  st.opts = std::move(opts);
  if (!st.opts.node_tls)
    st.opts.node_tls = std::make_shared<tls::server_setting>();
  if (!st.opts.admin_tls)
    st.opts.admin_tls = std::make_shared<tls::server_setting>();
  st.started_at = format_time(system_now());
  auto& cfg = st.opts.config;
  storage_options so;
  so.url = storage::parse_storage_url(cfg.storage.url, st.opts.state_dir, cfg.storage.connect_timeout);
  so.batch_max = cfg.storage.batch_max;
  so.reconnect_initial = cfg.storage.reconnect_initial;
  so.reconnect_max = cfg.storage.reconnect_max;
  so.instance_id = st.opts.instance_id;
  so.version = version;
  so.listen = cfg.server.listen.to_string();
  st.storage = spawn_storage(self->system(), so, st.opts.detached_storage);
  self->monitor(st.storage);
  self->set_down_handler([=](caf::down_msg& m) {
    if (m.source == self->state.storage && !self->state.done) {
      log::error("storage actor stopped", {{"reason", self->system().render(m.reason)}});
      self->state.opts.hooks.stopping("storage failed");
      self->state.finish(1);
      self->quit();
    }
  });
  log::info("storage starting", {{"backend", storage::to_string(so.url.kind)}, {"url", so.url.redacted()}});
  self->request(st.storage, caf::infinite, startup_atom::value)
    .then(
      [=](const startup_report& r) {
        auto& s = self->state;
        s.incarnation = r.incarnation;
        log::info("storage ready", {{"schema", r.schema_to},
                                    {"instance", s.opts.instance_id},
                                    {"incarnation", r.incarnation},
                                    {"migrated_from", r.schema_from},
                                    {"reset_pending", r.recovery.attempts_reset},
                                    {"abandoned_jobs", r.recovery.jobs_abandoned},
                                    {"offlined_nodes", r.recovery.nodes_offlined}});
        if (s.stopping)
          return;
        schedule_lease(self);
        start_listening(self);
      },
      [=](caf::error& e) {
        log::error("startup failed", {{"error", self->system().render(e)}});
        self->state.finish(1);
        self->quit();
      });
  return {
    [=](signal_atom, int signo) {
      if (signo == SIGHUP)
        reload(self);
      else
        shutdown(self, signo);
    },
    [=](lease_atom) { renew_lease(self); },
    [=](watchdog_atom) {
      // A fixed period, and WATCHDOG=1 only when the storage actor answers within it: a stuck
      // storage gets the daemon restarted.
      schedule_watchdog(self);
      auto timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(*self->state.opts.hooks.watchdog_interval / 2);
      self->request(self->state.storage, timeout, status_atom::value)
        .then([=](const storage_status&) { self->state.opts.hooks.watchdog(); },
              [=](caf::error& e) {
                log::warn("watchdog: storage did not answer", {{"error", to_string(e)}});
              });
    },
  };
}

} // namespace

supervisor_actor spawn_supervisor(caf::actor_system& sys, supervisor_options opts) {
  return sys.spawn(supervisor_impl, std::move(opts));
}

} // namespace nodecoord
