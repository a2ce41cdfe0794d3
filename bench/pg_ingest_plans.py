#!/usr/bin/env python3
"""The PostgreSQL ingest function (migration 9; docs/decisions.md, "The ingest function's plans and scans") against
migration 2's, on the registry's own schema, through pgbench (figures printed, never asserted).

A throw-away server (scripts/pg-test-server.sh, fsync and synchronous_commit on, with pg_stat_statements loaded to
count plans); the registry's migrations applied by `cellprov-registry operator add` (any build); UNITS units with
one device slot, one event and three references each loaded by SQL (not through the ingest: the table sizes are
what matters); then ROUNDS rounds, interleaved:

  2   migration 2's function (24 arguments: before the eUICC columns, the sequence check and migration 9);
  A   the current function (29 arguments) with `plan_cache_mode` reset (PostgreSQL's default, `auto`);
  B   the current function as migrated (`plan_cache_mode = force_generic_plan`);

each `pgbench -M prepared` with CLIENTS clients for SECONDS seconds, every call a new unit with a plain SIM (no
EID: the fleet's common case) on the fast path. Prints calls/s and, from pg_stat_statements, how many times the
function's rule-context statement was planned per call.

  python3 bench/pg_ingest_plans.py [--units N] [--clients N] [--seconds N] [--rounds N] [--registry PATH]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LOAD = """
INSERT INTO units (serial, created_at, first_seen, last_seen)
SELECT 'U-' || g, 1700000000000, 1700000000000, 1700000000000 + g FROM generate_series(1, {n}) g;
INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model, revision, source,
  last_event_type, occurred_at, updated_at, max_sequence)
SELECT 'U-' || g, 'device', 'usb-1', '35' || lpad(g::text, 13, '0'), '26201' || lpad(g::text, 10, '0'),
  '8949' || lpad(g::text, 15, '0'), '8949' || lpad(g::text, 15, '0'), '35' || lpad((g % 1000)::text, 6, '0'),
  'Quectel', 'EG25', 'EG25GGBR07A08M2G', 'at', 'enrolled', 1700000000000 + g, 1700000000000 + g, 1
FROM generate_series(1, {n}) g;
INSERT INTO events (event_id, serial, origin, type, slot, sequence, severity, occurred_at, received_at, imei, imsi,
  iccid, payload)
SELECT gen_random_uuid()::text, 'U-' || g, 'device', 'enrolled', 'usb-1', 1, 'info', 1700000000000 + g,
  1700000000000 + g, '35' || lpad(g::text, 13, '0'), '26201' || lpad(g::text, 10, '0'),
  '8949' || lpad(g::text, 15, '0'), repeat('x', 300)
FROM generate_series(1, {n}) g;
INSERT INTO refs (ref, serial)
SELECT md5(k || g), 'U-' || g FROM generate_series(1, {n}) g, (VALUES ('a'), ('b'), ('c')) v(k);
VACUUM ANALYZE;
"""

# One call: a new serial, IMEI, IMSI and ICCID from a sequence (never one of the loaded units', never one of an
# earlier call), its three advisory lock keys and references, the payload's size about the registry's.
CALL = """SELECT i.* FROM (SELECT nextval('bench_calls') AS n) AS s, LATERAL cellprov_ingest(gen_random_uuid()::text,
  'PGB-' || s.n, 'device', 'enrolled', 'usb-1', 1, 'info',
  (extract(epoch from clock_timestamp()) * 1000)::bigint, (extract(epoch from clock_timestamp()) * 1000)::bigint,
  '86' || lpad(s.n::text, 13, '0'), '26299' || lpad(s.n::text, 10, '0'), '8988' || lpad(s.n::text, 15, '0'),
  NULL, NULL, NULL, repeat('x', 300),
  ARRAY[hashtextextended('serial:' || s.n, 0), hashtextextended('imei:' || s.n, 0),
    hashtextextended('iccid:' || s.n, 0)],
  ARRAY[md5('a' || s.n), md5('b' || s.n), md5('c' || s.n)],
  '86' || substr(lpad(s.n::text, 13, '0'), 1, 6), 'Quectel', 'EG25', NULL, 'at', true{extra}) AS i;
"""
V2_EXTRA = ""
V5_EXTRA = ", NULL::text, NULL::text, NULL::text, NULL::integer, NULL::text"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--registry", default=os.path.join(ROOT, ".build/debug/cellprov-registry"))
    args = ap.parse_args()
    bindir = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                                for v in os.listdir("/usr/lib/postgresql")) if os.path.isdir(d))[-1]
    work = tempfile.mkdtemp(prefix="pg-ingest-plans.")
    os.chmod(work, 0o755)
    env = dict(os.environ, PG_OPTIONS="-c shared_preload_libraries=pg_stat_statements "
               "-c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on")
    server = os.path.join(ROOT, "scripts/pg-test-server.sh")
    url = subprocess.run([server, "start", work], env=env, check=True, capture_output=True, text=True).stdout.strip()
    socket = os.path.join(work, "socket")
    try:
        def psql(sql, db="bench"):
            return subprocess.run([os.path.join(bindir, "psql"), "-qAt", "-h", socket, "-U", "cellprov", "-d", db,
                                   "-v", "ON_ERROR_STOP=1", "-c", sql],
                                  check=True, capture_output=True, text=True).stdout.strip()
        psql("CREATE DATABASE bench", db="cellprov")
        subprocess.run([args.registry, "operator", "add", "bench", "--role", "viewer", "--database",
                        url.replace("/cellprov?", "/bench?")], check=True, capture_output=True)
        psql("CREATE EXTENSION pg_stat_statements")
        psql("CREATE SEQUENCE bench_calls")
        for statement in LOAD.format(n=args.units).split(";\n"):
            if statement.strip():
                psql(statement)
        current = psql("SELECT oid::regprocedure FROM pg_proc WHERE proname = 'cellprov_ingest' AND pronargs = 29")
        scripts = {}
        for name, extra in (("2", V2_EXTRA), ("A", V5_EXTRA), ("B", V5_EXTRA)):
            scripts[name] = os.path.join(work, f"call-{name}.sql")
            with open(scripts[name], "w") as f:
                f.write(CALL.format(extra=extra))
        print(f"{args.units} units, {args.clients} clients, {args.seconds} s a run, PostgreSQL {psql('SHOW server_version')}")
        for r in range(1, args.rounds + 1):
            for name in ("2", "A", "B"):
                setting = "SET plan_cache_mode = force_generic_plan" if name == "B" else "RESET plan_cache_mode"
                psql(f"ALTER FUNCTION {current} {setting}")
                psql("CHECKPOINT")
                psql("SELECT pg_stat_statements_reset()")
                out = subprocess.run([os.path.join(bindir, "pgbench"), "-n", "-M", "prepared", "-c", str(args.clients),
                                      "-j", "2", "-T", str(args.seconds), "-h", socket, "-U", "cellprov",
                                      "-f", scripts[name], "bench"], capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"pgbench failed: {out.stderr.strip()[-2000:]}")
                out = out.stdout
                tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
                plans, calls = psql("SELECT plans, calls FROM pg_stat_statements WHERE query LIKE 'SELECT%ARRAY(%' "
                                    "AND query NOT LIKE '%nextval%' ORDER BY calls DESC LIMIT 1").split("|")
                print(f"round {r} {name}: {tps:7.0f} calls/s; rule context planned {int(plans) / int(calls):.2f} "
                      f"times a call ({calls} calls)")
        psql(f"ALTER FUNCTION {current} SET plan_cache_mode = force_generic_plan")
    finally:
        subprocess.run([server, "stop", work], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
