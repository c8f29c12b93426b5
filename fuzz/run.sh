#!/usr/bin/env bash
# Runs every libFuzzer target built by fuzz/build.sh for SECONDS_PER_TARGET seconds each, one
# after the other, each on a copy of its seed corpus (fuzz/corpus/<target>) in a temporary
# directory, with fuzz/json.dict. Exits non-zero if any target finds a crash, a leak, undefined
# behaviour, a timeout or an out-of-memory; the reproducer is kept in ARTIFACT_DIR.
#   fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET [TARGET...]
#   ARTIFACT_DIR=dir     where crash-*/leak-*/timeout-* files go (default: BUILD_DIR/fuzz-artifacts)
#   FUZZ_ARGS="..."      extra libFuzzer flags (e.g. -runs=10000000 -jobs=1)
#   KEEP_CORPUS=dir      copy each target's grown corpus to dir/<target> afterwards
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ $# -lt 2 ]; then
  echo "usage: fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET [TARGET...]" >&2
  exit 2
fi
BUILD_DIR=$1
SECONDS_PER_TARGET=$2
shift 2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_frame fuzz_bundle fuzz_admin_request fuzz_config fuzz_session)
ARTIFACT_DIR=${ARTIFACT_DIR:-$BUILD_DIR/fuzz-artifacts}
mkdir -p "$ARTIFACT_DIR"
ARTIFACT_DIR=$(cd "$ARTIFACT_DIR" && pwd)

# Ours first; options already in the environment come after them and win.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  bin=$BUILD_DIR/fuzz/$t
  if [ ! -x "$bin" ]; then
    echo "fuzz/run.sh: $bin is missing (run fuzz/build.sh $BUILD_DIR)" >&2
    failed+=("$t(missing)")
    continue
  fi
  corpus=$work/$t
  mkdir -p "$corpus"
  cp fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "== $t: ${SECONDS_PER_TARGET}s, corpus $(ls "$corpus" | wc -l) seeds"
  # -max_len: bundles and admin bodies need more than libFuzzer's default 4096 bytes to say much.
  case $t in
    fuzz_bundle|fuzz_admin_request) max_len=16384 ;;
    fuzz_config) max_len=8192 ;;
    *) max_len=4096 ;;
  esac
  # shellcheck disable=SC2086
  "$bin" "$corpus" -dict=fuzz/json.dict -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 \
    -max_len=$max_len -timeout=30 -print_final_stats=1 -artifact_prefix="$ARTIFACT_DIR/$t-" ${FUZZ_ARGS:-} \
    >"$work/$t.log" 2>&1
  status=$?
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)" "$work/$t.log" | tail -2 | sed 's/^/   /'
  grep -E "^Done [0-9]+ runs" "$work/$t.log" | tail -1 | sed 's/^/   /'
  echo "   corpus after: $(ls "$corpus" | wc -l) files"
  if [ -n "${KEEP_CORPUS:-}" ]; then
    mkdir -p "$KEEP_CORPUS/$t" && cp "$corpus"/* "$KEEP_CORPUS/$t"/
  fi
  if [ $status -ne 0 ] || grep -qE "^==[0-9]+==ERROR|runtime error:|^SUMMARY: " "$work/$t.log"; then
    echo "== $t: FAILED (exit $status); log tail:"
    tail -60 "$work/$t.log"
    ls "$ARTIFACT_DIR"/"$t"-* 2>/dev/null | sed 's/^/   reproducer: /'
    failed+=("$t")
  elif ! grep -qE "^Done [0-9]+ runs" "$work/$t.log"; then
    # No "Done N runs": libFuzzer was stopped (a signal, e.g. SIGUSR1 or SIGINT, exits 0 or 72)
    # before its time or run budget; the run proves nothing.
    echo "== $t: INTERRUPTED (exit $status, no 'Done N runs'); log tail:"
    tail -20 "$work/$t.log"
    failed+=("$t(interrupted)")
  else
    echo "== $t: ok"
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz/run.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz/run.sh: all ${#targets[@]} targets ran to their budget (${SECONDS_PER_TARGET}s${FUZZ_ARGS:+, $FUZZ_ARGS}) without a finding"
