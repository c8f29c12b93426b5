#include "tools/agent/check_config.hpp"

#include "common/checks.hpp"

#include <toml++/toml.h>

#include <sstream>
#include <stdexcept>

namespace nodecoord::agent {

check_allow_list read_check_allow_list(const std::string& toml_text, const std::string& source) {
  toml::table t;
  try {
    t = toml::parse(toml_text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << e.source().begin;
    throw std::runtime_error(source + ":" + os.str() + ": " + std::string(e.description()));
  }
  auto fail = [&](const std::string& what) { throw std::runtime_error(source + ": " + what); };
  check_allow_list out;
  auto* checks = t.get("checks");
  if (!checks)
    return out;
  if (!checks->is_table())
    fail("checks must be a table of [checks.NAME] tables");
  for (auto& [key, node] : *checks->as_table()) {
    std::string name(key.str());
    auto where = "checks." + name;
    // The same rule as the coordinator's [checks.NAME]: a name that could never be asked for
    // is a mistake to point out now.
    if (!valid_check_name(name))
      fail(where + ": a check's name must be 1 to 64 letters, digits, '-', '_' or '.'");
    auto* table = node.as_table();
    if (!table)
      fail(where + " must be a table with argv = [\"program\", \"arg\", ...]");
    for (auto& [k, v] : *table)
      if (k.str() != "argv")
        fail("unknown setting '" + where + "." + std::string(k.str()) + "' (a check has only argv)");
    auto* argv = table->get_as<toml::array>("argv");
    if (!argv || argv->empty())
      fail(where + ".argv must be a non-empty list of strings");
    std::vector<std::string> list;
    for (auto& e : *argv) {
      auto s = e.value<std::string>();
      if (!s)
        fail(where + ".argv must be a non-empty list of strings");
      list.push_back(*s);
    }
    if (list.front().empty())
      fail(where + ".argv[0] (the program) must not be empty");
    out.emplace(std::move(name), std::move(list));
  }
  return out;
}

} // namespace nodecoord::agent
