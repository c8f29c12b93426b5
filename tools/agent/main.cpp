// nodecoord-agent: the reference node agent (docs/agent.md). It keeps attempts and their log
// lines in a local store (a SQLite file), streams them to nodecoordd, answers backfill requests
// from the store, and keeps working while the coordinator is away.
//
//   nodecoord-agent connect --coordinator HOST:PORT --node NAME --key-file FILE [--store FILE]
//                           [--tls [--ca-file F] [--tls-cert-file F --tls-key-file F] [--server-name N]]
//   nodecoord-agent record start --task TASK            prints the new attempt id
//   nodecoord-agent record log ATTEMPT [--stream S]     appends stdin's lines
//   nodecoord-agent record finish ATTEMPT --state S
//   nodecoord-agent run --task TASK -- CMD ARGS…        one attempt: CMD's stdout/stderr as lines
//   nodecoord-agent list                                the store's attempts
//
// The --config file of `connect` may also allow checks (docs/agent.md, Checks): programs the
// coordinator may ask this node to run, each by name with its exact argv:
//   [checks.disk]
//   argv = ["df", "-h", "/"]
#include "common/log.hpp"
#include "config/toml_guard.hpp"
#include "nodecoord/version.hpp"
#include "tools/agent/check_config.hpp"
#include "tools/agent/connection.hpp"
#include "tools/agent/link.hpp"
#include "tools/agent/run_command.hpp"
#include "tools/agent/store.hpp"

#include <CLI/App.hpp>
#include <CLI/Config.hpp>
#include <CLI/Formatter.hpp>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <iterator>
#include <unistd.h>

using namespace nodecoord;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failure = 1; // store, network or configuration problem
constexpr int exit_usage = 2;

int stop_pipe[2] = {-1, -1};

void on_stop_signal(int) {
  char c = 1;
  [[maybe_unused]] auto n = write(stop_pipe[1], &c, 1);
}

struct connect_args {
  std::string config;
  std::string coordinator;
  std::string node;
  std::string key_file;
  std::string capabilities;
  int64_t poll_ms = 0;
  int64_t backoff_max_ms = 0;
  // TLS (issue 17)
  bool tls = false;
  std::string ca_file;       // empty: the system trust store
  std::string tls_cert_file; // mutual TLS: this node's certificate ...
  std::string tls_key_file;  // ... and its private key
  std::string server_name;   // empty: the host of --coordinator
  // [checks.NAME] of the config file (no flag)
  agent::check_allow_list checks;
};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.pop_back();
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.erase(0, 1);
  return s;
}

/// Fills what the command line left empty from the TOML file (flags win).
void apply_config(connect_args& a, std::string& store_path, bool store_given) {
  std::ifstream in(a.config, std::ios::binary);
  if (!in)
    throw std::runtime_error(a.config + ": cannot read the configuration file");
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // toml++ 3.3.0 has undefined behaviour for some code points (config/toml_guard.hpp).
  auto guarded = config::guard_toml_text(raw);
  if (guarded.line != 0)
    throw std::runtime_error(a.config + ":" + std::to_string(guarded.line) + ":" + std::to_string(guarded.column) + ": "
                             + guarded.message);
  toml::table t;
  try {
    t = toml::parse(guarded.text, a.config);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << e.source().begin;
    throw std::runtime_error(a.config + ":" + os.str() + ": " + std::string(e.description()));
  }
  auto text = [&](const char* key, std::string& into) {
    if (auto* n = t.get(key)) {
      auto v = n->value<std::string>();
      if (!v)
        throw std::runtime_error(a.config + ": " + key + " must be a string");
      if (into.empty())
        into = *v;
    }
  };
  auto integer = [&](const char* key, int64_t& into) {
    if (auto* n = t.get(key)) {
      auto v = n->value<int64_t>();
      if (!v || *v <= 0)
        throw std::runtime_error(a.config + ": " + key + " must be a positive integer");
      if (into == 0)
        into = *v;
    }
  };
  // One "HOST:PORT", or a list of them (several instances, DESIGN §9).
  if (auto* n = t.get("coordinator"); n && n->is_array()) {
    std::string joined;
    for (auto& e : *n->as_array()) {
      auto v = e.value<std::string>();
      if (!v)
        throw std::runtime_error(a.config + ": coordinator must be a string or a list of strings");
      joined += (joined.empty() ? "" : ",") + *v;
    }
    if (joined.empty())
      throw std::runtime_error(a.config + ": coordinator is an empty list");
    if (a.coordinator.empty())
      a.coordinator = joined;
  } else {
    text("coordinator", a.coordinator);
  }
  text("node", a.node);
  text("key_file", a.key_file);
  if (!store_given) {
    std::string from_file;
    text("store", from_file);
    if (!from_file.empty())
      store_path = from_file; // over the built-in default
  }
  integer("poll_interval_ms", a.poll_ms);
  integer("backoff_max_ms", a.backoff_max_ms);
  if (auto* n = t.get("tls")) {
    auto v = n->value<bool>();
    if (!v)
      throw std::runtime_error(a.config + ": tls must be true or false");
    a.tls = a.tls || *v;
  }
  text("ca_file", a.ca_file);
  text("tls_cert_file", a.tls_cert_file);
  text("tls_key_file", a.tls_key_file);
  text("server_name", a.server_name);
  if (auto* caps = t.get("capabilities")) {
    if (!caps->is_table())
      throw std::runtime_error(a.config + ": capabilities must be a table");
    if (a.capabilities.empty()) {
      std::ostringstream os;
      os << toml::json_formatter{*caps->as_table()};
      a.capabilities = os.str();
    }
  }
  for (auto& [k, v] : t)
    if (k != "coordinator" && k != "node" && k != "key_file" && k != "store" && k != "poll_interval_ms"
        && k != "backoff_max_ms" && k != "capabilities" && k != "tls" && k != "ca_file" && k != "tls_cert_file"
        && k != "tls_key_file" && k != "server_name" && k != "checks")
      throw std::runtime_error(a.config + ": unknown setting '" + std::string(k.str()) + "'");
  a.checks = agent::read_check_allow_list(guarded.text, a.config);
}

int connect_command(connect_args a, const std::string& store_path) {
  if (a.coordinator.empty() || a.node.empty() || a.key_file.empty())
    throw std::invalid_argument("--coordinator, --node and --key-file are required (or set in --config)");
  agent::loop_options lo;
  for (size_t from = 0; from <= a.coordinator.size();) {
    auto comma = std::min(a.coordinator.find(',', from), a.coordinator.size());
    auto one = trim(a.coordinator.substr(from, comma - from));
    if (!agent::parse_endpoint(one, lo.host, lo.port))
      throw std::invalid_argument("--coordinator must be HOST:PORT or a comma-separated list of them, not '"
                                  + a.coordinator + "'");
    lo.coordinators.emplace_back(lo.host, lo.port);
    from = comma + 1;
  }
  std::ifstream kf(a.key_file);
  if (!kf)
    throw std::runtime_error("cannot read the key file " + a.key_file);
  std::string key((std::istreambuf_iterator<char>(kf)), std::istreambuf_iterator<char>());
  key = trim(key);
  if (key.empty())
    throw std::runtime_error("the key file " + a.key_file + " is empty");
  if (!a.capabilities.empty() && !nlohmann::json::parse(a.capabilities, nullptr, false).is_object())
    throw std::invalid_argument("--capabilities must be a JSON object");
  if (a.poll_ms > 0)
    lo.poll_interval = std::chrono::milliseconds(a.poll_ms);
  if (a.backoff_max_ms > 0)
    lo.backoff_max = std::chrono::milliseconds(a.backoff_max_ms);
  lo.backoff_initial = std::min(lo.backoff_initial, lo.backoff_max);
  bool tls_options =
    !a.ca_file.empty() || !a.tls_cert_file.empty() || !a.tls_key_file.empty() || !a.server_name.empty();
  if (tls_options && !a.tls)
    throw std::invalid_argument("--ca-file, --tls-cert-file, --tls-key-file and --server-name need --tls");
  if (a.tls) {
    std::string why;
    lo.tls = tls::context::client({a.ca_file, a.tls_cert_file, a.tls_key_file}, why);
    if (!lo.tls)
      throw std::runtime_error("TLS: " + why);
    lo.server_name = a.server_name;
  }

  agent::store st(store_path);
  agent::link_options o;
  o.node = a.node;
  o.key = key;
  o.agent = std::string("nodecoord-agent/") + nodecoord::version;
  o.capabilities = a.capabilities;
  o.checks = a.checks;
  agent::coordinator_link l(st, o);

  if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    throw std::runtime_error("pipe failed");
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  log::info("nodecoord-agent starting", {{"node", a.node},
                                         {"coordinator", a.coordinator},
                                         {"store", store_path},
                                         {"checks", a.checks.size()},
                                         {"tls", !a.tls                    ? "off"
                                                 : a.tls_cert_file.empty() ? "on"
                                                                           : "mutual"}});
  auto rc = agent::run_connection_loop(l, lo, stop_pipe[0]);
  auto& c = l.counters();
  log::info("nodecoord-agent stopped", {{"attempts_sent", c.attempts_sent},
                                        {"lines_sent", c.lines_sent},
                                        {"requests_answered", c.requests_answered},
                                        {"checks_run", c.checks_run},
                                        {"checks_refused", c.checks_refused}});
  return rc;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"nodecoord-agent: the reference node agent of nodecoord"};
  app.set_version_flag("--version", std::string(nodecoord::version));
  app.require_subcommand(1);
  std::string store_path = "nodecoord-agent.db";
  auto* store_opt = app.add_option("--store", store_path, "the agent's store (a SQLite file; created if missing)")
                      ->capture_default_str();
  std::string level = "info";
  app.add_option("--log-level", level, "trace|debug|info|warn|error")->capture_default_str();

  connect_args ca;
  auto* connect = app.add_subcommand("connect", "connect to the coordinator and stay connected");
  connect->add_option("--config", ca.config,
                      "a TOML file with these settings (flags win), and the checks the coordinator may run here "
                      "([checks.NAME] argv = [...]; docs/agent.md)");
  connect->add_option("--coordinator", ca.coordinator,
                      "HOST:PORT of nodecoordd, or several separated by commas (instances sharing one database: the "
                      "agent moves to the next when one fails)");
  connect->add_option("--node", ca.node, "this node's registered name");
  connect->add_option("--key-file", ca.key_file, "a file holding the node's API key");
  connect->add_option("--capabilities", ca.capabilities, "a JSON object shown to operators");
  connect->add_option("--poll-interval-ms", ca.poll_ms, "how often the store is read for new records (200)");
  connect->add_option("--backoff-max-ms", ca.backoff_max_ms, "the longest wait between reconnects (30000)");
  connect->add_flag("--tls", ca.tls, "speak TLS to the coordinator (its [server.tls])");
  connect->add_option("--ca-file", ca.ca_file,
                      "PEM CAs that may sign the coordinator (default: the system trust store)");
  connect->add_option("--tls-cert-file", ca.tls_cert_file, "mutual TLS: this node's PEM certificate");
  connect->add_option("--tls-key-file", ca.tls_key_file, "mutual TLS: that certificate's PEM private key");
  connect->add_option("--server-name", ca.server_name,
                      "the name the coordinator's certificate must carry (default: the host of --coordinator)");

  auto* record = app.add_subcommand("record", "record attempts and log lines into the store");
  record->require_subcommand(1);
  std::string task, state = "running", meta, attempt, stream = "stdout";
  auto* start = record->add_subcommand("start", "start an attempt; prints its id");
  start->add_option("--task", task, "the task this is an attempt of")->required();
  start->add_option("--state", state, "queued|running (or a final state)")->capture_default_str();
  start->add_option("--meta", meta, "a JSON object");
  auto* logc = record->add_subcommand("log", "append stdin's lines to an attempt");
  logc->add_option("attempt", attempt, "the attempt id")->required();
  logc->add_option("--stream", stream, "stdout|stderr|system")->capture_default_str();
  auto* finish = record->add_subcommand("finish", "set an attempt's final state");
  finish->add_option("attempt", attempt, "the attempt id")->required();
  std::string final_state;
  finish->add_option("--state", final_state, "succeeded|failed|cancelled")->required();
  finish->add_option("--meta", meta, "a JSON object (replaces the stored one)");

  std::vector<std::string> command;
  auto* run = app.add_subcommand("run", "run a command as an attempt; its output becomes log lines");
  run->add_option("--task", task, "the task this is an attempt of")->required();
  run->add_option("command", command, "the command and its arguments (after --)")->required();
  auto* list = app.add_subcommand("list", "the store's attempts, as JSON lines");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  log::level lvl;
  if (!log::parse_level(level, lvl)) {
    std::cerr << "nodecoord-agent: unknown --log-level '" << level << "'\n";
    return exit_usage;
  }
  log::init(lvl, false);

  try {
    if (*connect) {
      if (!ca.config.empty())
        apply_config(ca, store_path, store_opt->count() > 0);
      return connect_command(ca, store_path);
    }
    agent::store st(store_path);
    if (*start) {
      std::cout << st.start_attempt(task, state, meta) << "\n";
    } else if (*logc) {
      st.append_logs(attempt, stream, {}); // checks the attempt and the stream before reading
      // In batches, so a long stream is visible (and streamed) while it is still being written.
      std::vector<std::string> batch;
      std::string line;
      while (std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r')
          line.pop_back();
        batch.push_back(std::move(line));
        if (batch.size() == 1000) {
          st.append_logs(attempt, stream, batch);
          batch.clear();
        }
      }
      if (!batch.empty())
        st.append_logs(attempt, stream, batch);
    } else if (*finish) {
      if (!agent::is_final_state(final_state))
        throw std::invalid_argument("--state must be succeeded, failed or cancelled");
      st.set_state(attempt, final_state, meta);
    } else if (*run) {
      return agent::run_command(st, task, command);
    } else if (*list) {
      for (auto& a : st.all_attempts())
        std::cout << nlohmann::json{{"id", a.id},
                                    {"task_id", a.task_id},
                                    {"state", a.state},
                                    {"log_count", a.log_count},
                                    {"confirmed_lines", a.delivered_logs},
                                    {"confirmed", a.announced_version >= a.version && a.delivered_logs >= a.log_count}}
                       .dump()
                  << "\n";
    }
    return exit_ok;
  } catch (const std::invalid_argument& e) {
    std::cerr << "nodecoord-agent: " << e.what() << "\n";
    return exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "nodecoord-agent: " << e.what() << "\n";
    return exit_failure;
  }
}
