#!/bin/sh
# cellprovd with the real ModemManager on a private D-Bus bus (test_modemmanager.py: identities read over D-Bus,
# a SIM swap, ModemManager absent / killed / restarted, `always` without it, the unit's sandbox, leaks), then against a
# stand-in for ModemManager (test_modemmanager_standin.py: Sim.Eid and two SIM slots, which the real ModemManager cannot
# publish for the AT-only EC25: profile_switched, sim_slot_switched). Called by `make test`; run alone from the
# repository root after `swift build`:
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
failed=0
setsid timeout 240 umockdev-wrapper "$python" "$here/test_modemmanager.py" &
pid=$!
status=0
wait "$pid" || status=$?
kill -TERM -- "-$pid" 2>/dev/null || true
case $status in
    0) ;;
    77) skip "test_modemmanager.py reported a missing prerequisite" ;;
    124) echo "FAIL: ModemManager tests timed out"; failed=1 ;;
    *) echo "FAIL: ModemManager tests (status $status)"; failed=1 ;;
esac

# The stand-in (no umockdev, no ModemManager process: a Python D-Bus service on the same kind of private bus), in a
# session of its own as well; run even when the tests above failed, so that one run reports both.
setsid timeout 60 "$python" "$here/test_modemmanager_standin.py" &
pid=$!
status=0
wait "$pid" || status=$?
kill -TERM -- "-$pid" 2>/dev/null || true
case $status in
    0) ;;
    77) skip "test_modemmanager_standin.py reported a missing prerequisite" ;;
    124) echo "FAIL: ModemManager stand-in tests timed out"; failed=1 ;;
    *) echo "FAIL: ModemManager stand-in tests (status $status)"; failed=1 ;;
esac
[ "$failed" = 0 ] || exit 1
