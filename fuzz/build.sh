#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*.cpp) in BUILD_DIR (default build-fuzz) with Debian's
# clang: the project libraries with -fsanitize=fuzzer-no-link,address,undefined, the targets with
# -fsanitize=fuzzer,address,undefined (CMake option NODECOORD_FUZZ). Tests and the CAF layer are
# not built.
#   CXX=...                  the clang++ to use (default: clang++-14, else clang++)
#   NODECOORD_FUZZ_WERROR=0  do not make clang's warnings in project code errors
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${1:-build-fuzz}

if [ -z "${CXX:-}" ]; then
  if command -v clang++-14 >/dev/null; then CXX=clang++-14
  elif command -v clang++ >/dev/null; then CXX=clang++
  else echo "fuzz/build.sh: no clang++ (apt-get install clang-14)" >&2; exit 1
  fi
fi
werror=ON
[ "${NODECOORD_FUZZ_WERROR:-1}" = 0 ] && werror=OFF

CXX=$CXX cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNODECOORD_FUZZ=ON \
  -DNODECOORD_FUZZ_WERROR=$werror -DNODECOORD_BUILD_TESTS=OFF
cmake --build "$BUILD_DIR" -j2 --target nodecoord_fuzz
