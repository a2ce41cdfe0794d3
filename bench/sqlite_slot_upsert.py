#!/usr/bin/env python3
"""The SQLite registry's slot upsert, before and after the module's names were set apart (docs/decisions.md,
"Affected units"), on the registry's `slots` table and indexes, through Python's sqlite3 (the same SQLite library
the registry links).

  A: the upsert sets every column, the module's names and the TAC included; no index on model or revision
     (SQLite schema version 6).
  B: the upsert leaves the module's names and the TAC out; a second UPDATE sets them only when one differs; indexes
     slots_model and slots_revision (version 7).

Each database holds SLOTS slots (one a unit); each round runs UPSERTS events on random slots of each database,
the module unchanged (the common case: a SIM event, a re-read), one transaction and a durable commit each (WAL,
synchronous=FULL, as the registry), A and B interleaved round by round. Prints microseconds per event per round
and the medians.

  python3 bench/sqlite_slot_upsert.py [--slots N] [--upserts N] [--rounds N] [--dir DIR]
"""
import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time

SCHEMA = """
CREATE TABLE slots (
    serial TEXT NOT NULL, origin TEXT NOT NULL, slot TEXT NOT NULL,
    imei TEXT, imsi TEXT, iccid TEXT, last_iccid TEXT, tac TEXT,
    manufacturer TEXT, model TEXT, revision TEXT, source TEXT NOT NULL,
    last_event_type TEXT NOT NULL, occurred_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    eid TEXT, last_eid TEXT, sim_slot INTEGER, max_sequence INTEGER,
    PRIMARY KEY (serial, origin, slot));
CREATE INDEX slots_imei ON slots (imei);
CREATE INDEX slots_imsi ON slots (imsi);
CREATE INDEX slots_iccid ON slots (iccid);
CREATE INDEX slots_last_iccid ON slots (last_iccid);
CREATE INDEX slots_tac ON slots (tac, serial);
CREATE INDEX slots_eid ON slots (eid) WHERE eid IS NOT NULL;
CREATE INDEX slots_last_eid ON slots (last_eid) WHERE last_eid IS NOT NULL;
"""
MODULE_INDEXES = """
CREATE INDEX slots_model ON slots (model, serial) WHERE model IS NOT NULL;
CREATE INDEX slots_revision ON slots (revision, serial) WHERE revision IS NOT NULL;
"""
INSERT = """
INSERT INTO slots (serial, origin, slot, imei, imsi, iccid, last_iccid, tac, manufacturer, model, revision, source,
    last_event_type, occurred_at, updated_at, eid, last_eid, sim_slot, max_sequence)
VALUES (?, 'device', 'usb-1', ?, ?, ?, ?, ?, ?, ?, ?, 'at', ?, ?, ?, NULL, NULL, NULL, ?)
"""
# The upsert's SET: B's is A's without the module's names and the TAC.
MODULE_SET = """tac = excluded.tac, manufacturer = excluded.manufacturer, model = excluded.model,
    revision = excluded.revision, """
UPSERT = INSERT + """
ON CONFLICT (serial, origin, slot) DO UPDATE SET imei = excluded.imei, imsi = excluded.imsi,
    max_sequence = max(coalesce(slots.max_sequence, 0), excluded.max_sequence),
    iccid = excluded.iccid, last_iccid = coalesce(excluded.last_iccid, slots.last_iccid),
    eid = excluded.eid, sim_slot = excluded.sim_slot,
    last_eid = CASE WHEN excluded.last_iccid IS NULL THEN slots.last_eid ELSE excluded.last_eid END,
    {module}source = excluded.source,
    last_event_type = excluded.last_event_type, occurred_at = excluded.occurred_at, updated_at = excluded.updated_at
WHERE excluded.occurred_at >= slots.occurred_at
"""
UPSERT_A = UPSERT.format(module=MODULE_SET)
UPSERT_B = UPSERT.format(module="")
MODULE_B = """
UPDATE slots SET tac = ?1, manufacturer = ?2, model = ?3, revision = ?4
WHERE serial = ?5 AND origin = 'device' AND slot = 'usb-1'
    AND NOT (tac IS ?1 AND manufacturer IS ?2 AND model IS ?3 AND revision IS ?4)
"""
MODELS = ["EC25", "EG25", "EM7455", "RM500Q"]


def unit(n, seq, t):
    """The event values of slot n: its module from n, its SIM from (n, seq)."""
    model = MODELS[n % 4]
    revision = f"{model}EFAR06A{n % 100:02d}M4G"
    imei = f"86425104{n:07d}"
    iccid = f"89492260{n:010d}{seq % 10}"
    return (f"BENCH-{n:07d}", imei, f"26201{n:010d}", iccid, iccid, imei[:8], "Quectel", model, revision,
            "sim_changed", t, t, seq)


def make(path, slots, with_indexes):
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + SCHEMA
                     + (MODULE_INDEXES if with_indexes else ""))
    db.execute("BEGIN")
    db.executemany(INSERT, (unit(n, 0, 1_000_000) for n in range(slots)))
    db.execute("COMMIT")
    return db


def run(db, variant, picks, t0):
    started = time.perf_counter()
    for i, n in enumerate(picks):
        v = unit(n, i + 1, t0 + i)
        db.execute("BEGIN")
        if variant == "A":
            db.execute(UPSERT_A, v)
        else:
            db.execute(UPSERT_B, v)
            module = (v[5], v[6], v[7], v[8])
            db.execute(MODULE_B, module + (v[0],))
        db.execute("COMMIT")
    return (time.perf_counter() - started) / len(picks) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, default=200_000)
    ap.add_argument("--upserts", type=int, default=2_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="slot-upsert-", dir=args.dir)
    dbs = {"A": make(os.path.join(work, "a.db"), args.slots, False),
           "B": make(os.path.join(work, "b.db"), args.slots, True)}
    print(f"sqlite {sqlite3.sqlite_version}, {args.slots} slots, {args.upserts} upserts a round, module unchanged")
    results = {"A": [], "B": []}
    t0 = 2_000_000
    for r in range(args.rounds):
        picks = [random.randrange(args.slots) for _ in range(args.upserts)]
        for variant in ("A", "B") if r % 2 == 0 else ("B", "A"):
            us = run(dbs[variant], variant, picks, t0)
            results[variant].append(us)
            print(f"round {r + 1} {variant}: {us:.0f} us per event")
        t0 += args.upserts
    # The answers agree: B's module columns are A's.
    a = dbs["A"].execute("SELECT serial, tac, manufacturer, model, revision, iccid FROM slots ORDER BY serial").fetchall()
    b = dbs["B"].execute("SELECT serial, tac, manufacturer, model, revision, iccid FROM slots ORDER BY serial").fetchall()
    assert a == b, "the two variants left different slots"
    for v in ("A", "B"):
        print(f"{v}: median {statistics.median(results[v]):.0f} us per event over {args.rounds} rounds")
    for db in dbs.values():
        db.close()
    for name in os.listdir(work):
        os.remove(os.path.join(work, name))
    os.rmdir(work)


if __name__ == "__main__":
    main()
