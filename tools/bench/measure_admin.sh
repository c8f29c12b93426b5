#!/usr/bin/env bash
# The admin API figures of BENCHMARKS.md: RUNS times (fresh daemon each time) NODES sessions
# heartbeat while `nodecoord-bench admin` polls overview, metrics, readyz, nodes and jobs
# REQUESTS times each; results as JSON, then a summary (median, min-max).
#
#   tools/bench/measure_admin.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): RUNS [3], NODES [10000], REQUESTS [100],
# MAX_CONNECTIONS [12000], STORAGE_URL [sqlite://nodecoord.db in OUT_DIR/state].
set -euo pipefail
build=$(cd "${1:?usage: measure_admin.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_admin.sh BUILD_DIR OUT_DIR}
runs=${RUNS:-3}
nodes=${NODES:-10000}
requests=${REQUESTS:-100}
max_conn=${MAX_CONNECTIONS:-12000}
mkdir -p "$out/state"
out=$(cd "$out" && pwd)
bench=$build/nodecoord-bench
daemon_bin=$build/nodecoordd

src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=SCRIPTDIR/daemon.sh
source "$src/tools/bench/daemon.sh"
nc_bench_backend

nc_write_config "$out/nodecoord.toml" "max_connections = $max_conn"

"$bench" --config "$out/nodecoord.toml" --state-dir "$out/state" provision --nodes "$nodes" >"$out/provision.txt"

for i in $(seq 1 "$runs"); do
  log=$out/daemon-$i.log
  : >"$log" # exists before the daemon starts: the port is read from it at once
  env -u NOTIFY_SOCKET -u WATCHDOG_USEC -u WATCHDOG_PID -u STATE_DIRECTORY \
    "$daemon_bin" --config "$out/nodecoord.toml" --state-dir "$out/state" 2>"$log" </dev/null &
  daemon_pid=$!
  port= admin=
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening for nodes address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    admin=$(sed -n 's/.*admin listening address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && [ -n "$admin" ] && break
    sleep 0.1
  done
  [ -n "$port" ] && [ -n "$admin" ] || { echo "measure_admin: daemon did not start" >&2; cat "$log" >&2; exit 1; }
  rc=0
  "$bench" --json admin --coordinator "127.0.0.1:$port" --keys "$out/state/bench-keys.tsv" --nodes "$nodes" \
    --admin "http://127.0.0.1:$admin" --requests "$requests" --pid "$daemon_pid" >"$out/admin-$i.json" || rc=$?
  echo "run $i: admin exit $rc"
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || true
  daemon_pid=
done

python3 - "$out" "$runs" <<'EOF'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rs = [json.load(open(f"{out}/admin-{i}.json")) for i in range(1, runs + 1)]
print("valid:", [r["valid"] for r in rs])
for key in ["api_overview", "metrics", "readyz", "api_nodes", "api_jobs"]:
    for p in ["p50", "p99", "max"]:
        v = [r[f"latency_{key}_{p}_ms"] for r in rs]
        print(f"  {key:14} {p:4} median {statistics.median(v):9.2f}  min {min(v):9.2f}  max {max(v):9.2f} ms")
for k, unit in [("daemon_cpu_percent", "% of one core"), ("ack_latency_p99_ms", "ms")]:
    v = [r.get(k) for r in rs if r.get(k) is not None]
    if v:
        print(f"  {k:19} median {statistics.median(v):9.2f}  min {min(v):9.2f}  max {max(v):9.2f} {unit}")
EOF
