#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests and benchmarks: Debian's own server binaries, a cluster in a directory
# of the caller's, listening only on a unix socket in that directory (and on a loopback port when PG_PORT is set).
#
#   scripts/pg-test-server.sh start DIR   initdb + pg_ctl start; prints the database URL on stdout, e.g.
#                                          postgres://cellprov@/cellprov?host=DIR/socket
#   scripts/pg-test-server.sh stop DIR    pg_ctl stop (fast)
#
# PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user (the package makes
# it) and DIR is handed to it. Authentication is `trust` for the socket and loopback only: a test cluster.
# PG_PORT also listens on 127.0.0.1:PORT; PG_MAX_CONNECTIONS (default 200); PG_OPTIONS: more server options
# (`-c name=value ...`, e.g. bench/pg_ingest_plans.py's pg_stat_statements).
set -euo pipefail

cmd=${1:?usage: pg-test-server.sh start|stop DIR}
dir=${2:?usage: pg-test-server.sh start|stop DIR}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bindir/initdb" ] || { echo "error: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }

as_owner=()
if [ "$(id -u)" -eq 0 ]; then
    as_owner=(runuser -u postgres --)
fi

case "$cmd" in
start)
    mkdir -p "$dir/socket"
    [ ${#as_owner[@]} -eq 0 ] || chown -R postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        "${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U cellprov --auth=trust -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    listen="''"
    [ -z "${PG_PORT:-}" ] || listen="127.0.0.1"
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
        -o "-c listen_addresses=$listen ${PG_PORT:+-p $PG_PORT} -c unix_socket_directories=$dir/socket \
            -c max_connections=${PG_MAX_CONNECTIONS:-200} -c fsync=on -c synchronous_commit=on ${PG_OPTIONS:-}" \
            >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    port=${PG_PORT:-5432}
    "${as_owner[@]}" "$bindir/../bin/createdb" -h "$dir/socket" -p "$port" -U cellprov cellprov 2>/dev/null || true
    if [ -n "${PG_PORT:-}" ]; then
        echo "postgres://cellprov@127.0.0.1:$port/cellprov"
    else
        echo "postgres://cellprov@/cellprov?host=$dir/socket"
    fi
    ;;
stop)
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: pg-test-server.sh start|stop DIR" >&2
    exit 2
    ;;
esac
