#!/usr/bin/env python3
"""`make soak` (scripts/soak.sh): cellprovd against 16 simulated modems whose SIMs are swapped at random and some
unplugged and replugged, reporting to a receiver that fails a third of the requests and leaves some unanswered.

Prints the daemon's RSS and open file descriptors every minute, then checks, from the daemon's store
(`cellprov events --json`) and the receiver's record (`cellprov-receiver --json`):
  - every SIM change the soak made is an event, per slot, in order (the ICCIDs of the sim_changed events are
    exactly the ones the soak put in, in that order);
  - no sequence gap per slot; every event delivered;
  - every event accepted by the receiver exactly once, and per slot in sequence order;
  - file descriptors flat, RSS flat (the last minutes against the first, after a warm-up minute).
Exits non-zero when a check fails. Everything runs on loopback and in a temporary directory, and stops by itself.

Environment: SOAK_SECONDS (600), SOAK_MODEMS (16), SOAK_FAIL (0.33), SOAK_HANG (0.02), SOAK_DRAIN_SECONDS (600), SOAK_SWAP_MIN/MAX (20/50 s between swaps of a slot),
BIN (.build/debug), SOAK_KEEP=1 keeps the work directory.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "pylib"))
import blackbox  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BIN", os.path.join(ROOT, ".build", "debug"))
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
MODEMS = int(os.environ.get("SOAK_MODEMS", "16"))
FAIL = float(os.environ.get("SOAK_FAIL", "0.33"))
HANG = float(os.environ.get("SOAK_HANG", "0.02"))
DRAIN = int(os.environ.get("SOAK_DRAIN_SECONDS", "600"))
# Seconds between two swaps of one slot: 16 slots swap about 0.45 times a second in all, what the reporter can
# deliver through a receiver failing a third of the requests (each failure backs off 2^n s, each hang costs 30 s).
SWAP_GAP = (float(os.environ.get("SOAK_SWAP_MIN", "20")), float(os.environ.get("SOAK_SWAP_MAX", "50")))
UNPLUG_EVERY = 40.0       # seconds between two unplugs (of some slot)
rng = random.Random(int(os.environ.get("SOAK_SEED", "7")))


def rss_and_fds(pid):
    """VmRSS and RssAnon (kB) and the number of open file descriptors."""
    status = blackbox.proc_status_kib(pid)
    return status.get("VmRSS", 0), status.get("RssAnon", 0), len(os.listdir(f"/proc/{pid}/fd"))


def db_size(state):
    """state.db and its WAL, in kB."""
    total = 0
    for name in ("state.db", "state.db-wal"):
        try:
            total += os.path.getsize(os.path.join(state, name))
        except OSError:
            pass
    return total // 1024


def main():
    for tool in ("cellprov", "cellprovd", "cellprov-receiver"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            raise SystemExit(f"soak: {BIN}/{tool} missing (swift build first)")
    work = tempfile.mkdtemp(prefix="cellprov-soak-")
    print(f"soak: {MODEMS} modems, {SECONDS} s, receiver failing {FAIL:.0%} and hanging {HANG:.0%}; work {work}",
          flush=True)
    processes = []
    slots = []
    try:
        receiver, url, receiver_out = blackbox.start_receiver(BIN, work, "--fail-fraction", str(FAIL),
                                                              "--hang-fraction", str(HANG))
        processes.append(receiver)
        for i in range(MODEMS):
            slots.append(blackbox.Slot(BIN, work, i, rng))
            slots[-1].next_swap = time.monotonic() + rng.uniform(*SWAP_GAP)
        for s in slots:
            s.start()
        state = os.path.join(work, "state")
        config = os.path.join(work, "cellprovd.toml")
        blackbox.write_cellprovd_config(config, state, "GW-SOAK", ports=[s.link for s in slots], backend=url,
                                        discovery=[("reprobe_interval_seconds", 600)])
        daemon_log = open(os.path.join(work, "cellprovd.log"), "wb")
        daemon = subprocess.Popen([os.path.join(BIN, "cellprovd"), "--config", config], stderr=daemon_log)
        processes.append(daemon)

        start = time.monotonic()
        samples = []   # (elapsed s, swaps so far, rss kB, fds, anon kB)
        swaps = unplugs = 0
        next_sample = start
        next_unplug = start + UNPLUG_EVERY
        while time.monotonic() - start < SECONDS:
            now = time.monotonic()
            if daemon.poll() is not None:
                raise SystemExit(f"cellprovd exited with {daemon.returncode} (log: {work}/cellprovd.log)")
            for s in slots:
                if s.unplugged_until is not None and now >= s.unplugged_until:
                    s.start()   # replug: a new PTY behind the same link
                    s.unplugged_until = None
                    s.next_swap = now + rng.uniform(*SWAP_GAP)
                elif s.unplugged_until is None and now >= s.next_swap:
                    s.swap()
                    swaps += 1
                    s.next_swap = now + rng.uniform(*SWAP_GAP)
            if now >= next_unplug:
                candidates = [s for s in slots if s.unplugged_until is None and s.next_swap - now > 8]
                if candidates:
                    s = rng.choice(candidates)
                    s.unplug()
                    unplugs += 1
                    if rng.random() < 0.5:  # the SIM is changed while the module is out
                        s.identity.update(s.new_sim())
                        s.expected.append(s.identity["iccid"])
                        s.write()
                        swaps += 1
                    s.unplugged_until = now + rng.uniform(1.0, 3.0)
                next_unplug = now + UNPLUG_EVERY
            if now >= next_sample:
                rss, anon, fds = rss_and_fds(daemon.pid)
                samples.append((now - start, swaps, rss, fds, anon))
                if len(samples) % 6 == 1:
                    print(f"  minute {int((now - start) // 60):2d}: swaps {swaps:4d}, unplugs {unplugs:3d}, "
                          f"RSS {rss / 1024:6.1f} MiB (anon {anon / 1024:5.1f}), fds {fds}, "
                          f"state.db+wal {db_size(state)} kB", flush=True)
                next_sample += 10
            time.sleep(0.1)
        for s in slots:
            if s.unplugged_until is not None:
                s.start()
                s.unplugged_until = None
        rss, anon, fds = rss_and_fds(daemon.pid)
        samples.append((time.monotonic() - start, swaps, rss, fds, anon))
        print(f"  end      : swaps {swaps:4d}, unplugs {unplugs:3d}, RSS {rss / 1024:6.1f} MiB "
              f"(anon {anon / 1024:5.1f}), fds {fds}, state.db+wal {db_size(state)} kB", flush=True)

        # Drain: every change read and delivered.
        expected_events = sum(len(s.expected) for s in slots)
        drained = False
        drain_start = time.monotonic()
        deadline = drain_start + DRAIN
        events = []
        while time.monotonic() < deadline:
            time.sleep(5)
            out = subprocess.run([os.path.join(BIN, "cellprov"), "events", "--json", "--state-directory", state],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                continue
            events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
            pending = [e for e in events if e["delivery"]["state"] != "delivered"]
            if len(events) >= expected_events and not pending:
                drained = True
                break
        print(f"  drained  : {drained} after {time.monotonic() - drain_start:.0f} s, {len(events)} events stored, "
              f"{expected_events} expected", flush=True)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)
        receiver_out.close()
        ok = check(slots, events, os.path.join(work, "receiver.jsonl"), samples, drained)
        print(f"soak: {'passed' if ok else 'FAILED'} (work directory {work})", flush=True)
        return 0 if ok else 1
    finally:
        for s in slots:
            s.stop()
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("SOAK_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


def check(slots, events, receiver_file, samples, drained):
    failures = []
    by_slot = {}
    for e in events:
        by_slot.setdefault(e["slot"], []).append(e)
    for s in slots:
        mine = sorted(by_slot.get(s.link, []), key=lambda e: e["sequence"])
        sequences = [e["sequence"] for e in mine]
        if sequences != list(range(1, len(mine) + 1)):
            failures.append(f"slot {s.index}: sequence gap or repeat: {sequences[:20]}")
        failures += s.differences(mine)
    if not drained:
        failures.append("not every event was delivered before the drain deadline")

    accepted = {}
    order = {}
    requests = answered = hung = 0
    with open(receiver_file) as f:
        next(f)  # the URL
        for line in f:
            r = json.loads(line)
            requests += 1
            if r["status"] is None:
                hung += 1
                continue
            answered += 1
            if 200 <= r["status"] < 300 or r["status"] == 409:
                accepted[r["event_id"]] = accepted.get(r["event_id"], 0) + 1
                order.setdefault(r["slot"], []).append(r["sequence"])
    twice = [k for k, n in accepted.items() if n != 1]
    if twice:
        failures.append(f"{len(twice)} events accepted more than once")
    missing = [e["id"] for e in events if e["id"].lower() not in accepted]
    if missing:
        failures.append(f"{len(missing)} stored events never accepted by the receiver")
    for slot, seqs in order.items():
        if seqs != sorted(seqs):
            failures.append(f"slot {slot}: accepted out of order")
    print(f"  receiver : {requests} requests, {hung} left unanswered, {answered - len(accepted)} failed, "
          f"{len(accepted)} events accepted", flush=True)

    # Resources: the first two minutes after the warm-up minute against the last two.
    first = [s for s in samples if 60 <= s[0] < 180]
    last = [s for s in samples if s[0] >= samples[-1][0] - 120]
    if first and last and samples[-1][0] >= 300:
        mean = lambda xs: sum(xs) / len(xs)
        rss_first, rss_last = mean([s[2] for s in first]), mean([s[2] for s in last])
        anon_first, anon_last = mean([s[4] for s in first]), mean([s[4] for s in last])
        fd_first, fd_last = max(s[3] for s in first), max(s[3] for s in last)
        swaps_between = mean([s[1] for s in last]) - mean([s[1] for s in first])
        growth = rss_last - rss_first
        per_swap = growth / swaps_between if swaps_between else 0
        print(f"  resources: RSS {rss_first / 1024:.1f} -> {rss_last / 1024:.1f} MiB ({growth:+.0f} kB, "
              f"{per_swap:+.2f} kB per swap over {swaps_between:.0f} swaps; anon {anon_first / 1024:.1f} -> "
              f"{anon_last / 1024:.1f} MiB); fds {fd_first} -> {fd_last}", flush=True)
        if fd_last > fd_first + 2:
            failures.append(f"file descriptors grew from {fd_first} to {fd_last}")
        if growth > 8 * 1024:
            failures.append(f"RSS grew by {growth:.0f} kB")
    for f_ in failures:
        print(f"  FAIL: {f_}", flush=True)
    return not failures


if __name__ == "__main__":
    sys.exit(main())
