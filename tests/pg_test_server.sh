#!/usr/bin/env bash
# Throwaway PostgreSQL 15 server for tests: loopback only, free port, temp dir.
# Adapted from the project's reference script (shared/reference/pg_test_server.sh); same
# behaviour, plus the NODECOORD_TEST_PG_* variables below, and synchronous_commit is left
# on (see _pg_server_opts).
# Usage (source it):   source tests/pg_test_server.sh; pg_test_start; ...; pg_test_stop
# After pg_test_start:  PGTEST_PORT, PGTEST_DIR, PGTEST_CONN (libpq/SOCI string),
#                       PGTEST_URI exported.  pg_test_stop is also installed as EXIT trap.
#   and for nodecoord's tests:
#     NODECOORD_TEST_PG_URL    postgresql://apptest:apptest@127.0.0.1:$PORT/apptest
#     NODECOORD_TEST_PG_DIR    the server's data directory ($PGTEST_DIR/data)
#     NODECOORD_TEST_PG_STOP   shell command (for `sh -c`): stop the server at once
#                              (pg_ctl -m immediate stop; waits until it is gone)
#     NODECOORD_TEST_PG_START  shell command (for `sh -c`): start it again, same port and
#                              options (waits until it accepts connections)
#   The two commands are for a test that restarts PostgreSQL in the middle of its work;
#   run them as the same user that ran pg_test_start (root: they use runuser themselves).
#   A test that needs PostgreSQL reads NODECOORD_TEST_PG_URL and fails if it is unset.
# Works as root (runs server as the 'postgres' OS user via runuser) or as a
# normal user (runs as that user).  Needs Debian package postgresql-15
# (apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGTEST_DB=${PGTEST_DB:-apptest}
PGTEST_USER=${PGTEST_USER:-apptest}
PGTEST_PASSWORD=${PGTEST_PASSWORD:-apptest}

_pg_as() {  # run a command as the server's OS user, from a dir it can read
  if [ "$(id -u)" = 0 ]; then
    (cd "$PGTEST_DIR" && runuser -u postgres -- "$@")
  else
    (cd "$PGTEST_DIR" && "$@")
  fi
}

_pg_quote() {  # one word, single-quoted for sh
  printf "'%s'" "${1//\'/\'\\\'\'}"
}

_pg_cmd() {  # _pg_as as a command string for `sh -c`
  local s w
  s="cd $(_pg_quote "$PGTEST_DIR") &&"
  [ "$(id -u)" = 0 ] && s="$s runuser -u postgres --"
  for w in "$@"; do s="$s $(_pg_quote "$w")"; done
  printf '%s' "$s"
}

_pg_free_port() {  # random port in 20000-59999 with nothing listening on it
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    # no `ss` (iproute2)? just try it: pg_test_start retries on a busy port
    if ! command -v ss >/dev/null || ! ss -Htln "sport = :$p" | grep -q .; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# The server options for port $1. Unlike the reference script, synchronous_commit stays
# on: with it off, a commit that was acknowledged shortly before `pg_ctl -m immediate stop`
# (NODECOORD_TEST_PG_STOP) is lost (measured: 20 of 20), and a test that restarts
# PostgreSQL must be able to rely on acknowledged commits. With fsync=off a commit is only
# a write() into the page cache, so this costs next to nothing; fsync=off and
# full_page_writes=off lose data only if the OS crashes.
_pg_server_opts() {
  echo "-c listen_addresses=127.0.0.1 -p $1 -k $PGTEST_DIR \
-c fsync=off -c full_page_writes=off \
-c max_connections=50 -c shared_buffers=32MB"
}

pg_test_start() {
  [ -x "$PG_BIN/initdb" ] || { echo "pg_test: $PG_BIN/initdb missing (apt-get install postgresql-15)" >&2; return 1; }
  PGTEST_DIR=$(mktemp -d /tmp/pgtest.XXXXXX) || return 1
  trap pg_test_stop EXIT   # NB: replaces any EXIT trap the caller had
  chmod 755 "$PGTEST_DIR"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGTEST_DIR"
  # -A trust: local test server, loopback only; --no-sync: faster, data is throwaway
  _pg_as "$PG_BIN/initdb" -D "$PGTEST_DIR/data" -U postgres -A trust \
      -E UTF8 --locale=C.UTF-8 --no-sync >"$PGTEST_DIR/initdb.log" 2>&1 \
    || { cat "$PGTEST_DIR/initdb.log" >&2; pg_test_stop; return 1; }
  for _ in 1 2 3 4 5; do  # a busy port: try another one
    PGTEST_PORT=$(_pg_free_port) || { pg_test_stop; return 1; }
    # -k: own socket dir (no dependence on /var/run/postgresql)
    if _pg_as "$PG_BIN/pg_ctl" -D "$PGTEST_DIR/data" -l "$PGTEST_DIR/server.log" \
         -w -t 60 -o "$(_pg_server_opts "$PGTEST_PORT")" start >/dev/null; then
      break
    fi
    PGTEST_PORT=
  done
  [ -n "$PGTEST_PORT" ] || { echo "pg_test: server did not start" >&2; tail -20 "$PGTEST_DIR/server.log" >&2; pg_test_stop; return 1; }
  _pg_as "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGTEST_PORT" -U postgres -d postgres \
    -c "CREATE ROLE $PGTEST_USER LOGIN PASSWORD '$PGTEST_PASSWORD'" \
    -c "CREATE DATABASE $PGTEST_DB OWNER $PGTEST_USER" || { pg_test_stop; return 1; }
  PGTEST_CONN="host=127.0.0.1 port=$PGTEST_PORT dbname=$PGTEST_DB user=$PGTEST_USER password=$PGTEST_PASSWORD connect_timeout=5"
  PGTEST_URI="postgresql://$PGTEST_USER:$PGTEST_PASSWORD@127.0.0.1:$PGTEST_PORT/$PGTEST_DB"
  export PGTEST_DIR PGTEST_PORT PGTEST_CONN PGTEST_URI

  NODECOORD_TEST_PG_URL=$PGTEST_URI
  NODECOORD_TEST_PG_DIR=$PGTEST_DIR/data
  NODECOORD_TEST_PG_STOP="$(_pg_cmd "$PG_BIN/pg_ctl" -D "$PGTEST_DIR/data" -m immediate -w stop) >/dev/null"
  NODECOORD_TEST_PG_START="$(_pg_cmd "$PG_BIN/pg_ctl" -D "$PGTEST_DIR/data" -l "$PGTEST_DIR/server.log" \
    -w -t 60 -o "$(_pg_server_opts "$PGTEST_PORT")" start) >/dev/null"
  export NODECOORD_TEST_PG_URL NODECOORD_TEST_PG_DIR NODECOORD_TEST_PG_STOP NODECOORD_TEST_PG_START
}

pg_test_stop() {
  [ -n "${PGTEST_DIR:-}" ] && [ -d "$PGTEST_DIR" ] || return 0
  _pg_as "$PG_BIN/pg_ctl" -D "$PGTEST_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$PGTEST_DIR"
  PGTEST_DIR=
  unset NODECOORD_TEST_PG_URL NODECOORD_TEST_PG_DIR NODECOORD_TEST_PG_STOP NODECOORD_TEST_PG_START
}
