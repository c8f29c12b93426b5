#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build and test nodecoord, but only those that
# are missing (checked with dpkg-query); `apt-get update` runs only if something is missing.
# As root: installs directly. Otherwise: via sudo if available, else prints the command
# and exits 1.
set -euo pipefail

# `deps.sh build`: what building needs (scripts/run-daemon.sh); `deps.sh` alone: that plus what
# the tests need (scripts/run-tests.sh).
packages=(
  # build tools
  g++ cmake ninja-build pkg-config
  # libraries (see CMakeLists.txt); Boost.Test because the test targets are configured too
  libcaf-dev libsoci-dev libtomlplusplus-dev libboost-test-dev libpq-dev libsqlite3-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libssl-dev libsystemd-dev libcpp-httplib-dev
)
if [ "${1:-all}" != build ]; then
  packages+=(
    # tests: systemd-analyze/-sysusers/-tmpfiles, a throwaway PostgreSQL, ss (free ports)
    systemd postgresql-15 postgresql-client-15 iproute2
    # tests: headless Chromium renders the dashboard (tests/dashboard_test.cpp)
    chromium
    # tests: the libFuzzer targets (fuzz/, clang's libFuzzer, ASan and UBSan runtimes)
    clang-14 libclang-rt-14-dev
    # tests: the format check (scripts/format.sh --check, ctest `format`)
    clang-format-14
    # tests: the TLS tests make their certificates with the openssl command (tests/support/make_certs.sh)
    openssl
  )
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages are installed"
  exit 0
fi
echo "deps: missing: ${missing[*]}"

install=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "$(id -u)" = 0 ]; then
  as_root=(env DEBIAN_FRONTEND=noninteractive)
elif command -v sudo >/dev/null; then
  as_root=(sudo env DEBIAN_FRONTEND=noninteractive)
else
  echo "deps: not root and no sudo; as root, run:" >&2
  echo "  apt-get update && DEBIAN_FRONTEND=noninteractive ${install[*]}" >&2
  exit 1
fi

"${as_root[@]}" apt-get update
"${as_root[@]}" "${install[@]}"

# Check that everything is there now (apt-get can succeed yet leave a package half-configured).
still=()
for p in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
  echo "deps: still not installed: ${still[*]}" >&2
  exit 1
fi
echo "deps: installed ${missing[*]}"
