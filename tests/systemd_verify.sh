#!/usr/bin/env bash
# Checks the systemd files of nodecoordd offline (no running systemd needed):
#   1. `systemd-analyze verify` on a copy of the configured unit whose ExecStart points at
#      the built daemon (verify checks that the binary exists and is executable);
#   2. systemd/nodecoord.sysusers.conf with `systemd-sysusers --root=TMP` (creates the
#      user in TMP/etc/passwd, never on the host);
#   3. systemd/nodecoord.tmpfiles.conf with `systemd-tmpfiles --root=TMP --create`, using
#      the user from step 2, then checks the modes and owners it produced;
#   4. negative controls: deliberately broken copies of all three files must be rejected,
#      so this test cannot pass because a tool went quiet or the output filter is too wide.
#
# Usage: systemd_verify.sh UNIT_FILE DAEMON_BINARY   (ctest: tests/CMakeLists.txt)
#        systemd_verify.sh --self-test UNIT_FILE DAEMON_BINARY   (only step 4)
# Needs: root (tmpfiles chowns what it creates, even under --root), Debian 12 `systemd`.
#
# What systemd-analyze 252 prints, found out in the Debian 12 container (no systemd as PID 1):
#   - for a good unit: nothing, exit 0 (no "System has not been booted with systemd");
#   - a misspelled key, a bad value, an unknown section: one warning line such as
#     "/tmp/x/nodecoordd.service:41: Unknown key 'ProtecHome' in section [Service], ignoring."
#     with exit 0 by default (exit 1 only with an explicit --recursive-errors=), so we
#     read the output as well as the exit status;
#   - a missing binary or a missing ExecStart: an error line and exit 1;
#   - warnings about *other* units it loads as dependencies are printed, prefixed with that
#     unit's path ("/lib/systemd/system/x.service:5: ...") or name ("x.service: ..."), with
#     --recursive-errors=yes/one, and with yes they also make the exit status 1. We pass
#     --recursive-errors=no (only our unit counts; other units' warnings then were not
#     printed at all) and still ignore, and list as "ignored", lines of that other-unit
#     form. Every other line fails the test.
set -euo pipefail

self_test_only=0
if [ "${1:-}" = --self-test ]; then self_test_only=1; shift; fi
if [ $# -ne 2 ]; then
  echo "usage: $0 [--self-test] UNIT_FILE DAEMON_BINARY" >&2
  exit 2
fi
unit_src=$1
daemon=$2
src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
sysusers_src=$src_dir/systemd/nodecoord.sysusers.conf
tmpfiles_src=$src_dir/systemd/nodecoord.tmpfiles.conf

fail() { echo "systemd_verify: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (systemd-tmpfiles chowns what it creates, even with --root)"
for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
  command -v "$tool" >/dev/null || fail "$tool not found (apt-get install systemd)"
done
[ -f "$unit_src" ] || fail "unit file $unit_src not found (is the build configured?)"
[ -f "$sysusers_src" ] || fail "$sysusers_src not found"
[ -f "$tmpfiles_src" ] || fail "$tmpfiles_src not found"
if [ ! -f "$daemon" ] || [ ! -x "$daemon" ]; then
  fail "daemon binary $daemon not found or not executable"
fi
daemon=$(realpath "$daemon")
case $daemon in *[[:space:]]*) fail "daemon path contains white space: $daemon";; esac

unit_name=$(basename "$unit_src")
work=$(mktemp -d /tmp/systemd_verify.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A configure_file() that missed a variable leaves "@VAR@" behind.
if grep -nE '@[A-Za-z_][A-Za-z0-9_]*@' "$unit_src" >&2; then
  fail "$unit_src has unsubstituted @VARIABLES@"
fi

# --- helpers ----------------------------------------------------------------

# make_unit DIR [EXTRA_SERVICE_LINE]: DIR/$unit_name = the unit with ExecStart's program
# replaced by $daemon (arguments kept); EXTRA_SERVICE_LINE is added right after [Service].
make_unit() {
  mkdir -p "$1"
  awk -v bin="$daemon" -v extra="${2:-}" '
    /^ExecStart=/ {  # keep the prefix characters (-@:+!) and the arguments
      n++; match($0, /^ExecStart=[-@:+!]*/); pre = substr($0, 1, RLENGTH)
      rest = substr($0, RLENGTH + 1); match(rest, /[ \t]|$/)
      $0 = pre bin substr(rest, RSTART)
    }
    { print }
    /^\[Service\][ \t]*$/ && extra != "" { print extra }
    END { if (n != 1) { print "expected exactly one ExecStart= line, found " n > "/dev/stderr"; exit 1 } }
  ' "$unit_src" >"$1/$unit_name"
}

# check_unit FILE: 0 if systemd-analyze verify accepts FILE without a word about it.
# Prints the reason otherwise.
check_unit() {
  local file=$1 out rc=0 line ours=0 path
  out=$(SYSTEMD_COLORS=0 systemd-analyze verify --man=no --recursive-errors=no "$file" 2>&1) || rc=$?
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    # Demonstrably about another unit: "<other unit file>:<line>: ..." or "<other unit>: ...".
    if [[ $line =~ ^(/[^:[:space:]]+):[0-9]+:\  ]]; then
      path=${BASH_REMATCH[1]}
      if [ "$path" != "$file" ] && [ "$(basename "$path")" != "$unit_name" ]; then
        echo "  ignored (other unit): $line"; continue
      fi
    elif [[ $line =~ ^([A-Za-z0-9:_.@\\-]+\.(service|socket|target|device|mount|automount|swap|timer|path|slice|scope)):\  ]] \
         && [ "${BASH_REMATCH[1]}" != "$unit_name" ] && [[ $line != *"$unit_name"* ]]; then
      echo "  ignored (other unit): $line"; continue
    fi
    echo "  $line"
    ours=1
  done <<<"$out"
  if [ "$rc" -ne 0 ]; then
    echo "  systemd-analyze verify exited with status $rc"
    return 1
  fi
  return "$ours"
}

# check_conf TOOL CONF ROOT: run a sysusers/tmpfiles config against ROOT; 0 if the tool
# succeeds and says nothing about CONF (tmpfiles reports e.g. ignored fields with exit 0).
check_conf() {
  local tool=$1 conf=$2 root=$3 out rc=0
  mkdir -p "$root/etc"
  case $tool in
    sysusers) out=$(systemd-sysusers --root="$root" "$conf" 2>&1) || rc=$? ;;
    tmpfiles) out=$(systemd-tmpfiles --root="$root" --create "$conf" 2>&1) || rc=$? ;;
  esac
  [ -z "$out" ] || printf '  %s\n' "${out//$'\n'/$'\n'  }"
  if [ "$rc" -ne 0 ]; then echo "  systemd-$tool exited with status $rc"; return 1; fi
  ! grep -qF "$conf" <<<"$out"
}

# --- 1-3: the real files ------------------------------------------------------

check_real() {
  echo "systemd-analyze verify $unit_name (ExecStart -> $daemon)"
  make_unit "$work/good" || fail "could not prepare a copy of $unit_src"
  check_unit "$work/good/$unit_name" || fail "systemd-analyze verify reported problems with $unit_src"

  local root=$work/root
  echo "systemd-sysusers --root $(basename "$sysusers_src")"
  cp "$sysusers_src" "$work/nodecoord-sysusers.conf"
  check_conf sysusers "$work/nodecoord-sysusers.conf" "$root" || fail "systemd-sysusers rejected $sysusers_src"
  grep -qx 'nodecoord:x:[0-9]*:[0-9]*:[^:]*:/var/lib/nodecoord:/usr/sbin/nologin' "$root/etc/passwd" \
    || fail "sysusers did not create user nodecoord (home /var/lib/nodecoord, nologin): $(cat "$root/etc/passwd")"
  grep -q '^nodecoord:x:[0-9]*:' "$root/etc/group" || fail "sysusers did not create group nodecoord"
  local uid gid
  uid=$(awk -F: '$1 == "nodecoord" { print $3 }' "$root/etc/passwd")
  gid=$(awk -F: '$1 == "nodecoord" { print $3 }' "$root/etc/group")

  echo "systemd-tmpfiles --root --create $(basename "$tmpfiles_src")"
  cp "$tmpfiles_src" "$work/nodecoord-tmpfiles.conf"
  check_conf tmpfiles "$work/nodecoord-tmpfiles.conf" "$root" || fail "systemd-tmpfiles rejected $tmpfiles_src"
  local got
  got=$(stat -c '%a %u %g' "$root/etc/nodecoord")
  [ "$got" = "750 0 $gid" ] || fail "/etc/nodecoord is '$got' (mode uid gid), want '750 0 $gid'"
  got=$(stat -c '%a %u %g' "$root/var/lib/nodecoord")
  [ "$got" = "750 $uid $gid" ] || fail "/var/lib/nodecoord is '$got' (mode uid gid), want '750 $uid $gid'"
}

# --- 4: negative controls -------------------------------------------------------

# expect_rejected WHAT MESSAGE CHECK...: the check must fail, saying MESSAGE (a fixed
# string), so that it fails for the reason we broke it and not for another one.
expect_rejected() {
  local what=$1 message=$2; shift 2
  local out
  if out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    fail "negative control not detected: $what (the checks above cannot be trusted)"
  fi
  if ! grep -qF -- "$message" <<<"$out"; then
    printf '%s\n' "$out" >&2
    fail "negative control '$what' was rejected, but without the expected message '$message'"
  fi
  echo "  ok, rejected: $what: $(grep -F -- "$message" <<<"$out" | head -1 | sed 's/^ *//')"
}

# users_root DIR: an offline root whose /etc/passwd has the nodecoord user.
users_root() {
  mkdir -p "$1/etc"
  systemd-sysusers --root="$1" "$sysusers_src" >/dev/null 2>&1 || fail "systemd-sysusers failed on $sysusers_src"
}

self_test() {
  echo "negative controls (broken copies must be rejected):"
  make_unit "$work/bad1" "ProtecHome=yes" || fail "could not prepare a broken copy"
  expect_rejected "misspelled directive" "Unknown key 'ProtecHome'" check_unit "$work/bad1/$unit_name"
  make_unit "$work/bad2" "Restart=sometimes" || fail "could not prepare a broken copy"
  expect_rejected "invalid value" "restart specifier" check_unit "$work/bad2/$unit_name"
  make_unit "$work/bad3" || fail "could not prepare a broken copy"
  printf '[Instal]\nWantedBy=multi-user.target\n' >>"$work/bad3/$unit_name"
  expect_rejected "misspelled section" "Unknown section 'Instal'" check_unit "$work/bad3/$unit_name"
  daemon=$work/no-such-binary make_unit "$work/bad4" || fail "could not prepare a broken copy"
  expect_rejected "missing binary" "no-such-binary is not executable" check_unit "$work/bad4/$unit_name"

  { cat "$sysusers_src"; echo 'u node:coord - "x" /var/lib/x /usr/sbin/nologin'; } >"$work/bad-sysusers.conf"
  expect_rejected "invalid sysusers line" "not a valid user or group name" check_conf sysusers "$work/bad-sysusers.conf" "$work/badroot1"
  { cat "$tmpfiles_src"; echo 'd /var/lib/nodecoord-x 9750 root root - -'; } >"$work/bad-tmpfiles.conf"
  users_root "$work/badroot2"
  expect_rejected "invalid tmpfiles mode" "Invalid mode '9750'" check_conf tmpfiles "$work/bad-tmpfiles.conf" "$work/badroot2"
  { cat "$tmpfiles_src"; echo 'd /var/lib/nodecoord-x 0750 root root - extra'; } >"$work/bad-tmpfiles2.conf"
  users_root "$work/badroot3"
  expect_rejected "tmpfiles warning with exit 0" "don't take argument fields" check_conf tmpfiles "$work/bad-tmpfiles2.conf" "$work/badroot3"
}

[ "$self_test_only" = 1 ] || check_real
self_test
echo "systemd_verify: OK"
