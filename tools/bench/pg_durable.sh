# Sourced by measure.sh and measure_backfill.sh for PG=durable: starts a throwaway PostgreSQL 15
# (tests/pg_test_server.sh) with the server's durable defaults — fsync, synchronous_commit and
# full_page_writes on, default shared_buffers of 128MB — sets STORAGE_URL to it and writes its
# settings to $out/postgresql.txt. Needs $src (the source tree) and $out. pg_test_start replaces
# the EXIT trap with pg_test_stop: the caller sets its own trap again afterwards.
pg_durable_start() {
  # shellcheck source=../../tests/pg_test_server.sh
  source "$src/tests/pg_test_server.sh"
  _pg_server_opts() {
    echo "-c listen_addresses=127.0.0.1 -p $1 -k $PGTEST_DIR -c max_connections=50 -c shared_buffers=128MB"
  }
  pg_test_start
  STORAGE_URL=$PGTEST_URI
  "$PG_BIN/psql" "$PGTEST_URI" -X -A -t -c "SELECT version()" \
    -c "SELECT name || ' = ' || setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit',
        'full_page_writes', 'wal_sync_method', 'shared_buffers', 'commit_delay', 'wal_level')
        ORDER BY name" >"$out/postgresql.txt"
  cat "$out/postgresql.txt"
}
