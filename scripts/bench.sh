#!/usr/bin/env bash
# `make bench`: release-build benchmarks; figures are printed (recorded in docs/performance.md by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.build/release
echo "machine: $(uname -m), $(nproc) cores"
echo
echo "== identity read: cellprov probe vs a pyserial script, same simulator (issue: identity core)"
/usr/bin/python3 bench/probe_bench.py "$BIN"
echo
echo "== daemon idle with 4 simulated modems (issue: daemon)"
/usr/bin/python3 bench/daemon_idle.py "$BIN"
echo
echo "== events through the store, the outbox and delivery (issue: enrollment)"
"$BIN/cellprov-bench"
