#!/usr/bin/env bash
# One fleet larger than a process's descriptors allow (issue 19, BENCHMARKS.md "Fleet scale"):
# INSTANCES coordinators on one durable PostgreSQL, and as many `nodecoord-bench steady`
# processes, process k holding NODES / INSTANCES sessions of instance k (its own slice of one keys
# file: --skip). The processes start together; each reports its instance's CPU and RSS. Then one
# summary: sessions held, lost acks, ack p99 (the worst process), CPU and RSS per session.
#
#   tools/bench/measure_fleet.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): RUNS [1] INSTANCES [3] NODES [50000] INTERVAL [10s]
#   DURATION [60s] WARMUP [20s]
set -euo pipefail
build=$(cd "${1:?usage: measure_fleet.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_fleet.sh BUILD_DIR OUT_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
runs=${RUNS:-1}
count=${INSTANCES:-3}
nodes=${NODES:-50000}
interval=${INTERVAL:-10s}
duration=${DURATION:-60s}
warmup=${WARMUP:-20s}
per=$(((nodes + count - 1) / count))
mkdir -p "$out"
out=$(cd "$out" && pwd)
bench=$build/nodecoord-bench
daemon_bin=$build/nodecoordd

pids=()
ports=()
stop_all() { # SIGTERM every instance; their exit codes and log levels
  local name=${1:-} k code
  for k in "${!pids[@]}"; do
    kill -TERM "${pids[$k]}" 2>/dev/null || true
    code=0
    wait "${pids[$k]}" || code=$?
    [ -n "$name" ] && echo "$name: instance $k exit $code; log levels: $(awk '{print $2}' "$out/$name-$k.log" |
      sort | uniq -c | tr '\n' ' ')"
  done
  pids=()
  ports=()
}
cleanup() {
  stop_all
  if declare -F pg_test_stop >/dev/null; then pg_test_stop; fi
}
trap cleanup EXIT

# shellcheck source=SCRIPTDIR/daemon.sh
source "$src/tools/bench/daemon.sh"
# shellcheck source=pg_durable.sh
source "$src/tools/bench/pg_durable.sh"
pg_durable_start
trap cleanup EXIT # pg_test_start replaced it

for k in $(seq 1 "$count"); do
  mkdir -p "$out/inst-$k/state"
  {
    echo '[server]'
    echo 'listen = "127.0.0.1:0"'
    echo "max_connections = $((per + 1000))"
    echo "instance_id = \"fleet-$k\""
    echo
    echo '[admin]'
    echo 'listen = "127.0.0.1:0"'
    echo
    echo '[storage]'
    echo "url = \"$STORAGE_URL\""
  } >"$out/inst-$k/nodecoord.toml"
done

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "shell nofile soft/hard: $(ulimit -Sn)/$(ulimit -Hn)"
  echo "instances: $count on one PostgreSQL, $per sessions each, one bench process each"
} >"$out/machine.txt"
cat "$out/machine.txt"

"$bench" --config "$out/inst-1/nodecoord.toml" --state-dir "$out/inst-1/state" provision --nodes "$((per * count))" \
  >"$out/provision.txt"
tail -n 3 "$out/provision.txt"
keys=$out/inst-1/state/bench-keys.tsv

for i in $(seq 1 "$runs"); do
  for k in $(seq 1 "$count"); do
    nc_start_daemon "$daemon_bin" "$out/inst-$k/nodecoord.toml" "$out/inst-$k/state" "$out/fleet-$i-$((k - 1)).log"
    pids+=("$nc_daemon_pid")
    ports+=("127.0.0.1:$nc_port")
  done
  grep -h "descriptor limit" "$out"/fleet-"$i"-*.log || true
  benches=()
  for k in $(seq 0 $((count - 1))); do
    "$bench" --json steady --coordinator "${ports[$k]}" --keys "$keys" --skip $((k * per)) --nodes "$per" \
      --interval "$interval" --duration "$duration" --warmup "$warmup" --pid "${pids[$k]}" \
      >"$out/steady-$i-$k.json" 2>"$out/steady-$i-$k.err" &
    benches+=($!)
  done
  for k in "${!benches[@]}"; do
    rc=0
    wait "${benches[$k]}" || rc=$?
    echo "run $i, bench process $k: exit $rc"
  done
  stop_all "fleet-$i"
done

python3 - "$out" "$runs" "$count" <<'EOF'
import json, os, statistics, sys
out, runs, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(i, k):
    p = f"{out}/steady-{i}-{k}.json"
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return {}
    r = json.load(open(p))
    if not r.get("valid", False):
        print(f"  run {i} process {k}: invalid because {r.get('invalid_because')}")
    return r
rows = {"sessions held": [], "lost acks": [], "ack p99 ms (worst process)": [],
        "daemon CPU % (sum of instances)": [], "daemon CPU % (busiest instance)": [],
        "RSS KiB per idle session (mean of instances)": [], "connect time s (slowest process)": []}
for i in range(1, runs + 1):
    rs = [load(i, k) for k in range(count)]
    def vals(key):
        return [r.get(key) for r in rs if r.get(key) is not None]
    rows["sessions held"].append(sum(vals("sessions_authenticated")))
    rows["lost acks"].append(sum(vals("lost_acks")))
    if vals("ack_latency_p99_ms"):
        rows["ack p99 ms (worst process)"].append(max(vals("ack_latency_p99_ms")))
    if vals("daemon_cpu_percent"):
        rows["daemon CPU % (sum of instances)"].append(sum(vals("daemon_cpu_percent")))
        rows["daemon CPU % (busiest instance)"].append(max(vals("daemon_cpu_percent")))
    if vals("rss_per_session_kib"):
        rows["RSS KiB per idle session (mean of instances)"].append(statistics.mean(vals("rss_per_session_kib")))
    if vals("connect_time_s"):
        rows["connect time s (slowest process)"].append(max(vals("connect_time_s")))
for name, values in rows.items():
    if values:
        print(f"  {name:46} median {statistics.median(values):12.3f}  min {min(values):12.3f}  max {max(values):12.3f}")
EOF
