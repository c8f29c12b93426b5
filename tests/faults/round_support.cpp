#include "faults/round_support.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <iomanip>
#include <sstream>
#include <thread>

namespace nodecoord::faults {

namespace {

using steady = std::chrono::steady_clock;
constexpr auto quiet_window = std::chrono::seconds(12); // settle: nothing moved for this long

std::string fixed1(double v) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << v;
  return os.str();
}

} // namespace

std::optional<double> settle_round(const storage::storage_url& url, const std::vector<agent_ref>& agents, int bound_s,
                                   const std::function<void(const std::string&)>& say) {
  auto started = steady::now();
  auto bound = std::chrono::seconds(bound_s);
  std::string last_print, fingerprint;
  auto moved = steady::now();
  while (steady::now() - started < bound) {
    check_report quick;
    try {
      quick = check_round(url, agents, false, false);
    } catch (const std::exception& e) {
      say(std::string("settle: reading failed (retrying): ") + e.what());
      std::this_thread::sleep_for(std::chrono::seconds(1)); // the polling period
      continue;
    }
    if (quick.fingerprint() != fingerprint) {
      fingerprint = quick.fingerprint();
      moved = steady::now();
    }
    if (quick.clean()) {
      auto full = check_round(url, agents, true, false);
      if (full.clean()) {
        auto secs = std::chrono::duration<double>(steady::now() - started).count();
        say("settled after " + fixed1(secs) + " s: " + std::to_string(full.attempts) + " attempts, "
            + std::to_string(full.lines) + " lines");
        return secs;
      }
      // Every attempt looks complete and right, but lines differ: that will not heal.
      say("settle: attempts complete but lines differ: " + full.counts());
      return std::nullopt;
    }
    bool still = quick.db_partial == 0 && quick.pending.empty() && quick.unconfirmed == 0;
    if (still && steady::now() - moved >= quiet_window) {
      say("settle: nothing is partial or pending, every agent's data is confirmed, nothing moved for "
          + std::to_string(quiet_window.count()) + " s: the coordinator will not change any more: " + quick.counts());
      return std::nullopt;
    }
    if (auto c = quick.counts(); c != last_print) {
      say("settle: " + std::to_string(quick.db_complete) + "/" + std::to_string(quick.attempts) + " complete, partial "
          + std::to_string(quick.db_partial) + ", unconfirmed " + std::to_string(quick.unconfirmed) + "; " + c);
      last_print = c;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1)); // the polling period
  }
  say("settle bound of " + std::to_string(bound_s) + " s reached");
  return std::nullopt;
}

void finish_recorders(const std::vector<std::unique_ptr<recorder>>& recorders) {
  constexpr auto bound = std::chrono::seconds(60);
  for (auto& r : recorders)
    r->finish();
  auto deadline = steady::now() + bound;
  auto all_done = [&] {
    for (auto& r : recorders)
      if (!r->done())
        return false;
    return true;
  };
  while (!all_done() && steady::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20)); // the polling period
  BOOST_TEST_REQUIRE(all_done(), "the recorders did not finish within " << bound.count() << " s");
  for (auto& r : recorders)
    BOOST_TEST_REQUIRE(r->error().empty(), "a recorder failed: " << r->error());
}

nlohmann::json finding_counts(const check_report& r) {
  return {{"missing", r.missing.size()},
          {"truncated", r.truncated.size()},
          {"bad_lines", r.bad_lines.size()},
          {"wrong_fields", r.wrong_fields.size()},
          {"stuck", r.stuck.size()},
          {"pending", r.pending.size()},
          {"extra_attempts", r.extra_attempts.size()},
          {"open_jobs", r.open_jobs.size()},
          {"failed", r.failed.size()}};
}

void require_clean(const check_report& r, const std::vector<std::string>& anomalies, const std::string& stopped) {
  BOOST_TEST(r.attempts > 0, "the recorders recorded nothing");
  BOOST_TEST(r.missing.empty(), "attempts missing on the coordinator:" << list_findings(r.missing, 5));
  BOOST_TEST(r.truncated.empty(), "attempts with fewer lines than the store:" << list_findings(r.truncated, 5));
  BOOST_TEST(r.bad_lines.empty(), "attempts with extra or different lines:" << list_findings(r.bad_lines, 5));
  BOOST_TEST(r.wrong_fields.empty(), "attempts with wrong fields:" << list_findings(r.wrong_fields, 5));
  BOOST_TEST(r.stuck.empty(), "attempts not complete:" << list_findings(r.stuck, 5));
  BOOST_TEST(r.pending.empty(), "rows still pending_backfill:" << list_findings(r.pending, 5));
  BOOST_TEST(r.extra_attempts.empty(), "attempts no store holds:" << list_findings(r.extra_attempts, 5));
  BOOST_TEST(r.open_jobs.empty(),
             "jobs queued or running after " << stopped << " stopped:" << list_findings(r.open_jobs, 5));
  BOOST_TEST(r.failed.empty(), "attempts failed for good (max_failures):" << list_findings(r.failed, 5));
  std::string list;
  for (auto& a : anomalies)
    list += "\n" + a;
  BOOST_TEST(anomalies.empty(), "anomalies (processes that exited by themselves, ...):" << list);
}

} // namespace nodecoord::faults
