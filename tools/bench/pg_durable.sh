# Sourced by measure.sh and measure_backfill.sh for PG=durable: starts a throwaway PostgreSQL 15
# (tests/pg_test_server.sh) with the server's durable defaults — fsync, synchronous_commit and
# full_page_writes on, default shared_buffers of 128MB — sets STORAGE_URL to it and writes its
# settings to $out/postgresql.txt. Needs $src (the source tree) and $out. pg_test_start replaces
# the EXIT trap with pg_test_stop: the caller sets its own trap again afterwards.
# PG_STATS=1 also loads pg_stat_statements (with track_io_timing) for pg_stats_dump below.
pg_durable_start() {
  # shellcheck source=../../tests/pg_test_server.sh
  source "$src/tests/pg_test_server.sh"
  _pg_server_opts() { # one line: pg_ctl hands it to a shell
    local stats=
    if [ "${PG_STATS:-0}" = 1 ]; then
      stats=" -c shared_preload_libraries=pg_stat_statements -c track_io_timing=on -c track_wal_io_timing=on"
      stats+=" -c pg_stat_statements.track=all"
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
CREATE TABLE bench_saved_db AS SELECT xact_commit, blk_read_time, blk_write_time FROM pg_stat_database WITH NO DATA;
CREATE TABLE bench_saved_wal AS SELECT * FROM pg_stat_wal WITH NO DATA;
CREATE FUNCTION bench_stats_reset() RETURNS void LANGUAGE sql SECURITY DEFINER AS \$\$
  SELECT pg_stat_statements_reset(); SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('wal');
  DELETE FROM bench_saved_statements; DELETE FROM bench_saved_db; DELETE FROM bench_saved_wal \$\$;
CREATE FUNCTION bench_stats_save() RETURNS void LANGUAGE sql SECURITY DEFINER AS \$\$
  INSERT INTO bench_saved_statements SELECT * FROM pg_stat_statements;
  INSERT INTO bench_saved_db SELECT xact_commit, blk_read_time, blk_write_time FROM pg_stat_database
    WHERE datname = current_database();
  INSERT INTO bench_saved_wal SELECT * FROM pg_stat_wal \$\$;
GRANT EXECUTE ON FUNCTION bench_stats_reset(), bench_stats_save() TO $PGTEST_USER;
SQL
    export NODECOORD_BENCH_STATS=1 # the daemon scenarios call them around their timed part
  fi
}

# pg_stats_dump FILE: with PG_STATS=1, where the server's time went — commits, WAL syncs and the
# statements by total execution time (pg_stat_statements) — in the part a scenario saved with
# bench_stats_save(), or else since the last dump; then resets everything.
pg_stats_dump() {
  [ "${PG_STATS:-0}" = 1 ] || return 0
  _pg_as "$PG_BIN/psql" -X -h 127.0.0.1 -p "$PGTEST_PORT" -U postgres -d "$PGTEST_DB" -P pager=off >"$1" 2>&1 <<'SQL' || true
SELECT count(*) = 0 AS live FROM bench_saved_db \gset
\if :live
  SELECT bench_stats_save();
\endif
SELECT xact_commit, round(blk_read_time) AS read_ms, round(blk_write_time) AS write_ms FROM bench_saved_db;
SELECT wal_records, wal_bytes, wal_write, wal_sync, round(wal_write_time) AS write_ms,
       round(wal_sync_time) AS sync_ms FROM bench_saved_wal;
SELECT round(sum(total_exec_time)) AS all_statements_ms, sum(calls) AS calls FROM bench_saved_statements
  WHERE toplevel;
SELECT calls, rows, round(total_exec_time) AS total_ms, round(mean_exec_time::numeric, 3) AS mean_ms, toplevel,
       left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query
  FROM bench_saved_statements ORDER BY total_exec_time DESC LIMIT 25;
SELECT bench_stats_reset();
SQL
}
