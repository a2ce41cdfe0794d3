#!/usr/bin/env bash
# Installs the Debian packages cellprov's build, tests, demo and benchmarks need, when they are missing.
# Idempotent and quiet when everything is there. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
    libudev-dev       # CUdev shim (daemon discovery)
    libsystemd-dev    # CSystemd shim (sd_notify, journal)
    systemd           # systemd-analyze for the unit checks
    python3-serial    # the pyserial baseline in `make bench`
    libsqlite3-dev    # the state store (CSQLite) and the registry (GRDB)
    libtomlplusplus-dev  # cellprovd's configuration parser (CTOMLShim, header-only: no run-time library)
    openssl           # certificates made at test time (TLS, mTLS)
    util-linux        # flock(1) in the port-busy test; prlimit(1) in Tests/registry/test_faults.py
    iproute2          # ss(8): the registry's own connections in Tests/registry/test_faults.py
    procps            # ps/pgrep in scripts
    strace            # wake-up counts in `make bench`
    postgresql        # cellprov-registry's PostgreSQL backend: a real server in the tests (scripts/pg-test-server.sh)
    chromium chromium-driver  # cellprov-registry's pages in a real headless browser (Tests/registry)
    python3-pip       # schemathesis and selenium from PyPI for Tests/registry (run.sh installs them)
    prometheus        # promtool: checks cellprovd's metrics textfile (MetricsTextfileTests)
)
if [ "${CELLPROV_WITH_UMOCKDEV:-1}" = 1 ]; then
    packages+=(umockdev libumockdev-dev gir1.2-umockdev-1.0 python3-gi)
    # Tests/modemmanager: the real ModemManager on a private dbus-daemon (and its bus policy file).
    # Its sandbox check uses unshare/setpriv (util-linux, above) and mount.
    packages+=(modemmanager dbus mount)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: need root to install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
