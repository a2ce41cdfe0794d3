#!/bin/sh
# cellprov-registry's black-box suites (`make test-registry`, part of `make test`): real processes only (the debug
# build's cellprov-registry, cellprovd, cellprov simulate/probe), one real PostgreSQL for the whole run
# (scripts/with-postgres.sh, or CELLPROV_TEST_POSTGRES_URL when the caller runs one; each test makes its own
# database), plain python3 (scripts printing ok/FAIL lines; no pytest needed).
#   Tests/registry/run.sh [SUITE ...]     e.g. Tests/registry/run.sh e2e-sqlite security
#   Tests/registry/run.sh --list          the suites found, one a line: name, file, options
# The suites are found, not listed here: every Tests/registry/test_*.py declares its own in lines under its shebang,
#   # registry-suite: NAME [timeout=SECONDS] [needs=MODULE:PACKAGE] [ARGUMENT ...]
# (timeout 300 s by default; `needs` is pip-installed when MODULE does not import; `{bin}` in an argument stands for
# the build directory, .build/debug or CELLPROV_BIN). One file may declare several suites (test_e2e.py: sqlite and
# postgres). Without arguments every suite found runs (`make test` runs them all this way).
# Exit status: 0 all passed or skipped (a skip is a failure under CELLPROV_TEST_NO_SKIP=1), 1 otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

bin=${CELLPROV_BIN:-$repo/.build/debug}

# "NAME FILE OPTION..." for each declaration, in file order.
suites() {
    for file in "$here"/test_*.py; do
        sed -n 's/^# registry-suite: *//p' "$file" | while read -r name options; do
            echo "$name $file${options:+ $options}"
        done
    done
}

if [ "${1:-}" = "--list" ]; then
    suites | sed "s|$here/||"
    exit 0
fi

if [ -z "${CELLPROV_TEST_POSTGRES_URL:-}" ] && [ -z "${REGISTRY_RUN_NO_PG:-}" ]; then
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        exec scripts/with-postgres.sh "$0" "$@"
    fi
    REGISTRY_RUN_NO_PG=1   # the PostgreSQL tests then skip (or fail under CELLPROV_TEST_NO_SKIP=1) on their own
    export REGISTRY_RUN_NO_PG
fi

python=python3
pip_install() { # module package
    "$python" -c "import $1" 2>/dev/null || "$python" -m pip install -q "$2" >/dev/null 2>&1 ||
        "$python" -m pip install -q --break-system-packages "$2" >/dev/null 2>&1 || true
}

tests=${*:-$(suites | cut -d' ' -f1)}
failed=""
run() { # name timeout command...
    name=$1 limit=$2
    shift 2
    echo "== registry: $name"
    start=$(date +%s)
    setsid timeout "$limit" "$@" &
    pid=$!
    status=0
    wait "$pid" || status=$?
    kill -TERM -- "-$pid" 2>/dev/null || true
    echo "== registry: $name: status $status ($(( $(date +%s) - start )) s)"
    [ "$status" -eq 0 ] || [ "$status" -eq 77 ] || failed="$failed $name"   # 77: skipped (test_browser.py)
}

run_suite() { # name file option...
    name=$1 file=$2
    shift 2
    limit=300 args=""
    for option in "$@"; do
        case $option in
            timeout=*) limit=${option#timeout=} ;;
            needs=*) needs=${option#needs=}; pip_install "${needs%%:*}" "${needs#*:}" ;;
            *) args="$args $(echo "$option" | sed "s|{bin}|$bin|g")" ;;
        esac
    done
    # shellcheck disable=SC2086  # the arguments are words without spaces (the declarations' rule)
    run "$name" "$limit" "$python" "$file" $args
}

for t in $tests; do
    declaration=$(suites | awk -v name="$t" '$1 == name' | head -n 1)
    if [ -z "$declaration" ]; then
        echo "unknown suite: $t (Tests/registry/run.sh --list)"
        failed="$failed $t"
        continue
    fi
    # shellcheck disable=SC2086
    run_suite $declaration
done
if [ -n "$failed" ]; then
    echo "registry tests FAILED:$failed"
    exit 1
fi
echo "registry tests passed"
