#!/usr/bin/env bash
# Formats every C++ file of the project with .clang-format (clang-format-14, Debian 12:
# `apt-get install clang-format-14`). `scripts/format.sh --check` changes nothing and exits 1 if a
# file is not formatted, naming it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fmt=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$fmt" ]; then
  echo "scripts/format.sh: clang-format-14 is not installed (apt-get install clang-format-14)" >&2
  exit 2
fi
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
else # a source tarball: every C++ file but build trees
  mapfile -t files < <(find . -path './build*' -prune -o \( -name '*.cpp' -o -name '*.hpp' \) -print | sed 's|^\./||' | sort)
fi
if [ "${1:-}" = "--check" ]; then
  bad=0
  for f in "${files[@]}"; do
    if ! "$fmt" -style=file "$f" | cmp -s - "$f"; then
      echo "not formatted: $f"
      bad=1
    fi
  done
  exit $bad
fi
"$fmt" -style=file -i "${files[@]}"
