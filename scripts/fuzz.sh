#!/usr/bin/env bash
# Builds the libFuzzer targets (Sources/cellprov-fuzz-*) and runs each for a set time; docs/robustness.md.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]      default: every target, FUZZ_SECONDS (10) each
#
# libFuzzer and AddressSanitizer come with the Swift toolchain (lib/clang/*/lib/linux/libclang_rt.fuzzer*.a):
# `-sanitize=fuzzer,address` instruments our Swift code and links them; no Debian package is needed. The build has
# its own scratch path (.build-fuzz) so the normal build is not redone with the fuzzer, and builds only the fuzz
# products. Each target starts from its seeds (scripts/fuzz-seeds.py: the transcript tables, ports.tsv, the example
# configuration) and the corpus earlier runs grew (.build-fuzz/corpus/TARGET). A crash, a property violation, a
# leak, a timeout (FUZZ_TIMEOUT s for one input) or an input using more than FUZZ_RSS_MB fails the run; the input is
# saved in .build-fuzz/artifacts/TARGET/ and replays with the normal build: `.build/debug/cellprov-fuzz-TARGET FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

SWIFT=${SWIFT:-swift}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-10}
ALL_TARGETS=(at parsers identity ports scrub config)
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_PER_TARGET=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")

scratch=.build-fuzz
flags=(--scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address -Xswiftc -DCELLPROV_FUZZ)
mkdir -p "$scratch"
build_start=$(date +%s)
for t in "${targets[@]}"; do
    [ -d "Sources/cellprov-fuzz-$t" ] || { echo "fuzz: no target '$t' (one of: ${ALL_TARGETS[*]})" >&2; exit 64; }
    # ld.gold warns about every ASan check symbol it cannot export: noise, not our code.
    if ! "$SWIFT" build "${flags[@]}" --product "cellprov-fuzz-$t" >"$scratch/build-$t.log" 2>&1; then
        grep -v "ld.gold: warning" "$scratch/build-$t.log" | tail -40 >&2
        echo "fuzz: building cellprov-fuzz-$t failed" >&2
        exit 1
    fi
done
bin=$("$SWIFT" build "${flags[@]}" --show-bin-path)
echo "fuzz: built ${targets[*]} in $(( $(date +%s) - build_start )) s"

python3 scripts/fuzz-seeds.py "$scratch/seeds"
# Leaks of dependencies that are not ours to fix (each entry says why) do not fail the run.
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}
# libFuzzer reports the crash itself; the Swift runtime's backtracer would only read memory ASan objects to.
export SWIFT_BACKTRACE=enable=no
total=0
failed=()
printf '%-10s %12s %10s %10s %8s\n' target executions "exec/s" "corpus" "peak MB"
for t in "${targets[@]}"; do
    corpus="$scratch/corpus/$t"
    artifacts="$scratch/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    log="$scratch/fuzz-$t.log"
    status=0
    "$bin/cellprov-fuzz-$t" "$corpus" "$scratch/seeds/$t" \
        -max_total_time="$SECONDS_PER_TARGET" -timeout="${FUZZ_TIMEOUT:-10}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
        -max_len="${FUZZ_MAX_LEN:-8192}" -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    printf '%-10s %12s %10s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "$(ls "$corpus" | wc -l)" "${peak:-?}"
    total=$(( total + ${runs:-0} ))
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "---- cellprov-fuzz-$t failed (exit $status); its log ($log) ends:" >&2
        grep -v "^#[0-9]" "$log" | tail -30 >&2
    fi
done
echo "fuzz: $total executions in total, ${#failed[@]} target(s) failed${failed:+: ${failed[*]}}"
[ ${#failed[@]} -eq 0 ]
