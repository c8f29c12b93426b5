#!/usr/bin/env bash
# The measurements of BENCHMARKS.md: RUNS times (fresh daemon each time) `connect`, `steady` and
# `reconnect-storm` with NODES sessions, each result saved as JSON, then a summary (median,
# min-max).
#
#   tools/bench/measure.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): RUNS [3], NODES [10000], INTERVAL [10s], DURATION [60s],
# MAX_CONNECTIONS [12000], STORAGE_URL [sqlite://nodecoord.db in OUT_DIR/state; a PostgreSQL
# URL works too], EXTRA_CONFIG [extra TOML lines for the [server] table], RECONNECT [1: run
# reconnect-storm after steady; 0: skip it], LINES [0: steady sessions only heartbeat; N: each
# sends a logs frame of N lines before each heartbeat, so its ack waits for their commit].
# PG=durable starts a throwaway PostgreSQL 15 at its durable defaults for the run, as
# measure_backfill.sh does, and uses it (overrides STORAGE_URL).
# TLS=1: the node port speaks TLS ([server.tls], a P-256 certificate made by
# tests/support/make_certs.sh in OUT_DIR/certs; TLS 1.3 is negotiated) and every bench session
# uses --tls; NO_RESUME=1 adds --no-resume (a full handshake on every connection).
# The daemon's stderr goes to OUT_DIR/daemon-N.log; its warnings and errors are counted.
set -euo pipefail
build=$(cd "${1:?usage: measure.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure.sh BUILD_DIR OUT_DIR}
runs=${RUNS:-3}
nodes=${NODES:-10000}
interval=${INTERVAL:-10s}
duration=${DURATION:-60s}
max_conn=${MAX_CONNECTIONS:-12000}
reconnect=${RECONNECT:-1}
mkdir -p "$out/state"
out=$(cd "$out" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=SCRIPTDIR/daemon.sh
source "$src/tools/bench/daemon.sh"
bench=$build/nodecoord-bench
daemon_bin=$build/nodecoordd

nc_bench_backend

tls_args=()
if [ "${TLS:-0}" = 1 ]; then
  [ -f "$out/certs/server.crt" ] || bash "$src/tests/support/make_certs.sh" "$out/certs" >/dev/null
  tls_args=(--tls --ca-file "$out/certs/ca.crt")
  [ "${NO_RESUME:-0}" = 1 ] && tls_args+=(--no-resume)
fi

server_lines="max_connections = $max_conn"
if [ -n "${EXTRA_CONFIG:-}" ]; then server_lines+=$'\n'$EXTRA_CONFIG; fi
tls_section=
if [ "${TLS:-0}" = 1 ]; then tls_section=$(nc_tls_section "$out/certs"); fi
nc_write_config "$out/nodecoord.toml" "$server_lines" "$tls_section"

"$bench" --config "$out/nodecoord.toml" --state-dir "$out/state" provision --nodes "$nodes" | tee "$out/provision.txt"

{
  echo "date: $(date -u +%FT%TZ)"
  echo "nproc: $(nproc)"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "kernel: $(uname -r)"
  echo "shell nofile soft/hard: $(ulimit -Sn)/$(ulimit -Hn)"
  echo "ip_local_port_range: $(cat /proc/sys/net/ipv4/ip_local_port_range)"
  echo "somaxconn: $(cat /proc/sys/net/core/somaxconn)"
} >"$out/machine.txt"

for i in $(seq 1 "$runs"); do
  log=$out/daemon-$i.log
  rc=0
  nc_start_daemon "$daemon_bin" "$out/nodecoord.toml" "$out/state" "$log" || rc=$?
  daemon_pid=$nc_daemon_pid
  [ "$rc" = 0 ] || exit 1
  port=$nc_port
  echo "run $i: daemon pid $daemon_pid port $port"
  rc=0
  "$bench" --json connect --coordinator "127.0.0.1:$port" --keys "$out/state/bench-keys.tsv" --nodes "$nodes" \
    --pid "$daemon_pid" "${tls_args[@]}" >"$out/connect-$i.json" || rc=$?
  echo "run $i: connect exit $rc"
  rc=0
  "$bench" --json steady --coordinator "127.0.0.1:$port" --keys "$out/state/bench-keys.tsv" --nodes "$nodes" \
    --interval "$interval" --duration "$duration" --lines "${LINES:-0}" --pid "$daemon_pid" "${tls_args[@]}" \
    >"$out/steady-$i.json" || rc=$?
  echo "run $i: steady exit $rc"
  if [ "$reconnect" = 1 ]; then
    rc=0
    "$bench" --json reconnect-storm --coordinator "127.0.0.1:$port" --keys "$out/state/bench-keys.tsv" \
      --nodes "$nodes" --pid "$daemon_pid" "${tls_args[@]}" >"$out/reconnect-$i.json" || rc=$?
    echo "run $i: reconnect-storm exit $rc"
  fi
  kill -TERM "$daemon_pid"
  code=0
  wait "$daemon_pid" || code=$?
  daemon_pid=
  echo "run $i: daemon exit $code; log levels: $(awk '{print $2}' "$log" | sort | uniq -c | tr '\n' ' ')"
done

python3 - "$out" "$runs" <<'EOF'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def load(kind):
    return [json.load(open(f"{out}/{kind}-{i}.json")) for i in range(1, runs + 1)]
def line(name, values, unit=""):
    values = [v for v in values if v is not None]
    if not values:
        return
    print(f"  {name:34} median {statistics.median(values):10.2f}  min {min(values):10.2f}  max {max(values):10.2f} {unit}")
c, s = load("connect"), load("steady")
print("connect:")
print("  valid:", [r["valid"] for r in c])
line("rate (sessions/s)", [r["rate_per_s"] for r in c])
line("time (s)", [r["time_s"] for r in c])
line("hello->welcome p50 (ms)", [r["welcome_latency_p50_ms"] for r in c])
line("hello->welcome p99 (ms)", [r["welcome_latency_p99_ms"] for r in c])
line("RSS per session (KiB)", [r.get("rss_per_session_kib") for r in c])
line("TLS sessions resumed", [r.get("tls_resumed") for r in c])
line("RSS before (KiB)", [r.get("daemon_rss_before_kib") for r in c])
line("RSS with sessions (KiB)", [r.get("daemon_rss_after_kib") for r in c])
print("steady:")
print("  valid:", [r["valid"] for r in s])
line("daemon CPU (% of one core)", [r.get("daemon_cpu_percent") for r in s])
line("ack p50 (ms)", [r["ack_latency_p50_ms"] for r in s])
line("ack p99 (ms)", [r["ack_latency_p99_ms"] for r in s])
line("ack max (ms)", [r["ack_latency_max_ms"] for r in s])
line("lost acks", [r["lost_acks"] for r in s])
line("heartbeats/s", [r["heartbeats_per_s"] for r in s])
line("bench CPU (% of one core)", [r["bench_cpu_percent"] for r in s])
line("RSS at end (KiB)", [r.get("daemon_rss_after_kib") for r in s])
import os
if os.path.exists(f"{out}/reconnect-1.json"):
    rs = load("reconnect")
    print("reconnect-storm:")
    print("  valid:", [r["valid"] for r in rs])
    line("time drop -> last welcome (s)", [r["time_s"] for r in rs])
    line("rate (sessions/s)", [r["rate_per_s"] for r in rs])
    line("hello->welcome p50 (ms)", [r["welcome_latency_p50_ms"] for r in rs])
    line("hello->welcome p99 (ms)", [r["welcome_latency_p99_ms"] for r in rs])
    line("daemon CPU in storm (s)", [r.get("daemon_cpu_s") for r in rs])
    line("TLS sessions resumed", [r.get("tls_resumed") for r in rs])
    line("RSS after (KiB)", [r.get("daemon_rss_after_kib") for r in rs])
EOF
