#include "common/checks.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace nodecoord {

bool valid_check_name(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.';
  });
}

std::string check_detail(const std::string& name, const std::string& status, int64_t exit_code,
                         const std::string& output, bool truncated) {
  nlohmann::json j{{"check", name}, {"status", status}, {"output", output}, {"truncated", truncated}};
  j["exit_code"] = exit_code >= 0 ? nlohmann::json(exit_code) : nlohmann::json(nullptr);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace nodecoord
