#!/usr/bin/env bash
# `make bench`: release-build benchmarks; figures are printed (recorded in docs/performance.md by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
# Stripped copies, as `make install` installs them (install -s).
BIN=$(mktemp -d /tmp/cellprov-bench-bin.XXXXXX)
trap 'rm -rf "$BIN"' EXIT
for b in cellprov cellprov-bench cellprov-receiver; do install -s -m 0755 ".build/release/$b" "$BIN/$b"; done
ln -f "$BIN/cellprov" "$BIN/cellprovd"  # the multi-call executable, linked as `make install` does
echo "machine: $(uname -m), $(nproc) cores; binaries: release, static Swift runtime, stripped"
echo
echo "== identity read: cellprov probe vs a pyserial script, same simulator (issue: identity core)"
/usr/bin/python3 bench/probe_bench.py "$BIN"
echo
echo "== daemon idle with 4 simulated modems (issue: daemon)"
/usr/bin/python3 bench/daemon_idle.py "$BIN"
echo
echo "== footprint beside ModemManager, one umockdev-presented EC25 (issue 8; BENCH_IDLE_SECONDS, default 60)"
/usr/bin/python3 bench/footprint.py "$BIN"
echo
echo "== events through the store, the outbox and delivery (issue: enrollment)"
"$BIN/cellprov-bench"
