# shellcheck shell=bash
# Sourced by nc_bench_backend (daemon.sh) for PG=durable: starts a throwaway PostgreSQL 15
# (tests/pg_test_server.sh) with the server's durable defaults — fsync, synchronous_commit and
# full_page_writes on, default shared_buffers of 128MB — sets STORAGE_URL to it and writes its
# settings to $out/postgresql.txt. Needs $src (the source tree) and $out. pg_test_start replaces
# the EXIT trap with pg_test_stop: the caller sets its own trap again afterwards.
# PG_STATS=1 also loads pg_stat_statements for pg_stats_dump below.
pg_durable_start() {
  # shellcheck source=SCRIPTDIR/../../tests/pg_test_server.sh
  source "$src/tests/pg_test_server.sh"
  _pg_server_opts() { # one line: pg_ctl hands it to a shell
    local stats=
    if [ "${PG_STATS:-0}" = 1 ]; then
      stats=" -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
    fi
    echo "-c listen_addresses=127.0.0.1 -p $1 -k $PGTEST_DIR -c max_connections=50 -c shared_buffers=128MB$stats"
  }
  pg_test_start
  STORAGE_URL=$PGTEST_URI
  "$PG_BIN/psql" "$PGTEST_URI" -X -A -t -c "SELECT version()" \
    -c "SELECT name || ' = ' || setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit',
        'full_page_writes', 'wal_sync_method', 'shared_buffers', 'commit_delay', 'wal_level')
        ORDER BY name" >"$out/postgresql.txt"
  cat "$out/postgresql.txt"
  if [ "${PG_STATS:-0}" = 1 ]; then
    # bench_stats_reset() and bench_stats_save(), callable by the bench's user: the scenarios
    # reset before their timed part and save right after it, so the dump covers that part only.
    _pg_as "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGTEST_PORT" -U postgres -d "$PGTEST_DB" <<SQL
CREATE EXTENSION pg_stat_statements;
CREATE TABLE bench_saved_statements AS SELECT * FROM pg_stat_statements WITH NO DATA;
CREATE FUNCTION bench_stats_reset() RETURNS void LANGUAGE sql SECURITY DEFINER AS \$\$
  SELECT pg_stat_statements_reset(); DELETE FROM bench_saved_statements \$\$;
CREATE FUNCTION bench_stats_save() RETURNS void LANGUAGE sql SECURITY DEFINER AS \$\$
  INSERT INTO bench_saved_statements SELECT * FROM pg_stat_statements \$\$;
GRANT EXECUTE ON FUNCTION bench_stats_reset(), bench_stats_save() TO $PGTEST_USER;
SQL
    export NODECOORD_BENCH_STATS=1 # the daemon scenarios call them around their timed part
  fi
}

# pg_stats_dump FILE: with PG_STATS=1, where the server's time went: the statements by total
# execution time (pg_stat_statements, updated as each statement ends), in the part a scenario
# saved with bench_stats_save(), or else since the last dump; then resets them. Not commits or WAL
# syncs: backends flush those statistics at most once a second, too late for a part of seconds.
pg_stats_dump() {
  [ "${PG_STATS:-0}" = 1 ] || return 0
  _pg_as "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PGTEST_PORT" -U postgres -d "$PGTEST_DB" -P pager=off >"$1" 2>&1 <<'SQL' || true
SELECT count(*) = 0 AS live FROM bench_saved_statements \gset
\if :live
  SELECT bench_stats_save();
\endif
SELECT round(sum(total_exec_time)) AS all_statements_ms, sum(calls) AS calls FROM bench_saved_statements
  WHERE toplevel;
SELECT calls, rows, round(total_exec_time) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms, toplevel,
       left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query
  FROM bench_saved_statements ORDER BY total_exec_time DESC LIMIT 25;
SELECT bench_stats_reset();
SQL
}
