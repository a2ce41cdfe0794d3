#!/bin/sh
# The registry's browser test (Tests/registry/test_browser.py) as `make test` runs it: installs selenium from PyPI
# when it is missing (chromium and chromium-driver come from scripts/install-deps.sh), builds the registry if
# needed, runs the test. Usage: Tests/registry/run-browser.sh [BUILD_DIR] [--docs]
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$here/.build/debug}
[ $# -gt 0 ] && shift
python3 -c 'import selenium' 2>/dev/null || python3 -m pip install -q selenium || python3 -m pip install -q --break-system-packages selenium
[ -x "$build/cellprov-registry" ] || (cd "$here" && swift build --product cellprov-registry)
exec python3 "$here/Tests/registry/test_browser.py" "$build" "$@"
