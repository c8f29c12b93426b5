#!/usr/bin/env bash
# The bulk-action figures of BENCHMARKS.md (issue 20): how long a plan and an apply of
# attempts.reset take over ROWS complete attempts, RUNS times, each on a fresh daemon whose
# database was filled by a bundle import (tools/bench/make_bundle.py). Wall time of each HTTP call,
# as nodecoordctl would see it; results as JSON lines, then a summary (median, min-max).
#
#   tools/bench/measure_bulk.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): RUNS [3], ROWS [10000] (in nodes of 1,000 attempts),
# PG=durable (a PostgreSQL with fsync on; default the SQLite file in OUT_DIR).
set -euo pipefail
build=$(cd "${1:?usage: measure_bulk.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_bulk.sh BUILD_DIR OUT_DIR}
runs=${RUNS:-3}
rows=${ROWS:-10000}
mkdir -p "$out"
out=$(cd "$out" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=SCRIPTDIR/daemon.sh
source "$src/tools/bench/daemon.sh"
nc_bench_backend

nodes=$(((rows + 999) / 1000))
python3 "$src/tools/bench/make_bundle.py" "$out/bundle.jsonl" bulk "$nodes" 1000 1
: >"$out/bulk.jsonl"
for i in $(seq 1 "$runs"); do
  rm -rf "$out/state-$i"
  mkdir -p "$out/state-$i"
  nc_write_config "$out/nodecoord-$i.toml"
  if [ -n "${nc_pg_started:-}" ]; then
    # A fresh schema per run: the same rows, not twice as many.
    "${PG_BIN:+$PG_BIN/}psql" -q "$PGTEST_URI" -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" >/dev/null
  fi
  nc_start_daemon "$build/nodecoordd" "$out/nodecoord-$i.toml" "$out/state-$i" "$out/daemon-$i.log"
  daemon_pid=$nc_daemon_pid
  admin=
  for _ in $(seq 1 100); do
    admin=$(sed -n 's/.*admin listening address=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$out/daemon-$i.log" | head -n 1)
    [ -n "$admin" ] && break
    sleep 0.1
  done
  curl -fsS -o /dev/null -H 'Content-Type: application/x-ndjson' --data-binary @"$out/bundle.jsonl" \
    "http://127.0.0.1:$admin/api/bundle?dry_run=0"
  python3 - "$admin" "$rows" "$i" >>"$out/bulk.jsonl" <<'EOF'
import json, sys, time, urllib.request
admin, rows, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{admin}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=600) as r:
        data = json.load(r)["data"]
    return data, (time.monotonic() - t) * 1000
body = {"all": True, "max_rows": rows}
plan, plan_ms = post("/api/bulk/attempts.reset/plan", body)
assert plan["matched"] == rows, plan["matched"]
applied, apply_ms = post("/api/bulk/attempts.reset/apply", dict(body, filter=plan["filter"], token=plan["token"]))
assert applied["counts"]["attempts"] == rows, applied
print(json.dumps({"run": run, "rows": rows, "plan_ms": round(plan_ms, 1), "apply_ms": round(apply_ms, 1)}))
EOF
  tail -n 1 "$out/bulk.jsonl"
  nc_stop_bench_daemon
done

python3 - "$out/bulk.jsonl" <<'EOF'
import json, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
for k in ["plan_ms", "apply_ms"]:
    v = [r[k] for r in rs]
    print(f"{k}: median {statistics.median(v):.1f} (min {min(v):.1f}, max {max(v):.1f}) over {len(v)} runs of {rs[0]['rows']} rows")
EOF
