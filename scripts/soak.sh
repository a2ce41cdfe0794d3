#!/usr/bin/env bash
# `make soak`: cellprovd, 16 simulated modems with random SIM swaps and unplugs, a receiver that fails a third of
# the requests and hangs some, for SOAK_SECONDS (600). Not part of `make test` (minutes long). See scripts/soak.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/soak.py "$@"
