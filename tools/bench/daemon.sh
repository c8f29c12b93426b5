# shellcheck shell=bash
# Sourced by the bench scripts (measure*.sh) and tests/bench_smoke.sh: one way to start a
# nodecoordd in the background and learn its node port.
#
#   nc_start_daemon BIN CONFIG STATE_DIR LOG
#
# Starts BIN with CONFIG and --state-dir STATE_DIR, stderr to LOG, without the environment that
# would change its behaviour (sd_notify, socket activation, $STATE_DIRECTORY). Sets nc_daemon_pid,
# and nc_port from its "listening for nodes address=127.0.0.1:PORT" line (a bounded wait, no
# fixed sleep). Returns 1, with the log's tail on stderr, if the daemon exits or does not listen
# within 30 s (nc_daemon_pid is set either way: the caller's cleanup stops it).
nc_start_daemon() {
  local bin=$1 config=$2 state=$3 log=$4
  : >"$log" # exists before the daemon starts: the port is read from it at once
  env -u NOTIFY_SOCKET -u WATCHDOG_USEC -u WATCHDOG_PID -u STATE_DIRECTORY -u LISTEN_FDS -u LISTEN_PID \
    "$bin" --config "$config" --state-dir "$state" 2>"$log" </dev/null &
  nc_daemon_pid=$!
  nc_port=
  for _ in $(seq 1 300); do
    nc_port=$(sed -n 's/.*listening for nodes address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$nc_port" ] && return 0
    kill -0 "$nc_daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "nodecoordd did not start listening (config $config); the end of $log:" >&2
  tail -n 20 "$log" >&2
  return 1
}

# nc_write_config FILE [SERVER_LINES] [SECTIONS]: the bench daemons' configuration: node and admin
# ports chosen by the kernel, SERVER_LINES (e.g. max_connections) under [server], SECTIONS (whole
# tables, e.g. from nc_tls_section) before [admin], and [storage] url = $STORAGE_URL if that is
# set (else the SQLite default).
nc_write_config() {
  local file=$1 server_lines=${2:-} sections=${3:-}
  {
    echo '[server]'
    echo 'listen = "127.0.0.1:0"'
    if [ -n "$server_lines" ]; then echo "$server_lines"; fi
    echo
    if [ -n "$sections" ]; then
      echo "$sections"
      echo
    fi
    echo '[admin]'
    echo 'listen = "127.0.0.1:0"'
    if [ -n "${STORAGE_URL:-}" ]; then
      echo
      echo '[storage]'
      echo "url = \"$STORAGE_URL\""
    fi
  } >"$file"
}

# nc_tls_section CERT_DIR: the [server.tls] table for the certificates of make_certs.sh in CERT_DIR.
nc_tls_section() {
  echo '[server.tls]'
  echo "cert_file = \"$1/server.crt\""
  echo "key_file = \"$1/server.key\""
}

# nc_admin_address LOG: waits (bounded) for the daemon's "admin listening" line and prints its
# HOST:PORT; prints nothing if it does not come within 10 s.
nc_admin_address() {
  local address=
  for _ in $(seq 1 100); do
    address=$(sed -n 's/.*admin listening address=\([0-9.:]*\).*/\1/p' "$1" | head -n 1)
    [ -n "$address" ] && break
    sleep 0.1
  done
  echo "$address"
}

nc_bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# nc_bench_backend: sets the EXIT trap that stops the daemon in $daemon_pid; with PG=durable it
# first starts a throwaway PostgreSQL at its durable defaults (STORAGE_URL points at it, and the
# trap stops it too). Without PG, the daemons use the SQLite default.
nc_bench_backend() {
  daemon_pid=
  nc_pg_started=
  if [ "${PG:-}" = durable ]; then
    # shellcheck source=SCRIPTDIR/pg_durable.sh
    source "$nc_bench_dir/pg_durable.sh"
    pg_durable_start
    nc_pg_started=1
  fi
  trap nc_bench_cleanup EXIT # after pg_durable_start, which sets a trap of its own
}

# nc_stop_bench_daemon: stops the daemon in $daemon_pid, if it runs, and clears daemon_pid.
nc_stop_bench_daemon() {
  if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  daemon_pid=
}

nc_bench_cleanup() {
  nc_stop_bench_daemon
  if [ -n "${nc_pg_started:-}" ]; then
    pg_test_stop
  fi
}
