// The several-instances round (DESIGN §9): nodecoordd instances share one PostgreSQL, and every
// agent knows all of them (--coordinator a,b,c), each address a relay that follows its instance's
// port across restarts and cuts connections mid-frame. While the recorders write, instances are
// SIGKILLed and restarted, SIGSTOPped for longer than their lease and then SIGCONTed (the zombie:
// another instance recovers its rows; woken, its sessions' writes fail their fence, it notices the
// lost lease, closes its sessions and rejoins), and agents are killed. Then everything settles and
// the database is compared with every agent's store (faults/check.hpp), as in fault_test.cpp.
//
//   fault_test --run_test=round_instances -- --instances 3 --daemon-kills 100 --pauses 20 --agents 8
#include "e2e_daemon.hpp"
#include "faults/check.hpp"
#include "faults/options.hpp"
#include "faults/recorder.hpp"
#include "faults/relay.hpp"
#include "faults/round_support.hpp"
#include "test_db.hpp"

#include <boost/test/unit_test.hpp>

#include <sys/wait.h>

#include <atomic>
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

constexpr auto kill_bound = 15s;       // SIGKILL: reaped
constexpr auto agent_exit_bound = 15s; // SIGTERM: bye, then exit
constexpr auto notice_bound = 15s;     // a woken zombie logs its lost lease
constexpr auto lease_interval = 500ms; // the instances' [server] lease_interval
constexpr auto lease_expiry = 2000ms;  // and lease_expiry
constexpr const char* lease_lost = "lease lost";

size_t occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + needle.size()))
    ++n;
  return n;
}

bool still_running(pid_t pid) {
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return false;
  return info.si_pid == 0;
}

std::string fixed1(double v) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << v;
  return os.str();
}

struct instance_slot {
  std::unique_ptr<daemon_under_test> d;
  std::shared_ptr<std::atomic<uint16_t>> port = std::make_shared<std::atomic<uint16_t>>(0);
  int runs = 0;
  size_t noticed = 0; // lease losses logged by ended runs
};

struct member_agent {
  std::string name;
  node_info node;
  std::string store;
  std::string key_file;
  std::vector<std::unique_ptr<fault_relay>> relays; // one per instance
  std::unique_ptr<child_process> proc;
  int runs = 0;
};

class instances_round {
public:
  explicit instances_round(round_options o) : opts_(std::move(o)), work_("nodecoord-instances") {
    if (opts_.seed == 0)
      opts_.seed = std::random_device{}() | 1;
    rng_.seed(opts_.seed);
    say("round instances seed=" + std::to_string(opts_.seed) + " instances=" + std::to_string(opts_.instances)
        + " agents=" + std::to_string(opts_.agents) + " instance_kills=" + std::to_string(opts_.daemon_kills)
        + " pauses=" + std::to_string(opts_.pauses) + " agent_kills=" + std::to_string(opts_.agent_kills)
        + " cuts_per_minute_per_relay=" + fixed1(opts_.cuts_per_minute));
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
  void say(const std::string& s) const {
    std::cout << "fault_test[" << fixed1(std::chrono::duration<double>(steady::now() - born_).count()) << "s]: " << s
              << std::endl;
  }

  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  void keep_log(const std::string& file, const std::string& text) const {
    if (!opts_.log_dir.empty())
      std::ofstream(opts_.log_dir + "/" + file) << text;
  }

  void setup() {
    pg_ = std::make_unique<test_database>(storage::backend::postgresql); // fails without NODECOORD_TEST_PG_URL
    settings server = with(base_settings(), {{"heartbeat_interval", "\"500ms\""},
                                             {"idle_timeout", "\"10s\""},
                                             {"max_protocol_errors", "10"},
                                             {"max_connections", "200"},
                                             {"lease_interval", "\"500ms\""},
                                             {"lease_expiry", "\"2s\""}});
    std::string backfill = "[backfill]\nreconcile_interval = \"2s\"\nrequest_timeout = \"15s\"\n"
                           "reconnect_rate = 1000\n";
    // Each instance has its own state directory, so its own instance id.
    for (int i = 0; i < opts_.instances; ++i) {
      instances_.emplace_back();
      instances_.back().d = std::make_unique<daemon_under_test>(server, pg_->url(), backfill);
      start_instance(instances_.back());
    }
    url_ = storage::parse_storage_url(pg_->url(), "", 5s);
    for (int i = 0; i < opts_.agents; ++i) {
      member_agent a;
      a.name = "fault-" + std::to_string(i + 1);
      a.node = instances_[0].d->add_node(a.name);
      a.store = work_.file(a.name + ".db");
      a.key_file = work_.write(a.name + ".key", a.node.key + "\n");
      for (size_t k = 0; k < instances_.size(); ++k)
        a.relays.push_back(
          std::make_unique<fault_relay>(instances_[k].port, opts_.seed * 1000003 + static_cast<uint64_t>(i * 16 + k)));
      agents_.push_back(std::move(a));
      refs_.push_back({agents_.back().name, agents_.back().node.id, agents_.back().store});
    }
    for (auto& a : agents_)
      start_agent(a);
    for (size_t i = 0; i < agents_.size(); ++i)
      recorders_.push_back(std::make_unique<recorder>(
        recorder_options{agents_[i].store, agents_[i].name, opts_.seed * 7919 + i, opts_.burst_max}));
    for (auto& a : agents_)
      for (auto& r : a.relays)
        r->set_cut_rate(opts_.cuts_per_minute);
    std::string ports;
    for (auto& s : instances_)
      ports += " " + std::to_string(s.d->port());
    say(std::to_string(instances_.size()) + " instances on one PostgreSQL, ports" + ports + "; "
        + std::to_string(agents_.size()) + " agents recording");
  }

  void start_instance(instance_slot& s) {
    s.d->start();
    ++s.runs;
    s.port->store(s.d->port());
  }

  /// Keeps the log of a run that ended and counts its lease losses.
  void end_run(instance_slot& s, size_t index) {
    auto text = s.d->process().stderr_text();
    s.noticed += occurrences(text, lease_lost);
    keep_log("instance-" + std::to_string(index) + "-" + std::to_string(s.runs) + ".log", text);
  }

  void start_agent(member_agent& a) {
    std::string list;
    for (auto& r : a.relays)
      list += (list.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(r->port());
    a.proc = std::make_unique<child_process>(
      agent_path,
      std::vector<std::string>{"--store", a.store, "--log-level", "info", "connect", "--coordinator", list, "--node",
                               a.name, "--key-file", a.key_file, "--backoff-max-ms", "1000", "--poll-interval-ms",
                               "50"},
      clean_env());
    ++a.runs;
  }

  void kill_instance(size_t i) {
    auto& s = instances_[i];
    auto& p = s.d->process();
    p.send_signal(SIGKILL);
    int code = p.wait_exit(kill_bound);
    s.port->store(0);
    if (code != 128 + SIGKILL)
      anomalies_.push_back("instance " + std::to_string(i) + " run " + std::to_string(s.runs)
                           + " exited by itself with code " + std::to_string(code) + "; stderr tail:\n"
                           + p.stderr_tail());
    end_run(s, i);
    start_instance(s);
  }

  /// SIGSTOP past the lease: another instance recovers it. SIGCONT: it must notice.
  void pause_instance(size_t i) {
    auto& p = instances_[i].d->process();
    auto before = occurrences(p.stderr_text(), lease_lost);
    p.send_signal(SIGSTOP);
    std::this_thread::sleep_for(lease_expiry + 2 * lease_interval
                                + std::chrono::milliseconds(uniform(0, 2000))); // the pause itself
    p.send_signal(SIGCONT);
    bool noticed = eventually([&] { return occurrences(p.stderr_text(), lease_lost) > before; }, notice_bound);
    if (!noticed)
      anomalies_.push_back("instance " + std::to_string(i) + " did not log '" + lease_lost + "' within "
                           + std::to_string(notice_bound.count()) + " s of waking from a pause longer than its lease");
    ++pauses_;
  }

  void kill_agent(member_agent& a) {
    a.proc->send_signal(SIGKILL);
    int code = a.proc->wait_exit(kill_bound);
    if (code != 128 + SIGKILL)
      anomalies_.push_back(a.name + " run " + std::to_string(a.runs) + " exited by itself with code "
                           + std::to_string(code) + "; stderr tail:\n" + a.proc->stderr_tail());
    keep_log(a.name + "-" + std::to_string(a.runs) + ".log", a.proc->stderr_text());
    start_agent(a);
  }

  std::string progress() const {
    int64_t attempts = 0, lines = 0, cuts = 0;
    for (auto& r : recorders_) {
      attempts += r->attempts();
      lines += r->lines();
    }
    for (auto& a : agents_)
      for (auto& r : a.relays)
        cuts += r->cuts_to_daemon() + r->cuts_to_agent();
    cuts_ = cuts;
    return "recorded " + std::to_string(attempts) + " attempts, " + std::to_string(lines) + " lines; cuts "
           + std::to_string(cuts);
  }

  void fault_phase() {
    auto started = steady::now();
    while (kills_ < opts_.daemon_kills || pauses_ < opts_.pauses || agent_kills_ < opts_.agent_kills) {
      std::this_thread::sleep_for(std::chrono::milliseconds(uniform(opts_.gap_min_ms, opts_.gap_max_ms)));
      for (auto& r : recorders_)
        BOOST_TEST_REQUIRE(!r->done(), "a recorder stopped: " << r->error());
      int left_k = opts_.daemon_kills - kills_, left_p = opts_.pauses - pauses_;
      int left_a = opts_.agent_kills - agent_kills_;
      int pick = uniform(0, left_k + left_p + left_a - 1);
      auto i = static_cast<size_t>(uniform(0, static_cast<int>(instances_.size()) - 1));
      if (pick < left_k) {
        kill_instance(i);
        ++kills_;
        say("instance kill " + std::to_string(kills_) + "/" + std::to_string(opts_.daemon_kills) + " (instance "
            + std::to_string(i) + ", run " + std::to_string(instances_[i].runs) + " ready); " + progress());
      } else if (pick < left_k + left_p) {
        pause_instance(i);
        say("pause " + std::to_string(pauses_) + "/" + std::to_string(opts_.pauses) + " (instance " + std::to_string(i)
            + " stopped past its lease, woken, lease loss noticed); " + progress());
      } else {
        auto& a = agents_[static_cast<size_t>(uniform(0, static_cast<int>(agents_.size()) - 1))];
        kill_agent(a);
        ++agent_kills_;
        say("agent kill " + std::to_string(agent_kills_) + "/" + std::to_string(opts_.agent_kills) + " (" + a.name
            + "); " + progress());
      }
    }
    fault_seconds_ = std::chrono::duration<double>(steady::now() - started).count();
  }

  void settle() {
    for (auto& a : agents_)
      for (auto& r : a.relays)
        r->set_cut_rate(0);
    for (size_t i = 0; i < instances_.size(); ++i)
      if (!still_running(instances_[i].d->process().pid())) {
        int code = instances_[i].d->process().wait_exit(kill_bound);
        anomalies_.push_back("instance " + std::to_string(i) + " exited by itself with code " + std::to_string(code)
                             + "; stderr tail:\n" + instances_[i].d->process().stderr_tail());
        end_run(instances_[i], i);
        start_instance(instances_[i]);
      }
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
    for (size_t i = 0; i < instances_.size(); ++i) {
      instances_[i].d->stop(); // SIGTERM; requires exit code 0
      end_run(instances_[i], i);
    }
    size_t noticed = 0;
    for (auto& s : instances_)
      noticed += s.noticed;
    auto r = check_round(url_, refs_, true, true);
    std::ostringstream line;
    line << "SUMMARY backend=postgresql instances=" << instances_.size() << " seed=" << opts_.seed
         << " agents=" << agents_.size() << " attempts=" << r.attempts << " lines=" << r.lines
         << " instance_kills=" << kills_ << " pauses=" << pauses_ << " lease_losses_logged=" << noticed
         << " agent_kills=" << agent_kills_ << " cuts=" << cuts_ << " fault_s=" << fixed1(fault_seconds_)
         << " settle_s=" << (settle_seconds_ ? fixed1(*settle_seconds_) : std::string("unsettled")) << " " << r.counts()
         << " anomalies=" << anomalies_.size();
    say(line.str());
    if (!opts_.summary.empty()) {
      json s{{"backend", "postgresql"},
             {"instances", instances_.size()},
             {"seed", opts_.seed},
             {"agents", agents_.size()},
             {"attempts", r.attempts},
             {"lines", r.lines},
             {"instance_kills", kills_},
             {"pauses", pauses_},
             {"lease_losses_logged", noticed},
             {"agent_kills", agent_kills_},
             {"cuts", cuts_},
             {"fault_seconds", fault_seconds_},
             {"settle_seconds", settle_seconds_ ? json(*settle_seconds_) : json(nullptr)},
             {"anomalies", anomalies_.size()},
             {"clean", r.clean() && anomalies_.empty()}};
      s.update(finding_counts(r));
      std::ofstream(opts_.summary) << s.dump(2) << "\n";
    }
    if (!r.clean())
      say("FINDINGS (seed " + std::to_string(opts_.seed) + "):" + r.describe(5));
    // Every pause outlasted the lease, so every woken zombie found its lease taken.
    BOOST_TEST(noticed >= static_cast<size_t>(pauses_), "lease losses logged " << noticed << " < pauses " << pauses_);
    require_clean(r, anomalies_, "the instances");
  }

  round_options opts_;
  steady::time_point born_ = steady::now();
  std::mt19937_64 rng_;
  temp_dir work_;
  // Destroyed in reverse: recorders stop first, the instances and the PostgreSQL schema last.
  std::unique_ptr<test_database> pg_;
  std::vector<instance_slot> instances_;
  storage::storage_url url_;
  std::vector<member_agent> agents_;
  std::vector<agent_ref> refs_;
  std::vector<std::unique_ptr<recorder>> recorders_;
  int kills_ = 0, pauses_ = 0, agent_kills_ = 0;
  mutable int64_t cuts_ = 0;
  double fault_seconds_ = 0;
  std::optional<double> settle_seconds_;
  std::vector<std::string> anomalies_;
};

round_options instance_round_options() {
  auto& m = boost::unit_test::framework::master_test_suite();
  std::vector<std::string> args(m.argv + 1, m.argv + m.argc);
  try {
    return parse_round_options(args);
  } catch (const std::invalid_argument& e) {
    BOOST_FAIL(e.what() << "\nusage: " << round_usage());
  }
  return {};
}

} // namespace

BOOST_AUTO_TEST_CASE(round_instances) { instances_round(instance_round_options()).run(); }
