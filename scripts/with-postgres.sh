#!/usr/bin/env bash
# Runs CMD... with a throw-away real PostgreSQL (scripts/pg-test-server.sh) and CELLPROV_TEST_POSTGRES_URL set to
# it, then stops the server whatever CMD's outcome (EXIT trap), and exits with CMD's status. When the variable is
# already set (a server the caller runs), CMD runs against that one and nothing is started.
#   scripts/with-postgres.sh swift test --skip-build
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: with-postgres.sh CMD [ARGS...]" >&2; exit 2; }
if [ -n "${CELLPROV_TEST_POSTGRES_URL:-}" ]; then
    exec "$@"
fi
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/cellprov-pg.XXXXXX)
chmod 0755 "$dir"   # the server runs as `postgres` when we are root: it must reach DIR
stop() {
    "$here/pg-test-server.sh" stop "$dir" || true
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM
url=$("$here/pg-test-server.sh" start "$dir") || { echo "with-postgres.sh: PostgreSQL did not start" >&2; exit 1; }
export CELLPROV_TEST_POSTGRES_URL="$url"
echo "with-postgres.sh: PostgreSQL at $url" >&2
"$@"
