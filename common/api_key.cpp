#include "common/api_key.hpp"

#include "common/ids.hpp"

#include <cctype>

namespace nodecoord {

namespace {

bool is_hex(std::string_view s) {
  if (s.empty())
    return false;
  for (unsigned char c : s)
    if (!std::isxdigit(c))
      return false;
  return true;
}

} // namespace

std::optional<api_key_parts> parse_api_key(std::string_view key) {
  constexpr std::string_view prefix = "nck_";
  if (key.substr(0, prefix.size()) != prefix || key.size() > 256)
    return std::nullopt;
  auto rest = key.substr(prefix.size());
  auto sep = rest.find('_');
  if (sep == std::string_view::npos)
    return std::nullopt;
  auto id = rest.substr(0, sep);
  auto secret = rest.substr(sep + 1);
  if (!is_hex(id) || !is_hex(secret))
    return std::nullopt;
  return api_key_parts{std::string(id), std::string(secret)};
}

new_api_key generate_api_key() {
  new_api_key k;
  k.key_id = random_hex(8);
  auto secret = random_hex(32);
  k.key_hash = sha256_hex(secret);
  k.key = "nck_" + k.key_id + "_" + secret;
  return k;
}

bool api_secret_matches(std::string_view secret, std::string_view stored_hash) {
  return constant_time_equal(sha256_hex(secret), stored_hash);
}

} // namespace nodecoord
