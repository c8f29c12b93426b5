#!/usr/bin/env bash
# The test command (also what .ci/run runs). Works from any directory.
#   BUILD_DIR=dir            build directory (default: build, or build-asan with sanitizers)
#   NODECOORD_SANITIZE=1     build with AddressSanitizer + UndefinedBehaviorSanitizer
#   NODECOORD_FUZZ_SECONDS=N each libFuzzer target runs N seconds after ctest (default 60; 0: skip);
#                            needs clang (deps.sh installs clang-14); builds in build-fuzz
#   extra arguments          passed to ctest (e.g. -R storage)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${NODECOORD_SANITIZE:-0}" = 1 ]; then
  sanitize=ON
  BUILD_DIR=${BUILD_DIR:-build-asan}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp}
else
  sanitize=OFF
  BUILD_DIR=${BUILD_DIR:-build}
fi

cat <<EOF
== nodecoord tests ($(pwd))
   1. scripts/deps.sh: install missing Debian packages
   2. configure + build everything in $BUILD_DIR (RelWithDebInfo, sanitizers $sanitize, -j2)
   3. start a throwaway PostgreSQL 15 on loopback (tests/pg_test_server.sh)
   4. ctest --output-on-failure -j2; PostgreSQL is stopped and removed on exit
   5. fuzz/build.sh build-fuzz, then fuzz/run.sh: each libFuzzer target for ${NODECOORD_FUZZ_SECONDS:-60}s (clang, ASan, UBSan)
EOF

echo "== 1. dependencies"
bash scripts/deps.sh

echo "== 2. build ($BUILD_DIR)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNODECOORD_SANITIZE="$sanitize"
cmake --build "$BUILD_DIR" -j2

echo "== 3. PostgreSQL"
# shellcheck source=SCRIPTDIR/../tests/pg_test_server.sh
source tests/pg_test_server.sh
if ! pg_test_start; then   # installs pg_test_stop as the EXIT trap
  echo "run-tests: FAIL: could not start the test PostgreSQL server; the PostgreSQL tests cannot run" >&2
  exit 1
fi
echo "   $NODECOORD_TEST_PG_URL (data: $NODECOORD_TEST_PG_DIR)"

echo "== 4. ctest"
status=0
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j2 "$@" || status=$?
echo "== ctest exit status: $status"

# A filtered run (ctest arguments) skips the fuzz step unless NODECOORD_FUZZ_SECONDS is set.
fuzz_seconds=${NODECOORD_FUZZ_SECONDS:-60}
if [ $# -gt 0 ] && [ -z "${NODECOORD_FUZZ_SECONDS:-}" ]; then
  echo "== 5. fuzz: skipped (ctest arguments given; set NODECOORD_FUZZ_SECONDS to run it)"
elif [ "$fuzz_seconds" = 0 ]; then
  echo "== 5. fuzz: skipped (NODECOORD_FUZZ_SECONDS=0)"
elif ! command -v clang++-14 >/dev/null && ! command -v clang++ >/dev/null; then
  echo "== 5. fuzz: skipped: no clang++ (scripts/deps.sh installs clang-14)"
else
  echo "== 5. fuzz (build-fuzz, ${fuzz_seconds}s per target)"
  fuzz_status=0
  bash fuzz/build.sh build-fuzz && bash fuzz/run.sh build-fuzz "$fuzz_seconds" || fuzz_status=$?
  echo "== fuzz exit status: $fuzz_status"
  if [ "$fuzz_status" -ne 0 ] && [ "$status" -eq 0 ]; then
    status=$fuzz_status
  fi
fi
exit "$status"
