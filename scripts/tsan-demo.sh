#!/usr/bin/env bash
# The shipped programs under ThreadSanitizer (issue 19 row 10; docs/robustness.md): builds cellprov, cellprovd,
# cellprov-receiver and cellprov-registry with `--sanitize=thread` (scratch path .build-thread, shared with
# `make sanitize`), then runs `make demo`'s whole job with them: nine simulated modems probed in parallel, cellprovd
# watching modules and delivering to a receiver and to the registry, SIM swaps, the eSIM profile switch, the
# registry's ingest and pages. Every process writes its reports to a file of its own (TSAN_OPTIONS log_path), so a
# report is seen even from a process the demo stops; one report, or a failing demo, fails the run.
#
#   scripts/tsan-demo.sh            (make test runs it; about 15 minutes of build from scratch, 1 minute of run)
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-swift}
scratch=.build-thread
mkdir -p "$scratch"
start=$(date +%s)
# One product per invocation (SwiftPM builds only the last of several --product options); the modules they share are
# built once.
for product in cellprov cellprovd cellprov-receiver cellprov-registry; do
    if ! "$SWIFT" build --sanitize=thread --scratch-path "$scratch" --product "$product" \
            >"$scratch/tsan-demo-build.log" 2>&1; then
        grep -v "ld.gold: warning" "$scratch/tsan-demo-build.log" | tail -40 >&2
        echo "tsan-demo: the ThreadSanitizer build of $product failed" >&2
        exit 1
    fi
done
bin=$("$SWIFT" build --sanitize=thread --scratch-path "$scratch" --show-bin-path)
built=$(date +%s)
echo "tsan-demo: built in $(( built - start )) s"

reports=$(mktemp -d /tmp/cellprov-tsan.XXXXXX)
trap 'rm -rf "$reports"' EXIT
# halt_on_error: a racing process stops at its first report (the demo then fails too); log_path: one file per
# process (reports.PID), kept after the demo has stopped the process; the suppressions name reports not ours
# (none today).
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:log_path=$reports/report:suppressions=$PWD/scripts/tsan.supp"
status=0
CELLPROV_BIN="$bin" scripts/demo.sh >"$reports/demo.out" 2>&1 || status=$?
found=$(find "$reports" -name 'report.*' | sort)
if [ -n "$found" ]; then
    for f in $found; do
        echo "== $f" >&2
        head -60 "$f" >&2
    done
    echo "tsan-demo: FAILED: $(echo "$found" | wc -l) process(es) reported a data race" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    tail -40 "$reports/demo.out" >&2
    echo "tsan-demo: FAILED: the demo exited $status under ThreadSanitizer" >&2
    exit 1
fi
echo "tsan-demo: the demo passed under ThreadSanitizer with no report ($(( $(date +%s) - built )) s)"
