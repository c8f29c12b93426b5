#!/usr/bin/env bash
# nodecoord-bench against the real nodecoordd, small: provision 10 nodes, `connect --nodes 10`,
# `steady --nodes 10 --interval 200ms --duration 2s`, `reconnect-storm --nodes 10`, `admin --nodes 10`, then the backfill scenarios of issue 4 with a
# few nodes and attempts (`limit` and `storage` straight against the SQLite database, `backfill` and
# `disconnect-storm` against the daemon). Checks that each run is valid (exit 0) and prints its
# table, that every attempt ended where the scenario says (complete; partial after the storm, none
# pending), and that the daemon stops cleanly on SIGTERM; then, on a second daemon whose node port
# requires TLS, connect / steady / backfill with --tls (resumed and full handshakes) and the runs
# that must be invalid (plain TCP, another CA). No timing assertions.
# Args: BUILD_DIR (holds nodecoordd and nodecoord-bench).
set -euo pipefail
build=${1:?usage: bench_smoke.sh BUILD_DIR}
daemon_bin=$build/nodecoordd
bench_bin=$build/nodecoord-bench
for b in "$daemon_bin" "$bench_bin"; do
  [ -x "$b" ] || { echo "bench_smoke: $b is missing (build it first)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/nodecoord-bench-smoke.XXXXXX)
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "bench_smoke: FAIL: $*" >&2
  if [ -f "$tmp/daemon.log" ]; then
    echo "--- daemon stderr (last 40 lines) ---" >&2
    tail -n 40 "$tmp/daemon.log" >&2
  fi
  exit 1
}

mkdir -p "$tmp/state"
cat >"$tmp/nodecoord.toml" <<'EOF'
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
EOF

# shellcheck source=SCRIPTDIR/../tools/bench/daemon.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tools/bench/daemon.sh"

# start_daemon CONFIG: starts nodecoordd on CONFIG (state in $tmp/state), sets daemon_pid and port.
start_daemon() {
  local rc=0
  nc_start_daemon "$daemon_bin" "$1" "$tmp/state" "$tmp/daemon.log" || rc=$?
  daemon_pid=$nc_daemon_pid
  [ "$rc" = 0 ] || fail "the daemon did not start listening"
  port=$nc_port
}

# stop_daemon: SIGTERM; fails unless the daemon exits 0 within 30 s.
stop_daemon() {
  kill -TERM "$daemon_pid"
  for _ in $(seq 1 300); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$daemon_pid" 2>/dev/null && fail "the daemon did not exit within 30 s of SIGTERM"
  local code=0
  wait "$daemon_pid" || code=$?
  daemon_pid=
  [ "$code" -eq 0 ] || fail "the daemon exited $code after SIGTERM"
}

start_daemon "$tmp/nodecoord.toml"
echo "bench_smoke: daemon pid $daemon_pid listening on 127.0.0.1:$port"

# expect_row FILE REGEX: the table in FILE has a row matching REGEX.
expect_row() {
  grep -Eq "$2" "$1" || { cat "$1" >&2; fail "$(basename "$1"): no row matching /$2/"; }
}

"$bench_bin" --config "$tmp/nodecoord.toml" --state-dir "$tmp/state" provision --nodes 10 >"$tmp/provision.out" \
  || { cat "$tmp/provision.out" >&2; fail "provision exited non-zero"; }
cat "$tmp/provision.out"
keys=$tmp/state/bench-keys.tsv
[ "$(wc -l <"$keys")" -eq 10 ] || fail "$keys does not hold 10 keys"
expect_row "$tmp/provision.out" '^created +10$'
# Idempotent: a second run re-keys the same nodes and the new file is what counts.
"$bench_bin" --config "$tmp/nodecoord.toml" --state-dir "$tmp/state" provision --nodes 10 >"$tmp/provision2.out" \
  || { cat "$tmp/provision2.out" >&2; fail "second provision exited non-zero"; }
expect_row "$tmp/provision2.out" '^re-keyed \(already existed\) +10$'

rc=0
"$bench_bin" connect --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --pid "$daemon_pid" \
  >"$tmp/connect.out" || rc=$?
cat "$tmp/connect.out"
[ "$rc" -eq 0 ] || fail "connect exited $rc"
expect_row "$tmp/connect.out" '^sessions authenticated +10$'
expect_row "$tmp/connect.out" '^connect\+auth rate +[0-9]+ sessions/s$'
expect_row "$tmp/connect.out" '^latency hello->welcome p99 +[0-9.]+ ms$'
expect_row "$tmp/connect.out" '^RSS per session +-?[0-9.]+ KiB$'
expect_row "$tmp/connect.out" '^result +ok$'

rc=0
"$bench_bin" steady --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --interval 200ms --duration 2s \
  --pid "$daemon_pid" >"$tmp/steady.out" || rc=$?
cat "$tmp/steady.out"
[ "$rc" -eq 0 ] || fail "steady exited $rc"
expect_row "$tmp/steady.out" '^sessions authenticated +10$'
expect_row "$tmp/steady.out" '^ack latency p99 +[0-9.]+ ms$'
expect_row "$tmp/steady.out" '^lost acks \(none within ack timeout\) +0$'
expect_row "$tmp/steady.out" '^daemon CPU \(window\) +[0-9.]+ % of one core$'
expect_row "$tmp/steady.out" '^result +ok$'

# All 10 drop at once and reconnect at once; all welcomed again and served.
rc=0
"$bench_bin" reconnect-storm --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --settle 300ms \
  --pid "$daemon_pid" >"$tmp/reconnect.out" || rc=$?
cat "$tmp/reconnect.out"
[ "$rc" -eq 0 ] || fail "reconnect-storm exited $rc"
expect_row "$tmp/reconnect.out" '^sessions before the storm +10$'
expect_row "$tmp/reconnect.out" '^sessions authenticated +10$'
expect_row "$tmp/reconnect.out" '^reconnect rate +[0-9]+ sessions/s$'
expect_row "$tmp/reconnect.out" '^latency hello->welcome p99 +[0-9.]+ ms$'
expect_row "$tmp/reconnect.out" '^acks after the storm +[1-9][0-9]*$'
expect_row "$tmp/reconnect.out" '^result +ok$'

# The admin API polled while the 10 heartbeat: every read endpoint answers, latencies reported.
admin_port=$(sed -n 's/.*admin listening address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/daemon.log" | head -n 1)
[ -n "$admin_port" ] || fail "no 'admin listening' line"
rc=0
"$bench_bin" admin --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --admin "http://127.0.0.1:$admin_port" \
  --requests 5 --pid "$daemon_pid" >"$tmp/admin.out" || rc=$?
cat "$tmp/admin.out"
[ "$rc" -eq 0 ] || fail "admin exited $rc"
expect_row "$tmp/admin.out" '^GET /api/overview p99 +[0-9.]+ ms$'
expect_row "$tmp/admin.out" '^GET /metrics samples +5$'
expect_row "$tmp/admin.out" '^GET /api/jobs\?limit=20 samples +5$'
expect_row "$tmp/admin.out" '^result +ok$'

# --json gives one object with the same verdict.
rc=0
"$bench_bin" --json steady --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --interval 200ms \
  --duration 1s >"$tmp/steady.json" || rc=$?
[ "$rc" -eq 0 ] || { cat "$tmp/steady.json" >&2; fail "steady --json exited $rc"; }
grep -q '"valid": true' "$tmp/steady.json" || { cat "$tmp/steady.json" >&2; fail "steady --json: not valid"; }

# --- backfill scenarios (issue 4) ---

# run_scenario NAME ARGS...: runs nodecoord-bench, prints its table, fails unless it exited 0.
run_scenario() {
  local name=$1
  shift
  local rc=0
  "$bench_bin" --config "$tmp/nodecoord.toml" --state-dir "$tmp/state" "$@" >"$tmp/$name.out" || rc=$?
  cat "$tmp/$name.out"
  [ "$rc" -eq 0 ] || fail "$name exited $rc"
  expect_row "$tmp/$name.out" '^result +ok$'
}

# The database's own rate: 5 nodes x 3 attempts, every one complete.
run_scenario limit limit --nodes 5 --attempts 3 --logs 2 --missing 2
expect_row "$tmp/limit.out" '^attempts completed +15$'
expect_row "$tmp/limit.out" '^jobs finished +5$'
expect_row "$tmp/limit.out" '^transitions only: attempts completed/s +[0-9]+ attempts/s$'

# Storage operations batched against per-row and per-op, one run.
run_scenario storage storage --nodes 5 --attempts 3 --slow-nodes 2 --modes batched,per-row,per-op
expect_row "$tmp/storage.out" '^batched: attempts +15$'
expect_row "$tmp/storage.out" '^per-row: attempts +6$'
expect_row "$tmp/storage.out" '^batched / per-row +[0-9.]+ x$'

# Reconnect with partial attempts, answer every request: all 30 attempts complete, logs_after as
# phase 1 left them.
run_scenario backfill backfill --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --attempts 3 \
  --logs 6 --sent-logs 3 --timeout 30s --pid "$daemon_pid"
expect_row "$tmp/backfill.out" '^attempts by sync_state at end +complete 30$'
expect_row "$tmp/backfill.out" '^attempts requested +30$'
expect_row "$tmp/backfill.out" '^logs_after other than expected +0$'
expect_row "$tmp/backfill.out" '^log lines resent +90$'

# Pending requests, all sockets dropped: every attempt back to partial, jobs cancelled.
run_scenario storm disconnect-storm --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --attempts 3 \
  --timeout 30s --direct-repeats 1
expect_row "$tmp/storm.out" '^attempts by sync_state after the storm +partial 30$'
expect_row "$tmp/storm.out" '^jobs cancelled +10$'
expect_row "$tmp/storm.out" '^first close -> no row pending_backfill +[0-9.]+ s$'
expect_row "$tmp/storm.out" '^storm / direct UPDATE +[0-9.]+ x$'

# A wrong key is an invalid run (exit 1), not a crash.
sed '1s/\t.*/\tnck_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000/' "$keys" \
  >"$tmp/bad-keys.tsv"
rc=0
"$bench_bin" connect --coordinator "127.0.0.1:$port" --keys "$tmp/bad-keys.tsv" --nodes 1 >"$tmp/bad.out" || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/bad.out" >&2; fail "connect with a wrong key exited $rc, expected 1"; }
expect_row "$tmp/bad.out" '^result +INVALID'

stop_daemon

# --- TLS (issue 17): the same nodes over a node port that requires TLS ---
bash "$(dirname "$0")/support/make_certs.sh" "$tmp/certs" >/dev/null || fail "make_certs.sh failed"
cat >"$tmp/nodecoord-tls.toml" <<EOF
[server]
listen = "127.0.0.1:0"

[server.tls]
cert_file = "$tmp/certs/server.crt"
key_file = "$tmp/certs/server.key"

[admin]
listen = "127.0.0.1:0"
EOF
start_daemon "$tmp/nodecoord-tls.toml"
tls=(--tls --ca-file "$tmp/certs/ca.crt")
# One connection at a time: the first is a full handshake, the other nine resume its session.
rc=0
"$bench_bin" connect --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --concurrency 1 --pid "$daemon_pid" \
  "${tls[@]}" >"$tmp/connect-tls.out" || rc=$?
cat "$tmp/connect-tls.out"
[ "$rc" -eq 0 ] || fail "connect --tls exited $rc"
expect_row "$tmp/connect-tls.out" '^sessions authenticated +10$'
expect_row "$tmp/connect-tls.out" '^TLS sessions +10$'
expect_row "$tmp/connect-tls.out" '^TLS sessions resumed +[1-9]$'
expect_row "$tmp/connect-tls.out" '^result +ok$'
rc=0
"$bench_bin" steady --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --interval 200ms --duration 1s \
  "${tls[@]}" --no-resume >"$tmp/steady-tls.out" || rc=$?
cat "$tmp/steady-tls.out"
[ "$rc" -eq 0 ] || fail "steady --tls --no-resume exited $rc"
expect_row "$tmp/steady-tls.out" '^TLS sessions resumed +0$'
expect_row "$tmp/steady-tls.out" '^lost acks \(none within ack timeout\) +0$'
run_scenario backfill-tls backfill --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 10 --attempts 3 \
  --logs 6 --sent-logs 3 --timeout 30s "${tls[@]}"
expect_row "$tmp/backfill-tls.out" '^attempts by sync_state at end +complete 30$'
expect_row "$tmp/backfill-tls.out" '^log lines resent +90$'
# Plain TCP to a port that requires TLS, and a CA that did not sign the certificate: invalid
# runs (exit 1), never a crash.
rc=0
"$bench_bin" connect --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 1 >"$tmp/plain-to-tls.out" || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/plain-to-tls.out" >&2; fail "plain connect to a TLS port exited $rc, expected 1"; }
rc=0
"$bench_bin" connect --coordinator "127.0.0.1:$port" --keys "$keys" --nodes 1 --tls --ca-file "$tmp/certs/other-ca.crt" \
  >"$tmp/wrong-ca.out" || rc=$?
[ "$rc" -eq 1 ] || { cat "$tmp/wrong-ca.out" >&2; fail "connect --tls with another CA exited $rc, expected 1"; }
expect_row "$tmp/wrong-ca.out" 'tls: certificate verification failed'
stop_daemon
echo "bench_smoke: ok"
