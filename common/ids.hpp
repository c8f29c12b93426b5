#pragma once
// Identifiers and secrets: random UUIDs (v4), SHA-256, constant-time comparison.
#include <cstddef>
#include <string>
#include <string_view>

namespace nodecoord {

/// A random (version 4) UUID in canonical lower-case form.
std::string new_uuid();

/// True for the canonical 8-4-4-4-12 hex form (either case).
bool is_uuid(std::string_view s);

/// `n` bytes from the kernel's CSPRNG, as lower-case hex (2n characters).
std::string random_hex(size_t n);

/// SHA-256 of `data`, lower-case hex.
std::string sha256_hex(std::string_view data);

/// Compares without an early exit, so timing does not reveal the first difference.
bool constant_time_equal(std::string_view a, std::string_view b);

} // namespace nodecoord
