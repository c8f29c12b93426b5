#include "faults/options.hpp"

#include <stdexcept>

namespace nodecoord::faults {

namespace {

int64_t integer(const std::string& name, const std::string& v, int64_t min, int64_t max) {
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || n < min || n > max)
    throw std::invalid_argument(name + " wants an integer in " + std::to_string(min) + ".." + std::to_string(max)
                                + ", not '" + v + "'");
  return n;
}

} // namespace

const char* round_usage() {
  return "fault_test [boost options] -- [--agents N] [--daemon-kills N] [--pg-restarts N] [--agent-kills N]\n"
         "  [--cuts on|off|PER_MINUTE_PER_RELAY] [--settle-bound SECONDS] [--seed N] [--burst-max LINES]\n"
         "  [--gap-ms MIN-MAX] [--kill-timing random|ack|mixed] [--summary FILE] [--log-dir DIR]\n"
         "  round_instances: [--instances N] [--pauses N] (--daemon-kills counts instance kills)";
}

round_options parse_round_options(const std::vector<std::string>& args) {
  round_options o;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& name = args[i];
    if (name == "--")
      continue;
    if (i + 1 >= args.size())
      throw std::invalid_argument(name + " needs a value");
    const auto& v = args[++i];
    if (name == "--agents")
      o.agents = static_cast<int>(integer(name, v, 1, 64));
    else if (name == "--daemon-kills")
      o.daemon_kills = static_cast<int>(integer(name, v, 0, 100000));
    else if (name == "--pg-restarts")
      o.pg_restarts = static_cast<int>(integer(name, v, 0, 100000));
    else if (name == "--agent-kills")
      o.agent_kills = static_cast<int>(integer(name, v, 0, 100000));
    else if (name == "--cuts")
      o.cuts_per_minute = v == "on" ? 6.0 : v == "off" ? 0.0 : static_cast<double>(integer(name, v, 0, 6000));
    else if (name == "--settle-bound")
      o.settle_bound_s = static_cast<int>(integer(name, v, 1, 86400));
    else if (name == "--seed")
      o.seed = static_cast<uint64_t>(integer(name, v, 1, INT64_MAX));
    else if (name == "--burst-max")
      o.burst_max = static_cast<int>(integer(name, v, 1, 100000));
    else if (name == "--gap-ms") {
      auto dash = v.find('-');
      if (dash == std::string::npos)
        throw std::invalid_argument("--gap-ms wants MIN-MAX, not '" + v + "'");
      o.gap_min_ms = static_cast<int>(integer(name, v.substr(0, dash), 0, 3600000));
      o.gap_max_ms = static_cast<int>(integer(name, v.substr(dash + 1), o.gap_min_ms, 3600000));
    } else if (name == "--kill-timing") {
      if (v != "random" && v != "ack" && v != "mixed")
        throw std::invalid_argument("--kill-timing wants random, ack or mixed, not '" + v + "'");
      o.kill_timing = v;
    } else if (name == "--instances")
      o.instances = static_cast<int>(integer(name, v, 2, 8));
    else if (name == "--pauses")
      o.pauses = static_cast<int>(integer(name, v, 0, 100000));
    else if (name == "--summary")
      o.summary = v;
    else if (name == "--log-dir")
      o.log_dir = v;
    else
      throw std::invalid_argument("unknown option '" + name + "'");
  }
  return o;
}

} // namespace nodecoord::faults
