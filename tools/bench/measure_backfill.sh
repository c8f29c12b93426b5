#!/usr/bin/env bash
# The backfill measurements of BENCHMARKS.md (issue 4): RUNS rounds of `limit`, `storage`,
# `disconnect-storm` and `backfill` (interleaved, so drift of the shared machine spreads over all
# of them; a fresh daemon for each daemon scenario), each result saved as JSON, then a summary
# (median, min-max) of the main figures and of the ratios computed within each run.
# The daemon scenarios run with --keep, so the attempts table is never left empty between runs:
# PostgreSQL plans a connection's foreign-key checks once, and a plan made while the statistics
# say "empty table" is a sequential scan for the life of the daemon's connection (BENCHMARKS.md).
# Each scenario clears its own nodes' rows when it starts.
#
#   tools/bench/measure_backfill.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets):
#   RUNS [3]  SCENARIOS ["limit storage backfill storm"]
#   LIMIT_NODES [1000] ATTEMPTS [10] LOGS [10] MISSING [10]      limit and storage
#   SLOW_NODES [100] MODES [batched,per-row,per-op]              storage
#   BACKFILL_NODES [1000] BACKFILL_ATTEMPTS [10] BACKFILL_LOGS [20] SENT_LOGS [10]
#   STORM_NODES [10000] STORM_ATTEMPTS [10] POLL [10ms]
#   RECONNECT_RATE [100000] BATCH_SIZE [100]                      [backfill] of the daemon
#   STORAGE_URL [sqlite://nodecoord.db in OUT_DIR/state]
#   PG=durable  start a throwaway PostgreSQL 15 server for the run (tests/pg_test_server.sh, but
#               with the server's durable defaults: fsync, synchronous_commit and full_page_writes
#               on) and use it; it is removed at exit. Overrides STORAGE_URL.
#   PG_STATS=1  with PG=durable: where the server's time went in the timed part of each scenario
#               (statements by total time, pg_stat_statements) in OUT_DIR/pg-stats-*.txt.
#   TLS=1       the node port speaks TLS (certificates by tests/support/make_certs.sh in
#               OUT_DIR/certs) and the socket scenarios use --tls (resuming sessions).
# The daemon's stderr goes to OUT_DIR/daemon-SCENARIO-N.log; its warnings and errors are counted.
set -euo pipefail
build=$(cd "${1:?usage: measure_backfill.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_backfill.sh BUILD_DIR OUT_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
runs=${RUNS:-3}
scenarios=${SCENARIOS:-limit storage backfill storm}
limit_nodes=${LIMIT_NODES:-1000}
attempts=${ATTEMPTS:-10}
logs=${LOGS:-10}
missing=${MISSING:-10}
slow_nodes=${SLOW_NODES:-100}
modes=${MODES:-batched,per-row,per-op}
backfill_nodes=${BACKFILL_NODES:-1000}
backfill_attempts=${BACKFILL_ATTEMPTS:-10}
backfill_logs=${BACKFILL_LOGS:-20}
sent_logs=${SENT_LOGS:-10}
storm_nodes=${STORM_NODES:-10000}
storm_attempts=${STORM_ATTEMPTS:-10}
poll=${POLL:-10ms}
mkdir -p "$out/state"
out=$(cd "$out" && pwd)
bench=$build/nodecoord-bench
daemon_bin=$build/nodecoordd

# shellcheck source=SCRIPTDIR/daemon.sh
source "$src/tools/bench/daemon.sh"
nc_bench_backend

tls_args=()
if [ "${TLS:-0}" = 1 ]; then
  [ -f "$out/certs/server.crt" ] || bash "$src/tests/support/make_certs.sh" "$out/certs" >/dev/null
  tls_args=(--tls --ca-file "$out/certs/ca.crt")
fi

sections=
if [ "${TLS:-0}" = 1 ]; then sections=$(nc_tls_section "$out/certs")$'\n\n'; fi
sections+=$'[backfill]\n'"reconnect_rate = ${RECONNECT_RATE:-100000}"$'\n'"batch_size = ${BATCH_SIZE:-100}"
nc_write_config "$out/nodecoord.toml" \
  "max_connections = $((storm_nodes > backfill_nodes ? storm_nodes + 2000 : backfill_nodes + 2000))" "$sections"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "kernel: $(uname -r)"
  echo "shell nofile soft/hard: $(ulimit -Sn)/$(ulimit -Hn)"
  echo "storage: ${STORAGE_URL:-sqlite (state dir)}"
} >"$out/machine.txt"
cat "$out/machine.txt"

provision_nodes=$((storm_nodes > backfill_nodes ? storm_nodes : backfill_nodes))
"$bench" --config "$out/nodecoord.toml" --state-dir "$out/state" provision --nodes "$provision_nodes" \
  >"$out/provision.txt"
tail -n 3 "$out/provision.txt"

start_daemon() { # start_daemon LOG: starts nodecoordd, sets daemon_pid and port
  local rc=0
  nc_start_daemon "$daemon_bin" "$out/nodecoord.toml" "$out/state" "$1" || rc=$?
  daemon_pid=$nc_daemon_pid
  [ "$rc" = 0 ] || exit 1
  port=$nc_port
}

stop_daemon() { # stop_daemon LOG NAME: SIGTERM, exit code and log levels reported
  local log=$1 name=$2 code=0
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || code=$?
  daemon_pid=
  echo "$name: daemon exit $code; log levels: $(awk '{print $2}' "$log" | sort | uniq -c | tr '\n' ' ')"
}

has() { case " $scenarios " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

keys=$out/state/bench-keys.tsv
for i in $(seq 1 "$runs"); do
  if has limit; then
    rc=0
    "$bench" --json --config "$out/nodecoord.toml" --state-dir "$out/state" limit --nodes "$limit_nodes" \
      --attempts "$attempts" --logs "$logs" --missing "$missing" >"$out/limit-$i.json" || rc=$?
    echo "run $i: limit exit $rc"
    if [ "${PG:-}" = durable ]; then pg_stats_dump "$out/pg-stats-limit-$i.txt"; fi
  fi
  if has storage; then
    rc=0
    "$bench" --json --config "$out/nodecoord.toml" --state-dir "$out/state" storage --nodes "$limit_nodes" \
      --attempts "$attempts" --logs "$logs" --slow-nodes "$slow_nodes" --modes "$modes" \
      >"$out/storage-$i.json" || rc=$?
    echo "run $i: storage exit $rc"
  fi
  if has storm; then
    log=$out/daemon-storm-$i.log
    start_daemon "$log"
    rc=0
    "$bench" --json --config "$out/nodecoord.toml" --state-dir "$out/state" disconnect-storm \
      --coordinator "127.0.0.1:$port" --keys "$keys" --nodes "$storm_nodes" --attempts "$storm_attempts" \
      --poll "$poll" --pid "$daemon_pid" --keep "${tls_args[@]}" >"$out/storm-$i.json" || rc=$?
    echo "run $i: disconnect-storm exit $rc"
    stop_daemon "$log" "run $i: disconnect-storm"
    if [ "${PG:-}" = durable ]; then pg_stats_dump "$out/pg-stats-storm-$i.txt"; fi
  fi
  if has backfill; then
    log=$out/daemon-backfill-$i.log
    start_daemon "$log"
    rc=0
    "$bench" --json --config "$out/nodecoord.toml" --state-dir "$out/state" backfill \
      --coordinator "127.0.0.1:$port" --keys "$keys" --nodes "$backfill_nodes" --attempts "$backfill_attempts" \
      --logs "$backfill_logs" --sent-logs "$sent_logs" --poll "$poll" --pid "$daemon_pid" --keep "${tls_args[@]}" \
      >"$out/backfill-$i.json" || rc=$?
    echo "run $i: backfill exit $rc"
    stop_daemon "$log" "run $i: backfill"
    if [ "${PG:-}" = durable ]; then pg_stats_dump "$out/pg-stats-backfill-$i.txt"; fi
  fi
done

python3 - "$out" "$runs" "$scenarios" <<'EOF'
import json, os, statistics, sys
out, runs, scenarios = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def load(kind):
    rs = []
    for i in range(1, runs + 1):
        p = f"{out}/{kind}-{i}.json"
        if os.path.exists(p) and os.path.getsize(p) > 0:
            rs.append(json.load(open(p)))
    return rs
def line(name, values, unit=""):
    values = [v for v in values if v is not None]
    if not values:
        return
    print(f"  {name:46} median {statistics.median(values):12.3f}  min {min(values):12.3f}  max {max(values):12.3f} {unit}")
def section(kind, rows):
    rs = load(kind)
    if not rs:
        return
    print(f"{kind}: {len(rs)} runs, valid: {[r['valid'] for r in rs]}")
    for r in rs:
        if not r["valid"]:
            print("   invalid because:", r["invalid_because"])
    for name, key, unit in rows:
        line(name, [r.get(key) for r in rs], unit)
if "limit" in scenarios:
    section("limit", [("transitions only (attempts/s)", "rate_per_s", ""),
                      ("with missing log lines (attempts/s)", "rate_with_logs_per_s", ""),
                      ("mark (s)", "mark_s", ""), ("logs (s)", "logs_s", ""), ("complete (s)", "complete_s", "")])
if "storage" in scenarios:
    section("storage", [("batched (attempts/s)", "batched_rate_per_s", ""),
                        ("per-row (attempts/s)", "per_row_rate_per_s", ""),
                        ("per-op (attempts/s)", "per_op_rate_per_s", ""),
                        ("ratio batched / per-row (within run)", "ratio_batched_per_row", "x"),
                        ("ratio batched / per-op (within run)", "ratio_batched_per_op", "x")])
if "backfill" in scenarios:
    section("backfill", [("attempts completed/s (first connect)", "rate_per_s", ""),
                         ("attempts completed/s (first request)", "rate_from_first_request_per_s", ""),
                         ("time first connect -> all complete (s)", "time_s", ""),
                         ("request mark -> complete p50 (ms)", "request_latency_p50_ms", ""),
                         ("request mark -> complete p99 (ms)", "request_latency_p99_ms", ""),
                         ("welcome -> request p50 (ms)", "welcome_to_request_p50_ms", ""),
                         ("welcome -> request p99 (ms)", "welcome_to_request_p99_ms", ""),
                         ("daemon CPU (% of one core)", "daemon_cpu_percent", "")])
if "storm" in scenarios:
    section("storm", [("first close -> none pending (s)", "storm_s", ""),
                      ("direct UPDATE median (s)", "direct_s", ""),
                      ("ratio storm / direct (within run)", "ratio", "x"),
                      ("time first connect -> all requested (s)", "time_to_pending_s", ""),
                      ("connect time (s)", "connect_time_s", "")])
# Ratios across scenarios (medians of different runs): the end-to-end rate against the limit.
lim, bf = load("limit"), load("backfill")
if lim and bf:
    l = statistics.median([r["rate_with_logs_per_s"] for r in lim if r.get("rate_with_logs_per_s")] or [0])
    b = statistics.median([r["rate_per_s"] for r in bf])
    if l:
        print(f"backfill median rate / limit median rate (with log lines): {b / l:.3f}")
EOF
