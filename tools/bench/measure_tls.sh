#!/usr/bin/env bash
# What TLS on the node port costs (issue 17, BENCHMARKS.md "TLS"): ROUNDS rounds, each running
# the same scenarios without TLS, with TLS (sessions resumed, as agents do) and with TLS and a
# full handshake on every connection, one after the other on fresh daemons, so the ratios are
# computed within a round on the same machine state. Socket scenarios by measure.sh (connect,
# steady, reconnect-storm with NODES sessions), the end-to-end backfill by measure_backfill.sh.
#
#   tools/bench/measure_tls.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): ROUNDS [3], NODES [10000], DURATION [60s], INTERVAL [10s],
# BACKFILL_NODES [1000], MODES ["plain tls tls-full"], BACKFILL [1: also the backfill scenario].
set -euo pipefail
build=$(cd "${1:?usage: measure_tls.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_tls.sh BUILD_DIR OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-3}
modes=${MODES:-plain tls tls-full}

mode_env() { # mode_env MODE: the environment measure*.sh get for MODE
  case $1 in
    plain) echo "TLS=0" ;;
    tls) echo "TLS=1" ;;
    tls-full) echo "TLS=1 NO_RESUME=1" ;;
    *) echo "measure_tls: unknown mode $1" >&2; exit 2 ;;
  esac
}

for r in $(seq 1 "$rounds"); do
  for m in $modes; do
    echo "== round $r: $m"
    # shellcheck disable=SC2046
    env $(mode_env "$m") RUNS=1 bash "$src/tools/bench/measure.sh" "$build" "$out/$m-$r" >"$out/$m-$r.txt" 2>&1 \
      || { echo "measure.sh failed; see $out/$m-$r.txt" >&2; exit 1; }
    grep -E "daemon exit" "$out/$m-$r.txt" | sed 's/^/   /'
    if [ "${BACKFILL:-1}" = 1 ] && [ "$m" != tls-full ]; then
      # shellcheck disable=SC2046
      env $(mode_env "$m") RUNS=1 SCENARIOS=backfill BACKFILL_NODES="${BACKFILL_NODES:-1000}" \
        STORM_NODES="${BACKFILL_NODES:-1000}" \
        bash "$src/tools/bench/measure_backfill.sh" "$build" "$out/backfill-$m-$r" >"$out/backfill-$m-$r.txt" 2>&1 \
        || { echo "measure_backfill.sh failed; see $out/backfill-$m-$r.txt" >&2; exit 1; }
      grep -E "daemon exit" "$out/backfill-$m-$r.txt" | sed 's/^/   /'
    fi
  done
done

python3 - "$out" "$rounds" "$modes" <<'EOF'
import json, os, statistics, sys
out, rounds, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def get(mode, r, kind, key):
    path = f"{out}/{mode}-{r}/{kind}-1.json"
    if kind == "backfill":
        path = f"{out}/backfill-{mode}-{r}/backfill-1.json"
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    j = json.load(open(path))
    if not j.get("valid", False):
        print(f"  (invalid: {mode} round {r} {kind}: {j.get('invalid_because')})")
    return j.get(key)
rows = [("connect rate (sessions/s)", "connect", "rate_per_s"),
        ("connect hello->welcome p50 (ms)", "connect", "welcome_latency_p50_ms"),
        ("connect hello->welcome p99 (ms)", "connect", "welcome_latency_p99_ms"),
        ("RSS per session (KiB)", "connect", "rss_per_session_kib"),
        ("TLS sessions resumed (connect)", "connect", "tls_resumed"),
        ("steady daemon CPU (% of one core)", "steady", "daemon_cpu_percent"),
        ("steady ack p99 (ms)", "steady", "ack_latency_p99_ms"),
        ("steady lost acks", "steady", "lost_acks"),
        ("reconnect-storm time (s)", "reconnect", "time_s"),
        ("reconnect-storm daemon CPU (s)", "reconnect", "daemon_cpu_s"),
        ("TLS sessions resumed (storm)", "reconnect", "tls_resumed"),
        ("backfill attempts completed/s", "backfill", "rate_per_s"),
        ("backfill daemon CPU (% of one core)", "backfill", "daemon_cpu_percent")]
def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
print(f"{rounds} rounds; median (min-max) over rounds")
print(f"{'':38}" + "".join(f"{m:>26}" for m in modes))
for name, kind, key in rows:
    print(f"{name:38}" + "".join(f"{stats([get(m, r, kind, key) for r in range(1, rounds + 1)]):>26}" for m in modes))
print("ratios to plain within each round: median (min-max)")
for m in modes:
    if m == "plain":
        continue
    for name, kind, key in rows:
        ratios = []
        for r in range(1, rounds + 1):
            a, b = get(m, r, kind, key), get("plain", r, kind, key)
            if a is not None and b:
                ratios.append(a / b)
        if ratios:
            print(f"  {m:9} {name:38} {stats(ratios)}")
EOF
