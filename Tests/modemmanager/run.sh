#!/bin/sh
# cellprovd with the real ModemManager on a private D-Bus bus (test_modemmanager.py: identities read over D-Bus,
# a SIM swap, ModemManager absent / killed / restarted, `always` without it, the unit's sandbox, leaks). Called by
# `make test`; run alone from the repository root after `swift build`:
#   Tests/modemmanager/run.sh        (UMOCKDEV_TEST_VERBOSE=1 for the children's stderr)
# Exit status: 0 passed or skipped (with a SKIP line saying why; a failure under CELLPROV_TEST_NO_SKIP=1), non-zero on
# failure.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=/usr/bin/python3   # Debian's: the GI bindings (python3-gi) are installed for it

# `make test` sets CELLPROV_TEST_NO_SKIP=1: it installed every prerequisite, so a missing one is a failure there.
skip() {
    if [ "${CELLPROV_TEST_NO_SKIP:-0}" = 1 ]; then
        echo "FAIL: ModemManager tests: $* (CELLPROV_TEST_NO_SKIP=1)"
        exit 1
    fi
    echo "SKIP: ModemManager tests: $*"
    exit 0
}

command -v umockdev-wrapper >/dev/null 2>&1 || skip "umockdev-wrapper not found (apt-get install umockdev)"
[ -x "$python" ] || skip "$python not found"
[ -x /usr/sbin/ModemManager ] || skip "ModemManager not found (apt-get install modemmanager)"
command -v dbus-daemon >/dev/null 2>&1 || skip "dbus-daemon not found (apt-get install dbus)"

export CELLPROV="${CELLPROV:-$repo/.build/debug/cellprov}"
export CELLPROVD="${CELLPROVD:-$repo/.build/debug/cellprovd}"
export PORTS_TABLE="${PORTS_TABLE:-$repo/udev/ports.tsv}"
[ -x "$CELLPROV" ] || { echo "FAIL: $CELLPROV not built (run swift build)"; exit 1; }
[ -x "$CELLPROVD" ] || { echo "FAIL: $CELLPROVD not built (run swift build)"; exit 1; }

# In a session of its own, so that whatever the test leaves behind (ModemManager, dbus-daemon, a simulator of a
# crashed run) is ended with it.
setsid timeout 240 umockdev-wrapper "$python" "$here/test_modemmanager.py" &
pid=$!
status=0
wait "$pid" || status=$?
kill -TERM -- "-$pid" 2>/dev/null || true
case $status in
    0) ;;
    77) skip "test_modemmanager.py reported a missing prerequisite" ;;
    124) echo "FAIL: ModemManager tests timed out"; exit 1 ;;
    *) echo "FAIL: ModemManager tests (status $status)"; exit 1 ;;
esac
