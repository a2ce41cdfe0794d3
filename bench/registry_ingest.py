#!/usr/bin/env python3
"""cellprov-registry ingest benchmarks (issue 9, "Benchmark"; figures printed, recorded in docs/performance.md by
hand, never asserted):

1. Enrollment ingest with durable commit (SQLite: WAL + synchronous=FULL; PostgreSQL: fsync=on,
   synchronous_commit=on as scripts/pg-test-server.sh runs it) through HTTP on loopback, at 1, 16 and 64
   concurrent devices. Each device is one keep-alive connection posting its events one at a time, as cellprovd
   does (one request in flight per device), each with its own device token and a fresh event_id. Figures:
   accepted (201) events/s, latency p50/p99, CPU used by the registry and by the load generator (so that a
   saturated generator shows: it runs in GEN_PROCS processes, asyncio and raw HTTP/1.1, no client library).
2. A boot storm: BOOTSTORM_DEVICES (10 000) devices each re-delivering a backlog of BOOTSTORM_EVENTS (10) events
   after an outage, all at once (at most BOOTSTORM_CONNECTIONS open connections at a time, like a load balancer's
   limit; a refused or failed attempt is retried with backoff like cellprovd). 10 % of the devices had their first
   event stored before the outage but never got the answer, so they send it again (409 expected). Figures: time
   to drain, events/s; checks (printed): every event answered 201 or 409, and each unit's timeline, read back
   through the API, holds exactly its events once (nothing lost, no duplicate).

Usage: registry_ingest.py BIN_DIR   (BIN_DIR/cellprov-registry; PostgreSQL from CELLPROV_TEST_POSTGRES_URL, e.g.
       under scripts/with-postgres.sh; without it only SQLite runs)
Environment: BENCH_SECONDS (10 per point), BENCH_CONCURRENCY ("1 16 64"), BENCH_BACKENDS ("postgres sqlite"),
       BOOTSTORM_DEVICES (10000), BOOTSTORM_EVENTS (10), BOOTSTORM_CONNECTIONS (512), GEN_PROCS (2).
"""
import asyncio
import json
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "registry"))
import harness as h  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/release"
h.REGISTRY = os.path.join(BIN, "cellprov-registry")
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = [int(x) for x in os.environ.get("BENCH_CONCURRENCY", "1 16 64").split()]
BACKENDS = os.environ.get("BENCH_BACKENDS", "postgres sqlite").split()
STORM_DEVICES = int(os.environ.get("BOOTSTORM_DEVICES", "10000"))
STORM_EVENTS = int(os.environ.get("BOOTSTORM_EVENTS", "10"))
STORM_CONNECTIONS = int(os.environ.get("BOOTSTORM_CONNECTIONS", "512"))
GEN_PROCS = int(os.environ.get("GEN_PROCS", "2"))
TICKS = os.sysconf("SC_CLK_TCK")


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
    imei_body = "35693803" + f"{index % 1000000:06d}"
    imei = imei_body + h.luhn_digit(imei_body)
    n = f"{index:06d}{seq:06d}"
    iccid_body = "894920" + n
    iccid = iccid_body + h.luhn_digit(iccid_body)
    imsi = "26201" + f"{index % 100000:05d}{seq % 100000:05d}"
    ev = h.event(serial, "platform-xhci-hcd.0-usb-0:1.2", "enrolled" if seq == 1 else "sim_changed", seq,
                 prev["imei"] if prev else imei, imsi, iccid, previous=prev)
    return ev, {"imei": ev["identity"]["imei"], "imsi": imsi, "iccid": iccid}


POST_EXTRA = "Content-Type: application/json\r\nUser-Agent: cellprovd/0.1.0\r\nIdempotency-Key: {}\r\n"


async def steady_device(port, serial, token, index, deadline, lat, counts):
    conn = Conn(port)
    prev, seq = None, 0
    while time.time() < deadline:
        seq += 1
        ev, prev = make_body(serial, seq, index, prev)
        t0 = time.perf_counter()
        try:
            status, _ = await conn.request("POST", "/v1/enrollments", token, json.dumps(ev).encode(),
                                           POST_EXTRA.format(ev["event_id"]))
        except Exception:
            counts["error"] = counts.get("error", 0) + 1
            await asyncio.sleep(0.1)
            continue
        lat.append(time.perf_counter() - t0)
        counts[status] = counts.get(status, 0) + 1
    conn.close()


def steady_worker(port, devices, start_at, seconds, out):
    async def run():
        lat, counts = [], {}
        await asyncio.sleep(max(0, start_at - time.time()))
        await asyncio.gather(*(steady_device(port, s, t, i, start_at + seconds, lat, counts)
                               for s, t, i in devices))
        return lat, counts
    lat, counts = asyncio.run(run())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.put((lat, counts, ru.ru_utime + ru.ru_stime))


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu():
    """CPU seconds of every `postgres` process (the server's backends: where a PostgreSQL ingest spends its time)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                data = f.read()
        except OSError:
            continue
        if data[data.index("(") + 1:data.rindex(")")] == "postgres":
            fields = data.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def run_parallel(target, shards, *args):
    q = mp.Queue()
    procs = [mp.Process(target=target, args=(args[0], shard) + args[1:] + (q,)) for shard in shards if shard]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return results


def steady(reg, tokens, concurrency):
    devices = [(s, tokens[s], i) for i, s in enumerate(sorted(tokens)[:concurrency])]
    procs = 1 if concurrency < 4 else GEN_PROCS
    shards = [devices[i::procs] for i in range(procs)]
    cpu0, pg0 = proc_cpu(reg.proc.pid), postgres_cpu()
    start_at = time.time() + 0.5
    results = run_parallel(steady_worker, shards, reg.port, start_at, SECONDS)
    server_cpu = proc_cpu(reg.proc.pid) - cpu0
    pg_cpu = postgres_cpu() - pg0
    lat = [x for r in results for x in r[0]]
    counts = {}
    for r in results:
        for k, v in r[1].items():
            counts[k] = counts.get(k, 0) + v
    gen_cpu = sum(r[2] for r in results)
    ok = counts.get(201, 0)
    other = {k: v for k, v in counts.items() if k != 201}
    print(f"  {concurrency:3d} devices: {ok / SECONDS:8.0f} events/s accepted (201)   p50 {pct(lat, 50) * 1000:6.1f} ms"
          f"   p99 {pct(lat, 99) * 1000:6.1f} ms   registry CPU {100 * server_cpu / SECONDS:4.0f} %   "
          f"generator CPU {100 * gen_cpu / SECONDS:4.0f} % ({procs} proc)" +
          (f"   postgres CPU {100 * pg_cpu / SECONDS:4.0f} %" if pg_cpu > 0 else "") + (f"   other answers {other}" if other
                                                                             else ""), flush=True)
    return ok / SECONDS


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
    cpu0 = proc_cpu(reg.proc.pid)
    start_at = time.time() + 1.0
    shards = [devices[i::GEN_PROCS] for i in range(GEN_PROCS)]
    results = run_parallel(storm_worker, shards, reg.port, start_at)
    end = max(r[3] for r in results)
    drain = end - start_at
    server_cpu = proc_cpu(reg.proc.pid) - cpu0
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


def main():
    if not h.registry_implemented():
        print(f"SKIP: {h.REGISTRY} is not built or not implemented")
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start (a shared machine "
          f"skews every figure); registry: {h.REGISTRY}; {SECONDS:.0f} s per point")
    pg = h.PostgresServer()
    for backend in BACKENDS:
        work = tempfile.mkdtemp(prefix="cellprov-regbench-")
        if backend == "postgres":
            if not os.environ.get("CELLPROV_TEST_POSTGRES_URL"):
                print("== postgres: skipped (CELLPROV_TEST_POSTGRES_URL unset: run under scripts/with-postgres.sh)")
                continue
            pg.start()
            database = pg.new_database()
        else:
            database = f"sqlite://{work}/registry.db"
        print(f"== {backend}: enrollment ingest, durable commit, HTTP on loopback", flush=True)
        reg = h.Registry(database, work, f"bench-{backend}").start()
        try:
            admin = reg.operator_add("bench", "admin")
            tokens, _ = provision(reg, "GW-BENCH", max(CONCURRENCY))
            for c in CONCURRENCY:
                steady(reg, tokens, c)
            if STORM_DEVICES > 0:
                print(f"== {backend}: boot storm", flush=True)
                boot_storm(reg, admin)
            status = reg.stop()
            if status != 0:
                print(f"  (registry exit status {status})")
        finally:
            reg.kill()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
