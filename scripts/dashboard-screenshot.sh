#!/usr/bin/env bash
# Takes a 1280x900 screenshot of the dashboard of a running nodecoordd, for docs/ (HEIGHT=1250 for
# a taller one, e.g. a node page down to its checks):
#   scripts/dashboard-screenshot.sh http://127.0.0.1:7401 docs/dashboard.png
#   scripts/dashboard-screenshot.sh http://127.0.0.1:7401 docs/dashboard-node.png '#node/edge-1'
# DAEMON_ADMIN_URL is the admin listen address (admin.listen); the page is its "/". Headless
# Chromium (Debian's, /usr/bin/chromium; CHROMIUM=... to use another) with the flags of
# tests/dashboard_test.cpp, in a throwaway profile. The page needs no token only when the daemon
# has none configured (loopback listen without admin.token_file); otherwise the screenshot shows
# the token prompt.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 DAEMON_ADMIN_URL OUT.png [VIEW]   (e.g. $0 http://127.0.0.1:7401 docs/dashboard.png '#node/edge-1')" >&2
  exit 2
fi
url="${1%/}/"
view="${3:-}" # a view of the page: #node/NAME or #attempt/ID (default: the overview)
out="$2"
[[ "$out" = /* ]] || out="$PWD/$out"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "$chromium" ]]; then
  echo "$0: no chromium at $chromium (apt-get install chromium, or set CHROMIUM)" >&2
  exit 1
fi
# A screenshot of "cannot reach the daemon" is no use: check first (GET /healthz needs no token).
if command -v curl >/dev/null && ! curl -fsS --max-time 5 -o /dev/null "${url}healthz"; then
  echo "$0: the daemon does not answer at ${url}healthz" >&2
  exit 1
fi

profile="$(mktemp -d "${TMPDIR:-/tmp}/nodecoord-screenshot.XXXXXX")"
trap 'rm -rf "$profile"' EXIT
rm -f "$out"
# --virtual-time-budget: the page's timers run on virtual time; the shot is taken when it is spent,
# after several 3 s refreshes.
HOME="$profile" XDG_CONFIG_HOME="$profile/config" XDG_CACHE_HOME="$profile/cache" \
  "$chromium" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$profile/profile" \
  --virtual-time-budget=10000 --hide-scrollbars --window-size=1280,"${HEIGHT:-900}" --screenshot="$out" "$url$view" \
  >"$profile/chromium.log" 2>&1 || {
  echo "$0: chromium failed:" >&2
  tail -n 20 "$profile/chromium.log" >&2
  exit 1
}
if [[ ! -s "$out" ]]; then
  echo "$0: chromium wrote no screenshot to $out:" >&2
  tail -n 20 "$profile/chromium.log" >&2
  exit 1
fi
echo "$out"
