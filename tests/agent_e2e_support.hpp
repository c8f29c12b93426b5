#pragma once

// Shared by the agent_e2e_test sources: nodecoord-agent's command line run as a child process.

#include "e2e_daemon.hpp"

#include <string>
#include <vector>

namespace agent_e2e {

using namespace nodecoord;
using namespace nodecoord::test;
using namespace std::chrono_literals;

inline const std::string agent_path = NODECOORD_AGENT_PATH;

/// `nodecoord-agent --store S ARGS…` with `input` on stdin (through a file); requires exit code
/// `expected`.
inline std::string agent_cli(const std::string& store, std::vector<std::string> args, const std::string& input = "",
                             int expected = 0) {
  std::vector<std::string> argv{"--store", store};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_with_stdin(agent_path, argv, input);
  BOOST_TEST_REQUIRE(r.code == expected, "nodecoord-agent exited with " << r.code << "; stderr:\n" << r.err);
  auto out = std::move(r.out);
  while (!out.empty() && out.back() == '\n')
    out.pop_back();
  return out;
}

inline std::string lines_text(int n, const std::string& tag) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += tag + " line " + std::to_string(i) + (i % 7 == 0 ? " \xc3\xa9t\xc3\xa9" : "") + "\n";
  return s;
}

} // namespace agent_e2e
