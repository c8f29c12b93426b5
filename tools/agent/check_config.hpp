#pragma once
// The agent's own allow-list of checks, from its TOML config (docs/agent.md, Checks):
//   [checks.disk]
//   argv = ["df", "-h", "/"]
// Apart from main.cpp so that the tests can read configs without starting an agent.
#include <map>
#include <string>
#include <vector>

namespace nodecoord::agent {

/// name -> the exact argv the agent runs for it (link_options::checks).
using check_allow_list = std::map<std::string, std::vector<std::string>>;

/// Reads the `checks` table of a config file's text (`source` names the file in errors). No
/// `checks` table: an empty list. Throws std::runtime_error naming the file and the setting: a
/// name that is not 1-64 letters, digits, '-', '_' or '.', an `argv` that is not a non-empty list
/// of strings (or whose program is ""), any other key.
check_allow_list read_check_allow_list(const std::string& toml_text, const std::string& source);

} // namespace nodecoord::agent
