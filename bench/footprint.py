#!/usr/bin/python3
"""`make bench`: cellprovd's footprint beside ModemManager's, on the same umockdev-presented Quectel EC25.

For each daemon (cellprovd from BIN, the directory of the stripped release binaries; ModemManager if
/usr/sbin/ModemManager exists): start it with the EC25 present (USB 2c7c:0125, interface 02 on `option`, a
PTY served by `cellprov simulate`), time process start -> IMEI, IMSI and ICCID read (cellprovd: its
`identity read` log line; ModemManager: the three properties readable on its private D-Bus), then, idle:
  - memory: VmRSS, RssAnon, RssFile (/proc/PID/status), Pss and Private_Dirty (/proc/PID/smaps_rollup),
    the largest mappings by Rss (/proc/PID/smaps), threads;
  - wake-ups per second: voluntary + involuntary context switches of all threads over BENCH_IDLE_SECONDS
    (default 60) without a tracer, then system calls per second over as long again under `strace -f -c`
    with the calls named (a tracer adds context switches of its own, hence two windows);
then (cellprovd) SIGHUP -> identities read again, the cost of the first event after the idle window;
and the installed size: the stripped binaries; ModemManager's binary plus the shared libraries it loads.

Environment: BENCH_IDLE_SECONDS (default 60; shorter for a quick run), BENCH_START_RUNS (cold starts timed,
default 5, after one run that creates the state directory), BENCH_SMAPS_TOP (mappings listed, default 8),
BENCH_SETTLE_SECONDS (from identities read to the idle window, default 8).
Runs itself under `umockdev-wrapper` (the preload library) when not already under it. Prints; asserts nothing.
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, ".build", "release"))
IDLE = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
RUNS = int(os.environ.get("BENCH_START_RUNS", "5"))
SMAPS_TOP = int(os.environ.get("BENCH_SMAPS_TOP", "8"))
# From identities read to the idle window: cellprovd gives start-up's memory back 5 s after it is ready.
SETTLE = float(os.environ.get("BENCH_SETTLE_SECONDS", "8"))
MODEMMANAGER = "/usr/sbin/ModemManager"

if "UMOCKDEV_DIR" not in os.environ and not os.environ.get("LD_PRELOAD", "").count("umockdev"):
    if shutil.which("umockdev-wrapper") is None:
        print("SKIP: umockdev-wrapper not found (apt-get install umockdev)")
        sys.exit(0)
    os.execvp("umockdev-wrapper", ["umockdev-wrapper", "/usr/bin/python3", os.path.abspath(__file__), BIN])

# The simulator runs from a copy: with the multi-call executable, BIN/cellprov is the daemon's own file, and a
# second process mapping it would keep its pages in memory (shared) where a gateway's real modem does not.
SIM_DIR = tempfile.mkdtemp(prefix="cellprov-footprint-sim-")
shutil.copy2(os.path.join(BIN, "cellprov"), os.path.join(SIM_DIR, "cellprov"))
os.environ["CELLPROV"] = os.path.join(SIM_DIR, "cellprov")
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(REPO, "Tests", "umockdev"))
sys.path.insert(0, os.path.join(REPO, "Tests", "pylib"))
import blackbox  # noqa: E402
import test_discovery as td  # noqa: E402  (device builders, ioctl passthrough, simulator bridge; exits 77)

from gi.repository import Gio, GLib  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


# ---------------------------------------------------------------------------------------------------------
# /proc readers


def rollup_kb(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
    return out


def mappings(pid):
    """[(rss_kb, private_dirty_kb, size_kb, perms, name)] of /proc/PID/smaps, largest Rss first."""
    rows = []
    current = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                current = {"perms": parts[1], "name": " ".join(parts[5:]) or "[anon]"}
                rows.append(current)
            elif current is not None and parts[0] in ("Rss:", "Private_Dirty:", "Size:"):
                current[parts[0][:-1]] = int(parts[1])
    rows = [(r.get("Rss", 0), r.get("Private_Dirty", 0), r.get("Size", 0), r["perms"], r["name"]) for r in rows]
    return sorted(rows, reverse=True)


def ctx_switches(pid):
    """{thread id: voluntary + involuntary context switches so far}."""
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                counts[tid] = sum(int(line.split()[1]) for line in f
                                  if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        except FileNotFoundError:
            pass
    return counts


def switches_between(before, after):
    """Context switches in between: of threads alive at both ends, and all of those started in between (a
    thread that ended in between is lost; `threads_ended` says how many)."""
    return sum(n - before.get(tid, 0) for tid, n in after.items())


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def strace_window(pid, seconds, work):
    """System calls of every thread over `seconds`: (total, [(calls, name)] most frequent first)."""
    out = os.path.join(work, f"strace-{pid}")
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-c", "-o", out, "-p", str(pid)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    time.sleep(seconds)
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    total, calls = 0, []
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or not parts[0][0].isdigit():
                continue
            name = parts[-1]
            count = int(parts[3])
            if name == "total":
                total = count
            else:
                calls.append((count, name))
    return total, sorted(calls, reverse=True)


def idle_figures(pid, work):
    time.sleep(SETTLE)
    s0, c0, t0 = ctx_switches(pid), cpu_seconds(pid), time.monotonic()
    time.sleep(IDLE)
    s1, c1, t1 = ctx_switches(pid), cpu_seconds(pid), time.monotonic()
    status, rollup, maps = blackbox.proc_status_kib(pid), rollup_kb(pid), mappings(pid)
    calls, named = strace_window(pid, IDLE, work)
    return {
        "VmRSS": status.get("VmRSS", 0), "RssAnon": status.get("RssAnon", 0), "RssFile": status.get("RssFile", 0),
        "Pss": rollup.get("Pss", 0), "Private_Dirty": rollup.get("Private_Dirty", 0),
        "Threads": status.get("Threads", 0), "wakeups": switches_between(s0, s1) / (t1 - t0), "cpu": c1 - c0,
        "threads_ended": len(set(s0) - set(s1)),
        "syscalls": calls / IDLE, "named": named[:4], "maps": maps[:SMAPS_TOP],
    }


# ---------------------------------------------------------------------------------------------------------
# The EC25 (one AT interface, 02, as in shared/peers' description), served by the simulator


def make_testbed():
    testbed = td.UMockdev.Testbed.new()
    extra = dict(td.MM_EC25["02"])
    extra.update({"CELLPROV_PORT_ROLE": "at", "CELLPROV_MODULE": "quectel-ec2x"})
    text, ttys, _ = td.usb_module(1, "2c7c", "0125", "BENCH0001", [("02", ("ff", "00", "00"), "option", 2, extra)])
    testbed.add_from_string(td.root_hub())
    testbed.add_from_string(text)
    (devnode,) = ttys
    return testbed, td.serve_with_simulator(testbed, devnode)


class StderrLines:
    """A child's stderr: the arrival times of the lines containing `needle`."""

    def __init__(self, proc, needle):
        self.proc, self.needle, self.times = proc, needle, []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buffer = b""
        for chunk in iter(lambda: os.read(self.proc.stderr.fileno(), 65536), b""):
            now = time.perf_counter()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            with self.cond:
                self.times += [now for line in lines if self.needle in line]
                self.cond.notify_all()

    def wait(self, count, timeout):
        """The arrival time of the count-th matching line, or None after `timeout` seconds."""
        with self.cond:
            if self.cond.wait_for(lambda: len(self.times) >= count, timeout):
                return self.times[count - 1]
        return None


def start_receiver():
    """`cellprov-receiver` on loopback, as the backend a gateway has configured; (process, url) or (None, None)."""
    binary = os.path.join(BIN, "cellprov-receiver")
    if not os.path.exists(binary):
        return None, None
    proc = subprocess.Popen([binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return proc, proc.stdout.readline().strip()


def bench_cellprovd(work):
    state = os.path.join(work, "state")
    config = os.path.join(work, "cellprovd.toml")
    receiver, url = start_receiver()
    blackbox.write_cellprovd_config(config, state, "GW-BENCH", udev=True, backend=url,
                                    discovery=[("reprobe_interval_seconds", 900), ("ports_table", td.PORTS_TABLE)])
    try:
        figures = cellprovd_runs(config, work)
    finally:
        if receiver is not None:
            blackbox.stop_process(receiver)
    figures["backend"] = "loopback receiver (run 0 delivers the enrollment; later runs have nothing to send)" \
        if url else "none"
    return figures


def cellprovd_runs(config, work):
    times = []
    for run in range(RUNS + 1):
        start = time.perf_counter()
        proc = subprocess.Popen([os.path.join(BIN, "cellprovd"), "--config", config],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        lines = StderrLines(proc, b"identity read: ")
        found = lines.wait(1, 20)
        if found is None:
            blackbox.stop_process(proc)
            raise SystemExit("cellprovd did not read the EC25's identities within 20 s")
        if run > 0:  # run 0 created the state directory (pseudonym key, database)
            times.append((found - start) * 1000)
        if run < RUNS:
            blackbox.stop_process(proc)
    try:
        figures = idle_figures(proc.pid, work)
        # After the idle window: what the first event costs once start-up's pages were given back.
        hup = time.perf_counter()
        proc.send_signal(signal.SIGHUP)
        again = lines.wait(2, 20)
        figures["reread"] = (again - hup) * 1000 if again else None
        figures["VmRSS_after_reread"] = blackbox.proc_status_kib(proc.pid).get("VmRSS", 0)
        time.sleep(SETTLE)  # cellprovd gives the memory back again 5 s after a burst
        figures["VmRSS_settled"] = blackbox.proc_status_kib(proc.pid).get("VmRSS", 0)
    finally:
        blackbox.stop_process(proc)
    figures["start"] = times
    return figures


MM_BUS = "org.freedesktop.ModemManager1"


def mm_identities(conn):
    """(IMEI, IMSI, ICCID) as ModemManager publishes them, or None."""
    try:
        objects = conn.call_sync(MM_BUS, "/org/freedesktop/ModemManager1", "org.freedesktop.DBus.ObjectManager",
                                 "GetManagedObjects", None, GLib.VariantType("(a{oa{sa{sv}}})"),
                                 Gio.DBusCallFlags.NONE, 1000, None).unpack()[0]
        for interfaces in objects.values():
            modem = interfaces.get("org.freedesktop.ModemManager1.Modem", {})
            imei, sim = modem.get("EquipmentIdentifier"), modem.get("Sim")
            if not imei or not sim or sim == "/":
                continue
            props = conn.call_sync(MM_BUS, sim, "org.freedesktop.DBus.Properties", "GetAll",
                                   GLib.Variant("(s)", ("org.freedesktop.ModemManager1.Sim",)),
                                   GLib.VariantType("(a{sv})"), Gio.DBusCallFlags.NONE, 1000, None).unpack()[0]
            if props.get("Imsi") and props.get("SimIdentifier"):
                return imei, props["Imsi"], props["SimIdentifier"]
    except GLib.Error:
        pass
    return None


def bench_modemmanager(work):
    conf = os.path.join(work, "bus.conf")
    sock = os.path.join(work, "bus.sock")
    with open(conf, "w") as f:
        f.write('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" '
                '"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
                f"<busconfig><type>system</type><listen>unix:path={sock}</listen><auth>EXTERNAL</auth>"
                '<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>'
                '<allow receive_sender="*"/></policy></busconfig>\n')
    bus = subprocess.Popen(["dbus-daemon", "--nofork", "--print-address=1", f"--config-file={conf}"],
                           stdout=subprocess.PIPE, text=True)
    address = bus.stdout.readline().strip()
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address  # putenv: the C environment the children inherit
    mm = None
    try:
        conn = Gio.DBusConnection.new_for_address_sync(
            address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)
        start = time.perf_counter()
        mm = subprocess.Popen([MODEMMANAGER, f"--log-file={os.path.join(work, 'mm.log')}", "--log-level=INFO",
                               "--test-no-suspend-resume"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        while mm_identities(conn) is None:
            if time.perf_counter() - start > 60:
                raise SystemExit("ModemManager did not publish the EC25's identities within 60 s")
            time.sleep(0.02)
        ready = (time.perf_counter() - start) * 1000
        conn.close_sync(None)
        figures = idle_figures(mm.pid, work)
        figures["start"] = [ready]
        return figures
    finally:
        if mm is not None:
            blackbox.stop_process(mm)
        bus.terminate()
        bus.wait()


# ---------------------------------------------------------------------------------------------------------
# Sizes and the table


def shared_libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    paths = {os.path.realpath(p.split("=>")[-1].split("(")[0].strip()) for p in out.splitlines() if "/" in p}
    return {p for p in paths if os.path.exists(p) and "umockdev" not in p}


def sizes():
    files = {b: os.path.getsize(os.path.join(BIN, b)) for b in ("cellprov", "cellprovd")}
    # A multi-call binary: cellprov and cellprovd are the same file (a link), counted once.
    inodes = {os.stat(os.path.join(BIN, b)).st_ino for b in files}
    ours = sum(files.values()) if len(inodes) == 2 else max(files.values())
    line = " + ".join(f"{b} {s / MiB:.1f}" for b, s in files.items()) + f" MiB; installed {ours / MiB:.1f} MiB"
    mm_line = None
    if os.path.exists(MODEMMANAGER):
        libs = shared_libraries(MODEMMANAGER)
        plugins = "/usr/lib/x86_64-linux-gnu/ModemManager"
        plugin_size = sum(os.path.getsize(os.path.join(plugins, p)) for p in os.listdir(plugins)
                          if p.endswith(".so")) if os.path.isdir(plugins) else 0
        mm_line = (f"ModemManager {os.path.getsize(MODEMMANAGER) / MiB:.1f} MiB + {len(libs)} shared libraries "
                   f"{sum(os.path.getsize(p) for p in libs) / MiB:.1f} MiB + plugins {plugin_size / MiB:.1f} MiB")
    return line, mm_line


def show(name, f):
    start = f["start"]
    timing = (f"{statistics.median(start):.1f} ms (min {min(start):.1f}, max {max(start):.1f}, {len(start)} runs)"
              if len(start) > 1 else f"{start[0]:.0f} ms")
    print(f"-- {name}")
    print(f"  process start -> identities read: {timing}")
    if "backend" in f:
        print(f"  backend: {f['backend']}")
    print(f"  idle: VmRSS {f['VmRSS'] / 1024:.1f} MiB, RssAnon {f['RssAnon'] / 1024:.1f}, "
          f"RssFile {f['RssFile'] / 1024:.1f}, Pss {f['Pss'] / 1024:.1f}, Private_Dirty {f['Private_Dirty'] / 1024:.1f}"
          f" MiB; {f['Threads']} threads")
    print(f"  idle over {IDLE:.0f} s: {f['wakeups']:.2f} wake-ups/s (context switches; {f['threads_ended']} threads "
          f"ended in the window), CPU {f['cpu']:.2f} s; "
          f"{f['syscalls']:.2f} system calls/s under strace -f ("
          + ", ".join(f"{n} {c}" for c, n in f["named"]) + ")")
    if f.get("reread") is not None:
        print(f"  after the idle window, SIGHUP -> identities read again: {f['reread']:.1f} ms; "
              f"VmRSS then {f['VmRSS_after_reread'] / 1024:.1f} MiB, {SETTLE:.0f} s later "
              f"{f['VmRSS_settled'] / 1024:.1f} MiB")
    print("  largest mappings (Rss, Private_Dirty, size in KiB):")
    for rss, dirty, size, perms, path in f["maps"]:
        print(f"    {rss:7d} {dirty:7d} {size:8d} {perms} {os.path.basename(path) if '/' in path else path}")


def main():
    with tempfile.TemporaryDirectory(prefix="cellprov-footprint-") as work:
        testbed, bridge = make_testbed()
        try:
            ours = bench_cellprovd(work)
            theirs = bench_modemmanager(work) if os.path.exists(MODEMMANAGER) else None
        finally:
            bridge.close()
    shutil.rmtree(SIM_DIR, ignore_errors=True)
    ours_size, mm_size = sizes()
    show(f"cellprovd ({BIN})", ours)
    if theirs is not None:
        show("ModemManager " + subprocess.run([MODEMMANAGER, "--version"], capture_output=True,
                                              text=True).stdout.split("\n")[0].split()[-1], theirs)
    else:
        print("-- ModemManager: not installed (apt-get install modemmanager dbus), not measured")
    print(f"  sizes: {ours_size}")
    if mm_size:
        print(f"         {mm_size}")


if __name__ == "__main__":
    main()
