#!/usr/bin/env bash
# `make sanitize`: the Swift test suite under AddressSanitizer (with LeakSanitizer), then under ThreadSanitizer;
# docs/robustness.md.
#
#   scripts/sanitize.sh [address] [thread]      default: both; extra `swift test` arguments in SANITIZE_TEST_ARGS
#                                                (e.g. SANITIZE_TEST_ARGS="--filter CellprovCoreTests")
#
# Each sanitizer builds in its own scratch path (.build-address, .build-thread): a sanitized build never mixes
# with the normal one, and a second run is incremental. The runtimes come with the Swift toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-swift}
sanitizers=("$@")
[ ${#sanitizers[@]} -eq 0 ] && sanitizers=(address thread)
# shellcheck disable=SC2206
extra=(${SANITIZE_TEST_ARGS:-})
# halt_on_error: the first report fails the run; the suppressions file names reports that are not ours.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:suppressions=$PWD/scripts/tsan.supp}

status=0
for s in "${sanitizers[@]}"; do
    case "$s" in address|thread) ;; *) echo "sanitize: unknown sanitizer '$s' (address, thread)" >&2; exit 64 ;; esac
    scratch=".build-$s"
    mkdir -p "$scratch"
    start=$(date +%s)
    if ! "$SWIFT" build --build-tests --sanitize="$s" --scratch-path "$scratch" >"$scratch/sanitize-build.log" 2>&1; then
        grep -v "ld.gold: warning" "$scratch/sanitize-build.log" | tail -40 >&2
        echo "sanitize: the $s build failed" >&2
        exit 1
    fi
    built=$(date +%s)
    echo "sanitize: $s build $(( built - start )) s"
    if "$SWIFT" test --skip-build --sanitize="$s" --scratch-path "$scratch" "${extra[@]}" 2>&1 | tee "$scratch/sanitize-test.log" \
        | grep -E "Sanitizer|^Test run|passed after|failed after|error:" ; then :; fi
    if grep -qE "ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|with [0-9]+ issues?|failed after" \
        "$scratch/sanitize-test.log"; then
        echo "sanitize: $s: FAILED (report in $scratch/sanitize-test.log)" >&2
        status=1
    fi
    echo "sanitize: $s tests $(( $(date +%s) - built )) s"
done
exit $status
