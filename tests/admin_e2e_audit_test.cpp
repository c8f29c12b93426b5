#include <boost/test/unit_test.hpp>

// The audit ledger end to end (issue 20): the real daemon on each backend, nodecoordctl's calls
// (succeeded, refused before the database, failed in it) each one row, in order, as
// `nodecoordctl audit` and the database show them.

#include "admin_e2e_support.hpp"

using namespace admin_e2e;

namespace {

void every_call_is_in_the_ledger(daemon_under_test& d) {
  d.start();
  auto admin = d.admin_url();
  d.add_node("alpha");
  struct call {
    std::vector<std::string> args;
    int code; // nodecoordctl's exit code
    std::string action, target, result;
  };
  auto ghost_attempt = new_uuid();
  std::vector<call> calls{
    {{"node", "add", "alpha"}, 3, "node.create", "alpha", "failed"},
    {{"node", "add", "no spaces"}, 2, "node.create", "", "refused"},
    {{"node", "disable", "ghost"}, 4, "node.disable", "ghost", "failed"},
    {{"node", "disable", "alpha"}, 0, "node.disable", "alpha", "succeeded"},
    {{"node", "enable", "alpha"}, 0, "node.enable", "alpha", "succeeded"},
    {{"node", "rotate-key", "alpha"}, 0, "node.rotate_key", "alpha", "succeeded"},
    {{"requeue", ghost_attempt}, 4, "attempt.requeue", ghost_attempt, "failed"},
    {{"jobs", "prune"}, 2, "jobs.prune", "", "refused"},
    {{"jobs", "prune", "--status", "failed"}, 0, "jobs.prune", "", "succeeded"},
  };
  for (auto& c : calls) {
    std::vector<std::string> args{"--admin", admin};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = ctl_any(args);
    BOOST_TEST(r.code == c.code, c.args[0] << " " << c.args[1] << ": " << r.err);
  }
  // add_node's own call, then each of the above: one row each, newest first.
  auto ledger = d.ctl({"audit"});
  BOOST_TEST_REQUIRE(ledger["entries"].size() == calls.size() + 1, ledger.dump());
  BOOST_TEST(d.count("SELECT COUNT(*) FROM audit_log") == static_cast<int64_t>(calls.size() + 1));
  for (size_t i = 0; i < calls.size(); ++i) {
    auto& e = ledger["entries"][calls.size() - 1 - i];
    BOOST_TEST_CONTEXT(calls[i].args[0] << " " << calls[i].args[1]) {
      BOOST_TEST(e["actor"] == "local");
      BOOST_TEST(e["action"] == calls[i].action);
      BOOST_TEST((e["target"].is_null() ? std::string() : e["target"].get<std::string>()) == calls[i].target);
      BOOST_TEST(e["result"] == calls[i].result);
      BOOST_TEST(e["error"].is_null() == (calls[i].result == "succeeded"), e.dump());
    }
  }
  auto first = ledger["entries"][calls.size()];
  BOOST_TEST(first["action"] == "node.create");
  BOOST_TEST(first["counts"] == json({{"nodes", 1}}));
  // The disable that succeeded changed the node in the transaction that wrote its row.
  BOOST_TEST(ledger["entries"][calls.size() - 4]["counts"] == json({{"nodes", 1}}));
  // Filters and pages, through nodecoordctl.
  auto refused = d.ctl({"audit", "--result", "refused"});
  BOOST_TEST(refused["entries"].size() == 2u);
  auto page = d.ctl({"audit", "--limit", "4"});
  BOOST_TEST_REQUIRE(page["entries"].size() == 4u);
  auto rest = d.ctl({"audit", "--before", page["next"].get<std::string>()});
  BOOST_TEST(rest["entries"].size() == calls.size() + 1 - 4);
  auto human = ctl_any({"--admin", admin, "audit", "--action", "node.disable"});
  BOOST_TEST(human.code == 0, human.err);
  BOOST_TEST(human.out.find("no node named ghost") != std::string::npos, human.out);
  auto bad = ctl_any({"--admin", admin, "audit", "--result", "maybe"});
  BOOST_TEST(bad.code == 2, bad.err);
  d.stop();
}

} // namespace

BOOST_AUTO_TEST_CASE(every_mutating_call_is_in_the_audit_ledger_sqlite) {
  daemon_under_test d;
  every_call_is_in_the_ledger(d);
}

BOOST_AUTO_TEST_CASE(every_mutating_call_is_in_the_audit_ledger_postgresql) {
  test_database pg(storage::backend::postgresql);
  daemon_under_test d(base_settings(), pg.url());
  every_call_is_in_the_ledger(d);
}
