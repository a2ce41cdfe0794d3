#!/usr/bin/env python3
"""Two builds of `cellprov-registry-bench` on one PostgreSQL, interleaved, with the CPU of each side per event
(issue 19's "no more than 5 % below" row; figures printed, recorded in docs/performance.md by hand, never asserted).

Each run is `BIN --no-sqlite --postgres URL --units N --events E` (a fresh database per run, N units bulk-loaded,
the lookups, then E new-unit events at 1, 16 and 64 concurrent tasks). Every line the benchmark prints is stamped
and the CPU of the benchmark process and of the PostgreSQL cluster (its postmaster, its live children and its
reaped ones; bench/registry_ingest.py's method) is sampled then, so each ingest phase (from the line before it to
its own line) gets its CPU milliseconds per event on each side, and the WAL bytes the server wrote per event. A build without --no-sqlite runs its SQLite half
first, untimed here. Runs alternate A B B A A B ... (--runs per side).

With --checkpoint-after-load a CHECKPOINT is issued as soon as the load is reported (it runs beside the
lookups): what the load left dirty is not written out during the ingest phases.

With --without-index NAME (repeatable) the B side's databases lose that index as its migration creates it (an
event trigger in template1, removed afterwards): the same binary without one index, to weigh what it costs.

Usage (under scripts/with-postgres.sh):
  registry_store_ab.py --a BIN_A --b BIN_B [--units 1000000] [--events 30000] [--runs 2] [--without-index NAME]
                       [--checkpoint-after-load] [--b-arg ARG]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from registry_ingest import cluster_cpu, process_cpu  # noqa: E402  (it puts Tests/registry on the path)
from harness import postmaster_pid, psql  # noqa: E402

PHASE = re.compile(r"^postgresql ingest at (\d+) concurrent: ([\d.]+) events/s \((\d+) events\)")
LOOKUP = re.compile(r"^postgresql lookup by (\w+): p50 ([\d.]+) ms.*p99 ([\d.]+) ms")
LOADED = re.compile(r"^postgresql loaded (\d+) units in ([\d.]+) s")


def wal_position(url):
    """The server's WAL insert position in bytes (what every database of the cluster has written to the WAL)."""
    return int(psql(url, "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


def drop_indexes_in_new_databases(url, names):
    """An event trigger in template1: each new database drops these indexes as soon as they are created."""
    listed = ", ".join("'public." + n + "'" for n in names)
    psql(url, f"""
        CREATE OR REPLACE FUNCTION bench_drop_index() RETURNS event_trigger LANGUAGE plpgsql AS $$
        DECLARE r record;
        BEGIN
          FOR r IN SELECT object_identity FROM pg_event_trigger_ddl_commands()
                   WHERE command_tag = 'CREATE INDEX' AND object_identity IN ({listed}) LOOP
            EXECUTE 'DROP INDEX ' || r.object_identity;
          END LOOP;
        END $$;
        DROP EVENT TRIGGER IF EXISTS bench_drop_index;
        CREATE EVENT TRIGGER bench_drop_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
          EXECUTE FUNCTION bench_drop_index();
        """, "template1")


def remove_trigger(url):
    psql(url, "DROP EVENT TRIGGER IF EXISTS bench_drop_index; DROP FUNCTION IF EXISTS bench_drop_index()",
         "template1")


def knows_no_sqlite(binary):
    """Builds before --no-sqlite existed refuse it; they run their SQLite half first (not timed here)."""
    return subprocess.run([binary, "--no-sqlite", "--units", "1", "--events", "1"], capture_output=True).returncode == 0


def run(binary, url, pm, units, events, checkpoint=False, extra=()):
    skip = ["--no-sqlite"] if knows_no_sqlite(binary) else []
    skip += list(extra)
    # stdbuf: the benchmark writes through C stdio, block-buffered into a pipe; each line is wanted when printed.
    proc = subprocess.Popen(["stdbuf", "-oL", binary, *skip, "--postgres", url, "--units", str(units), "--events", str(events)],
                            stdout=subprocess.PIPE, text=True)
    marks = []
    result = {"phases": {}, "lookups": {}}
    for line in proc.stdout:
        now = (time.monotonic(), process_cpu(proc.pid), cluster_cpu(pm), wal_position(url))
        line = line.strip()
        m = PHASE.match(line)
        if m and marks:
            t0, c0, p0, w0 = marks[-1]
            n = int(m.group(3))
            result["phases"][int(m.group(1))] = {
                "rate": float(m.group(2)), "client_ms": (now[1] - c0) * 1000 / n, "server_ms": (now[2] - p0) * 1000 / n,
                "wal_bytes": (now[3] - w0) / n}
        if (m := LOOKUP.match(line)):
            result["lookups"][m.group(1)] = (float(m.group(2)), float(m.group(3)))
        if (m := LOADED.match(line)):
            result["load_s"] = float(m.group(2))
            if checkpoint:
                # While the lookups run (several seconds): what the load (and a build's VACUUM after it) left
                # dirty is written out now, not during the ingest phases.
                started = time.monotonic()
                psql(url, "CHECKPOINT")
                result["checkpoint_s"] = time.monotonic() - started
        marks.append(now)
    if proc.wait() != 0:
        raise RuntimeError(f"{binary} exited {proc.returncode}")
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--units", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--without-index", action="append", default=[])
    ap.add_argument("--checkpoint-after-load", action="store_true")
    ap.add_argument("--b-arg", action="append", default=[], help="one more argument for B's runs (e.g. --no-settle)")
    args = ap.parse_args()
    url = os.environ.get("CELLPROV_TEST_POSTGRES_URL")
    if not url:
        sys.exit("CELLPROV_TEST_POSTGRES_URL unset: run under scripts/with-postgres.sh")
    pm = postmaster_pid(url)
    results = {"A": [], "B": []}
    order = [("A", "B"), ("B", "A")]
    try:
        for r in range(args.runs):
            for side in order[r % 2]:
                if side == "B" and args.without_index:
                    drop_indexes_in_new_databases(url, args.without_index)
                try:
                    res = run(args.a if side == "A" else args.b, url, pm, args.units, args.events,
                              args.checkpoint_after_load, args.b_arg if side == "B" else ())
                finally:
                    remove_trigger(url)
                results[side].append(res)
                ph = "; ".join(f"{c}: {p['rate']:.0f}/s client {p['client_ms']:.3f} server {p['server_ms']:.3f} ms "
                               f"WAL {p['wal_bytes']:.0f} B"
                               for c, p in sorted(res["phases"].items()))
                cp = f" (CHECKPOINT {res['checkpoint_s']:.1f} s)" if "checkpoint_s" in res else ""
                print(f"run {r + 1} {side}: load {res.get('load_s', 0):.1f} s{cp}; {ph}", flush=True)
    finally:
        remove_trigger(url)
    label = {"A": args.a, "B": args.b + (f" without {', '.join(args.without_index)}" if args.without_index else "")
             + (f" {' '.join(args.b_arg)}" if args.b_arg else "")}
    print(f"\n{args.units} units, {args.events} events a phase, {args.runs} runs a side (A B B A ...):")
    for side in ("A", "B"):
        print(f"  {side} = {label[side]}")
    print(f"  {'tasks':>5}  {'side':4}  {'events/s (median; runs)':32}  {'client CPU ms/ev':>16}  {'server CPU ms/ev':>16}"
          f"  {'WAL B/ev':>8}")
    for c in (1, 16, 64):
        for side in ("A", "B"):
            ps = [r["phases"][c] for r in results[side] if c in r["phases"]]
            if not ps:
                continue
            rates = [p["rate"] for p in ps]
            runs = " / ".join(f"{x:.0f}" for x in rates)
            print(f"  {c:5d}  {side:4}  {statistics.median(rates):8.0f} ({runs}){'':{max(0, 21 - len(runs))}}  "
                  f"{statistics.median(p['client_ms'] for p in ps):16.3f}  "
                  f"{statistics.median(p['server_ms'] for p in ps):16.3f}  "
                  f"{statistics.median(p['wal_bytes'] for p in ps):8.0f}")
    for kind in ("IMEI", "ICCID", "serial"):
        for side in ("A", "B"):
            ls = [r["lookups"][kind] for r in results[side] if kind in r["lookups"]]
            if ls:
                print(f"  lookup by {kind:6} {side}: p50 {statistics.median(x[0] for x in ls):.2f} ms, "
                      f"p99 {statistics.median(x[1] for x in ls):.2f} ms")


if __name__ == "__main__":
    main()
