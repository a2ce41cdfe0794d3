#!/usr/bin/env python3
"""Start -> identities of two cellprovd builds, side by side (docs/performance.md, "Footprint after the EID and SIM
report work").

    python3 bench/start_ab.py BIN_A BIN_B

Each BIN is a directory holding `cellprovd` (and `cellprov`; `cellprov-receiver` is taken from the first that has
one). One umockdev EC25 served by the simulator, as in bench/footprint.py (whose harness this reuses); each build
gets its own state directory and two warm-up starts, then the builds start alternately (A B, B A, ...), so a
change in the machine's load falls on both. A start is timed from process start to the `identity read: ` line on
its stderr; the daemon is stopped at once.

BENCH_AB_RUNS (per build, default 100). BENCH_AB_TRACE=1: the daemons log at trace level and the medians of each
phase (port table, slot appeared, each AT command sent, identities) are printed too: where two builds differ.
A run-to-run comparison of single footprint runs is not meaningful on a shared machine (the same build measured
28 and 43 ms on two runs); this one is.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

if len(sys.argv) != 3:
    raise SystemExit(__doc__)
BUILDS = [os.path.abspath(b) for b in sys.argv[1:]]
RUNS = int(os.environ.get("BENCH_AB_RUNS", "100"))
TRACE = os.environ.get("BENCH_AB_TRACE") == "1"
# bench/footprint.py reads its binary directory from argv[1] and re-executes itself under umockdev-wrapper; hand it
# the first build and make it re-execute this script instead.
sys.argv = [os.path.abspath(__file__), BUILDS[0], BUILDS[1]]
HERE = os.path.dirname(os.path.abspath(__file__))
if "UMOCKDEV_DIR" not in os.environ and not os.environ.get("LD_PRELOAD", "").count("umockdev"):
    os.execvp("umockdev-wrapper", ["umockdev-wrapper", "/usr/bin/python3", *sys.argv])
sys.argv = sys.argv[:2]
sys.path.insert(0, HERE)
import footprint as fp  # noqa: E402

PHASES = [b"port table loaded", b"slot appeared", b"command=ATE0", b"AT+CMEE", b"AT+CCID", b"AT+CCHO",
          b"identity read: "]


def configure(build, url):
    work = tempfile.mkdtemp(prefix="cellprov-start-ab-")
    config = os.path.join(work, "cellprovd.toml")
    fp.blackbox.write_cellprovd_config(
        config, os.path.join(work, "state"), "GW-BENCH", udev=True, backend=url,
        daemon=[("log_level", "trace")] if TRACE else [],
        discovery=[("reprobe_interval_seconds", 900), ("ports_table", fp.td.PORTS_TABLE)])
    return config


def start_once(build, config):
    """{phase: ms after process start} for one start; raises if the identities never come."""
    start = time.perf_counter()
    proc = subprocess.Popen([os.path.join(build, "cellprovd"), "--config", config], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, cond = {}, threading.Condition()

    def read():
        buffer = b""
        for chunk in iter(lambda: os.read(proc.stderr.fileno(), 65536), b""):
            now = time.perf_counter()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            with cond:
                for line in lines:
                    for phase in PHASES:
                        if phase in line and phase not in seen:
                            seen[phase] = (now - start) * 1000
                cond.notify_all()

    threading.Thread(target=read, daemon=True).start()
    with cond:
        done = cond.wait_for(lambda: b"identity read: " in seen, 20)
    fp.blackbox.stop_process(proc)
    if not done:
        raise SystemExit(f"{build}: cellprovd did not read the EC25's identities within 20 s")
    return dict(seen)


def main():
    testbed, bridge = fp.make_testbed()
    receiver, url = fp.start_receiver()
    try:
        configs = {b: configure(b, url) for b in BUILDS}
        for build in BUILDS:  # the first start creates the state directory; the second warms the page cache
            start_once(build, configs[build])
            start_once(build, configs[build])
        results = {b: [] for b in BUILDS}
        for run in range(RUNS):
            for build in (BUILDS if run % 2 == 0 else BUILDS[::-1]):
                results[build].append(start_once(build, configs[build]))
        print(f"start -> identities, {RUNS} alternating starts per build, load average {os.getloadavg()[0]:.1f}")
        medians = []
        for build in BUILDS:
            times = sorted(r[b"identity read: "] for r in results[build])
            medians.append(statistics.median(times))
            print(f"  {build}: median {medians[-1]:.1f} ms, mean {statistics.mean(times):.1f}, "
                  f"min {times[0]:.1f}, max {times[-1]:.1f}")
            if TRACE:
                print("    phases (median ms): " + ", ".join(
                    f"{p.decode().strip(': ')} {statistics.median([r[p] for r in results[build]]):.1f}"
                    for p in PHASES if all(p in r for r in results[build])))
        print(f"  B against A: {100 * (medians[1] / medians[0] - 1):+.1f} %")
    finally:
        if receiver is not None:
            fp.blackbox.stop_process(receiver)
        bridge.close()
        fp.shutil.rmtree(fp.SIM_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
