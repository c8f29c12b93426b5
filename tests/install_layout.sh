#!/usr/bin/env bash
# `cmake --install` puts the binary, the unit files and the example config where a system
# install expects them (prefix /usr: /usr/sbin, /etc, /usr/lib/systemd). Args: SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
tmp=$(mktemp -d /tmp/nodecoord-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# A separate configure with prefix /usr, reusing the built binary's sources (fast: no rebuild of
# the tests, only nodecoordd).
# Each step's output is shown only if it fails (a silent failure under set -e told nothing).
step() {
  if ! "$@" >"$tmp/step.log" 2>&1; then
    echo "install_layout: failed: $*" >&2
    tail -n 40 "$tmp/step.log" >&2
    exit 1
  fi
}
step cmake -S "$src" -B "$tmp/build" -G Ninja -DCMAKE_INSTALL_PREFIX=/usr -DNODECOORD_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=Debug
step cmake --build "$tmp/build" --target nodecoordd nodecoordctl nodecoord-agent -j2
DESTDIR="$tmp/root" step cmake --install "$tmp/build"
fail=0
for f in usr/sbin/nodecoordd usr/bin/nodecoordctl usr/bin/nodecoord-agent etc/nodecoord/nodecoord.toml usr/lib/systemd/system/nodecoordd.service \
         usr/lib/sysusers.d/nodecoord.conf usr/lib/tmpfiles.d/nodecoord.conf; do
  if [ ! -e "$tmp/root/$f" ]; then echo "install_layout: missing /$f" >&2; fail=1; fi
done
[ -x "$tmp/root/usr/sbin/nodecoordd" ] || { echo "install_layout: /usr/sbin/nodecoordd not executable" >&2; fail=1; }
unit="$tmp/root/usr/lib/systemd/system/nodecoordd.service"
if ! grep -q '^ExecStart=/usr/sbin/nodecoordd --config /etc/nodecoord/nodecoord.toml$' "$unit"; then
  echo "install_layout: unexpected ExecStart in the installed unit:" >&2; grep ExecStart "$unit" >&2; fail=1
fi
# The installed config is the example, and it is valid.
"$tmp/root/usr/sbin/nodecoordd" --check-config "$tmp/root/etc/nodecoord/nodecoord.toml" >/dev/null || fail=1
[ "$fail" = 0 ] && echo "install_layout: ok"
exit "$fail"
