#!/usr/bin/env bash
# The long fault rounds (docs/reliability.md), one command:
#   bash tests/faults/long_round.sh [BUILD_DIR]
# Builds what it needs (if needed), starts a throwaway PostgreSQL 15 (tests/pg_test_server.sh),
# and runs
#   1. SQLite:     8 agents, 300 daemon kills, 30 agent kills, cuts on
#   2. PostgreSQL: 8 agents, 200 daemon kills, 50 PostgreSQL restarts, 20 agent kills, cuts on
#   3. Instances:  3 instances on one PostgreSQL, 8 agents, 100 instance kills, 20 pauses past the
#      lease (zombies), 10 agent kills, cuts on (ROUNDS="instances" runs only this one)
# Each round prints a SUMMARY line and writes it as JSON into $OUT_DIR (default: a new directory
# under /tmp, printed), together with every daemon and agent log. Exits non-zero if any round
# lost anything (or failed otherwise). About 50-70 minutes on 2 cores.
# Environment: SEED=N replays a round's schedule as far as timing allows (same seed for both);
# FAULT_ARGS="..." is appended to both rounds' arguments (e.g. "--settle-bound 600").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BUILD_DIR=${1:-build}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/nodecoord-long-round.XXXXXX)}
mkdir -p "$OUT_DIR"

echo "== build ($BUILD_DIR)"
bash scripts/deps.sh
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$BUILD_DIR" -j2 --target fault_test nodecoordd nodecoordctl nodecoord-agent

echo "== PostgreSQL"
# shellcheck source=SCRIPTDIR/../pg_test_server.sh
source tests/pg_test_server.sh
if ! pg_test_start; then   # installs pg_test_stop as the EXIT trap
  echo "long_round: FAIL: could not start the test PostgreSQL server" >&2
  exit 1
fi
echo "   $NODECOORD_TEST_PG_URL"

seed_args=()
[ -n "${SEED:-}" ] && seed_args=(--seed "$SEED")
# shellcheck disable=SC2206
extra=(${FAULT_ARGS:-})
status=0
round() {  # round NAME CASE ARGS...
  local name=$1 case=$2
  shift 2
  echo "== round $name (logs: $OUT_DIR/$name-logs)"
  if ! "$BUILD_DIR/tests/fault_test" --color_output=no --report_level=short --run_test="$case" -- "$@" \
      "${seed_args[@]}" "${extra[@]}" --summary "$OUT_DIR/$name.json" --log-dir "$OUT_DIR/$name-logs" \
      2>&1 | tee "$OUT_DIR/$name.out"; then
    status=1
  fi
}
rounds=${ROUNDS:-sqlite postgresql instances}
has() { case " $rounds " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
has sqlite && round sqlite round_sqlite --agents 8 --daemon-kills 300 --agent-kills 30 --cuts on
has postgresql && round postgresql round_postgresql --agents 8 --daemon-kills 200 --pg-restarts 50 --agent-kills 20 \
  --cuts on
has instances && round instances round_instances --instances 3 --agents 8 --daemon-kills 100 --pauses 20 \
  --agent-kills 10 --cuts on

echo "== summaries ($OUT_DIR)"
grep -h "SUMMARY" "$OUT_DIR"/*.out || true
cat "$OUT_DIR"/*.json 2>/dev/null || true
if [ "$status" = 0 ]; then echo "== long round: no losses"; else echo "== long round: FAILED (see above)"; fi
exit "$status"
