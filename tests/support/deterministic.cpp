#include "deterministic.hpp"

#include "actors/actors.hpp"

#include <caf/io/middleman.hpp>

namespace nodecoord::test {

caf::actor_system_config& deterministic_system::init(caf::actor_system_config& cfg, io with) {
  if (with == io::simulated) {
    cfg.load<caf::io::middleman>();
    cfg.set("middleman.network-backend", caf::atom("testing"));
    cfg.set("middleman.manual-multiplexing", true);
    cfg.set("middleman.workers", size_t{0});
    cfg.set("middleman.heartbeat-interval", caf::timespan{0});
  }
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("logger.verbosity", caf::atom("quiet"));
  return cfg;
}

deterministic_system::deterministic_system(io with)
  : sys(init(cfg, with)), self(sys, true), sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
    mpx_or_null(with == io::simulated ? &dynamic_cast<caf::io::network::test_multiplexer&>(sys.middleman().backend())
                                      : nullptr) {}

void deterministic_system::run() {
  if (!mpx_or_null) {
    while (sched.try_run_once())
      ;
    return;
  }
  auto& mpx = *mpx_or_null;
  while (sched.try_run_once() || mpx.try_exec_runnable() || mpx.read_data() || mpx.try_accept_connection())
    ;
}

void deterministic_system::advance(caf::timespan d) {
  auto& clk = sched.clock();
  auto target = clk.now() + d;
  run();
  while (!clk.schedule().empty() && clk.schedule().begin()->first <= target) {
    auto at = clk.schedule().begin()->first;
    clk.advance_time(at > clk.now() ? at - clk.now() : caf::timespan{0});
    run();
  }
  if (clk.now() < target)
    clk.advance_time(target - clk.now());
  run();
}

caf::io::network::test_multiplexer& deterministic_system::mpx() {
  BOOST_REQUIRE_MESSAGE(mpx_or_null, "connections need deterministic_system(io::simulated)");
  return *mpx_or_null;
}

caf::io::connection_handle deterministic_system::connect_to(caf::io::accept_handle acc) {
  auto c = caf::io::connection_handle::from_int(next_connection_++);
  mpx().add_pending_connect(acc, c);
  run();
  return c;
}

void deterministic_system::send(caf::io::connection_handle c, const std::string& bytes) {
  mpx().virtual_send(c, std::vector<char>(bytes.begin(), bytes.end()));
  run();
}

std::string deterministic_system::written(caf::io::connection_handle c) {
  auto& out = mpx().output_buffer(c);
  std::string text(out.begin(), out.end());
  out.clear();
  return text;
}

std::vector<nlohmann::json> deterministic_system::frames(caf::io::connection_handle c) {
  auto text = written(c);
  std::vector<nlohmann::json> result;
  size_t pos = 0;
  for (auto nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', pos)) {
    result.push_back(nlohmann::json::parse(text.substr(pos, nl - pos)));
    pos = nl + 1;
  }
  BOOST_TEST(pos == text.size(), "every frame ends with a newline");
  return result;
}

bool deterministic_system::closed(caf::io::connection_handle c) { return mpx().stopped_reading(c); }

storage_actor deterministic_system::start_storage(const test_database& t, storage_options opts) {
  opts.url = t.parsed_url();
  opts.clock = t.clock.fn();
  auto a = spawn_storage(sys, std::move(opts), false);
  ask<startup_report>(a, startup_atom::value);
  return a;
}

} // namespace nodecoord::test
