#!/usr/bin/env python3
"""`make bench` for the identity read: cellprov probe against a pyserial script, on the same simulators.

Usage: probe_bench.py BIN_DIR   (the release build's folder)
Prints a Markdown table of medians (and min-max) over repeated runs; nothing is asserted.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/release"
CELLPROV = os.path.join(BIN, "cellprov")
PY = "/usr/bin/python3"  # Debian's python3, where python3-serial is installed
RUNS = int(os.environ.get("BENCH_RUNS", "20"))
HERE = os.path.dirname(os.path.abspath(__file__))


def start_sims(count, workdir):
    procs, links = [], []
    for i in range(count):
        link = os.path.join(workdir, f"modem{i}")
        p = subprocess.Popen([CELLPROV, "simulate", "--profile", "quectel", "--link", link],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        links.append(link)
    deadline = time.time() + 10
    while not all(os.path.exists(l) for l in links):
        if time.time() > deadline:
            raise SystemExit("simulators did not start")
        time.sleep(0.02)
    return procs, links


def wall(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    elapsed = (time.perf_counter() - t) * 1000
    return elapsed, r


def stats(values):
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main():
    rows = []
    with tempfile.TemporaryDirectory() as work:
        procs, links = start_sims(32, work)
        try:
            one = links[:1]
            probe_wall, probe_read, probe_cmds = [], [], []
            for _ in range(RUNS):
                ms, r = wall([CELLPROV, "probe", "--json", *one])
                rec = json.loads(r.stdout.decode().splitlines()[0])
                assert rec["valid"], rec["problems"]
                probe_wall.append(ms)
                probe_read.append(rec["elapsed_ms"])
                probe_cmds.append(rec["commands"])
            py_wall, py_read = [], []
            for _ in range(RUNS):
                ms, r = wall([PY, os.path.join(HERE, "pyserial_baseline.py"), one[0]])
                py_wall.append(ms)
                py_read.append(float(r.stdout.decode().strip()))
            many_wall = []
            for _ in range(max(5, RUNS // 4)):
                ms, r = wall([CELLPROV, "probe", "--json", *links])
                recs = [json.loads(l) for l in r.stdout.decode().splitlines()]
                assert len(recs) == 32 and all(x["valid"] for x in recs)
                many_wall.append(ms)
            # The same 32 modems served by one simulator process (a modem bank behind one hub), so the
            # simulators' own process overhead weighs less.
            bank_link = os.path.join(work, "bank")
            bank = subprocess.Popen([CELLPROV, "simulate", "--profile", "quectel", "--count", "32", "--link", bank_link],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(bank)
            bank_links = [f"{bank_link}{i}" for i in range(32)]
            deadline = time.time() + 10
            while not all(os.path.exists(l) for l in bank_links):
                if time.time() > deadline:
                    raise SystemExit("the 32-modem simulator did not start")
                time.sleep(0.02)
            bank_wall = []
            for _ in range(max(5, RUNS // 4)):
                ms, r = wall([CELLPROV, "probe", "--json", *bank_links])
                recs = [json.loads(l) for l in r.stdout.decode().splitlines()]
                assert len(recs) == 32 and all(x["valid"] for x in recs)
                bank_wall.append(ms)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
    rows.append(("cellprov probe --json, 1 modem, whole process", stats(probe_wall)))
    rows.append(("cellprov identity read alone (open to last answer, in-process)", stats(probe_read)))
    rows.append(("pyserial script (ATE0, CGSN, CIMI, CCID), whole process", stats(py_wall)))
    rows.append(("pyserial script, open + 4 commands in-process", stats(py_read)))
    rows.append(("cellprov probe --json, 32 modems in parallel (32 simulator processes), whole process", stats(many_wall)))
    rows.append(("cellprov probe --json, 32 modems in parallel (1 simulator process), whole process", stats(bank_wall)))
    print(f"runs: {RUNS}; AT commands per cellprov read: {statistics.median(probe_cmds):.0f} "
          f"(the script sends 4 and reads no manufacturer/model/revision)\n")
    print("| measure | median ms (min-max) |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    print(f"ratio cellprov/pyserial, whole process: {statistics.median(probe_wall) / statistics.median(py_wall):.2f}x")
    print(f"ratio 32 modems / 1 modem: {statistics.median(many_wall) / statistics.median(probe_wall):.2f}x "
          f"(32 simulator processes), {statistics.median(bank_wall) / statistics.median(probe_wall):.2f}x (one)")


if __name__ == "__main__":
    main()
