#!/bin/sh
# umockdev integration tests: port discovery (test_discovery.py: udev enumeration, classification, hotplug, probe
# through a simulated modem), then cellprovd (test_daemon.py: slots from udev, identities, unplug/re-plug, unknown
# ports, SIGTERM, no identifiers in its log), then Linux WWAN framework ports of PCIe modules (test_wwan.py:
# /dev/wwan0at0 without termios or TIOCEXCL, MBIM/QCDM never opened, ports, probe, daemon, hotplug). Called by
# `make test`; run alone from the repository root after
# `swift build`:
#   Tests/umockdev/run.sh            (UMOCKDEV_TEST_VERBOSE=1 for the children's stderr)
# Exit status: 0 passed or skipped (with a SKIP line saying why; a failure under CELLPROV_TEST_NO_SKIP=1), non-zero on
# failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=/usr/bin/python3   # Debian's: the GI bindings (python3-gi) are installed for it, not for a pyenv one

# `make test` sets CELLPROV_TEST_NO_SKIP=1: it installed every prerequisite, so a missing one is a failure there.
skip() {
    if [ "${CELLPROV_TEST_NO_SKIP:-0}" = 1 ]; then
        echo "FAIL: umockdev tests: $* (CELLPROV_TEST_NO_SKIP=1)"
        exit 1
    fi
    echo "SKIP: umockdev tests: $*"
    exit 0
}

command -v umockdev-wrapper >/dev/null 2>&1 || skip "umockdev-wrapper not found (apt-get install umockdev)"
[ -x "$python" ] || skip "$python not found"
"$python" -c 'import gi; gi.require_version("UMockdev", "1.0")' 2>/dev/null ||
    skip "umockdev GI bindings missing (apt-get install gir1.2-umockdev-1.0 python3-gi)"

export CELLPROV="${CELLPROV:-$repo/.build/debug/cellprov}"
export CELLPROVD="${CELLPROVD:-$repo/.build/debug/cellprovd}"
export PORTS_TABLE="${PORTS_TABLE:-$repo/udev/ports.tsv}"
[ -x "$CELLPROV" ] || { echo "FAIL: $CELLPROV not built (run swift build)"; exit 1; }
[ -x "$CELLPROVD" ] || { echo "FAIL: $CELLPROVD not built (run swift build)"; exit 1; }

run_test() {
    # In a session of its own, so that whatever the test leaves behind (a child of a crashed run) is ended with it.
    setsid timeout 180 umockdev-wrapper "$python" "$here/$1" &
    pid=$!
    status=0
    wait "$pid" || status=$?
    kill -TERM -- "-$pid" 2>/dev/null || true
    case $status in
        0) ;;
        77) skip "$1 reported a missing prerequisite" ;;
        124) echo "FAIL: umockdev tests ($1) timed out"; exit 1 ;;
        *) echo "FAIL: umockdev tests ($1, status $status)"; exit 1 ;;
    esac
}

run_test test_discovery.py
run_test test_daemon.py
run_test test_wwan.py
