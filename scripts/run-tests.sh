#!/usr/bin/env bash
# The test command (also what .ci/run runs). Works from any directory.
#   BUILD_DIR=dir            build directory (default: build, or build-asan with sanitizers)
#   NODECOORD_SANITIZE=1     build with AddressSanitizer + UndefinedBehaviorSanitizer
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
exit "$status"
