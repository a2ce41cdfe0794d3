#!/bin/sh
# cellprov-registry's black-box tests (`make test-registry`, part of `make test`): real processes only (the debug
# build's cellprov-registry, cellprovd, cellprov simulate/probe), one real PostgreSQL for the whole run
# (scripts/with-postgres.sh, or CELLPROV_TEST_POSTGRES_URL when the caller runs one; each test makes its own
# database), plain python3 (unittest-free scripts printing ok/FAIL lines; no pytest needed). Installs
# schemathesis from PyPI when missing.
#   Tests/registry/run.sh [TEST ...]     e.g. Tests/registry/run.sh e2e-sqlite security
# Tests: e2e-sqlite e2e-postgres pg-connect two-instances security input faults schemathesis (default), browser (reghttp's headless Chromium
# test through its Tests/registry/run-browser.sh; `make test` runs that one from test-scripts, so not by default).
# Exit status: 0 all passed or skipped (a skip is a failure under CELLPROV_TEST_NO_SKIP=1), 1 otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

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

tests=${*:-e2e-sqlite e2e-postgres pg-connect two-instances security input faults schemathesis}
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
    [ "$status" -eq 0 ] || failed="$failed $name"
}

for t in $tests; do
    case $t in
        e2e-sqlite) run "$t" 300 "$python" "$here/test_e2e.py" sqlite ;;
        e2e-postgres) run "$t" 300 "$python" "$here/test_e2e.py" postgres ;;
        pg-connect) run "$t" 300 "$python" "$here/test_pg_connect.py" ;;   # a cluster of its own (peer, scram, TLS)
        two-instances) run "$t" 300 "$python" "$here/test_two_instances.py" ;;
        security) run "$t" 300 "$python" "$here/test_security.py" ;;
        input) run "$t" 300 "$python" "$here/test_input.py" ;;
        faults) run "$t" 300 "$python" "$here/test_faults.py" ;;
        schemathesis)
            pip_install schemathesis schemathesis
            run "$t" 400 "$python" "$here/test_schemathesis.py" ;;
        browser)
            if [ -x "$here/run-browser.sh" ]; then
                run "$t" 300 "$here/run-browser.sh" "$repo/.build/debug"
            else
                echo "== registry: browser: Tests/registry/run-browser.sh not present (reghttp's), not run"
            fi ;;
        *) echo "unknown test: $t"; failed="$failed $t" ;;
    esac
done
if [ -n "$failed" ]; then
    echo "registry tests FAILED:$failed"
    exit 1
fi
echo "registry tests passed"
