#!/usr/bin/env bash
# `make bench`: release-build benchmarks; figures are printed (and recorded by hand in docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
uname -m; nproc
/usr/bin/python3 bench/probe_bench.py .build/release
