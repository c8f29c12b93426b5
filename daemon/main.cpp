// nodecoordd: the coordinator daemon. This file is the process shell: command line, configuration,
// logging, signals and the actor system's lifetime. Everything else happens in actors.
#include "actors/errors.hpp"
#include "common/descriptors.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "config/config.hpp"
#include "actors/supervisor.hpp"
#include "daemon/logging.hpp"
#include "daemon/systemd_notify.hpp"
#include "nodecoord/version.hpp"
#include "storage/url.hpp"
#include "tls/context.hpp"

#include <CLI/App.hpp>
#include <CLI/Config.hpp>
#include <CLI/Formatter.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>

#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <tuple>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

using namespace nodecoord;

namespace {

constexpr const char* default_config_path = "/etc/nodecoord/nodecoord.toml";

// Exit codes scripts and systemd can rely on.
constexpr int exit_ok = 0;
constexpr int exit_failure = 1; // runtime failure (database refused, shutdown timed out, ...)
constexpr int exit_usage = 2;   // bad command line or configuration

int check_config(const std::string& path) {
  auto res = config::load_file(path);
  if (!res.ok()) {
    for (auto& e : res.errors)
      std::cerr << e.to_string() << "\n";
    std::cerr << path << ": " << res.errors.size() << " error" << (res.errors.size() == 1 ? "" : "s") << "\n";
    return exit_usage;
  }
  // The files the configuration names: readable, the key matches its certificate, not expired.
  std::string why;
  auto node_tls = tls::setting_from(res.config.server.tls, "server.tls", why);
  auto admin_tls = node_tls ? tls::setting_from(res.config.admin.tls, "admin.tls", why) : std::nullopt;
  if (!node_tls || !admin_tls) {
    std::cerr << path << ": " << why << "\n";
    return exit_usage;
  }
  std::cout << path << ": configuration OK";
  if (node_tls->ctx)
    std::cout << " (TLS certificate valid until " << node_tls->ctx->not_after() << ")";
  if (admin_tls->ctx)
    std::cout << " (admin TLS certificate valid until " << admin_tls->ctx->not_after() << ")";
  std::cout << "\n";
  return exit_ok;
}

/// Startup checks that would otherwise only show up as an endless reconnect loop.
std::optional<std::string> check_storage_location(const storage::storage_url& url) {
  if (url.kind != storage::backend::sqlite || url.sqlite_path == ":memory:")
    return std::nullopt;
  auto dir = std::filesystem::path(url.sqlite_path).parent_path();
  if (dir.empty())
    dir = ".";
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    int err = errno;
    return "storage.url: the directory " + dir.string() + " of the SQLite database "
           + (err == ENOENT ? "does not exist" : "is not writable") + " (" + std::strerror(err)
           + "); create it or pass --state-dir";
  }
  return std::nullopt;
}

/// SQLite serves one instance (DESIGN §9): a second daemon on the same file would undo the first
/// one's sessions and requests in its startup recovery. The lock is an flock on "<file>.lock",
/// never on the database itself (closing any descriptor of the database would drop SQLite's own
/// POSIX locks); it is held until the process exits, so a killed daemon leaves no stale lock.
std::optional<std::string> lock_sqlite_database(const storage::storage_url& url) {
  if (url.kind != storage::backend::sqlite || url.sqlite_path == ":memory:")
    return std::nullopt;
  auto path = url.sqlite_path + ".lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    return "storage.url: cannot open the lock file " + path + ": " + std::strerror(errno);
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
    auto pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0)
      log::warn("cannot write the pid into the SQLite lock file", {{"file", path}, {"error", std::strerror(errno)}});
    return std::nullopt; // fd stays open: the lock lives as long as the process
  }
  int err = errno;
  char holder[32] = {};
  auto n = pread(fd, holder, sizeof holder - 1, 0);
  close(fd);
  std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' '))
    pid.pop_back();
  if (err != EWOULDBLOCK)
    return "storage.url: cannot lock " + path + ": " + std::strerror(err);
  return "another nodecoordd" + (pid.empty() ? std::string() : " (pid " + pid + ")") + " is using the SQLite database "
         + url.sqlite_path
         + "; SQLite serves one instance only: stop the other daemon, or use PostgreSQL to run several instances";
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodecoordd " + std::string(version)
               + ": coordinates fleets of remote worker nodes and backfills what they stream"};
  std::string config_path;
  std::string check_path;
  std::string state_dir_flag;
  bool show_version = false;
  app.add_option("-c,--config", config_path,
                 "configuration file (default " + std::string(default_config_path)
                   + "; built-in defaults if that file does not exist)");
  app.add_option("--check-config", check_path,
                 "validate FILE, print every error as file:line:column, exit 0 (valid) or 2");
  app.add_option("--state-dir", state_dir_flag,
                 "directory for relative SQLite paths (default: $STATE_DIRECTORY, else the "
                 "working directory)");
  app.add_flag("-V,--version", show_version, "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e); // --help
    std::cerr << "nodecoordd: " << e.what() << "\nRun 'nodecoordd --help' for usage.\n";
    return exit_usage;
  }
  if (show_version) {
    std::cout << "nodecoordd " << version << "\n";
    return exit_ok;
  }
  if (!check_path.empty())
    return check_config(check_path);

  // Configuration: an explicit --config must load; the default path may be absent.
  config::daemon_config cfg = config::default_config();
  bool explicit_config = !config_path.empty();
  if (!explicit_config)
    config_path = default_config_path;
  if (explicit_config || std::filesystem::exists(config_path)) {
    auto res = config::load_file(config_path);
    if (!res.ok()) {
      for (auto& e : res.errors)
        std::cerr << e.to_string() << "\n";
      std::cerr << "nodecoordd: not starting: " << res.errors.size() << " configuration error(s) in " << config_path
                << "\n";
      return exit_usage;
    }
    cfg = res.config;
  } else {
    config_path.clear();
  }
  apply_log_config(cfg.log);

  auto state_dir = config::resolve_state_dir(state_dir_flag);
  storage::storage_url url;
  try {
    url = storage::parse_storage_url(cfg.storage.url, state_dir, cfg.storage.connect_timeout);
  } catch (const std::invalid_argument& e) {
    log::error("not starting", {{"error", e.what()}});
    return exit_usage;
  }
  if (auto problem = check_storage_location(url)) {
    log::error("not starting", {{"error", *problem}});
    return exit_failure;
  }
  if (auto problem = lock_sqlite_database(url)) {
    log::error("not starting", {{"error", *problem}});
    return exit_failure;
  }
  std::string why_no_id;
  auto instance_id = config::resolve_instance_id(cfg.server.instance_id, state_dir, why_no_id);
  if (!instance_id) {
    log::error("not starting", {{"error", why_no_id}});
    return exit_failure;
  }
  std::string admin_token;
  if (!cfg.admin.token_file.empty()) {
    std::string why;
    auto token = config::read_admin_token(cfg.admin.token_file, why);
    if (!token) {
      log::error("not starting", {{"error", why}});
      return exit_failure;
    }
    admin_token = *token;
  }
  auto node_tls = std::make_shared<tls::server_setting>();
  auto admin_tls = std::make_shared<tls::server_setting>();
  for (auto [setting, table, tls_cfg] : {std::tuple{node_tls.get(), "server.tls", &cfg.server.tls},
                                         std::tuple{admin_tls.get(), "admin.tls", &cfg.admin.tls}}) {
    std::string why;
    auto v = tls::setting_from(*tls_cfg, table, why);
    if (!v) {
      log::error("not starting", {{"error", why}});
      return exit_failure;
    }
    setting->set(*v);
  }
  log::info("nodecoordd starting", {{"version", version},
                                    {"pid", static_cast<int64_t>(getpid())},
                                    {"config", config_path.empty() ? "(built-in defaults)" : config_path},
                                    {"instance", *instance_id},
                                    {"storage", url.redacted()}});

  // One descriptor per node session: use all the descriptors we are allowed (systemd's
  // LimitNOFILE, or the shell's hard limit), and say how many sessions that is.
  auto nofile = raise_descriptor_limit(cfg.server.max_connections);
  metrics::daemon().session_capacity = static_cast<int64_t>(nofile.sessions);
  log::info("descriptor limit", {{"soft", nofile.soft},
                                 {"hard", nofile.hard},
                                 {"raised_from", nofile.soft_before},
                                 {"sessions", nofile.sessions},
                                 {"max_connections", cfg.server.max_connections}});
  if (nofile.sessions < cfg.server.max_connections)
    log::warn("the descriptor limit allows fewer sessions than server.max_connections; connections beyond it "
              "will fail (raise LimitNOFILE, or ulimit -Hn)",
              {{"sessions", nofile.sessions}, {"max_connections", cfg.server.max_connections}, {"limit", nofile.soft}});

  // Signals are taken synchronously through a signalfd: block them before any thread exists so
  // that every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN); // a peer that went away is an error return, not a death
  int sig_fd = signalfd(-1, &signals, SFD_CLOEXEC);
  int done_fd = eventfd(0, EFD_CLOEXEC);
  if (sig_fd < 0 || done_fd < 0) {
    log::error("not starting", {{"error", std::string("signalfd/eventfd: ") + std::strerror(errno)}});
    return exit_failure;
  }
  std::atomic<int> exit_code{exit_ok};

  int result = exit_ok;
  {
    caf::actor_system_config caf_cfg;
    caf_cfg.load<caf::io::middleman>();
    add_storage_error_category(caf_cfg);
    // CAF's own BASP heartbeat is for CAF-to-CAF links; nodes have their own protocol.
    caf_cfg.set("middleman.heartbeat-interval", caf::timespan{0});
    // Idle scheduler workers block at once instead of polling every 50 us for ~25 ms: with a
    // steady trickle of messages (heartbeats) the polling never stopped (BENCHMARKS.md, CPU).
    caf_cfg.set("work-stealing.moderate-poll-attempts", size_t{0});
    caf_cfg.set("scheduler.max-threads", static_cast<size_t>(std::max(2u, std::thread::hardware_concurrency())));
    caf::actor_system sys{caf_cfg};

    supervisor_options opts;
    opts.config = cfg;
    opts.config_path = config_path;
    opts.state_dir = state_dir;
    opts.instance_id = *instance_id;
    opts.admin_token = admin_token;
    opts.node_tls = node_tls;
    opts.admin_tls = admin_tls;
    opts.hooks.ready = [](const std::string& status) { systemd::notify_ready(status); };
    opts.hooks.reloading = [] { systemd::notify_reloading(); };
    opts.hooks.stopping = [](const std::string& status) { systemd::notify_stopping(status); };
    opts.hooks.watchdog = [] { systemd::notify_watchdog(); };
    opts.hooks.watchdog_interval = systemd::watchdog_interval();
    opts.hooks.apply_log = [](const config::log_config& l) { apply_log_config(l); };
    opts.on_done = [&exit_code, done_fd](int code) {
      exit_code = code;
      uint64_t one = 1;
      [[maybe_unused]] auto n = write(done_fd, &one, sizeof one);
    };
    auto supervisor = spawn_supervisor(sys, std::move(opts));

    std::optional<std::chrono::steady_clock::time_point> deadline;
    for (;;) {
      pollfd fds[2] = {{sig_fd, POLLIN, 0}, {done_fd, POLLIN, 0}};
      int timeout = -1;
      if (deadline)
        timeout = static_cast<int>(std::max<long long>(
          0,
          std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now()).count()));
      int n = poll(fds, 2, timeout);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        log::error("poll failed; exiting", {{"error", std::strerror(errno)}});
        std::_Exit(exit_failure);
      }
      if (n == 0 && deadline) {
        log::error("shutdown did not finish within shutdown_timeout; exiting",
                   {{"shutdown_timeout_ms", static_cast<int64_t>(cfg.server.shutdown_timeout.count())}});
        std::_Exit(exit_failure);
      }
      if (fds[1].revents & POLLIN)
        break;
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info{};
        if (read(sig_fd, &info, sizeof info) != sizeof info)
          continue;
        int signo = static_cast<int>(info.ssi_signo);
        if (signo != SIGHUP) {
          if (deadline) {
            log::warn("second stop signal: exiting now");
            std::_Exit(exit_failure);
          }
          deadline = std::chrono::steady_clock::now() + cfg.server.shutdown_timeout;
        }
        caf::anon_send(supervisor, signal_atom::value, signo);
      }
    }
    result = exit_code;
    // ~actor_system waits for every actor; a stuck one must not hold the process past the
    // shutdown deadline (the whole shutdown, not a second full timeout).
    auto limit = deadline.value_or(std::chrono::steady_clock::now() + cfg.server.shutdown_timeout);
    std::thread([limit] {
      std::this_thread::sleep_until(limit);
      log::error("actors did not stop in time; exiting");
      std::_Exit(exit_failure);
    }).detach();
  }
  log::info("nodecoordd stopped", {{"exit_code", result}});
  return result;
}
