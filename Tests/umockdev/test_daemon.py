#!/usr/bin/python3
"""umockdev integration test of cellprovd: udev discovery, slot sessions, hotplug, unknown ports, shutdown, leaks.

Run through Tests/umockdev/run.sh (under `umockdev-wrapper`; see test_discovery.py for the why and for the
umockdev 0.17 pitfalls, whose device builders and ioctl passthrough this file reuses).

What it builds:
  - module A, a Quectel EC25 (2c7c:0125) on USB port 1: ttyUSB0..3 = interfaces 00..03 (MM's hints, not our
    rules: the port table chooses ttyUSB3, interface 03). ttyUSB3 is served by `cellprov simulate`;
  - module U, an unknown modem (1234:5678) on USB port 3: ttyUSB8, class ff on `option`, also served by a
    simulator (with other identities), so that a probe WOULD succeed;
  - module F, an FTDI USB-UART (0403:6001) on USB port 4: ttyUSB9, class ff on `ftdi_sio`;
  - module K, an unknown CDC device (1234:5679) on USB port 5: ttyUSB10, class 0a (CDC data) on `cdc_acm`.
Every emulated tty records what a client does with it: the bytes written to it (read from the PTY's master
side; for a simulator-served tty, the bytes the bridge forwards) and the ioctl() calls on it (they go through
the testbed's ioctl handler; cellprov's SerialPort.open makes one, TIOCEXCL, right after opening, so a client
that opened the port is seen even if it wrote nothing; glibc's tcsetattr() is not interposed and not seen).
A self-check at the end writes to one of them and makes an ioctl to show the recording can fail.

Checks (cellprovd = .build/debug/cellprovd, config in a temp dir, `--log-level debug`, stderr logging):
  run 1 (probe_unknown = false):
    1. `modem slot appeared` for module A's slot (the USB device's ID_PATH) with port=/dev/ttyUSB3; an `identity
       read:` line with the simulator's TAC, reason=start; the daemon wrote AT commands to ttyUSB3 only:
       nothing written to, and no ioctl on, ttyUSB0..2;
    2. unplug module A (remove uevents, then the devices): `modem slot removed` for the slot, daemon still running;
    3. re-plug it as ttyUSB4..7, parent first as the kernel sends them (ttyUSB7 served by a new simulator): a new
       `identity read` for the same slot on ttyUSB7, reason `udev add` or `start`; prints `udev add -> identities
       read: N ms`, from just before the AT port's add uevent (its tty is added last, alone) to the arrival of the
       log line;
    4. modules U, F, K: no slot, nothing written, no ioctl;
    5. SIGTERM: exit status 0 within 5 s;
    6. the whole stderr holds none of: the full IMEI, its serial digits (9-14), the IMSI, the MSIN, the ICCID.
  run 2 (probe_unknown = true, same devices):
    4. module U is probed (`probed an unknown modem-class port` port=/dev/ttyUSB8 answers_at=true), becomes a
       slot and its identities are read; F and K are never probed (no probe line, nothing written, no ioctl);
    unplug module U (`modem slot removed`) and re-plug it as ttyUSB11, in umockdev-record's order (the tty's
    add uevent before its USB parents exist): probed again, slot appeared on ttyUSB11, identities read;
    5, 6 again.

Environment: CELLPROVD (default <repo>/.build/debug/cellprovd), CELLPROV (for `cellprov simulate`), PORTS_TABLE,
UMOCKDEV_TEST_VERBOSE=1 to echo the daemons' and simulators' stderr.
Exit status: 0 all checks passed, 1 a check failed, 77 skipped (umockdev's GI bindings missing).
"""

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_discovery as td  # noqa: E402  (exits 77 itself when the GI bindings are missing)
import blackbox  # noqa: E402  (Tests/pylib, on the path through test_discovery)

UMockdev = td.UMockdev

REPO = td.REPO
CELLPROV = td.CELLPROV
CELLPROVD = os.environ.get("CELLPROVD", os.path.join(REPO, ".build", "debug", "cellprovd"))
PORTS_TABLE = td.PORTS_TABLE
VERBOSE = td.VERBOSE
PCI = td.PCI


class Identity:
    def __init__(self, imei14, imsi, iccid19, mnc_length):
        self.imei = blackbox.luhn_complete(imei14)
        self.imsi = imsi
        self.iccid = blackbox.luhn_complete(iccid19)
        self.tac = self.imei[:8]
        self.serial_digits = self.imei[8:14]
        self.msin = imsi[3 + mnc_length:]

    def args(self):
        return ["--imei", self.imei, "--imsi", self.imsi, "--iccid", self.iccid]

    def secrets(self):
        """What must never appear in a log, with a name for each."""
        return {"IMEI": self.imei, "IMEI serial digits": self.serial_digits, "IMSI": self.imsi,
                "MSIN": self.msin, "ICCID": self.iccid}


# Constructed identities (no real device or subscriber): module A's and module U's.
ID_A = Identity("86676104739218", "262017394021857", "8949107739402185736", 2)
ID_U = Identity("35290611482913", "310260583920174", "8901260583920174918", 3)

SLOT_A = f"pci-{PCI}-usb-0:1"
SLOT_U = f"pci-{PCI}-usb-0:3"
SLOT_F = f"pci-{PCI}-usb-0:4"
SLOT_K = f"pci-{PCI}-usb-0:5"


# ---------------------------------------------------------------------------------------------------------
# Fake ttys that record what clients do with them


class CountingPassthrough(td.TtyPassthrough):
    """td.TtyPassthrough that also counts the ioctls a client made (termios, TIOCEXCL...)."""

    def __init__(self):
        super().__init__()
        self.ioctls = 0

    def do_handle_ioctl(self, client):
        self.ioctls += 1
        return super().do_handle_ioctl(client)


class FakeTty:
    """One emulated tty: the ioctl handler is attached before the device exists (so a client that opens it right
    after its add uevent finds it), the PTY's master side is read after the device is added (`activate`).
    With `identity`, a `cellprov simulate` serves it (started before the device is added: the bridge is up a
    moment after the add); without, every byte written by a client is recorded and nothing is answered."""

    def __init__(self, testbed, devnode, identity=None, handler=None, sim_args=()):
        self.testbed = testbed
        self.devnode = devnode
        self.identity = identity
        self.written = bytearray()  # what clients wrote to the tty
        self.handler = handler or CountingPassthrough()
        testbed.attach_ioctl(devnode, self.handler)
        self.master = None
        self.sim = None
        self.sim_fd = None
        self.thread = None
        self.stop_r, self.stop_w = os.pipe()
        self.lock = threading.Lock()
        if identity:
            self.sim, path = blackbox.start_simulator_pty(CELLPROV, [*sim_args, *identity.args()], VERBOSE)
            self.sim_fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self.sim_fd)

    @property
    def ioctls(self):
        return self.handler.ioctls

    def snapshot(self):
        with self.lock:
            return bytes(self.written), self.handler.ioctls

    def activate(self):
        """After Testbed.add_from_string: start copying/recording."""
        self.master = self.testbed.get_dev_fd(self.devnode)
        if self.master < 0:
            raise RuntimeError(f"no PTY behind {self.devnode}")
        tty.setraw(self.master)
        self.configure_master()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def configure_master(self):
        """After the master is raw, before clients are served: line settings a subclass wants clients to find."""

    def _pump(self):
        fds = [self.master, self.stop_r] + ([self.sim_fd] if self.sim_fd is not None else [])
        while True:
            ready, _, _ = select.select(fds, [], [])
            if self.stop_r in ready:
                return
            idle = False
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: no client has the slave side open right now
                    data = b""
                if not data:
                    idle = True
                elif fd == self.master:
                    with self.lock:
                        self.written += data
                    if self.sim_fd is not None:
                        os.write(self.sim_fd, data)
                else:
                    os.write(self.master, data)
            if idle:
                time.sleep(0.005)

    def stop(self):
        """Stops copying (before the device is removed) and ends the simulator."""
        if self.thread:
            os.write(self.stop_w, b"x")
            self.thread.join(2)
            self.thread = None
        if self.sim:
            blackbox.stop_process(self.sim, 5)
            os.close(self.sim_fd)
            self.sim = None


def add_module(testbed, text, ttys):
    """Adds a module (its add uevents are emitted) and activates its FakeTtys; returns the add's start time."""
    start = time.monotonic()
    testbed.add_from_string(text)
    for fake in ttys:
        fake.activate()
    return start


def unplug(testbed, tty_syspaths, syspaths, fakes):
    """Remove uevents for the ttys (children first, as the kernel sends them); then, once `fakes` are stopped by
    the caller's wait, the devices go. Returns a function doing the second half."""
    for devnode in sorted(tty_syspaths, reverse=True):
        testbed.uevent(tty_syspaths[devnode], "remove")

    def finish():
        for fake in fakes:
            fake.stop()
        for syspath in syspaths:
            testbed.remove_device(syspath)
    return finish


# ---------------------------------------------------------------------------------------------------------
# The daemon


METADATA = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def metadata(line):
    out = {}
    for key, value in METADATA.findall(line):
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key] = value
    return out


class Daemon:
    """cellprovd with a config in a temp dir; stderr lines collected with their arrival time. Options (the
    ModemManager suites use them): `modemmanager` writes `[discovery] modemmanager = MODE`, `wrap` prefixes the
    command (the sandbox), `env` replaces the environment (otherwise inherited: the umockdev preload, and the
    private bus's address), `owner`/`state_mode` the state directory's, `config_mode` the config file's."""

    def __init__(self, workdir, name, probe_unknown=None, modemmanager=None, udev=True, wrap=(), env=None,
                 state_mode=None, owner=None, binary=CELLPROVD, serial="GW-UMOCK", config_mode=None):
        self.name = name
        state = os.path.join(workdir, f"state-{name}")
        os.makedirs(state, exist_ok=True)
        if owner is not None:
            os.chown(state, owner, owner)
        if state_mode is not None:
            os.chmod(state, state_mode)
        self.state = state
        discovery = [("probe_unknown", probe_unknown)] if probe_unknown is not None else []
        discovery += [("modemmanager", modemmanager)] if modemmanager is not None else []
        discovery += [("reprobe_interval_seconds", 600), ("ports_table", PORTS_TABLE)]
        self.config = blackbox.write_cellprovd_config(os.path.join(workdir, f"cellprovd-{name}.toml"), state, serial,
                                                      udev=udev, discovery=discovery, mode=config_mode)
        self.lines = []  # (monotonic arrival, line)
        self.raw = bytearray()
        self.cond = threading.Condition()
        # env=None inherits: the testbed's UMOCKDEV_DIR is in the C environment only (see test_discovery.py).
        self.proc = subprocess.Popen(
            [*wrap, binary, "--config", self.config, "--log-level", "debug"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        fd = self.proc.stderr.fileno()
        buffer = b""
        while True:
            chunk = os.read(fd, 65536)
            now = time.monotonic()
            if not chunk:
                break
            with self.cond:
                self.raw += chunk
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    text = line.decode(errors="replace")
                    if VERBOSE:
                        print(f"  [{self.name}] {text}", flush=True)
                    self.lines.append((now, text))
                self.cond.notify_all()
        with self.cond:
            if buffer:
                self.lines.append((time.monotonic(), buffer.decode(errors="replace")))
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def wait_for(self, predicate, timeout=10, since=0):
        """The first (time, line, metadata) at index >= since satisfying predicate(line, metadata), or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            index = since
            while True:
                while index < len(self.lines):
                    t, line = self.lines[index]
                    index += 1
                    meta = metadata(line)
                    if predicate(line, meta):
                        return t, line, meta
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.thread.is_alive()):
                    return None
                self.cond.wait(min(left, 0.2))

    def find_all(self, predicate, since=0):
        with self.cond:
            found = []
            for t, line in self.lines[since:]:
                meta = metadata(line)
                if predicate(line, meta):
                    found.append((t, line, meta))
            return found

    def tail(self, n=25):
        with self.cond:
            return "\n".join(line for _, line in self.lines[-n:])

    def terminate(self, within=5.0):
        """SIGTERM; returns (exit status or None, seconds)."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(within)
        except subprocess.TimeoutExpired:
            status = None
        elapsed = time.monotonic() - start
        if status is None:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(2)
        return status, elapsed

    def kill(self):
        blackbox.kill_process(self.proc)


def appeared(slot, port=None):
    return lambda line, m: "modem slot appeared" in line and m.get("slot") == slot and (
        port is None or m.get("port") == port)


def identity_read(slot, identity, port=None):
    return lambda line, m: (" identity read:" in line and m.get("slot") == slot and m.get("tac") == identity.tac
                            and f"TAC {identity.tac}" in line and (port is None or m.get("port") == port))


def mentions_slot(slot):
    return lambda line, m: m.get("slot") == slot and ("modem slot appeared" in line or "identity read" in line)


# ---------------------------------------------------------------------------------------------------------

check = td.check


def check_untouched(fakes, what):
    touched = {f.devnode: f.snapshot() for f in fakes}
    touched = {d: (len(w), n) for d, (w, n) in touched.items() if w or n}
    check(not touched, f"{what}: nothing written to and no ioctl on {', '.join(f.devnode for f in fakes)}",
          {d: f"{w} bytes written, {n} ioctls" for d, (w, n) in touched.items()})


def check_leaks(daemon, identities):
    text = daemon.raw.decode(errors="replace")
    leaked = [f"{name} of {who}" for who, identity in identities.items()
              for name, value in identity.secrets().items() if value in text]
    check(not leaked, f"{daemon.name}: stderr ({len(daemon.lines)} lines) holds no IMEI, IMEI serial digits, "
          "IMSI, MSIN or ICCID", leaked)


def check_sigterm(daemon):
    status, elapsed = daemon.terminate(5.0)
    check(status == 0, f"{daemon.name}: SIGTERM -> exit status 0 within 5 s",
          f"status {status} after {elapsed:.2f} s\n{daemon.tail()}")
    print(f"     ({daemon.name} stopped in {elapsed * 1000:.0f} ms)")


def ftdi_module(port, serial, tty_index):
    return td.usb_module(port, "0403", "6001", serial, [("00", ("ff", "ff", "ff"), "ftdi_sio", tty_index, {})],
                         manufacturer="FTDI", product="FT232R_USB_UART")


def cdc_data_module(port, serial, tty_index):
    return td.usb_module(port, "1234", "5679", serial, [("00", ("0a", "00", "00"), "cdc_acm", tty_index, {})],
                         manufacturer="Acme", product="Data")


def run(testbed, workdir):
    # --- the devices
    if not testbed.add_from_string(td.root_hub()):
        print("FAIL Testbed.add_from_string (root hub)")
        return
    a_text, a_ttys, a_syspaths = td.ec25(1, "EC25A0000001", 0, with_our_rules=False)
    a_at = FakeTty(testbed, "/dev/ttyUSB3", ID_A)
    a_others = [FakeTty(testbed, f"/dev/ttyUSB{n}") for n in range(3)]
    u_text, u_ttys, u_syspaths = td.unknown_module(3, "ACME0003", 8)
    u_port = FakeTty(testbed, "/dev/ttyUSB8", ID_U)
    f_text, _, _ = ftdi_module(4, "FT000004", 9)
    f_port = FakeTty(testbed, "/dev/ttyUSB9")
    k_text, _, _ = cdc_data_module(5, "ACME0005", 10)
    k_port = FakeTty(testbed, "/dev/ttyUSB10")
    add_module(testbed, a_text, [a_at, *a_others])
    add_module(testbed, u_text + "\n" + f_text + "\n" + k_text, [u_port, f_port, k_port])
    never = [f_port, k_port]  # never probed, whatever the configuration
    everything = [a_at, *a_others, u_port, f_port, k_port]

    try:
        # ---------------- run 1: probe_unknown = false
        d1 = Daemon(workdir, "run1", probe_unknown=False)
        try:
            hit = d1.wait_for(appeared(SLOT_A), 10)
            check(hit is not None and hit[2].get("port") == "/dev/ttyUSB3",
                  f"run1: `modem slot appeared` slot={SLOT_A} port=/dev/ttyUSB3",
                  hit[1] if hit else d1.tail())
            hit = d1.wait_for(identity_read(SLOT_A, ID_A), 10)
            check(hit is not None and hit[2].get("port") == "/dev/ttyUSB3" and hit[2].get("reason") == "start",
                  f"run1: `identity read:` for the slot with TAC {ID_A.tac}, port=/dev/ttyUSB3, reason=start",
                  hit[1] if hit else d1.tail())
            written, ioctls = a_at.snapshot()
            check(b"AT" in written and ioctls > 0, "run1: the daemon opened and wrote AT commands to ttyUSB3",
                  (written[:80], ioctls))
            check_untouched(a_others, "run1: module A's other ports")
            left_alone = d1.wait_for(
                lambda line, m: "unknown serial ports left alone" in line and m.get("slot") == SLOT_U, 2)
            check(left_alone is not None, "run1: module U logged as left alone (probe_unknown = false)")
            check(not d1.find_all(lambda line, m: m.get("slot") in (SLOT_U, SLOT_F, SLOT_K)
                                  and ("modem slot appeared" in line or "identity read" in line)),
                  "run1: no slot for the unknown modules U, F, K")
            check(not d1.find_all(lambda line, m: "probed an unknown" in line), "run1: no port probed")

            # ---- unplug module A
            mark = d1.mark()
            finish = unplug(testbed, a_ttys, a_syspaths, [a_at, *a_others])
            hit = d1.wait_for(lambda line, m: "modem slot removed" in line and m.get("slot") == SLOT_A, 10, mark)
            check(hit is not None, f"run1: `modem slot removed` slot={SLOT_A} after the remove uevents",
                  d1.tail())
            finish()
            time.sleep(0.3)
            check(d1.proc.poll() is None, "run1: the daemon keeps running after the unplug", d1.proc.poll())
            check_untouched(a_others, "run1 (after unplug): module A's other ports")

            # ---- re-plug module A with new tty names (umockdev cannot re-create a removed tty's name)
            b_text, b_ttys, _ = td.ec25(1, "EC25A0000001", 4, with_our_rules=False)
            b_at = FakeTty(testbed, "/dev/ttyUSB7", ID_A)
            b_others = [FakeTty(testbed, f"/dev/ttyUSB{n}") for n in range(4, 7)]
            everything += [b_at, *b_others]
            mark = d1.mark()
            # Parent first, as the kernel sends them; the AT port's tty, the last record, in a call of its own:
            # the figure below runs from the emission of that one add uevent.
            cut = b_text.rindex("\nP: ") + 1
            assert "N: ttyUSB7\n" in b_text[cut:]
            add_module(testbed, b_text[:cut], b_others)
            start = add_module(testbed, b_text[cut:], [b_at])
            emitted = time.monotonic()
            hit = d1.wait_for(identity_read(SLOT_A, ID_A, "/dev/ttyUSB7"), 10, mark)
            check(hit is not None and hit[2].get("reason") in ("udev add", "start"),
                  f"run1: re-plugged: new `identity read` for slot {SLOT_A} on ttyUSB7, reason `udev add`",
                  hit[1] if hit else d1.tail())
            app = d1.find_all(appeared(SLOT_A, "/dev/ttyUSB7"), mark)
            if hit:
                print(f"udev add -> identities read: {(hit[0] - start) * 1000:.0f} ms"
                      + (f" (slot appeared after {(app[0][0] - start) * 1000:.0f} ms;" if app else " (")
                      + f" umockdev took {(emitted - start) * 1000:.0f} ms to add the tty and emit its uevent)")
            check(len(app) == 1, "run1: re-plugged: one `modem slot appeared` for the slot on ttyUSB7", len(app))
            problems = d1.find_all(lambda line, m: m.get("slot") == SLOT_A
                                   and ("cannot open" in line or "with problems" in line), mark)
            check(not problems, "run1: re-plugged: no open failure or read problem", [p[1] for p in problems])
            check_untouched(b_others, "run1: re-plugged module's other ports")
            check_untouched([u_port, *never], "run1: unknown modules U (served by a simulator), F, K")
            check(d1.proc.poll() is None, "run1: daemon running before SIGTERM")
        finally:
            if d1.proc.poll() is None:
                check_sigterm(d1)
            check_leaks(d1, {"module A": ID_A, "module U": ID_U})

        # ---------------- run 2: probe_unknown = true
        d2 = Daemon(workdir, "run2", probe_unknown=True)
        try:
            hit = d2.wait_for(lambda line, m: "probed an unknown modem-class port" in line
                              and m.get("port") == "/dev/ttyUSB8", 10)
            check(hit is not None and hit[2].get("answers_at") == "true",
                  "run2: module U's ttyUSB8 probed and answers AT", hit[1] if hit else d2.tail())
            hit = d2.wait_for(appeared(SLOT_U, "/dev/ttyUSB8"), 10)
            check(hit is not None, f"run2: `modem slot appeared` slot={SLOT_U} port=/dev/ttyUSB8", d2.tail())
            hit = d2.wait_for(identity_read(SLOT_U, ID_U, "/dev/ttyUSB8"), 10)
            check(hit is not None, f"run2: `identity read:` for module U (TAC {ID_U.tac})", d2.tail())
            hit = d2.wait_for(identity_read(SLOT_A, ID_A, "/dev/ttyUSB7"), 10)
            check(hit is not None, "run2: module A read as well", d2.tail())
            written, _ = u_port.snapshot()
            check(b"AT" in written, "run2: AT commands reached module U's simulator", written[:80])
            probes = d2.find_all(lambda line, m: "probed an unknown" in line and m.get("port") != "/dev/ttyUSB8")
            check(not probes, "run2: no other port probed (F: ff on ftdi_sio, K: class 0a)", [p[1] for p in probes])
            check(not d2.find_all(lambda line, m: m.get("slot") in (SLOT_F, SLOT_K)
                                  and ("modem slot appeared" in line or "identity read" in line)),
                  "run2: no slot for F or K")
            check_untouched(never, "run2: F and K")
            check_untouched(b_others, "run2: module A's other ports")

            # ---- unplug module U, re-plug it child first (umockdev-record's order): probed again on hotplug
            mark = d2.mark()
            finish = unplug(testbed, u_ttys, u_syspaths, [u_port])
            hit = d2.wait_for(lambda line, m: "modem slot removed" in line and m.get("slot") == SLOT_U, 10, mark)
            check(hit is not None, f"run2: `modem slot removed` slot={SLOT_U} (module U unplugged)", d2.tail())
            finish()
            u2_text, _, _ = td.usb_module(3, "1234", "5678", "ACME0003", [("00", ("ff", "00", "00"), "option", 11, {})],
                                          manufacturer="Acme", product="LTE", child_first=True)
            u2_port = FakeTty(testbed, "/dev/ttyUSB11", ID_U)
            everything.append(u2_port)
            mark = d2.mark()
            start = add_module(testbed, u2_text, [u2_port])
            hit = d2.wait_for(lambda line, m: "probed an unknown modem-class port" in line
                              and m.get("port") == "/dev/ttyUSB11", 10, mark)
            check(hit is not None and hit[2].get("answers_at") == "true",
                  "run2: re-plugged module U (child first): ttyUSB11 probed, answers AT", d2.tail())
            hit = d2.wait_for(identity_read(SLOT_U, ID_U, "/dev/ttyUSB11"), 10, mark)
            check(hit is not None and hit[2].get("reason") in ("udev add", "start"),
                  f"run2: re-plugged module U: `identity read:` for slot {SLOT_U} on ttyUSB11", d2.tail())
            if hit:
                print(f"     (unknown module, child-first add -> probe -> identities read: "
                      f"{(hit[0] - start) * 1000:.0f} ms)")
            check(len(d2.find_all(appeared(SLOT_U, "/dev/ttyUSB11"), mark)) == 1,
                  "run2: re-plugged module U: one `modem slot appeared` on ttyUSB11")
            check_untouched(never, "run2 (after the re-plug): F and K")
            problems = d2.find_all(lambda line, m: "cannot open" in line or "with problems" in line)
            check(not problems, "run2: no open failure or read problem (a probed port is released before its "
                  "session opens it)", [p[1] for p in problems])
            check(d2.proc.poll() is None, "run2: daemon running before SIGTERM")
        finally:
            if d2.proc.poll() is None:
                check_sigterm(d2)
            check_leaks(d2, {"module A": ID_A, "module U": ID_U})

        # ---------------- the recording can fail: a client writing to F's port is seen
        # From a child: the ioctl handler runs in this process and needs its interpreter.
        writer = subprocess.run(
            [sys.executable, "-c", "import fcntl, os, termios; fd = os.open('/dev/ttyUSB9', os.O_RDWR | os.O_NOCTTY); "
             "fcntl.ioctl(fd, termios.TIOCEXCL); os.write(fd, b'AT\\r'); os.close(fd)"],
            capture_output=True, text=True, timeout=10)
        check(writer.returncode == 0, "self-check: a client could open, lock and write /dev/ttyUSB9", writer.stderr)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and f_port.snapshot()[0] != b"AT\r":
            time.sleep(0.02)
        written, ioctls = f_port.snapshot()
        check(written == b"AT\r" and ioctls > 0, "self-check: a write and ioctls on a recorded tty are seen",
              (written, ioctls))
    finally:
        for fake in everything:
            fake.stop()


def harness(label, prefix, body):
    """The daemon-side tests' main(): binaries built, under umockdev's preload, stderr logging; `body(testbed,
    workdir)` runs the checks; returns the exit status. test_wwan.py uses it too."""
    if not td.ready(CELLPROV, CELLPROVD):
        return 1
    os.environ.pop("JOURNAL_STREAM", None)  # log to stderr, not to the journal
    os.environ.pop("NOTIFY_SOCKET", None)
    workdir = tempfile.mkdtemp(prefix=prefix)
    testbed = UMockdev.Testbed.new()
    start = time.monotonic()
    try:
        body(testbed, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"     ({label} checks took {time.monotonic() - start:.1f} s)")
    return td.CHECKS.summary(f"umockdev {label}")


def main():
    return harness("daemon", "cellprovd-umockdev.", run)

if __name__ == "__main__":
    sys.exit(main())
