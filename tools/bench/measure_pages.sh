#!/usr/bin/env bash
# Issue 19's operator-path figures at fleet size, on one backend per run:
#  - `GET /api/nodes` pages of 100 at NODES nodes (keyset by name): REQUESTS pages from random
#    starting names, the first page, and a status-filtered page; latency p50 / p99 / max;
#  - `nodecoord-bench overview`: count_summary from the counters against the scan it replaced,
#    at ATTEMPTS attempts and JOBS jobs.
#
#   tools/bench/measure_pages.sh BUILD_DIR OUT_DIR
#
# Environment (defaults in brackets): NODES [100000] REQUESTS [500] ATTEMPTS [10000000]
#   JOBS [1000000] PG [unset: SQLite in OUT_DIR/state; durable: a throwaway PostgreSQL 15 at its
#   durable defaults]
set -euo pipefail
build=$(cd "${1:?usage: measure_pages.sh BUILD_DIR OUT_DIR}" && pwd)
out=${2:?usage: measure_pages.sh BUILD_DIR OUT_DIR}
nodes=${NODES:-100000}
requests=${REQUESTS:-500}
mkdir -p "$out/state"
out=$(cd "$out" && pwd)
src=$(cd "$(dirname "$0")/../.." && pwd)
bench=$build/nodecoord-bench

# shellcheck source=SCRIPTDIR/daemon.sh
source "$src/tools/bench/daemon.sh"
nc_bench_backend
nc_write_config "$out/nodecoord.toml"

"$bench" --config "$out/nodecoord.toml" --state-dir "$out/state" provision --nodes "$nodes" >"$out/provision.txt"
nc_start_daemon "$build/nodecoordd" "$out/nodecoord.toml" "$out/state" "$out/daemon.log"
daemon_pid=$nc_daemon_pid
admin=$(nc_admin_address "$out/daemon.log")
echo "daemon $daemon_pid, admin $admin, $nodes nodes"
python3 - "$admin" "$requests" "$out/state/bench-keys.tsv" <<'EOF' | tee "$out/pages.txt"
import json, random, sys, time, urllib.request
admin, requests, keys = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = [l.split("\t")[0] for l in open(keys) if l.strip() and not l.startswith("#")]
random.seed(19)
def get(path):
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://{admin}{path}") as r:
        body = r.read()
    ms = (time.perf_counter() - t0) * 1000
    return ms, json.loads(body)["data"]
def figures(name, ms):
    ms = sorted(ms)
    p = lambda q: ms[min(len(ms) - 1, int(round(q / 100 * len(ms) + 0.5)) - 1)]
    print(f"{name:44} n={len(ms):5} p50 {p(50):8.2f} ms  p99 {p(99):8.2f} ms  max {ms[-1]:8.2f} ms")
get("/api/nodes?limit=100")  # warm
random_pages, first, filtered = [], [], []
for _ in range(requests):
    ms, d = get("/api/nodes?limit=100&after=" + random.choice(names))
    random_pages.append(ms)
for _ in range(max(50, requests // 10)):
    ms, d = get("/api/nodes?limit=100")
    assert len(d["nodes"]) == 100 and d["next"], d
    first.append(ms)
    ms, d = get("/api/nodes?limit=100&status=offline")
    filtered.append(ms)
figures("page of 100 after a random name", random_pages)
figures("first page of 100", first)
figures("page of 100, status=offline", filtered)
EOF
nc_stop_bench_daemon
"$bench" --json --config "$out/nodecoord.toml" --state-dir "$out/state" overview --attempts "${ATTEMPTS:-10000000}" \
  --jobs "${JOBS:-1000000}" >"$out/overview.json"
python3 -c '
import json,sys
r=json.load(open(sys.argv[1]))
for k in ("attempts","jobs","seed_s","counters_p50_ms","counters_p99_ms","counters_max_ms","scan_p50_ms","scan_p99_ms","scan_over_counters","valid"):
    print(f"{k:22} {r.get(k)}")' "$out/overview.json"
