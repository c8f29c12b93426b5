// The fault suite: real agents record while the daemon is SIGKILLed and restarted, PostgreSQL is
// restarted under it, agents are SIGKILLed, and their TCP connections are cut mid-frame in both
// directions. Then the faults stop, everything settles, and the coordinator's database is read
// directly and compared with every agent's store: nothing may be lost, changed or left behind
// (faults/check.hpp). docs/reliability.md describes the rounds and how to replay one.
//
//   fault_test --run_test=round_sqlite -- --agents 8 --daemon-kills 300 --agent-kills 30
//   fault_test --run_test=round_postgresql -- --daemon-kills 200 --pg-restarts 50 --agents 8
#define BOOST_TEST_MODULE fault_test
#include "e2e_daemon.hpp"
#include "faults/check.hpp"
#include "faults/options.hpp"
#include "faults/recorder.hpp"
#include "faults/relay.hpp"
#include "faults/round_support.hpp"
#include "test_db.hpp"

#include <sys/wait.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <random>

using namespace nodecoord;
using namespace nodecoord::test;
using namespace nodecoord::faults;

namespace {

const std::string agent_path = NODECOORD_AGENT_PATH;
using steady = std::chrono::steady_clock;

constexpr auto agent_exit_bound = 15s; // SIGTERM: bye, then exit
constexpr auto kill_bound = 15s;       // SIGKILL: reaped
constexpr auto pg_command_bound = 90s; // pg_ctl -w stop / start
constexpr auto ack_bound = 5s;         // an ack-timed kill waits this long for an ack of data

round_options command_line_options() {
  auto& m = boost::unit_test::framework::master_test_suite();
  std::vector<std::string> args(m.argv + 1, m.argv + m.argc);
  try {
    return parse_round_options(args);
  } catch (const std::invalid_argument& e) {
    BOOST_FAIL(e.what() << "\nusage: " << round_usage());
  }
  return {};
}

double seconds_since(steady::time_point t) { return std::chrono::duration<double>(steady::now() - t).count(); }

std::string fixed1(double v) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << v;
  return os.str();
}

/// True while `pid` (a child not yet reaped) runs; it stays reapable by child_process.
bool still_running(pid_t pid) {
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return false;
  return info.si_pid == 0;
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

struct agent_slot {
  std::string name;
  node_info node;
  std::string store;
  std::string key_file;
  std::unique_ptr<fault_relay> relay;
  std::unique_ptr<child_process> proc;
  int runs = 0;
};

class fault_round {
public:
  fault_round(storage::backend b, round_options o) : backend_(b), opts_(std::move(o)), work_("nodecoord-faults") {
    if (opts_.seed == 0)
      opts_.seed = std::random_device{}() | 1;
    rng_.seed(opts_.seed);
    if (b == storage::backend::sqlite)
      opts_.pg_restarts = 0;
    say("round " + name() + " seed=" + std::to_string(opts_.seed) + " agents=" + std::to_string(opts_.agents)
        + " daemon_kills=" + std::to_string(opts_.daemon_kills) + " pg_restarts=" + std::to_string(opts_.pg_restarts)
        + " agent_kills=" + std::to_string(opts_.agent_kills) + " kill_timing=" + opts_.kill_timing
        + " cuts_per_minute_per_relay=" + fixed1(opts_.cuts_per_minute)
        + " settle_bound=" + std::to_string(opts_.settle_bound_s) + "s");
    if (!opts_.log_dir.empty())
      std::filesystem::create_directories(opts_.log_dir);
  }

  void run() {
    setup();
    fault_phase();
    settle();
    stop_and_check();
  }

private:
  std::string name() const { return backend_ == storage::backend::sqlite ? "sqlite" : "postgresql"; }

  void say(const std::string& s) const {
    std::cout << "fault_test[" << std::fixed << std::setprecision(1) << seconds_since(born_) << "s]: " << s
              << std::endl;
  }

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  void keep_log(const std::string& file, const std::string& text) const {
    if (opts_.log_dir.empty())
      return;
    std::ofstream(opts_.log_dir + "/" + file) << text;
  }

  std::string daemon_log_name() const { return "daemon-" + std::to_string(daemon_runs_) + ".log"; }

  void setup() {
    if (backend_ == storage::backend::postgresql) {
      pg_stop_ = env_or_empty("NODECOORD_TEST_PG_STOP");
      pg_start_ = env_or_empty("NODECOORD_TEST_PG_START");
      BOOST_TEST_REQUIRE(!pg_stop_.empty(), "NODECOORD_TEST_PG_STOP is not set: this round restarts PostgreSQL "
                                            "(source tests/pg_test_server.sh and run pg_test_start)");
      BOOST_TEST_REQUIRE(!pg_start_.empty(), "NODECOORD_TEST_PG_START is not set");
      pg_ = std::make_unique<test_database>(storage::backend::postgresql); // fails without NODECOORD_TEST_PG_URL
    }
    settings server = with(base_settings(), {{"heartbeat_interval", "\"500ms\""},
                                             {"idle_timeout", "\"10s\""},
                                             {"max_protocol_errors", "10"},
                                             {"max_connections", "200"}});
    std::string backfill = "[backfill]\nreconcile_interval = \"2s\"\nrequest_timeout = \"15s\"\n"
                           "reconnect_rate = 1000\n";
    daemon_ = std::make_unique<daemon_under_test>(server, pg_ ? pg_->url() : "", backfill);
    url_ = storage::parse_storage_url(pg_ ? pg_->url() : "sqlite://" + daemon_->db_path(), "", 5s);
    daemon_->start();
    ++daemon_runs_;
    port_->store(daemon_->port());
    for (int i = 0; i < opts_.agents; ++i) {
      agent_slot a;
      a.name = "fault-" + std::to_string(i + 1);
      a.node = daemon_->add_node(a.name);
      a.store = work_.file(a.name + ".db");
      a.key_file = work_.write(a.name + ".key", a.node.key + "\n");
      a.relay = std::make_unique<fault_relay>(port_, opts_.seed * 1000003 + static_cast<uint64_t>(i), trigger_);
      agents_.push_back(std::move(a));
      refs_.push_back({agents_.back().name, agents_.back().node.id, agents_.back().store});
    }
    for (auto& a : agents_)
      start_agent(a);
    for (size_t i = 0; i < agents_.size(); ++i)
      recorders_.push_back(std::make_unique<recorder>(
        recorder_options{agents_[i].store, agents_[i].name, opts_.seed * 7919 + i, opts_.burst_max}));
    for (auto& a : agents_)
      a.relay->set_cut_rate(opts_.cuts_per_minute);
    say("daemon on port " + std::to_string(daemon_->port()) + ", " + std::to_string(agents_.size())
        + " agents recording");
  }

  void start_agent(agent_slot& a) {
    a.proc = std::make_unique<child_process>(
      agent_path,
      std::vector<std::string>{"--store", a.store, "--log-level", "info", "connect", "--coordinator",
                               "127.0.0.1:" + std::to_string(a.relay->port()), "--node", a.name, "--key-file",
                               a.key_file, "--backoff-max-ms", "1000", "--poll-interval-ms", "50"},
      clean_env());
    ++a.runs;
  }

  /// SIGKILL and start again; `on_ack`: let the relays time the kill (faults/relay.hpp), or kill
  /// at once if no ack after data comes within the bound. True if the relays timed it.
  bool kill_daemon(bool on_ack) {
    auto& p = daemon_->process();
    bool timed = false;
    if (on_ack) {
      trigger_->fired = false;
      trigger_->pid = p.pid();
      trigger_->armed = true;
      eventually([&] { return trigger_->fired.load(); }, ack_bound);
      // Disarmed here, or already fired by a relay (then it is done or about to be).
      timed = !trigger_->armed.exchange(false);
      if (timed)
        BOOST_TEST_REQUIRE(eventually([&] { return trigger_->fired.load(); }, 5s));
    }
    if (timed) {
      killed_at_ = format_time(sys_time(std::chrono::milliseconds(trigger_->fired_at_ms.load())));
    } else {
      killed_at_ = format_time(system_now());
      p.send_signal(SIGKILL);
    }
    int code = p.wait_exit(kill_bound);
    port_->store(0);
    if (code != 128 + SIGKILL)
      anomalies_.push_back("daemon run " + std::to_string(daemon_runs_) + " exited by itself with code "
                           + std::to_string(code) + "; stderr tail:\n" + p.stderr_tail());
    keep_log(daemon_log_name(), p.stderr_text());
    daemon_->start();
    ++daemon_runs_;
    port_->store(daemon_->port());
    return timed;
  }

  void kill_agent(agent_slot& a) {
    a.proc->send_signal(SIGKILL);
    int code = a.proc->wait_exit(kill_bound);
    if (code != 128 + SIGKILL)
      anomalies_.push_back(a.name + " run " + std::to_string(a.runs) + " exited by itself with code "
                           + std::to_string(code) + "; stderr tail:\n" + a.proc->stderr_tail());
    keep_log(a.name + "-" + std::to_string(a.runs) + ".log", a.proc->stderr_text());
    start_agent(a);
  }

  void run_shell(const std::string& what, const std::string& cmd) {
    child_process sh("/bin/sh", {"-c", cmd}, clean_env());
    int code = sh.wait_exit(pg_command_bound);
    BOOST_TEST_REQUIRE(code == 0, what << " failed with exit code " << code << ": " << sh.stderr_text());
  }

  void restart_postgresql() {
    run_shell("stopping PostgreSQL", pg_stop_);
    std::this_thread::sleep_for(std::chrono::milliseconds(uniform(500, 3000))); // the outage itself
    run_shell("starting PostgreSQL", pg_start_);
  }

  std::string progress() const {
    int64_t attempts = 0, lines = 0;
    for (auto& r : recorders_) {
      attempts += r->attempts();
      lines += r->lines();
    }
    return "recorded " + std::to_string(attempts) + " attempts, " + std::to_string(lines) + " lines; cuts "
           + std::to_string(cuts());
  }

  int64_t cuts() const {
    int64_t n = 0;
    for (auto& a : agents_)
      n += a.relay->cuts_to_daemon() + a.relay->cuts_to_agent();
    return n;
  }

  void fault_phase() {
    fault_started_ = steady::now();
    while (daemon_kills_ < opts_.daemon_kills || pg_restarts_ < opts_.pg_restarts || agent_kills_ < opts_.agent_kills) {
      // The schedule itself.
      std::this_thread::sleep_for(std::chrono::milliseconds(uniform(opts_.gap_min_ms, opts_.gap_max_ms)));
      for (auto& r : recorders_)
        BOOST_TEST_REQUIRE(!r->done(), "a recorder stopped: " << r->error());
      // One event, drawn in proportion to what is left of each budget.
      int left_d = opts_.daemon_kills - daemon_kills_, left_p = opts_.pg_restarts - pg_restarts_;
      int left_a = opts_.agent_kills - agent_kills_;
      int pick = uniform(0, left_d + left_p + left_a - 1);
      if (pick < left_d) {
        bool timed = opts_.kill_timing == "ack" || (opts_.kill_timing == "mixed" && uniform(0, 1) == 1);
        bool on_ack = kill_daemon(timed);
        ++daemon_kills_;
        acked_kills_ += on_ack;
        // Wall-clock times, to set against the rows' times in a failure report.
        say("daemon kill " + std::to_string(daemon_kills_) + "/" + std::to_string(opts_.daemon_kills) + " at "
            + killed_at_
            + (on_ack  ? " right after an ack"
               : timed ? " (no ack came: at once)"
                       : "")
            + "; run " + std::to_string(daemon_runs_) + " ready at " + format_time(system_now()) + "; " + progress());
      } else if (pick < left_d + left_p) {
        auto down = format_time(system_now());
        restart_postgresql();
        ++pg_restarts_;
        say("PostgreSQL restart " + std::to_string(pg_restarts_) + "/" + std::to_string(opts_.pg_restarts) + ": down "
            + down + ", up " + format_time(system_now()) + "; " + progress());
      } else {
        auto& a = agents_[static_cast<size_t>(uniform(0, static_cast<int>(agents_.size()) - 1))];
        kill_agent(a);
        ++agent_kills_;
        say("agent kill " + std::to_string(agent_kills_) + "/" + std::to_string(opts_.agent_kills) + " (" + a.name
            + ") at " + format_time(system_now()) + "; " + progress());
      }
    }
    fault_seconds_ = seconds_since(fault_started_);
  }

  void settle() {
    // Faults stop: relays pass everything; daemon, PostgreSQL (restarted synchronously) and
    // agents run.
    for (auto& a : agents_)
      a.relay->set_cut_rate(0);
    if (!still_running(daemon_->process().pid())) {
      int code = daemon_->process().wait_exit(kill_bound);
      anomalies_.push_back("the daemon exited by itself with code " + std::to_string(code) + "; stderr tail:\n"
                           + daemon_->process().stderr_tail());
      keep_log(daemon_log_name(), daemon_->process().stderr_text());
      daemon_->start();
      ++daemon_runs_;
      port_->store(daemon_->port());
    }
    for (auto& a : agents_)
      if (!still_running(a.proc->pid())) {
        int code = a.proc->wait_exit(kill_bound);
        anomalies_.push_back(a.name + " exited by itself with code " + std::to_string(code) + "; stderr tail:\n"
                             + a.proc->stderr_tail());
        start_agent(a);
      }
    // Recorders give every open attempt a final state and stop.
    finish_recorders(recorders_);
    say("faults done after " + fixed1(fault_seconds_) + " s; " + progress() + "; settling");
    settle_seconds_ = settle_round(url_, refs_, opts_.settle_bound_s, [this](const std::string& m) { say(m); });
  }

  void stop_and_check() {
    for (auto& a : agents_) {
      a.proc->send_signal(SIGTERM);
      int code = a.proc->wait_exit(agent_exit_bound);
      BOOST_TEST(code == 0, a.name << " exited with " << code << " on SIGTERM; stderr:\n" << a.proc->stderr_tail());
      keep_log(a.name + "-" + std::to_string(a.runs) + ".log", a.proc->stderr_text());
    }
    daemon_->stop(); // SIGTERM; requires exit code 0
    keep_log(daemon_log_name(), daemon_->process().stderr_text());

    auto r = check_round(url_, refs_, true, true);
    int64_t relay_connections = 0;
    for (auto& a : agents_)
      relay_connections += a.relay->connections();
    std::ostringstream line;
    line << "SUMMARY backend=" << name() << " seed=" << opts_.seed << " agents=" << agents_.size()
         << " attempts=" << r.attempts << " lines=" << r.lines << " daemon_kills=" << daemon_kills_ << " (ack-timed "
         << acked_kills_ << ") pg_restarts=" << pg_restarts_ << " agent_kills=" << agent_kills_ << " cuts=" << cuts()
         << " connections=" << relay_connections << std::setprecision(1) << std::fixed << " fault_s=" << fault_seconds_
         << " settle_s=" << (settle_seconds_ ? fixed1(*settle_seconds_) : std::string("unsettled")) << " " << r.counts()
         << " anomalies=" << anomalies_.size();
    say(line.str());
    if (!opts_.summary.empty()) {
      json s{{"backend", name()},
             {"seed", opts_.seed},
             {"agents", agents_.size()},
             {"attempts", r.attempts},
             {"lines", r.lines},
             {"daemon_kills", daemon_kills_},
             {"ack_timed_kills", acked_kills_},
             {"pg_restarts", pg_restarts_},
             {"agent_kills", agent_kills_},
             {"cuts", cuts()},
             {"relay_connections", relay_connections},
             {"fault_seconds", fault_seconds_},
             {"settle_seconds", settle_seconds_ ? json(*settle_seconds_) : json(nullptr)},
             {"anomalies", anomalies_.size()},
             {"clean", r.clean() && anomalies_.empty()}};
      s.update(finding_counts(r));
      std::ofstream(opts_.summary) << s.dump(2) << "\n";
    }
    if (!r.clean())
      say("FINDINGS (seed " + std::to_string(opts_.seed) + "):" + r.describe(5));

    require_clean(r, anomalies_, "the daemon");
  }

  storage::backend backend_;
  round_options opts_;
  steady::time_point born_ = steady::now();
  std::mt19937_64 rng_;
  temp_dir work_;
  std::string pg_stop_, pg_start_;
  // Declared in construction order; destroyed in reverse: recorders stop first, the daemon and
  // the PostgreSQL schema last.
  std::unique_ptr<test_database> pg_;
  std::unique_ptr<daemon_under_test> daemon_;
  storage::storage_url url_;
  std::shared_ptr<std::atomic<uint16_t>> port_ = std::make_shared<std::atomic<uint16_t>>(0);
  std::shared_ptr<ack_trigger> trigger_ = std::make_shared<ack_trigger>();
  std::vector<agent_slot> agents_;
  std::vector<agent_ref> refs_;
  std::vector<std::unique_ptr<recorder>> recorders_;
  int daemon_runs_ = 0;
  int daemon_kills_ = 0, pg_restarts_ = 0, agent_kills_ = 0, acked_kills_ = 0;
  steady::time_point fault_started_;
  double fault_seconds_ = 0;
  std::optional<double> settle_seconds_;
  std::vector<std::string> anomalies_;
  std::string killed_at_; // the last daemon kill (UTC)
};

} // namespace

BOOST_AUTO_TEST_CASE(round_sqlite) { fault_round(storage::backend::sqlite, command_line_options()).run(); }

BOOST_AUTO_TEST_CASE(round_postgresql) { fault_round(storage::backend::postgresql, command_line_options()).run(); }
