#!/usr/bin/env python3
"""`make bench`: the release daemon idle with 4 simulated modems on static ports.

Measures over BENCH_IDLE_SECONDS (default 60) between re-probes: RSS, CPU time, and wake-ups as system calls
per second of all the daemon's threads (strace -f -c: a thread that wakes makes at least one), plus the time
from start to all four identities read. Prints the figures; asserts nothing.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "pylib"))
import blackbox  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/release"
SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", "60"))
TICKS = os.sysconf("SC_CLK_TCK")


def ctx_switches(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main():
    with tempfile.TemporaryDirectory() as work:
        sims = []
        links = []
        for i, profile in enumerate(["quectel", "sierra", "telit", "simcom"]):
            link = os.path.join(work, f"m{i}")
            sims.append(subprocess.Popen([os.path.join(BIN, "cellprov"), "simulate", "--profile", profile,
                                          "--link", link], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            links.append(link)
        while not all(os.path.exists(l) for l in links):
            time.sleep(0.01)
        config = blackbox.write_cellprovd_config(os.path.join(work, "cellprovd.toml"), f"{work}/state", "GW-BENCH",
                                                 ports=links, discovery=[("reprobe_interval_seconds", 900)])
        log = open(os.path.join(work, "log"), "w+")
        start = time.perf_counter()
        daemon = subprocess.Popen([os.path.join(BIN, "cellprovd"), "--config", config], stderr=log)
        try:
            while True:
                log.seek(0)
                if log.read().count("identity read") >= 4:
                    break
                if time.perf_counter() - start > 20:
                    raise SystemExit("the daemon did not read 4 modems")
                time.sleep(0.005)
            ready = (time.perf_counter() - start) * 1000
            time.sleep(1)
            pid = daemon.pid
            trace = os.path.join(work, "strace")
            tracer = subprocess.Popen(["strace", "-f", "-qq", "-c", "-o", trace, "-p", str(pid)],
                                      stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            c0, t0 = cpu_seconds(pid), time.perf_counter()
            time.sleep(SECONDS)
            c1, t1 = cpu_seconds(pid), time.perf_counter()
            tracer.send_signal(2)
            tracer.wait()
            calls = 0
            with open(trace) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[-1] == "total":
                        calls = int(parts[3]) if len(parts) >= 5 else int(parts[2])
            rss = blackbox.proc_status_kib(pid).get("VmRSS", 0)
            threads = len(os.listdir(f"/proc/{pid}/task"))
        finally:
            daemon.terminate()
            daemon.wait()
            for s in sims:
                s.terminate()
                s.wait()
    print(f"start to 4 identities read (process start included): {ready:.0f} ms")
    print(f"idle over {t1 - t0:.0f} s with 4 modems: RSS {rss / 1024:.1f} MiB, CPU {c1 - c0:.2f} s, "
          f"system calls {calls / (t1 - t0):.2f}/s ({calls} in the window, strace -f; {threads} threads)")


if __name__ == "__main__":
    main()
