#!/usr/bin/env python3
"""cellprov-registry ingest against the database's own limit (issues 9 and 18; figures printed, recorded in
docs/performance.md by hand, never asserted).

1. PostgreSQL (fsync=on, synchronous_commit=on, as scripts/pg-test-server.sh runs it), one server for both sides,
   per client count (1, 16, 64) in interleaved rounds (BENCH_ROUNDS x BENCH_SECONDS per side, the order rotated
   each round; a CHECKPOINT before each round so that no timed checkpoint falls inside one):
   - the registry's durable ingest through HTTP on loopback: each device is one keep-alive connection posting its
     events one at a time, as cellprovd does (one request in flight per device), each with its own device token
     and fresh event ids; every round has new devices (new units, so that no unit's history carries over from
     round to round); the load generator is asyncio and raw HTTP/1.1 in GEN_PROCS processes (1 below 4 devices);
   - pgbench -M prepared running the minimal durable equivalent of storing an event (bench/pgbench_minimal_event.sql:
     BEGIN; INSERT a 626-byte JSON row with a fresh UUID key ON CONFLICT DO NOTHING; UPDATE one of 10 000 unit
     rows; COMMIT) in a database of its own (bench/pgbench_minimal_setup.sql), as many clients as devices, as
     many threads as the generator has processes.
   Figures: events (201) or transactions per second over the steady part of each round (BENCH_WARMUP seconds
   after the start to 1 s before the end; pgbench's per-second aggregate log, whole seconds), the ratio
   registry / pgbench, and the CPU per event of each process over that same part, from /proc (utime + stime):
   the registry process; this PostgreSQL cluster's processes (its postmaster and the postmaster's children,
   exited children through the postmaster's cutime + cstime; no other server of the machine); the load generator's
   processes; pgbench. Rates are the median (min-max) of the rounds; CPU per event is the rounds' CPU over
   their events.
2. SQLite (WAL + synchronous=FULL) the same way, beside a physical-limit peer: the same minimal transaction
   (INSERT ... ON CONFLICT DO NOTHING of the 626-byte row, UPDATE one of 10 000 units) through python's sqlite3 (the
   C library; python's per-statement cost included), WAL + synchronous=FULL, one writer committing N events per
   transaction at N clients (what group commit can at best do with N requests in flight, each answered after its
   commit), in the same directory as the registry's database.
3. Optional: a boot storm (BOOTSTORM_DEVICES devices each re-delivering BOOTSTORM_EVENTS events after an outage, at
   most BOOTSTORM_CONNECTIONS connections at a time, 10 % re-sending a first event whose answer was lost: 409
   expected); checks that every event was answered 201 or 409 and that each unit's timeline, read back through
   the API, holds exactly its events once. Off unless BOOTSTORM_DEVICES is set (10 000 devices take 5-10 minutes
   more, most of it provisioning the tokens): BOOTSTORM_DEVICES=10000 make bench-registry.

Usage: registry_ingest.py [BIN_DIR] [--registry BIN] [--registry-b BIN_B] [--json PATH]
  BIN_DIR/cellprov-registry unless --registry is given; with --registry-b the two binaries run A/B interleaved in
  every round, each on its own database of the same server. PostgreSQL from CELLPROV_TEST_POSTGRES_URL (run under
  scripts/with-postgres.sh); without it only SQLite runs. --json writes every round's figures and the summary.
Environment: BENCH_ROUNDS (3), BENCH_SECONDS (20 per side and round), BENCH_WARMUP (3), BENCH_CONCURRENCY
  ("1 16 64"), BENCH_BACKENDS ("postgres sqlite"), BENCH_PEERS (1; 0: no pgbench and no SQLite peer), PGBENCH
  (path; default the newest /usr/lib/postgresql/*/bin/pgbench, like scripts/pg-test-server.sh), GEN_PROCS (2),
  BOOTSTORM_DEVICES (0), BOOTSTORM_EVENTS (10), BOOTSTORM_CONNECTIONS (512).
  A quick check: BENCH_ROUNDS=1 BENCH_SECONDS=5 BENCH_WARMUP=1 make bench-registry
"""
import argparse
import asyncio
import glob
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "registry"))
import harness as h  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))
CONCURRENCY = [int(x) for x in os.environ.get("BENCH_CONCURRENCY", "1 16 64").split()]
BACKENDS = os.environ.get("BENCH_BACKENDS", "postgres sqlite").split()
PEERS = os.environ.get("BENCH_PEERS", "1") != "0"
STORM_DEVICES = int(os.environ.get("BOOTSTORM_DEVICES", "0"))
STORM_EVENTS = int(os.environ.get("BOOTSTORM_EVENTS", "10"))
STORM_CONNECTIONS = int(os.environ.get("BOOTSTORM_CONNECTIONS", "512"))
GEN_PROCS = int(os.environ.get("GEN_PROCS", "2"))
TICKS = os.sysconf("SC_CLK_TCK")
PGBENCH_SCRIPT = os.path.join(HERE, "pgbench_minimal_event.sql")
PGBENCH_SETUP = os.path.join(HERE, "pgbench_minimal_setup.sql")
UNITS = 10000


def minimal_payload():
    """The minimal transaction's row: a compact JSON event of the generator's shape, 626 bytes (the size the issue
    measured with; the padding field makes up the difference)."""
    ev = h.event("GW-BENCH-00000", "platform-xhci-hcd.0-usb-0:1.2", "sim_changed", 2, "356938030000005",
                 "262010000000002", "8949200000000000024",
                 previous={"imei": "356938030000005", "imsi": "262010000000001", "iccid": "8949200000000000016"},
                 event_id="00000000-0000-4000-8000-000000000000")
    ev["occurred_at"] = "2026-12-07T10:00:00Z"
    ev["pad"] = ""
    text = json.dumps(ev, separators=(",", ":"))
    ev["pad"] = "x" * (626 - len(text))
    text = json.dumps(ev, separators=(",", ":"))
    assert len(text) == 626, len(text)
    return text


# ------------------------------------------------------------------------------------------------ the generator

class Conn:
    """One keep-alive HTTP/1.1 connection (asyncio streams); reconnects when the server closes it."""

    def __init__(self, port):
        self.port = port
        self.r = self.w = None

    async def request(self, method, path, token, body=b"", extra=""):
        for attempt in (0, 1):
            if self.w is None:
                self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
            head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Length: {len(body)}\r\n{extra}\r\n")
            try:
                self.w.write(head.encode() + body)
                status_line = await self.r.readuntil(b"\r\n")
                length, chunked, close = 0, False, False
                while True:
                    line = await self.r.readuntil(b"\r\n")
                    if line == b"\r\n":
                        break
                    k, _, v = line.decode("latin-1").partition(":")
                    k = k.strip().lower()
                    if k == "content-length":
                        length = int(v)
                    elif k == "transfer-encoding" and "chunked" in v.lower():
                        chunked = True
                    elif k == "connection" and "close" in v.lower():
                        close = True
                if chunked:
                    data = b""
                    while True:
                        size = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                        data += await self.r.readexactly(size + 2)
                        if size == 0:
                            break
                else:
                    data = await self.r.readexactly(length) if length else b""
                if close:
                    self.close()
                return int(status_line.split()[1]), data
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                self.close()
                if attempt == 1:
                    raise
        raise ConnectionError("unreachable")

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


def make_body(serial, seq, index, prev):
    """An enrollment event: enrolled first, then SIM changes (a new IMSI and ICCID, unique fleet-wide)."""
    imei = h.blackbox.luhn_complete("35693803" + f"{index % 1000000:06d}")
    iccid = h.blackbox.luhn_complete("894920" + f"{index:06d}{seq:06d}")
    imsi = "26201" + f"{index % 100000:05d}{seq % 100000:05d}"
    ev = h.event(serial, "platform-xhci-hcd.0-usb-0:1.2", "enrolled" if seq == 1 else "sim_changed", seq,
                 prev["imei"] if prev else imei, imsi, iccid, previous=prev)
    return ev, {"imei": ev["identity"]["imei"], "imsi": imsi, "iccid": iccid}


POST_EXTRA = "Content-Type: application/json\r\nUser-Agent: cellprovd/0.1.0\r\nIdempotency-Key: {}\r\n"


async def steady_device(port, dev, deadline, window, lat, counts):
    """Posts the device's events one at a time until the deadline; counts and times the answers that arrive inside
    the window. `dev` carries the device's sequence and previous identity from round to round."""
    conn = Conn(port)
    ws, we = window
    while time.time() < deadline:
        seq = dev["seq"] + 1
        ev, nxt = make_body(dev["serial"], seq, dev["index"], dev["prev"])
        t0 = time.perf_counter()
        try:
            status, _ = await conn.request("POST", "/v1/enrollments", dev["token"], json.dumps(ev).encode(),
                                           POST_EXTRA.format(ev["event_id"]))
        except Exception:
            counts["error"] = counts.get("error", 0) + 1
            await asyncio.sleep(0.1)
            continue
        done = time.time()
        dev["seq"], dev["prev"] = seq, nxt
        counts[status] = counts.get(status, 0) + 1
        if ws <= done < we:
            counts["window"] = counts.get("window", 0) + (status == 201)
            lat.append(time.perf_counter() - t0)
    conn.close()


def steady_worker(port, devices, start_at, seconds, window, out):
    async def run():
        lat, counts = [], {}
        await asyncio.sleep(max(0, start_at - time.time()))
        await asyncio.gather(*(steady_device(port, d, start_at + seconds, window, lat, counts) for d in devices))
        return lat, counts
    lat, counts = asyncio.run(run())
    out.put((lat, counts, devices))


# ------------------------------------------------------------------------------------------------ CPU from /proc

def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3 onwards), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()


def process_cpu(pid, children=False):
    """CPU seconds of one process (every thread): utime + stime, and its reaped children's when asked."""
    f = stat_fields(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / TICKS


def cluster_cpu(postmaster):
    """CPU seconds of one PostgreSQL cluster: the postmaster (with its exited children, reaped into its cutime and
    cstime) and its live children. Other servers of the machine are not counted."""
    total = process_cpu(postmaster, children=True)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            f = stat_fields(pid)
            if f is not None and f[1] == str(postmaster):
                total += (int(f[11]) + int(f[12])) / TICKS
    return total


def sample(groups, postmaster):
    """{group: CPU seconds} for groups {name: [pid, ...]}, and 'postgres' for the cluster when known."""
    out = {name: sum(process_cpu(p) for p in pids) for name, pids in groups.items()}
    if postmaster:
        out["postgres"] = cluster_cpu(postmaster)
    return out


def sleep_until(t):
    while True:
        left = t - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


def steady_window(start_at):
    """The steady part of a round that starts at start_at: whole seconds, WARMUP after the start to 1 s before the
    end (pgbench's aggregate log counts whole epoch seconds)."""
    ws = math.ceil(start_at + WARMUP)
    we = math.floor(start_at + SECONDS - 1)
    if we <= ws:
        raise SystemExit(f"BENCH_SECONDS={SECONDS} leaves no steady part after BENCH_WARMUP={WARMUP} (need > 2 s)")
    return ws, we


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


# ------------------------------------------------------------------------------------------------ one round each

def registry_round(entry, clients, postmaster):
    """One round of `clients` devices that have not posted before (each round its own new units: no unit's history
    carries over from one round to the next, so rounds are alike and a store whose per-event cost grows with the
    unit's history shows it within each round the same way)."""
    reg, states, first = entry["reg"], entry["states"], entry["next"]
    if first + clients > len(states):
        raise RuntimeError("not enough provisioned devices")
    entry["next"] = first + clients
    devices = states[first:first + clients]
    procs = 1 if clients < 4 else GEN_PROCS
    shards = [devices[i::procs] for i in range(procs)]
    start_at = time.time() + 0.5
    window = steady_window(start_at)
    q = mp.Queue()
    workers = [mp.Process(target=steady_worker, args=(reg.port, s, start_at, SECONDS, window, q)) for s in shards]
    for w in workers:
        w.start()
    groups = {"registry": [reg.proc.pid], "generator": [w.pid for w in workers]}
    sleep_until(window[0])
    c0, load0 = sample(groups, postmaster), os.getloadavg()[0]
    sleep_until(window[1])
    c1, load1 = sample(groups, postmaster), os.getloadavg()[0]
    results = [q.get() for _ in workers]
    for w in workers:
        w.join()
    lat, counts, by_serial = [], {}, {}
    for r_lat, r_counts, r_devices in results:
        lat += r_lat
        for k, v in r_counts.items():
            counts[k] = counts.get(k, 0) + v
        for d in r_devices:
            by_serial[d["serial"]] = d
    for i in range(first, first + clients):
        states[i] = by_serial[states[i]["serial"]]
    events = counts.pop("window", 0)
    return finish_round(events, window, c0, c1, load0, load1, procs,
                        p50_ms=round(pct(lat, 50) * 1000, 2), p99_ms=round(pct(lat, 99) * 1000, 2),
                        answers={str(k): v for k, v in counts.items()})


def finish_round(events, window, c0, c1, load0, load1, procs, **extra):
    seconds = window[1] - window[0]
    cpu = {k: c1[k] - c0[k] for k in c1}
    r = {"rate": events / seconds, "events": events, "seconds": seconds, "load": [load0, load1], "procs": procs,
         "cpu_s": cpu, "cpu_ms_per_event": {k: (1000 * v / events if events else None) for k, v in cpu.items()}}
    r.update(extra)
    return r


def pgbench_round(pgbench, url, payload, clients, postmaster, workdir):
    threads = 1 if clients < 4 else GEN_PROCS
    logdir = tempfile.mkdtemp(prefix="pgbench-log-", dir=workdir)
    start_at = time.time() + 0.3   # pgbench's connections are open by then (a few ms each on a socket)
    window = steady_window(start_at)
    cmd = [pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads), "-T", str(int(SECONDS)),
           "-f", PGBENCH_SCRIPT, "-D", f"payload={payload}", "-l", "--aggregate-interval=1",
           f"--log-prefix={logdir}/agg", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=logdir)
    groups = {"pgbench": [proc.pid]}
    sleep_until(window[0])
    c0, load0 = sample(groups, postmaster), os.getloadavg()[0]
    sleep_until(window[1])
    c1, load1 = sample(groups, postmaster), os.getloadavg()[0]
    out, _ = proc.communicate(timeout=SECONDS + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {out[-2000:]}")
    txns, seen = 0, set()
    for path in glob.glob(f"{logdir}/agg.*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                second = int(fields[0])
                if window[0] <= second < window[1]:
                    txns += int(fields[1])
                    seen.add(second)
    shutil.rmtree(logdir, ignore_errors=True)
    if len(seen) != window[1] - window[0]:
        print(f"  (pgbench's aggregate log has {len(seen)} of the window's {window[1] - window[0]} seconds)")
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return finish_round(txns, window, c0, c1, load0, load1, threads, seconds_logged=len(seen),
                        failed=int(failed.group(1)) if failed else None,
                        pgbench_tps=float(re.search(r"tps = ([\d.]+)", out).group(1)))


def sqlite_peer_setup(path, payload):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript("""
        CREATE TABLE IF NOT EXISTS minimal_events (event_id TEXT PRIMARY KEY, payload TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS minimal_units (id INTEGER PRIMARY KEY, last_seen INTEGER,
                                                  events INTEGER NOT NULL DEFAULT 0);
    """)
    if db.execute("SELECT count(*) FROM minimal_units").fetchone()[0] == 0:
        db.execute("BEGIN")
        db.executemany("INSERT INTO minimal_units (id) VALUES (?)", ((i,) for i in range(1, UNITS + 1)))
        db.execute("COMMIT")
    db.close()


def sqlite_peer_worker(path, payload, batch, start_at, seconds, window, out):
    """One writer: BEGIN; `batch` x (INSERT the event ON CONFLICT DO NOTHING; UPDATE a random unit); COMMIT,
    WAL + synchronous=FULL (an fsync of the WAL per commit), statements cached by python's sqlite3."""
    db = sqlite3.connect(path, isolation_level=None, cached_statements=16)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    ins = "INSERT INTO minimal_events (event_id, payload) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING"
    upd = "UPDATE minimal_units SET last_seen = ?, events = events + 1 WHERE id = ?"
    rand = secrets.SystemRandom()
    sleep_until(start_at)
    deadline, events = start_at + seconds, 0
    while time.time() < deadline:
        db.execute("BEGIN")
        now = int(time.time())
        for _ in range(batch):
            db.execute(ins, (str(uuid.uuid4()), payload))
            db.execute(upd, (now, rand.randint(1, UNITS)))
        db.execute("COMMIT")
        if window[0] <= time.time() < window[1]:
            events += batch
    db.close()
    out.put(events)


def sqlite_peer_round(path, payload, clients):
    start_at = time.time() + 0.3
    window = steady_window(start_at)
    q = mp.Queue()
    w = mp.Process(target=sqlite_peer_worker, args=(path, payload, clients, start_at, SECONDS, window, q))
    w.start()
    groups = {"sqlite3": [w.pid]}
    sleep_until(window[0])
    c0, load0 = sample(groups, None), os.getloadavg()[0]
    sleep_until(window[1])
    c1, load1 = sample(groups, None), os.getloadavg()[0]
    events = q.get()
    w.join()
    return finish_round(events, window, c0, c1, load0, load1, 1)


# ------------------------------------------------------------------------------------------------ boot storm

async def storm_device(port, serial, token, index, sem, answers, failures):
    conn = Conn(port)
    prev, backoff = None, 0.2
    async with sem:
        for seq in range(1, STORM_EVENTS + 1):
            ev, prev = make_body(serial, seq, index, prev)
            ev["event_id"] = str(uuid.UUID(int=(index << 32) | seq, version=4))
            body = json.dumps(ev).encode()
            while True:
                try:
                    status, _ = await conn.request("POST", "/v1/enrollments", token, body,
                                                   POST_EXTRA.format(ev["event_id"]))
                except Exception:
                    status = None
                if status in (201, 409):
                    answers[status] = answers.get(status, 0) + 1
                    backoff = 0.2
                    break
                failures[status] = failures.get(status, 0) + 1
                conn.close()
                await asyncio.sleep(backoff * (0.5 + secrets.randbelow(1000) / 1000))
                backoff = min(backoff * 2, 10)
    conn.close()


def storm_worker(port, devices, start_at, out):
    async def run():
        answers, failures = {}, {}
        sem = asyncio.Semaphore(max(1, STORM_CONNECTIONS // GEN_PROCS))
        await asyncio.sleep(max(0, start_at - time.time()))
        await asyncio.gather(*(storm_device(port, s, t, i, sem, answers, failures) for s, t, i in devices))
        return answers, failures
    answers, failures = asyncio.run(run())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.put((answers, failures, ru.ru_utime + ru.ru_stime, time.time()))


async def count_worker_async(port, admin, serials):
    sem = asyncio.Semaphore(32)
    wrong = []

    async def one(s):
        async with sem:
            c = Conn(port)
            status, data = await c.request("GET", f"/v1/units/{s}", admin)
            c.close()
            ids = h.values_of_key(json.loads(data), "event_id") if status == 200 else []
            if len(ids) != STORM_EVENTS or len(set(ids)) != STORM_EVENTS:
                wrong.append((s, status, len(ids), len(set(ids))))
    await asyncio.gather(*(one(s) for s in serials))
    return wrong


def run_parallel(target, shards, *args):
    q = mp.Queue()
    procs = [mp.Process(target=target, args=(args[0], shard) + args[1:] + (q,)) for shard in shards if shard]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return results


def provision(reg, prefix, n):
    """n device tokens through `cellprov-registry device add` (the only contract way), 4 at a time."""
    serials = [f"{prefix}-{i:05d}" for i in range(n)]
    t0 = time.time()
    tokens = {}

    def add(s):
        return s, reg.device_add(s)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        for s, t in ex.map(add, serials):
            tokens[s] = t
    return tokens, time.time() - t0


def boot_storm(reg, admin):
    tokens, took = provision(reg, "GW-STORM", STORM_DEVICES)
    print(f"  provisioning: {STORM_DEVICES} device tokens with `device add` in {took:.0f} s "
          f"({STORM_DEVICES / took:.0f}/s)", flush=True)
    devices = [(s, tokens[s], 150000 + i) for i, s in enumerate(sorted(tokens))]
    # before the outage: 10 % delivered their first event, the answer was lost
    pre = devices[::10]

    async def predeliver():
        sem = asyncio.Semaphore(32)

        async def one(s, t, i):
            async with sem:
                ev, _ = make_body(s, 1, i, None)
                ev["event_id"] = str(uuid.UUID(int=(i << 32) | 1, version=4))
                c = Conn(reg.port)
                await c.request("POST", "/v1/enrollments", t, json.dumps(ev).encode(),
                                POST_EXTRA.format(ev["event_id"]))
                c.close()
        await asyncio.gather(*(one(*d) for d in pre))
    asyncio.run(predeliver())
    cpu0 = process_cpu(reg.proc.pid)
    start_at = time.time() + 1.0
    shards = [devices[i::GEN_PROCS] for i in range(GEN_PROCS)]
    results = run_parallel(storm_worker, shards, reg.port, start_at)
    end = max(r[3] for r in results)
    drain = end - start_at
    server_cpu = process_cpu(reg.proc.pid) - cpu0
    answers, failures = {}, {}
    for r in results:
        for k, v in r[0].items():
            answers[k] = answers.get(k, 0) + v
        for k, v in r[1].items():
            failures[k] = failures.get(k, 0) + v
    total = STORM_DEVICES * STORM_EVENTS
    print(f"  boot storm: {STORM_DEVICES} devices x {STORM_EVENTS} events = {total}: drained in {drain:.1f} s "
          f"({total / drain:.0f} events/s); answers {answers}; failed attempts retried {failures}; "
          f"registry CPU {100 * server_cpu / drain:.0f} %, generator CPU {100 * sum(r[2] for r in results) / drain:.0f} %",
          flush=True)
    print(f"  every event answered 201 or 409: {'yes' if sum(answers.values()) == total else 'NO'}; "
          f"409 for the {len(pre)} re-sent first events: {answers.get(409, 0)}")
    t0 = time.time()
    wrong = asyncio.run(count_worker_async(reg.port, admin, sorted(tokens)))
    print(f"  read back {STORM_DEVICES} timelines in {time.time() - t0:.0f} s: "
          + ("each holds its events exactly once (nothing lost, no duplicate)" if not wrong
             else f"WRONG for {len(wrong)} units, e.g. {wrong[:3]}"), flush=True)
    return {"devices": STORM_DEVICES, "events": total, "provision_s": took, "drain_s": drain,
            "answers": {str(k): v for k, v in answers.items()}, "failures": {str(k): v for k, v in failures.items()},
            "wrong_timelines": len(wrong)}


# ------------------------------------------------------------------------------------------------ the run

class BenchRegistry(h.Registry):
    """harness.Registry for a given binary: the harness reads its module-wide REGISTRY when it starts the server
    and runs the admin commands, so it is pointed at this binary for those calls (one at a time here)."""

    def __init__(self, binary, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.binary = binary

    def start(self, timeout=60):
        h.REGISTRY = self.binary
        return super().start(timeout)

    def _cli(self, *args):
        h.REGISTRY = self.binary
        return super()._cli(*args)


def newest_pg_bin(name):
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: [int(x) for x in re.findall(r"\d+", d.split("/")[-2])])
    paths = [os.path.join(d, name) for d in dirs if os.access(os.path.join(d, name), os.X_OK)]
    return paths[-1] if paths else None


def postmaster_of(pg):
    """The cluster's postmaster pid (its data directory's postmaster.pid), or None when it is not on this host."""
    try:
        pid = h.postmaster_pid(pg.url)
        return pid if stat_fields(pid) is not None else None
    except (OSError, ValueError, RuntimeError):
        return None


def rotate(sides, r):
    k = r % len(sides)
    return sides[k:] + sides[:k]


def start_registry(binary, database, work, name):
    """The registry serving `database`, with a device token for every device of every round."""
    reg = BenchRegistry(binary, database, work, name).start()
    tokens, _ = provision(reg, "GW-BENCH", ROUNDS * sum(CONCURRENCY))
    states = [{"serial": s, "token": tokens[s], "index": i, "seq": 0, "prev": None}
              for i, s in enumerate(sorted(tokens))]
    return {"reg": reg, "states": states, "next": 0}


def fmt_rate(rounds):
    rates = [r["rate"] for r in rounds]
    return f"{statistics.median(rates):7.0f} ({min(rates):.0f}-{max(rates):.0f})"


def cpu_per_event(rounds, key):
    """CPU ms per event over all rounds (their CPU over their events), or None."""
    events = sum(r["events"] for r in rounds)
    if not events or any(key not in r["cpu_s"] for r in rounds):
        return None
    return 1000 * sum(r["cpu_s"][key] for r in rounds) / events


CPU_GROUPS = ("registry", "postgres", "sqlite3", "generator", "pgbench")


def summarize(rounds_by_side):
    out = {}
    for side, rounds in rounds_by_side.items():
        if not rounds:
            continue
        rates = [r["rate"] for r in rounds]
        out[side] = {"rate_median": statistics.median(rates), "rate_min": min(rates), "rate_max": max(rates),
                     "cpu_ms_per_event": {k: cpu_per_event(rounds, k) for k in CPU_GROUPS
                                          if cpu_per_event(rounds, k) is not None},
                     "load": [min(r["load"][0] for r in rounds), max(r["load"][1] for r in rounds)]}
    return out


def ms(v):
    return "-" if v is None else f"{v:.3f}"


def print_table(title, results, peer, peer_label, db_label):
    """One row per client count and side: rate median (min-max), ratio to the peer, CPU ms per event of each
    process group (the client: the generator for the registry, pgbench for pgbench)."""
    print(f"\n{title}")
    print(f"  {'clients':>7}  {'side':<16} {'per second: median (min-max)':>29}  {'ratio':>5}  {'CPU ms/event:':>13} "
          f"{'registry':>8} {db_label:>8} {'client':>7}  {'load avg':>9}")
    for c, by_side in results.items():
        summary = summarize(by_side)
        base = summary.get(peer, {}).get("rate_median")
        for side, s in summary.items():
            cpu = s["cpu_ms_per_event"]
            db = cpu.get("postgres", cpu.get("sqlite3"))
            client = cpu.get("generator", cpu.get("pgbench"))
            ratio = f"{s['rate_median'] / base:5.2f}" if base and side != peer else "     "
            label = peer_label if side == peer else f"registry {side}"
            print(f"  {c:7d}  {label:<16} {fmt_rate(by_side[side]):>29}  {ratio}  {'':>13} {ms(cpu.get('registry')):>8} "
                  f"{ms(db):>8} {ms(client):>7}  {s['load'][0]:4.1f}-{s['load'][1]:<4.1f}")
        minimal = summary.get(peer, {}).get("cpu_ms_per_event", {}).get("postgres")
        for side, s in summary.items():
            if minimal and side != peer and "postgres" in s["cpu_ms_per_event"]:
                print(f"  {'':7}  PostgreSQL CPU per stored event, registry {side} / minimal transaction: "
                      f"{s['cpu_ms_per_event']['postgres'] / minimal:.2f}x")
    sys.stdout.flush()


def run_backend(backend, binaries, pg, pgbench, payload, report):
    postmaster = None
    work = tempfile.mkdtemp(prefix="cellprov-regbench-")
    regs, created = {}, []
    try:
        if backend == "postgres":
            postmaster = postmaster_of(pg)
            settings = {k: pg.psql(f"SHOW {k}") for k in ("server_version", "fsync", "synchronous_commit",
                                                          "wal_sync_method", "shared_buffers", "max_connections",
                                                          "checkpoint_timeout", "max_wal_size")}
            report["postgres_settings"] = settings
            print(f"== PostgreSQL {settings['server_version']}: " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                                                             if k != "server_version")
                  + f"; cluster CPU from /proc: {'postmaster ' + str(postmaster) if postmaster else 'not on this host'}",
                  flush=True)
        else:
            print("== SQLite (WAL, synchronous=FULL)", flush=True)
        for side, binary in binaries.items():
            if backend == "postgres":
                database = pg.new_database()
                created.append(urllib_db(database))
            else:
                database = f"sqlite://{work}/registry-{side}.db"
            regs[side] = start_registry(binary, database, work, f"bench-{backend}-{side}")
        peer = None
        if PEERS and backend == "postgres" and pgbench:
            peer_url = pg.new_database()
            created.append(urllib_db(peer_url))
            psql_file(pg, PGBENCH_SETUP, urllib_db(peer_url))
            peer = "pgbench"
        elif PEERS and backend == "postgres":
            print("  pgbench not found (PGBENCH, /usr/lib/postgresql/*/bin/pgbench): the registry side only")
        elif PEERS:
            peer_path = os.path.join(work, "minimal.db")
            sqlite_peer_setup(peer_path, payload)
            peer = "sqlite3"
        results = {}
        for c in CONCURRENCY:
            by_side = {side: [] for side in list(binaries) + ([peer] if peer else [])}
            results[c] = by_side
            for r in range(ROUNDS):
                for side in rotate(list(by_side), r):
                    if backend == "postgres":
                        pg.psql("CHECKPOINT")
                    if side == "pgbench":
                        res = pgbench_round(pgbench, peer_url, payload, c, postmaster, work)
                    elif side == "sqlite3":
                        res = sqlite_peer_round(peer_path, payload, c)
                    else:
                        res = registry_round(regs[side], c, postmaster)
                    by_side[side].append(res)
                    cpu = ", ".join(f"{k} {v:.3f}" for k, v in res["cpu_ms_per_event"].items() if v is not None)
                    extra = (f" p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms answers {res['answers']}"
                             if "answers" in res else "")
                    print(f"  {c:3d} clients, round {r + 1}, {side:8s}: {res['rate']:7.0f}/s over {res['seconds']} s;"
                          f"  CPU ms/event: {cpu}  load {res['load'][0]:.1f}-{res['load'][1]:.1f}{extra}", flush=True)
        report[backend] = {str(c): {"rounds": by_side, "summary": summarize(by_side)} for c, by_side in results.items()}
        if backend == "postgres":
            print_table("PostgreSQL: the registry's ingest against pgbench's minimal transaction (same server)",
                        results, "pgbench", "pgbench minimal", "postgres")
            print("  (issue 18's goals: ratio >= 0.35 at 64 clients and >= 0.25 at 1; PostgreSQL's CPU per stored event "
                  "<= 1.6x the minimal transaction's; the registry's own CPU per event <= 0.3 ms)")
        else:
            print_table("SQLite: the registry's ingest; peer: the minimal transaction in python's sqlite3, one writer, "
                        "N events per commit", results, "sqlite3", "sqlite3 minimal", "sqlite3")
        if STORM_DEVICES > 0:
            reg = regs["A"]["reg"]
            print(f"== {backend}: boot storm (registry A)", flush=True)
            report.setdefault("bootstorm", {})[backend] = boot_storm(reg, reg.operator_add("bench", "admin"))
    finally:
        for side, entry in regs.items():
            reg = entry["reg"]
            status = reg.stop()
            if status != 0:
                print(f"  (registry {side} exit status {status})")
            reg.kill()
        for name in created:
            try:
                pg.psql(f"DROP DATABASE IF EXISTS {name}")
            except RuntimeError as e:
                print(f"  (could not drop database {name}: {e})")
        shutil.rmtree(work, ignore_errors=True)


def psql_file(pg, path, database):
    """Runs an SQL file in one database of the server (statement by statement, so that VACUUM may be in it)."""
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", pg.with_database(pg.url, database)]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd   # as the harness runs psql
    with open(path) as f:
        out = subprocess.run(cmd, stdin=f, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"psql {os.path.basename(path)} failed: {out.stderr.strip()}")


def urllib_db(url):
    import urllib.parse
    return urllib.parse.urlsplit(url).path.lstrip("/")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bindir", nargs="?", default=".build/release", help="directory of cellprov-registry (A)")
    ap.add_argument("--registry", help="the registry binary (A); default BINDIR/cellprov-registry")
    ap.add_argument("--registry-b", help="a second registry binary, run A/B interleaved with the first")
    ap.add_argument("--json", help="write every round's figures and the summary to this file")
    args = ap.parse_args()
    binaries = {"A": os.path.abspath(args.registry or os.path.join(args.bindir, "cellprov-registry"))}
    if args.registry_b:
        binaries["B"] = os.path.abspath(args.registry_b)
    for side, b in binaries.items():
        h.REGISTRY = b
        if not h.registry_implemented():
            print(f"SKIP: {b} is not built or not implemented")
            return 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    payload = minimal_payload()
    pgbench = os.environ.get("PGBENCH") or newest_pg_bin("pgbench")
    cpu_model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), "?")
    report = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cores": os.cpu_count(), "cpu": cpu_model, "kernel": platform.release()},
              "load_start": list(os.getloadavg()), "binaries": binaries, "pgbench": pgbench,
              "settings": {"rounds": ROUNDS, "seconds": SECONDS, "warmup": WARMUP, "concurrency": CONCURRENCY,
                           "gen_procs": GEN_PROCS, "payload_bytes": len(payload)}}
    la = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores ({cpu_model}), load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at start "
          f"(a shared machine skews every figure); {ROUNDS} rounds x {SECONDS:.0f} s per side, steady part from "
          f"{WARMUP:.0f} s to 1 s before the end", flush=True)
    for side, b in binaries.items():
        st = os.stat(b)
        print(f"registry {side}: {b} ({st.st_size} bytes, modified "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(st.st_mtime))})")
    pg = h.PostgresServer()
    for backend in BACKENDS:
        if backend == "postgres" and not os.environ.get("CELLPROV_TEST_POSTGRES_URL"):
            print("== postgres: skipped (CELLPROV_TEST_POSTGRES_URL unset: run under scripts/with-postgres.sh)")
            continue
        run_backend(backend, binaries, pg, pgbench, payload, report)
    report["load_end"] = list(os.getloadavg())
    report["ended_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    la = report["load_end"]
    print(f"\nload average at the end: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
