#pragma once
// Allow-listed checks (issue 20; docs/protocol.md, checks): programs an operator may run on a
// node. The coordinator's config names them ([checks.NAME]); the agent runs one only if its own
// config allows the same name and argv. Plain C++: config, the admin API and sessions share it.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace nodecoord {

struct check_definition {
  std::string name;
  std::vector<std::string> argv; // run without a shell; argv[0] looked up in the node's PATH
  std::chrono::milliseconds timeout{0};
  int64_t output_max = 0; // bytes of output kept
};

/// 1 to 64 letters, digits and - _ . (a name in URLs, configs and the ledger).
bool valid_check_name(const std::string& name);

/// A check job's `detail`: JSON text of the check's name and its outcome. Output that is not
/// UTF-8 becomes U+FFFD. It holds no NUL (PostgreSQL's jsonb refuses \u0000): the decoder refuses
/// a frame holding one (common/json_limits.hpp), and the agent sends U+FFFD for them.
std::string check_detail(const std::string& name, const std::string& status, int64_t exit_code,
                         const std::string& output, bool truncated);

} // namespace nodecoord
