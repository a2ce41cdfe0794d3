"""The helpers the black-box suites share (Tests/registry, Tests/umockdev, Tests/modemmanager, Tests/journald) and
the benches and scripts that drive the same programs (bench/*.py, scripts/soak.py).

Standard library only, and Python 3.9 syntax at most: the umockdev/ModemManager GI suites run under the system's
/usr/bin/python3 (where python3-gi is installed), the others under whatever python3 is first on PATH.

Import it with the folder on the path, relative to the importing file:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))   # Tests/*/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "pylib"))  # bench/
    import blackbox  # noqa: E402
"""
import json
import os
import select
import socket
import signal
import subprocess
import sys
import time

PROFILES = ["quectel", "telit", "simcom", "sierra", "ublox", "huawei", "cinterion"]


# ---------------------------------------------------------------------------------------------------------------
# Checks and skipping

class Checks:
    """A suite's checks: an ok/FAIL line each (each check can fail on its own), the failures recorded in `failed`,
    and the exit status at the end, from `summary()` (returns it) or `finish()` (exits with it)."""

    def __init__(self, name):
        self.name = name
        self.failed = []

    def check(self, ok, what, detail=None):
        """Prints the outcome (with `detail` when it failed), records a failure; returns `ok`."""
        print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if not ok and detail is not None else ""),
              flush=True)
        if not ok:
            self.failed.append(what)
        return ok

    def summary(self, name=None, note=""):
        """The last line, for `name` (the suite's name by default; suites sharing one Checks name their own part);
        returns 1 when a check failed, else 0."""
        name = name or self.name
        if self.failed:
            print(f"{len(self.failed)} {name} check(s) failed")
            return 1
        print(f"all {name} checks passed{note}")
        return 0

    def finish(self):
        """Exits: 1, listing the failed checks, when one failed; else 0."""
        if self.failed:
            print(f"{self.name}: {len(self.failed)} check(s) failed:")
            for f in self.failed:
                print(f"  - {f}")
            sys.exit(1)
        print(f"{self.name}: all checks passed")
        sys.exit(0)


def skip(what, reason, status=0):
    """A prerequisite is missing: print `SKIP: WHAT: REASON` and exit with `status` (0) - or, under
    CELLPROV_TEST_NO_SKIP=1 (`make test` installed every prerequisite), print a FAIL line and exit 1."""
    if os.environ.get("CELLPROV_TEST_NO_SKIP") == "1":
        print(f"FAIL: {what}: {reason} (CELLPROV_TEST_NO_SKIP=1)", flush=True)
        sys.exit(1)
    print(f"SKIP: {what}: {reason}", flush=True)
    sys.exit(status)


# ---------------------------------------------------------------------------------------------------------------
# Check digits (IMEI and ICCID end with a Luhn digit)

def luhn_digit(body):
    """The Luhn check digit that completes `body` (a string of digits)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_complete(body):
    """`body` followed by its Luhn check digit."""
    return body + luhn_digit(body)


def luhn_ok(digits):
    """True when the last digit of `digits` is the Luhn check digit of the others."""
    return len(digits) > 1 and digits.isdigit() and luhn_digit(digits[:-1]) == digits[-1]


# ---------------------------------------------------------------------------------------------------------------
# cellprovd's configuration (docs/configuration.md)

def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))   # a TOML basic string: JSON's escapes are TOML's


def write_cellprovd_config(path, state, serial, udev=False, ports=None, backend=None, token_file=None,
                           daemon=(), discovery=(), mode=None):
    """Write a cellprovd.toml: `[daemon] state_directory` and the (key, value) pairs of `daemon`; `[discovery] udev`,
    `static_ports` when `ports` is given, and the pairs of `discovery`; `[backend] url` (and `token_file`) when
    `backend` is given; `[device] serial`. `mode` chmods the file. Returns `path`."""
    lines = ["[daemon]", f"state_directory = {toml_value(state)}"]
    lines += [f"{k} = {toml_value(v)}" for k, v in daemon]
    lines += ["[discovery]", f"udev = {toml_value(udev)}"]
    if ports is not None:
        lines.append(f"static_ports = {toml_value(list(ports))}")
    lines += [f"{k} = {toml_value(v)}" for k, v in discovery]
    if backend:
        lines += ["[backend]", f"url = {toml_value(backend)}"]
        if token_file:
            lines.append(f"token_file = {toml_value(token_file)}")
    lines += ["[device]", f"serial = {toml_value(serial)}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if mode is not None:
        os.chmod(path, mode)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Processes

def stop_process(proc, timeout=10, sig=signal.SIGTERM):
    """Send `sig` (SIGTERM) to a running process, wait up to `timeout` seconds, then SIGKILL it. Returns its exit
    status, or None when it had to be killed. A process that had already exited returns its status untouched."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def kill_process(proc):
    """SIGKILL a process still running and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def proc_status_kib(pid):
    """/proc/PID/status's sizes in kB (VmRSS, RssAnon, RssFile, VmHWM...) and Threads, by name."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                out[key] = int(value.split()[0])
            elif key == "Threads":
                out[key] = int(value)
    return out


def wait_until(predicate, timeout, interval=0.05):
    """Poll `predicate` until it is true (returns True) or `timeout` seconds pass (returns False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def start_simulator_pty(cellprov, args, verbose=False, timeout=10):
    """`cellprov simulate ARGS` on a PTY of its own, whose path it prints: (process, path). Its stderr goes to ours
    when `verbose`. RuntimeError when no path came within `timeout` seconds."""
    proc = subprocess.Popen([cellprov, "simulate", *args], stdout=subprocess.PIPE,
                            stderr=None if verbose else subprocess.DEVNULL, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        proc.wait()
        raise RuntimeError("cellprov simulate printed no PTY path")
    return proc, proc.stdout.readline().strip()


def start_receiver(bin_dir, work, *args):
    """`cellprov-receiver --json ARGS` writing to WORK/receiver.jsonl (its first line is its URL) and
    WORK/receiver.err. Returns (process, url, the open stdout file); SystemExit when no URL came within 10 s."""
    out_path = os.path.join(work, "receiver.jsonl")
    out = open(out_path, "wb")
    with open(os.path.join(work, "receiver.err"), "wb") as err:
        proc = subprocess.Popen([os.path.join(bin_dir, "cellprov-receiver"), "--json", *args], stdout=out,
                                stderr=err)
    url = []

    def started():
        with open(out_path) as f:
            first = f.readline()
        if first.endswith("\n"):
            url.append(first.strip())
        return bool(url)

    if not wait_until(started, 10):
        kill_process(proc)
        out.close()
        raise SystemExit("receiver did not start")
    return proc, url[0], out


# ---------------------------------------------------------------------------------------------------------------
# systemd-journald (Tests/journald, the registry's security suite): a program's output on a journal stream, as
# systemd runs a service, and the entries it made

JOURNALD = "/lib/systemd/systemd-journald"
JOURNAL_STDOUT = "/run/systemd/journal/stdout"


def journald_alive():
    """A journald listens (socket files can outlive a journald that was killed)."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(JOURNAL_STDOUT)
        s.close()
        return True
    except OSError:
        return False


def start_journald():
    """(process, True) when a journald had to be started here (stop it at the end), (None, True) when one already
    listened, (None, False) when the one started did not listen within 5 s (it was killed)."""
    if journald_alive():
        return None, True
    started = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if wait_until(journald_alive, 5):
        return started, True
    kill_process(started)
    return None, False


def stream_to_journal(identifier):
    """A stream connected to journald's stdout socket with the header systemd sends for a service."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(JOURNAL_STDOUT)
    # identifier, unit id, priority, level prefix, forward to syslog, kmsg, console
    s.sendall(f"{identifier}\n\n6\n1\n0\n0\n0\n".encode())
    s.shutdown(socket.SHUT_RD)
    return s


def journal_environment(stream):
    """The environment of a child writing to `stream`: JOURNAL_STREAM names it (how a program knows its stderr is
    the journal)."""
    st = os.fstat(stream.fileno())
    return dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")


def journal_entries(pid):
    """The journal's entries of process `pid` (journalctl -o json)."""
    out = subprocess.run(["journalctl", "--no-pager", "-o", "json", f"_PID={pid}"],
                         capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------------
# A simulated modem with SIM swaps (`cellprov simulate` on a static PTY link; scripts/soak.py, bench/swap_memory.py)

class Slot:
    """One simulated modem at WORK/slotNN (profile by index), its identity in WORK/slotNN.json. `rng` (a
    random.Random) draws the SIMs, so a seeded run is repeatable; `expected` lists the ICCIDs put in, in order."""

    def __init__(self, bin_dir, work, index, rng):
        self.bin_dir = bin_dir
        self.rng = rng
        self.index = index
        self.link = os.path.join(work, f"slot{index:02d}")
        self.file = os.path.join(work, f"slot{index:02d}.json")
        self.profile = PROFILES[index % len(PROFILES)]
        self.identity = {"imei": luhn_complete("35693803" + f"{index:06d}"), **self.new_sim()}
        self.expected = [self.identity["iccid"]]   # the first is enrolled, each next one a sim_changed
        self.process = None
        self.next_swap = 0.0
        self.unplugged_until = None
        self.log = open(os.path.join(work, f"slot{index:02d}.err"), "ab")

    def digits(self, n):
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def new_sim(self):
        iccid = "894902" + self.digits(12)
        return {"imsi": "26201" + self.digits(10), "iccid": luhn_complete(iccid)}

    def write(self):
        with open(self.file + ".tmp", "w") as f:
            json.dump(self.identity, f)
        os.replace(self.file + ".tmp", self.file)

    def start(self):
        self.write()
        self.process = subprocess.Popen(
            [os.path.join(self.bin_dir, "cellprov"), "simulate", "--profile", self.profile, "--link", self.link,
             "--identity-file", self.file], stdout=subprocess.DEVNULL, stderr=self.log)
        if not wait_until(lambda: os.path.lexists(self.link), 10):
            raise SystemExit(f"simulator {self.index} did not start")

    def swap(self):
        """A new SIM: a new identity file, announced to the simulator with SIGHUP."""
        self.identity.update(self.new_sim())
        self.expected.append(self.identity["iccid"])
        self.write()
        self.process.send_signal(signal.SIGHUP)

    def differences(self, events):
        """What this slot's stored events (`cellprov events --json` entries of its link, in sequence order) say
        against the SIMs put in: [] when the ICCIDs of its enrolled/sim_changed events are `expected`, in order,
        and it has no other event."""
        out = []
        changes = [e["identity"]["iccid"] for e in events if e["type"] in ("enrolled", "sim_changed")]
        if changes != self.expected:
            first = next((i for i, (a, b) in enumerate(zip(changes, self.expected)) if a != b),
                         min(len(changes), len(self.expected)))
            out.append(f"slot {self.index}: {len(changes)} enrolled/sim_changed events for {len(self.expected)} SIMs; "
                       f"first difference at {first}")
        others = [e["type"] for e in events if e["type"] not in ("enrolled", "sim_changed")]
        if others:
            out.append(f"slot {self.index}: other events {sorted(set(others))}")
        return out

    def unplug(self):
        self.process.terminate()
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()
