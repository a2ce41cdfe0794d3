#!/usr/bin/env python3
# registry-suite: two-instances
"""Two cellprov-registry instances on one PostgreSQL database receive the same events at the same time (issue 9:
"every event stored once"). Each event is posted to both instances concurrently (two threads released together
per event, many events in flight): exactly one instance answers 201, the other 409, and afterwards each unit's
timeline, read through both instances, holds each event once. The event ids are counted too through psql
(`SELECT count(*) ... WHERE <any text column> = event_id` is schema-dependent, so the count is through the API;
psql only checks that both instances really share one database: one database, two server processes).

Exit status: 0 passed (or skipped, SKIP: reason), 1 failed.
"""
import os
import shutil
import sys
import tempfile
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through harness)

T = blackbox.Checks("registry two instances on one PostgreSQL")
DEVICES = int(os.environ.get("TWO_INSTANCES_DEVICES", "12"))
EVENTS = int(os.environ.get("TWO_INSTANCES_EVENTS", "15"))   # per device


def skip(reason):
    blackbox.skip(T.name, reason)


def device_events(serial, n):
    imei = h.make_imei()
    prev = None
    out = []
    for seq in range(1, n + 1):
        imsi, iccid = h.make_imsi(), h.make_iccid()
        out.append(h.event(serial, "platform-xhci-hcd.0-usb-0:1.2", "enrolled" if seq == 1 else "sim_changed", seq,
                           imei, imsi, iccid, previous=prev))
        prev = {"imei": imei, "imsi": imsi, "iccid": iccid}
    return out


def main():
    h.require_registry(skip)
    pg = h.PostgresServer()
    if not pg.available():
        skip("PostgreSQL server binaries missing (apt-get install postgresql)")
    work = tempfile.mkdtemp(prefix="cellprov-reg2-")
    regs = []
    try:
        pg.start()
        database = pg.new_database()
        a = h.Registry(database, work, "instance-a").start()
        regs.append(a)
        b = h.Registry(database, work, "instance-b").start()   # migrations already applied: idempotent start
        regs.append(b)
        admin = a.operator_add("ops", "admin")
        serials = [f"GW-TWO-{i:03d}" for i in range(DEVICES)]
        tokens = {s: b.device_add(s) for s in serials}   # created through either; both must accept it
        events = {s: device_events(s, EVENTS) for s in serials}

        results = {}
        lock = threading.Lock()

        def race(serial, ev):
            barrier = threading.Barrier(2)

            def one(reg):
                barrier.wait()
                return reg.post_event(tokens[serial], ev).status
            with ThreadPoolExecutor(2) as ex:
                fa, fb = ex.submit(one, a), ex.submit(one, b)
                pair = (fa.result(), fb.result())
            with lock:
                results[ev["event_id"]] = pair

        # devices in parallel (8 at a time), each device's events in order, each event to both instances at once
        def device(serial):
            for ev in events[serial]:
                race(serial, ev)
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(device, serials))

        total = DEVICES * EVENTS
        pairs = list(results.values())
        ok = sum(1 for p in pairs if sorted(p) == [201, 409])
        T.check(len(pairs) == total, f"{total} events raced ({len(pairs)})")
        T.check(ok == total, f"every raced event: one 201 and one 409 ({ok}/{total}; "
                             f"others: {sorted(set(tuple(sorted(p)) for p in pairs if sorted(p) != [201, 409]))})")
        T.check(any(p == (201, 409) for p in pairs) and any(p == (409, 201) for p in pairs),
                "both instances won some races (the race was real)")
        for reg in (a, b):
            counts = {}
            for s in serials:
                r = reg.unit(admin, s)
                ids = [e for e in h.values_of_key(r.json(), "event_id")] if r.status == 200 else []
                counts[s] = (len(ids), len(set(ids)))
            wrong = {s: c for s, c in counts.items() if c != (EVENTS, EVENTS)}
            T.check(not wrong, f"through {reg.name}: each unit's timeline holds its {EVENTS} events once "
                               f"({len(wrong)} wrong: {dict(list(wrong.items())[:3])})")
        stored = {e for s in serials for e in h.values_of_key(a.unit(admin, s).json(), "event_id")}
        T.check(stored == set(results), "the stored event ids are exactly the ones sent")
        conns = pg.psql("SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE datname = current_database()",
                        database=urllib.parse.urlsplit(database).path.lstrip("/"))
        T.check(int(conns or 0) >= 2, f"both instances hold connections to the one database ({conns} sessions)")
        for reg in regs:
            T.check(reg.stop() == 0, f"{reg.name} exits 0 on SIGTERM")
    except Exception as e:
        T.check(False, f"unexpected: {type(e).__name__}: {e}")
    finally:
        for reg in regs:
            reg.kill()
            if T.failed:
                print(f"--- {reg.name} log (tail) ---\n" + reg.log_text()[-2000:])
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    T.finish()


if __name__ == "__main__":
    main()
