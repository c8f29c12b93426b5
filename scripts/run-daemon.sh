#!/usr/bin/env bash
# Builds nodecoordd and runs it in the foreground with the example configuration, state in
# ./state (SQLite by default), logging to the terminal. Extra arguments go to nodecoordd.
# Works from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/deps.sh build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2 --target nodecoordd
mkdir -p state
exec build/nodecoordd --config config/nodecoord.example.toml --state-dir state "$@"
