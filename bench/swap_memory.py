#!/usr/bin/env python3
"""cellprovd's memory across many SIM swaps (docs/robustness.md, "The 2 KB per swap").

One cellprovd watches BENCH_MODEMS simulated modems (`cellprov simulate`, static ports) and reports to a
`cellprov-receiver` that accepts everything. Each slot's SIM is swapped (a new identity file and SIGHUP to its
simulator) every BENCH_GAP_MIN to BENCH_GAP_MAX seconds, and not before the slot's previous SIM is stored as an
event (at most BENCH_WAIT_SECONDS, then it is swapped anyway and the check below fails), until BENCH_SWAPS swaps
have been made. Every BENCH_SAMPLE swaps it prints one row: VmRSS and RssAnon (/proc/PID/status), Anonymous and
Private_Dirty (/proc/PID/smaps_rollup), the Rss of the [heap] mapping and of the other anonymous mappings (glibc's
secondary arenas, thread stacks), the events stored, delivered and waiting (the state database, read-only), and
with BENCH_GDB=1 also SQLite's sqlite3_memory_used() and glibc's malloc_stats() totals (gdb attaches for a
moment: the daemon is stopped while it does; the swaps wait). After the last swap it waits for the outbox to
drain, prints a row once the daemon is idle (its memory release has run) and its largest anonymous mappings, and
checks that every swap became an event: per slot, the ICCIDs of the enrolled and sim_changed events are exactly
the SIMs put in, in order, and every event was accepted by the receiver.

BENCH_WRAP runs cellprovd under a tool (e.g. "heaptrack -o /some/dir/cellprovd"); the daemon is found among its
children and stopped with SIGTERM at the end, so the tool sees a normal exit. Other environment passes through
(e.g. MALLOC_ARENA_MAX=1).

Usage: bench/swap_memory.py [BIN]   (BIN: the directory of cellprov, cellprovd and cellprov-receiver;
                                     default .build/release)
Environment: BENCH_SWAPS (10000), BENCH_MODEMS (16), BENCH_GAP_MIN/MAX (0.3/0.8 s), BENCH_WAIT_SECONDS (10),
BENCH_SAMPLE (500), BENCH_GDB (0), BENCH_WRAP (""), BENCH_REPROBE_SECONDS (900, the daemon's default re-probe
interval), BENCH_SETTLE_SECONDS (10: from every slot enrolled to the first swap), BENCH_DRAIN_SECONDS (300),
BENCH_KEEP=1 keeps the work directory, BENCH_SEED (7). Exits non-zero when a swap is missing from the events,
an event was not accepted, or the outbox did not drain.
"""
import json
import os
import random
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "pylib"))
import blackbox  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build", "release"))
SWAPS = int(os.environ.get("BENCH_SWAPS", "10000"))
MODEMS = int(os.environ.get("BENCH_MODEMS", "16"))
GAP = (float(os.environ.get("BENCH_GAP_MIN", "0.3")), float(os.environ.get("BENCH_GAP_MAX", "0.8")))
SAMPLE = int(os.environ.get("BENCH_SAMPLE", "500"))
GDB = os.environ.get("BENCH_GDB", "0") == "1"
WRAP = shlex.split(os.environ.get("BENCH_WRAP", ""))
REPROBE = int(os.environ.get("BENCH_REPROBE_SECONDS", "900"))
WAIT = float(os.environ.get("BENCH_WAIT_SECONDS", "10"))
SETTLE = float(os.environ.get("BENCH_SETTLE_SECONDS", "10"))
DRAIN = float(os.environ.get("BENCH_DRAIN_SECONDS", "300"))
rng = random.Random(int(os.environ.get("BENCH_SEED", "7")))


def find_daemon(config, wrapper):
    """The cellprovd process started with `config` (itself, or a child of a wrapping tool)."""
    if not WRAP:
        return wrapper.pid
    for _ in range(600):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0].decode(errors="replace")) == "cellprovd" \
                    and config.encode() in argv:
                return int(entry)
        time.sleep(0.1)
    raise SystemExit("cellprovd did not start under the wrapper")


def status_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Anonymous", "Private_Dirty", "Pss_Anon"):
                out[key] = int(value.split()[0])
    # The [heap] (the main arena's brk) against the other anonymous mappings (secondary arenas, stacks, mmap).
    heap = other = 0
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", fields[0]):
                name = fields[5] if len(fields) > 5 else ""
                current = "heap" if name == "[heap]" else ("anon" if name == "" else None)
            elif fields[0] == "Rss:" and current:
                if current == "heap":
                    heap += int(fields[1])
                else:
                    other += int(fields[1])
    out["heap"] = heap
    out["anon_other"] = other
    return out


def anon_mappings(pid, top=8):
    """The largest anonymous mappings by Rss: (kB Rss, kB size, name)."""
    maps = []
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", fields[0]):
                low, high = (int(x, 16) for x in fields[0].split("-"))
                name = fields[5] if len(fields) > 5 else ""
                current = [0, (high - low) // 1024, name or "anon"] if name in ("", "[heap]", "[stack]") else None
                if current:
                    maps.append(current)
            elif fields[0] == "Rss:" and current:
                current[0] = int(fields[1])
    return sorted(maps, reverse=True)[:top]


def stored_per_slot(state):
    """Events stored per slot (the state database, read-only)."""
    db = sqlite3.connect(f"file:{os.path.join(state, 'state.db')}?mode=ro", uri=True, timeout=10)
    try:
        return dict(db.execute("SELECT slot, COUNT(*) FROM event GROUP BY slot").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        db.close()


def outbox(state):
    """(events stored, delivered, waiting) from the state database, read-only."""
    db = sqlite3.connect(f"file:{os.path.join(state, 'state.db')}?mode=ro", uri=True, timeout=10)
    try:
        rows = dict(db.execute("SELECT state, COUNT(*) FROM event GROUP BY state").fetchall())
    finally:
        db.close()
    total = sum(rows.values())
    return total, rows.get("delivered", 0), total - rows.get("delivered", 0)


def gdb_sample(pid, log_path):
    """sqlite3_memory_used() and malloc_stats()'s totals (in use, taken from the system), in kB."""
    before = os.path.getsize(log_path)
    out = subprocess.run(
        ["gdb", "-nx", "-batch", "-p", str(pid), "-ex", "print (long long)sqlite3_memory_used()",
         "-ex", "call (void)malloc_stats()"], capture_output=True, text=True, timeout=120)
    sqlite_used = None
    for line in out.stdout.splitlines():
        m = re.match(r"^\$1 = (\d+)", line)
        if m:
            sqlite_used = int(m.group(1)) // 1024
    with open(log_path, "rb") as f:
        f.seek(before)
        text = f.read().decode(errors="replace")
    # The last "Total (incl. mmap):" block.
    in_use = system = None
    total = text.rfind("Total (incl. mmap):")
    if total >= 0:
        block = text[total:]
        m = re.search(r"system bytes\s*=\s*(\d+)", block)
        system = int(m.group(1)) // 1024 if m else None
        m = re.search(r"in use bytes\s*=\s*(\d+)", block)
        in_use = int(m.group(1)) // 1024 if m else None
    arenas = text.count("Arena ")
    return sqlite_used, in_use, system, arenas


def main():
    for tool in ("cellprov", "cellprovd", "cellprov-receiver"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            raise SystemExit(f"swap_memory: {BIN}/{tool} missing")
    work = tempfile.mkdtemp(prefix="cellprov-swapmem-")
    print(f"swap_memory: {SWAPS} swaps over {MODEMS} modems, a slot every {GAP[0]}-{GAP[1]} s; "
          f"cellprovd {os.path.join(BIN, 'cellprovd')}{' under ' + ' '.join(WRAP) if WRAP else ''}"
          f"{'; MALLOC_ARENA_MAX=' + os.environ['MALLOC_ARENA_MAX'] if 'MALLOC_ARENA_MAX' in os.environ else ''}",
          flush=True)
    processes = []
    slots = []
    daemon_pid = None
    try:
        receiver, url, receiver_out = blackbox.start_receiver(BIN, work)
        processes.append(receiver)
        slots = [blackbox.Slot(BIN, work, i, rng) for i in range(MODEMS)]
        for s in slots:
            s.start()
        state = os.path.join(work, "state")
        config = os.path.join(work, "cellprovd.toml")
        blackbox.write_cellprovd_config(config, state, "GW-SWAPMEM", ports=[s.link for s in slots], backend=url,
                                        discovery=[("reprobe_interval_seconds", REPROBE)])
        log_path = os.path.join(work, "cellprovd.log")
        daemon_log = open(log_path, "wb")
        daemon = subprocess.Popen(WRAP + [os.path.join(BIN, "cellprovd"), "--config", config], stderr=daemon_log,
                                  stdout=open(os.path.join(work, "wrapper.out"), "wb"))
        processes.append(daemon)
        daemon_pid = find_daemon(config, daemon)

        # Every slot enrolled and delivered before the first swap.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if os.path.exists(os.path.join(state, "state.db")):
                try:
                    stored, delivered, _ = outbox(state)
                    if delivered >= MODEMS:
                        break
                except sqlite3.Error:
                    pass
            time.sleep(0.5)
        else:
            raise SystemExit(f"the {MODEMS} slots were not enrolled within 120 s (log: {log_path})")

        header = (f"{'swaps':>6} {'s':>5} {'VmRSS':>6} {'RssAnon':>7} {'Anon':>6} {'PrivDirty':>9} {'[heap]':>6} "
                  f"{'anon other':>10} {'events':>6} {'delivered':>9} {'outbox':>6}")
        if GDB:
            header += f" {'sqlite':>6} {'malloc in use':>13} {'malloc system':>13} {'arenas':>6}"
        print("kB (events: stored, delivered, waiting)\n" + header, flush=True)
        rows = []

        def sample(swaps, elapsed):
            m = status_kib(daemon_pid)
            stored, delivered, waiting = outbox(state)
            line = (f"{swaps:6d} {elapsed:5.0f} {m['VmRSS']:6d} {m['RssAnon']:7d} {m['Anonymous']:6d} "
                    f"{m['Private_Dirty']:9d} {m['heap']:6d} {m['anon_other']:10d} {stored:6d} {delivered:9d} "
                    f"{waiting:6d}")
            row = dict(m, swaps=swaps, stored=stored, delivered=delivered, waiting=waiting)
            if GDB:
                sqlite_used, in_use, system, arenas = gdb_sample(daemon_pid, log_path)
                line += f" {sqlite_used!s:>6} {in_use!s:>13} {system!s:>13} {arenas:6d}"
                row.update(sqlite=sqlite_used, in_use=in_use, system=system)
            rows.append(row)
            print(line, flush=True)

        # Quiet first: the start-up's SIM report setup finished, and the daemon's release after start-up done.
        time.sleep(SETTLE)
        start = time.monotonic()
        sample(0, 0)

        def reschedule():
            # From now: a sample (gdb stops the daemon) must not leave every slot overdue at once.
            now = time.monotonic()
            for s in slots:
                s.next_swap = now + rng.uniform(*GAP)

        reschedule()
        swaps = 0
        waited_out = 0
        seen = {}
        next_look = 0.0
        while swaps < SWAPS:
            if daemon.poll() is not None:
                raise SystemExit(f"cellprovd exited with {daemon.returncode} (log: {log_path})")
            now = time.monotonic()
            if now >= next_look:
                seen = stored_per_slot(state)
                next_look = now + 0.05
            for s in slots:
                if swaps < SWAPS and now >= s.next_swap:
                    # The previous SIM stored as an event first: two swaps inside one read of the slot would be
                    # one change to the daemon (it reads the SIM that is in when it reads). After WAIT seconds
                    # the slot is swapped anyway; the check at the end then names the missing event.
                    if seen.get(s.link, 0) < len(s.expected):
                        if now < s.next_swap + WAIT:
                            continue
                        waited_out += 1
                    s.swap()
                    swaps += 1
                    s.next_swap = now + rng.uniform(*GAP)
                    if swaps % SAMPLE == 0:
                        sample(swaps, time.monotonic() - start)
                        reschedule()
                        break
            time.sleep(0.01)

        expected = sum(len(s.expected) for s in slots)
        drain_start = time.monotonic()
        drained = False
        last_change, last_stored = time.monotonic(), -1
        while time.monotonic() < drain_start + DRAIN:
            stored, delivered, waiting = outbox(state)
            if stored >= expected and waiting == 0:
                drained = True
                break
            if stored != last_stored:
                last_change, last_stored = time.monotonic(), stored
            elif waiting == 0 and time.monotonic() - last_change > 20:
                break  # every event stored is delivered and no other came for 20 s: a swap was not seen
            time.sleep(1)
        print(f"swapped after waiting {WAIT:.0f} s for the previous event: {waited_out}", flush=True)
        print(f"drained: {drained} after {time.monotonic() - drain_start:.0f} s", flush=True)
        # Idle: the daemon's release after a burst (malloc_trim 5 s after the last activity).
        time.sleep(8)
        sample(swaps, time.monotonic() - start)
        m = status_kib(daemon_pid)
        print(f"idle: {m['Threads']} threads; largest anonymous mappings (Rss/size kB): "
              + ", ".join(f"{rss}/{size} {name}" for rss, size, name in anon_mappings(daemon_pid)), flush=True)

        out = subprocess.run([os.path.join(BIN, "cellprov"), "events", "--json", "--state-directory", state],
                             capture_output=True, text=True, check=True)
        events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        failures = []
        by_slot = {}
        for e in events:
            by_slot.setdefault(e["slot"], []).append(e)
        for s in slots:
            failures += s.differences(sorted(by_slot.get(s.link, []), key=lambda e: e["sequence"]))
        if not drained:
            failures.append("the outbox did not drain")
        accepted = set()
        with open(os.path.join(work, "receiver.jsonl")) as f:
            next(f)
            for line in f:
                r = json.loads(line)
                if r["status"] is not None and (200 <= r["status"] < 300 or r["status"] == 409):
                    accepted.add(r["event_id"].lower())
        missing = [e for e in events if e["id"].lower() not in accepted]
        if missing:
            failures.append(f"{len(missing)} stored events never accepted by the receiver")
        print(f"events: {len(events)} stored for {expected} SIMs put in ({MODEMS} enrolled + {swaps} swaps); "
              f"{len(accepted)} accepted by the receiver", flush=True)

        # Growth per swap over the second half (after the SQLite page cache had room to fill).
        if len(rows) >= 4:
            mid = rows[len(rows) // 2 - 1]
            last = rows[-2]  # the last sample under load
            n = last["swaps"] - mid["swaps"]
            if n:
                print(f"second half: RssAnon {mid['RssAnon']} -> {last['RssAnon']} kB "
                      f"({(last['RssAnon'] - mid['RssAnon']) * 1024 / n:+.0f} bytes per swap over {n} swaps)",
                      flush=True)

        os.kill(daemon_pid, signal.SIGTERM)
        daemon.wait(timeout=300)
        for f_ in failures:
            print(f"FAIL: {f_}", flush=True)
        kept = f" (work directory {work})" if os.environ.get("BENCH_KEEP") == "1" else ""
        print(f"swap_memory: {'passed' if not failures else 'FAILED'}{kept}", flush=True)
        return 0 if not failures else 1
    finally:
        for s in slots:
            s.stop()
        for p in processes:
            if p.poll() is None:
                if p is processes[-1] and daemon_pid and daemon_pid != p.pid:
                    try:
                        os.kill(daemon_pid, signal.SIGTERM)
                        p.wait(timeout=60)
                    except (OSError, subprocess.TimeoutExpired):
                        pass
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
