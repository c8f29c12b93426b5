#!/usr/bin/env bash
# Several coordinators on one PostgreSQL (issue 18, DESIGN §9), BENCHMARKS.md "Three instances":
# RUNS rounds, each with one instance and then INSTANCES instances on the same durable PostgreSQL
# (fresh daemons each time): `connect` (NODES sessions, spread round robin over the instances'
# addresses), `steady` (those sessions heartbeating for DURATION) and `backfill` (BACKFILL_NODES
# nodes), each result saved as JSON, then a summary (median, min-max) and the ratio
# several / one computed within each round.
#
#   tools/bench/measure_instances.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): RUNS [3] INSTANCES [3] NODES [6000] INTERVAL [10s]
#   DURATION [20s] BACKFILL_NODES [1000] BACKFILL_ATTEMPTS [10] BACKFILL_LOGS [20] SENT_LOGS [10]
# Every instance's stderr goes to OUT_DIR/SCENARIO-N-COUNT-K.log.
set -euo pipefail
build=$(cd "${1:?usage: measure_instances.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_instances.sh BUILD_DIR OUT_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
runs=${RUNS:-3}
count=${INSTANCES:-3}
nodes=${NODES:-6000}
interval=${INTERVAL:-10s}
duration=${DURATION:-20s}
backfill_nodes=${BACKFILL_NODES:-1000}
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
    echo "max_connections = $((nodes + 2000))"
    echo "instance_id = \"bench-$k\""
    echo
    echo '[backfill]'
    echo 'reconnect_rate = 100000'
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
  echo "instances: $count on one PostgreSQL"
} >"$out/machine.txt"
cat "$out/machine.txt"

provision=$((nodes > backfill_nodes ? nodes : backfill_nodes))
"$bench" --config "$out/inst-1/nodecoord.toml" --state-dir "$out/inst-1/state" provision --nodes "$provision" \
  >"$out/provision.txt"
tail -n 3 "$out/provision.txt"
keys=$out/inst-1/state/bench-keys.tsv

start_instances() { # start_instances N NAME: N instances; fills pids, ports and $list
  local n=$1 name=$2 k rc
  for k in $(seq 1 "$n"); do
    rc=0
    nc_start_daemon "$daemon_bin" "$out/inst-$k/nodecoord.toml" "$out/inst-$k/state" "$out/$name-$((k - 1)).log" ||
      rc=$?
    pids+=("$nc_daemon_pid")
    [ "$rc" = 0 ] || exit 1
    ports+=("127.0.0.1:$nc_port")
  done
  list=$(IFS=,; echo "${ports[*]}")
}

for i in $(seq 1 "$runs"); do
  for n in 1 "$count"; do
    start_instances "$n" "sessions-$i-$n"
    rc=0
    "$bench" --json connect --coordinator "$list" --keys "$keys" --nodes "$nodes" --pid "${pids[0]}" \
      >"$out/connect-$i-$n.json" || rc=$?
    echo "run $i, $n instance(s): connect exit $rc"
    rc=0
    "$bench" --json steady --coordinator "$list" --keys "$keys" --nodes "$nodes" --interval "$interval" \
      --duration "$duration" --pid "${pids[0]}" >"$out/steady-$i-$n.json" || rc=$?
    echo "run $i, $n instance(s): steady exit $rc"
    stop_all "sessions-$i-$n"
    start_instances "$n" "backfill-$i-$n"
    rc=0
    "$bench" --json --config "$out/inst-1/nodecoord.toml" --state-dir "$out/inst-1/state" backfill \
      --coordinator "$list" --keys "$keys" --nodes "$backfill_nodes" --attempts "${BACKFILL_ATTEMPTS:-10}" \
      --logs "${BACKFILL_LOGS:-20}" --sent-logs "${SENT_LOGS:-10}" --pid "${pids[0]}" --keep \
      >"$out/backfill-$i-$n.json" || rc=$?
    echo "run $i, $n instance(s): backfill exit $rc"
    stop_all "backfill-$i-$n"
  done
done

python3 - "$out" "$runs" "$count" <<'EOF'
import json, os, statistics, sys
out, runs, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def get(kind, i, n, key):
    p = f"{out}/{kind}-{i}-{n}.json"
    if not os.path.exists(p) or os.path.getsize(p) == 0:
        return None
    r = json.load(open(p))
    if not r.get("valid", False):
        print(f"  {kind} run {i} with {n}: invalid because {r.get('invalid_because')}")
    return r.get(key)
def line(name, values):
    values = [v for v in values if v is not None]
    if values:
        print(f"  {name:52} median {statistics.median(values):12.3f}  min {min(values):12.3f}  max {max(values):12.3f}")
figures = [("connect", "sessions_authenticated", "sessions held (connect)"),
           ("connect", "rate_per_s", "connect rate (sessions/s)"),
           ("steady", "sessions_authenticated", "sessions held (steady)"),
           ("steady", "lost_acks", "steady lost acks"),
           ("steady", "ack_latency_p99_ms", "steady ack p99 (ms)"),
           ("backfill", "rate_per_s", "backfill attempts completed/s (first connect)")]
for kind, key, name in figures:
    for n in (1, count):
        line(f"{name}, {n} instance(s)", [get(kind, i, n, key) for i in range(1, runs + 1)])
    ratios = []
    for i in range(1, runs + 1):
        a, b = get(kind, i, 1, key), get(kind, i, count, key)
        if a and b:
            ratios.append(b / a)
    line(f"{name}: {count} / 1 (within run)", ratios)
EOF
