#pragma once
// What every fuzz target reports a finding with: a message and up to two values, then abort
// (libFuzzer keeps the input as a crash-* reproducer).
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace nodecoord::fuzz {

[[noreturn]] inline void fail(const char* what, std::string_view a = {}, std::string_view b = {}) {
  std::fprintf(stderr, "fuzz finding: %s\n  a: %.*s\n  b: %.*s\n", what, static_cast<int>(a.size()), a.data(),
               static_cast<int>(b.size()), b.data());
  std::abort();
}

inline void check(bool ok, const char* what, std::string_view a = {}, std::string_view b = {}) {
  if (!ok)
    fail(what, a, b);
}

} // namespace nodecoord::fuzz
