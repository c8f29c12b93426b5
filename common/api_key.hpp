#pragma once
// API keys (DESIGN §3): "nck_<key_id>_<secret>". The key id finds the node; only SHA-256 of the
// secret is stored; the key is shown once, at creation.
#include <optional>
#include <string>
#include <string_view>

namespace nodecoord {

struct api_key_parts {
  std::string key_id;
  std::string secret;
};

/// Splits a key; nullopt if it does not have the nck_<key_id>_<secret> shape (hex parts).
std::optional<api_key_parts> parse_api_key(std::string_view key);

struct new_api_key {
  std::string key;      // shown to the operator once
  std::string key_id;   // stored
  std::string key_hash; // stored: sha256_hex(secret)
};

/// 64 bits of key id, 256 bits of secret, from the system CSPRNG.
new_api_key generate_api_key();

/// Constant-time check of a presented secret against a stored hash.
bool api_secret_matches(std::string_view secret, std::string_view stored_hash);

} // namespace nodecoord
