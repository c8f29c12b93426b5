#!/usr/bin/env bash
# Does a bundle export (or import) stall the sessions' writes? (issue 19): a database with
# SEED_NODES x SEED_ATTEMPTS x SEED_LOGS log lines (seeded by `nodecoord-bench limit --keep`), then
# NODES sessions each sending 10 lines before every heartbeat (`steady --lines 10`, DURATION) while
# bundle exports run back to back (EXPORTS=1) or not (EXPORTS=0). MODE=import instead imports
# IMPORTS fresh bundles of IMPORT_NODES x IMPORT_ATTEMPTS x IMPORT_LINES lines back to back
# (tools/bench/make_bundle.py, written to /dev/shm before the window). The ack latency of a
# heartbeat is the commit latency of the lines before it.
#
#   tools/bench/measure_export.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): NODES [1000] DURATION [60s] EXPORTS [1] SEED_NODES [1000]
#   SEED_ATTEMPTS [10] SEED_LOGS [100] (SEED_NODES x SEED_ATTEMPTS x SEED_LOGS lines) PG [unset |
#   durable] BUNDLE_OUT [/dev/null: where curl writes each bundle; a file on the database's disk
#   adds the bench's own 200+ MB per export to the fsyncs it measures] MODE [export | import]
#   IMPORTS [20] IMPORT_NODES [100] IMPORT_ATTEMPTS [10] IMPORT_LINES [100]
set -euo pipefail
build=$(cd "${1:?usage: measure_export.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_export.sh BUILD_DIR OUT_DIR}
nodes=${NODES:-1000}
duration=${DURATION:-60s}
mkdir -p "$out/state"
out=$(cd "$out" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
bench=$build/nodecoord-bench

# shellcheck source=SCRIPTDIR/daemon.sh
source "$src/tools/bench/daemon.sh"
nc_bench_backend
nc_write_config "$out/nodecoord.toml"

"$bench" --config "$out/nodecoord.toml" --state-dir "$out/state" limit --nodes "${SEED_NODES:-1000}" \
  --attempts "${SEED_ATTEMPTS:-10}" --logs "${SEED_LOGS:-100}" --missing 0 --keep >"$out/seed.txt"
"$bench" --config "$out/nodecoord.toml" --state-dir "$out/state" provision --nodes "$nodes" >"$out/provision.txt"
nc_start_daemon "$build/nodecoordd" "$out/nodecoord.toml" "$out/state" "$out/daemon.log"
daemon_pid=$nc_daemon_pid
admin=$(nc_admin_address "$out/daemon.log")
"$bench" --json steady --coordinator "127.0.0.1:$nc_port" --keys "$out/state/bench-keys.tsv" --nodes "$nodes" \
  --lines 10 --duration "$duration" --warmup 5s --pid "$daemon_pid" >"$out/steady.json" &
steady=$!
: >"$out/exports.txt"
if [ "${MODE:-export}" = import ]; then
  bundles=$(mktemp -d /dev/shm/nc-import.XXXXXX)
  trap 'rm -rf "$bundles"; nc_bench_cleanup' EXIT
  for i in $(seq 1 "${IMPORTS:-20}"); do
    python3 "$src/tools/bench/make_bundle.py" "$bundles/$i.ndjson" "imported-$i" "${IMPORT_NODES:-100}" \
      "${IMPORT_ATTEMPTS:-10}" "${IMPORT_LINES:-100}"
  done
  sleep 8
  for i in $(seq 1 "${IMPORTS:-20}"); do
    kill -0 "$steady" 2>/dev/null || break
    curl -s -o "$out/import-$i.json" -w '%{http_code} %{time_total} %{size_upload}\n' -X POST \
      -H 'Content-Type: application/x-ndjson' --data-binary "@$bundles/$i.ndjson" "http://$admin/api/bundle" \
      >>"$out/exports.txt" || true
    rm -f "$bundles/$i.ndjson"
  done
elif [ "${EXPORTS:-1}" = 1 ]; then
  sleep 8 # the sessions connect and the window begins
  while kill -0 "$steady" 2>/dev/null; do
    curl -s -o "${BUNDLE_OUT:-/dev/null}" -w '%{http_code} %{time_total} %{size_download}\n' "http://$admin/api/bundle" \
      >>"$out/exports.txt" || true
  done
fi
rc=0
wait "$steady" || rc=$?
echo "steady exit $rc; ${MODE:-export}s (code seconds bytes):"
cat "$out/exports.txt"
python3 -c '
import json,sys
r=json.load(open(sys.argv[1]))
for k in ("sessions_authenticated","lost_acks","ack_latency_p50_ms","ack_latency_p99_ms","ack_latency_max_ms","daemon_cpu_percent","valid"):
    print(f"{k:26} {r.get(k)}")' "$out/steady.json"
