#pragma once
// toml++ 3.3.0 (Debian 12) reaches __builtin_unreachable, undefined behaviour, when it tests some
// code points for whitespace (U+00A1-U+0499, U+2C5E-U+2FFF, U+3001-U+3057, U+FB26-U+FEFE;
// docs/reliability.md, fuzzing finding 7; fixed upstream after 3.3.0). The guard runs before
// toml++ sees a configuration: such a code point in a comment is blanked (comments are discarded
// anyway); anywhere else (a key, a string, between values) the file is refused with its position.
#include <cstdint>
#include <string>
#include <string_view>

namespace nodecoord::config {

/// Whether toml++ 3.3.0's whitespace test is undefined for `c` (exactly its generated function's
/// unreachable branch).
bool toml_unsafe_code_point(char32_t c);

struct toml_guard_result {
  std::string text;    // what toml++ may parse (the input, unsafe code points in comments blanked)
  uint32_t line = 0;   // 0: no error; else the 1-based position of the first refused code point
  uint32_t column = 0; // in code points, as toml++ counts them
  std::string message; // why it was refused
};

toml_guard_result guard_toml_text(std::string_view text);

} // namespace nodecoord::config
