#!/usr/bin/env python3
"""Writes a bundle (docs/admin-api.md, the import format) of fresh rows for the import bench:
NODES nodes named PREFIX-<n>, ATTEMPTS complete attempts each, LINES log lines per attempt.

    make_bundle.py OUT PREFIX NODES ATTEMPTS LINES
"""
import json
import sys
import uuid

out, prefix, nodes, attempts, lines = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
t = "2026-01-09T12:00:00.000Z"
node_ids = [str(uuid.uuid4()) for _ in range(nodes)]
attempt_ids = [[str(uuid.uuid4()) for _ in range(attempts)] for _ in range(nodes)]
dump = lambda o: json.dumps(o, separators=(",", ":"))
with open(out, "w") as f:
    f.write(dump({"type": "manifest", "format": "nodecoord-bundle", "version": 1, "created_at": t,
                  "counts": {"nodes": nodes, "attempts": nodes * attempts, "logs": nodes * attempts * lines,
                             "jobs": 0}}) + "\n")
    for i, nid in enumerate(node_ids):
        f.write(dump({"type": "node", "id": nid, "name": f"{prefix}-{i}", "status": "offline", "session_epoch": 1,
                      "connected_at": t, "disconnected_at": t, "disconnect_reason": "socket_closed",
                      "last_seen_at": t, "capabilities": None, "created_at": t, "disabled_at": None}) + "\n")
    for i, nid in enumerate(node_ids):
        for a, aid in enumerate(attempt_ids[i]):
            f.write(dump({"type": "attempt", "id": aid, "node_id": nid, "task_id": f"task-{a}", "state": "succeeded",
                          "sync_state": "complete", "backfill_request_id": None, "sync_requested_at": None,
                          "last_full_sync_at": t, "backfill_failures": 0, "started_at": t, "finished_at": t,
                          "meta": {"exit_code": 0}, "created_at": t, "updated_at": t}) + "\n")
    for ids in attempt_ids:
        for aid in ids:
            for s in range(lines):
                f.write(f'{{"type":"log","attempt_id":"{aid}","seq":{s},"ts":"{t}","stream":"stdout",'
                        f'"line":"imported line {s} of a bench bundle, about as long as a build log line"}}\n')
