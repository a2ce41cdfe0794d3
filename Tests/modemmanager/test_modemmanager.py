#!/usr/bin/python3
"""cellprovd reading a modem that the real ModemManager owns, over D-Bus (`[discovery] modemmanager`).

Run through Tests/modemmanager/run.sh (under `umockdev-wrapper`, Debian's /usr/bin/python3 for the GI bindings).

What it builds:
  - a private system-like bus: `dbus-daemon` with the system bus's default policy (method calls denied unless a
    policy file allows them) and ModemManager's own policy file (/etc/dbus-1/system.d/org.freedesktop.
    ModemManager1.conf, from the `modemmanager` package), so that the test meets the bus policy a gateway has;
    clients find it through DBUS_SYSTEM_BUS_ADDRESS;
  - a umockdev testbed holding ec25-ttyUSB2.umockdev (beside this file): a Quectel EC25 (2c7c:0125) with only
    interface 02 (ttyUSB2, ModemManager's AT_PRIMARY port; the port table calls it `at-secondary`, so cellprov's
    udev discovery leaves the module alone and ModemManager owns its only AT port). The description is the one
    ModemManager was measured with, plus the ID_PATH and ID_SERIAL_SHORT udevd would add to the USB device;
  - `cellprov simulate --identity-file` serving the tty (bytes copied between the testbed's PTY and the
    simulator's); an ioctl handler executing termios/TIOCEXCL on the real PTY (umockdev 0.17 answers ENOTTY
    itself otherwise, and ModemManager opens the port exclusively);
  - the real ModemManager (Debian's 1.20), under the umockdev preload, on the private bus;
  - a watcher polling ModemManager's GetManagedObjects (and each SIM's properties) every 10 ms, recording when
    each identity triple first became readable on the bus.

Checks (cellprovd = .build/debug/cellprovd, stderr logging at debug level, configs in a temp dir):
  1. auto, ModemManager absent: cellprovd runs, logs nothing above debug about ModemManager;
  2. ModemManager starts: cellprovd reports the module (slot = the USB device's ID_PATH, the same key udev
     discovery gives it) with `source=modemmanager`, an `enrolled` event whose module carries
     `"source": "modemmanager"` and the simulator's identities (`cellprov events --json`); cellprov never
     opened ttyUSB2 (no `cannot open`, no AT session); prints the time from ModemManager publishing the
     identities to cellprovd's event;
  3. a SIM swap in the simulator (new IMSI/ICCID, +CPIN URCs): ModemManager re-probes, cellprovd raises
     `sim_changed` with the new identities; the time again;
  4. ModemManager killed: cellprovd notices, keeps running, raises no `sim_removed`; `always` with ModemManager
     absent logs an error, as does `always` with no bus at all; ModemManager restarted: cellprovd reads the
     module again and raises no new event (the slot's state was kept); the `always` daemon enrols it too;
  5. the unit's sandbox: cellprovd as an unprivileged user in a user namespace mapping only that user
     (PrivateUsers=), the bus socket and configuration on a read-only mount with only the state directory
     writable (ProtectSystem=strict, StateDirectory=) reads the modem over the bus;
  6. every cellprovd's stderr holds none of the identities' digits (IMEI, its serial digits, IMSI, MSIN, ICCID);
     SIGTERM stops each within 5 s with status 0.

Environment: CELLPROVD, CELLPROV (default .build/debug/...), MODEMMANAGER (default /usr/sbin/ModemManager),
UMOCKDEV_TEST_VERBOSE=1 echoes the daemons' stderr.
Exit status: 0 all passed, 1 a check failed, 77 a prerequisite is missing.
"""

import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "umockdev"))
import test_discovery as td  # noqa: E402  (exits 77 itself when the umockdev GI bindings are missing)
import test_daemon as tdm  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through test_discovery)

try:
    import gi

    gi.require_version("Gio", "2.0")
    from gi.repository import Gio, GLib  # noqa: E402
except (ImportError, ValueError) as error:
    print(f"SKIP: Gio GI bindings not available ({error})")
    sys.exit(77)

UMockdev = td.UMockdev
REPO = td.REPO
CELLPROV = td.CELLPROV
CELLPROVD = tdm.CELLPROVD
MODEMMANAGER = os.environ.get("MODEMMANAGER", "/usr/sbin/ModemManager")
MM_POLICY = "/etc/dbus-1/system.d/org.freedesktop.ModemManager1.conf"
FIXTURE = os.path.join(HERE, "ec25-ttyUSB2.umockdev")
VERBOSE = td.VERBOSE
SLOT = "pci-0000:00:14.0-usb-0:1"
MM = "org.freedesktop.ModemManager1"

check = td.check

# Constructed identities (no real device or subscriber): the module's IMEI with a first SIM, then a second SIM.
ID_1 = tdm.Identity("86676104739218", "262017394021857", "8949107739402185736", 2)
ID_2 = tdm.Identity("86676104739218", "262019928374650", "8949107799283746507", 2)


# ---------------------------------------------------------------------------------------------------------
# The bus, the simulator, ModemManager


class Bus:
    """A private dbus-daemon with the system bus's default policy and ModemManager's policy file."""

    def __init__(self, workdir, name="system_bus"):
        self.socket = os.path.join(workdir, f"{name}_socket")
        conf = os.path.join(workdir, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={self.socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>{MM_POLICY}</include>
</busconfig>
""")
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        self.proc = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--print-address=1", f"--config-file={conf}"],
            stdout=subprocess.PIPE, stderr=None if VERBOSE else subprocess.DEVNULL, text=True, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        if not ready:
            self.proc.kill()
            raise RuntimeError("dbus-daemon printed no address")
        self.address = self.proc.stdout.readline().strip()

    def stop(self):
        blackbox.stop_process(self.proc, 5)


class ServedTty(td.SimulatorBridge):
    """`cellprov simulate --identity-file` behind an emulated tty (test_discovery's bridge: bytes copied both
    ways), with the pass-through handler attached before the device was added."""

    def __init__(self, testbed, devnode, identity_file, handler):
        super().__init__(
            testbed, devnode, sim_args=["--profile", "quectel", "--identity-file", identity_file], handler=handler)

    def swap(self):
        """SIGHUP: the simulator re-reads its identity file and swaps the SIM (+CPIN: NOT READY, READY...)."""
        self.sim.send_signal(signal.SIGHUP)

    def stop(self):
        self.close()


def write_identity(path, identity):
    with open(path, "w") as f:
        json.dump({"imei": identity.imei, "imsi": identity.imsi, "iccid": identity.iccid}, f)


class ModemManager:
    """The real ModemManager under the umockdev preload (inherited: LD_PRELOAD and the testbed's UMOCKDEV_DIR are
    in this process's C environment), on the private bus (DBUS_SYSTEM_BUS_ADDRESS, set in os.environ)."""

    def __init__(self, workdir, n):
        self.log = os.path.join(workdir, f"mm-{n}.log")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [MODEMMANAGER, f"--log-file={self.log}", "--log-level=INFO"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None if VERBOSE else subprocess.DEVNULL)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        blackbox.stop_process(self.proc, 10)


class Watcher:
    """Polls ModemManager's state every 10 ms: when each (IMEI, IMSI, ICCID) first became readable on the bus.
    The time recorded is the start of the poll that first saw it; the publication happened between the previous
    poll's calls and this one's, so a figure measured from it is right within about one poll (10 ms plus the
    calls' time, a few ms)."""

    def __init__(self, address):
        self.conn = Gio.DBusConnection.new_for_address_sync(
            address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)
        self.first_seen = {}
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _call(self, path, interface, member, args, reply):
        return self.conn.call_sync(MM, path, interface, member, args, GLib.VariantType(reply),
                                   Gio.DBusCallFlags.NO_AUTO_START, 1000, None).unpack()[0]

    def read(self):
        try:
            objects = self._call("/org/freedesktop/ModemManager1", "org.freedesktop.DBus.ObjectManager",
                                 "GetManagedObjects", None, "(a{oa{sa{sv}}})")
        except GLib.Error:
            return []
        out = []
        for path, interfaces in objects.items():
            modem = interfaces.get("org.freedesktop.ModemManager1.Modem")
            if modem is None:
                continue
            imei = interfaces.get("org.freedesktop.ModemManager1.Modem.Modem3gpp", {}).get("Imei") \
                or modem.get("EquipmentIdentifier")
            imsi = iccid = None
            sim = modem.get("Sim")
            if sim and sim != "/":
                try:
                    props = self._call(sim, "org.freedesktop.DBus.Properties", "GetAll",
                                       GLib.Variant("(s)", ("org.freedesktop.ModemManager1.Sim",)), "(a{sv})")
                    imsi, iccid = props.get("Imsi"), props.get("SimIdentifier")
                except GLib.Error:
                    pass
            out.append({"path": path, "device": modem.get("Device"), "state": modem.get("State"),
                        "identities": (imei, imsi, iccid)})
        return out

    def _run(self):
        while self.running:
            start = time.monotonic()
            for modem in self.read():
                if all(modem["identities"]):
                    with self.lock:
                        self.first_seen.setdefault(modem["identities"], (start, modem))
            time.sleep(0.01)

    def seen(self, identity):
        with self.lock:
            return self.first_seen.get((identity.imei, identity.imsi, identity.iccid))

    def stop(self):
        self.running = False
        self.thread.join(2)


# ---------------------------------------------------------------------------------------------------------
# cellprovd


def Daemon(workdir, name, mode, udev=True, **options):
    """cellprovd with `[discovery] modemmanager = MODE` (test_daemon.Daemon; options: wrap, env, state_mode, owner,
    binary)."""
    return tdm.Daemon(workdir, name, modemmanager=mode, udev=udev, serial="GW-MM", config_mode=0o644, **options)


def event_line(kind, slot=SLOT):
    return lambda line, m: m.get("event") == kind and m.get("slot") == slot and m.get("source") == "modemmanager"


def mm_identity_read(identity, slot=SLOT):
    return lambda line, m: (" identity read:" in line and m.get("slot") == slot and m.get("tac") == identity.tac
                            and m.get("source") == "modemmanager")


def events_json(state):
    out = subprocess.run([CELLPROV, "events", "--json", "--state-directory", state],
                         capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        return None, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()], None


def latency(watcher, identity, hit, what):
    seen = watcher.seen(identity)
    if seen is None or hit is None:
        print(f"     ({what}: no figure, watcher saw {seen is not None}, event seen {hit is not None})")
        return None
    ms = (hit[0] - seen[0]) * 1000
    print(f"{what}: ModemManager published the identities -> cellprovd's event: {ms:.0f} ms")
    return ms


# ---------------------------------------------------------------------------------------------------------


def run(workdir, testbed, bus):
    identity_file = os.path.join(workdir, "identity.json")
    write_identity(identity_file, ID_1)
    handler = td.TtyPassthrough()
    testbed.attach_ioctl("/dev/ttyUSB2", handler)
    if not testbed.add_from_file(FIXTURE):
        check(False, "umockdev: add the EC25 description")
        return
    served = ServedTty(testbed, "/dev/ttyUSB2", identity_file, handler)
    watcher = Watcher(bus.address)
    daemons = []
    mms = []
    figures = {}
    try:
        # ---- 1. auto, ModemManager absent
        d1 = Daemon(workdir, "auto", "auto")
        daemons.append(d1)
        hit = d1.wait_for(lambda line, m: "ModemManager is not on the system bus" in line, 10)
        check(hit is not None and hit[1].startswith("DEBUG"),
              "auto, ModemManager absent: noted at debug level only", hit[1] if hit else d1.tail())
        time.sleep(0.5)
        loud = d1.find_all(lambda line, m: "ModemManager" in line and not line.startswith(("DEBUG", "INFO")))
        check(not loud and d1.proc.poll() is None, "auto, ModemManager absent: nothing louder, daemon running",
              [x[1] for x in loud])
        check(not d1.find_all(lambda line, m: "modem slot appeared" in line),
              "udev discovery leaves the EC25 alone (its only port is ModemManager's)")

        # ---- 2. ModemManager starts
        mark = d1.mark()
        mm = ModemManager(workdir, 1)
        mms.append(mm)
        hit = d1.wait_for(event_line("enrolled"), 30, mark)
        check(hit is not None, f"ModemManager started: `enrolled` for slot {SLOT} (the USB device's ID_PATH)",
              d1.tail())
        if hit:
            print(f"     (ModemManager start -> enrolled: {(hit[0] - mm.started) * 1000:.0f} ms)")
        figures["publish->enrolled"] = latency(watcher, ID_1, hit, "first read")
        read = d1.find_all(mm_identity_read(ID_1), mark)
        check(read and read[0][2].get("origin") in (None, "modemmanager"),
              "`identity read:` with source=modemmanager and the simulator's TAC", d1.tail())
        appeared = d1.find_all(tdm.appeared(SLOT), mark)
        check(len(appeared) == 1 and appeared[0][2].get("origin") == "modemmanager",
              "one `modem slot appeared` origin=modemmanager", [a[1] for a in appeared])
        events, err = events_json(d1.state)
        enrolled = [e for e in events or [] if e.get("type") == "enrolled"]
        check(len(enrolled) == 1 and enrolled[0]["module"].get("source") == "modemmanager"
              and enrolled[0]["identity"] == {"imei": ID_1.imei, "imsi": ID_1.imsi, "iccid": ID_1.iccid}
              and enrolled[0]["module"].get("usb_serial") == "0123456789ABCDEF",
              "`cellprov events --json`: enrolled, module.source = modemmanager, the simulator's identities, "
              "the USB serial", err or events)
        opened = d1.find_all(lambda line, m: "cannot open" in line or m.get("port") == "/dev/ttyUSB2"
                             and m.get("origin") in ("udev", "static"))
        check(not opened, "cellprovd never tried ttyUSB2 itself", [o[1] for o in opened])

        # ---- 3. SIM swap in the simulator
        mark = d1.mark()
        write_identity(identity_file, ID_2)
        swapped = time.monotonic()
        served.swap()
        hit = d1.wait_for(event_line("sim_changed"), 30, mark)
        check(hit is not None, "SIM swap: `sim_changed` through ModemManager", d1.tail())
        if hit:
            print(f"     (SIM swap in the simulator -> sim_changed: {(hit[0] - swapped) * 1000:.0f} ms)")
        figures["publish->sim_changed"] = latency(watcher, ID_2, hit, "SIM swap")
        events, err = events_json(d1.state)
        changed = [e for e in events or [] if e.get("type") == "sim_changed"]
        check(len(changed) == 1 and changed[0]["identity"]["iccid"] == ID_2.iccid
              and changed[0]["previous"]["iccid"] == ID_1.iccid
              and changed[0]["module"].get("source") == "modemmanager",
              "sim_changed: new ICCID, previous = the first SIM, source = modemmanager", err or events)
        removed = [e for e in events or [] if e.get("type") == "sim_removed"]
        check(not removed, "no sim_removed during ModemManager's re-probe", removed)
        count_before = len(events or [])

        # ---- 4. ModemManager killed; always without ModemManager, always without a bus; restart
        mark = d1.mark()
        mm.kill()
        hit = d1.wait_for(lambda line, m: "ModemManager is not on the system bus" in line, 10, mark)
        check(hit is not None and hit[1].startswith("NOTICE"),
              "ModemManager killed: cellprovd notices (notice level under auto)", d1.tail())
        hit = d1.wait_for(lambda line, m: "modem slot removed" in line and m.get("slot") == SLOT, 5, mark)
        check(hit is not None, "the ModemManager slot is no longer watched", d1.tail())

        d2 = Daemon(workdir, "always", "always")
        daemons.append(d2)
        hit = d2.wait_for(lambda line, m: "ModemManager is not on the system bus" in line, 10)
        check(hit is not None and hit[1].startswith("ERROR"), "always, ModemManager absent: an error line",
              hit[1] if hit else d2.tail())
        env = dict(os.environ)  # no umockdev needed here; a bus address nothing listens on
        env.pop("LD_PRELOAD", None)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={workdir}/late_bus_socket"
        d3 = Daemon(workdir, "nobus", "always", udev=False, env=env)
        daemons.append(d3)
        hit = d3.wait_for(lambda line, m: "the system bus cannot be reached" in line, 10)
        check(hit is not None and hit[1].startswith("ERROR") and "retrying" in hit[1],
              "always, no bus: an error line saying it retries", hit[1] if hit else d3.tail())
        time.sleep(0.3)
        check(d3.proc.poll() is None and d2.proc.poll() is None, "always: the daemons keep running")
        # The bus appears later (as at boot): `always` retries it (every 5 s) and then waits for ModemManager.
        mark3 = d3.mark()
        late = Bus(workdir, "late_bus")
        try:
            hit = d3.wait_for(lambda line, m: "ModemManager is not on the system bus" in line, 12, mark3)
            check(hit is not None and hit[1].startswith("ERROR"),
                  "always, the bus appears later: connected on a retry, then an error that ModemManager is absent",
                  d3.tail())
        finally:
            late.stop()

        mark = d1.mark()
        mark2 = d2.mark()
        mm2 = ModemManager(workdir, 2)
        mms.append(mm2)
        hit = d1.wait_for(mm_identity_read(ID_2), 30, mark)
        check(hit is not None, "ModemManager restarted: cellprovd reads the module again", d1.tail())
        hit2 = d2.wait_for(event_line("enrolled"), 15, mark2)
        check(hit2 is not None, "always: enrolled once ModemManager is back", d2.tail())
        time.sleep(0.5)
        new = d1.find_all(lambda line, m: m.get("event") is not None, mark)
        check(not new, "no event after ModemManager's restart (no sim_removed, no enrolled: the state was kept)",
              [n[1] for n in new])
        events, err = events_json(d1.state)
        check(events is not None and len(events) == count_before, "the event history is unchanged",
              err or len(events or []))

        # ---- 5. the unit's sandbox
        sandbox(workdir, daemons)

        # ---- 6. shutdown and leaks
        for d in daemons:
            if d.proc.poll() is None:
                tdm.check_sigterm(d)
            tdm.check_leaks(d, {"SIM 1": ID_1, "SIM 2": ID_2})
    finally:
        for d in daemons:
            d.kill()
        watcher.stop()
        for m in mms:
            m.stop()
        served.stop()
    ok = {k: v for k, v in figures.items() if v is not None}
    if ok:
        print("     figures: " + ", ".join(f"{k} {v:.0f} ms" for k, v in ok.items()))


def sandbox(workdir, daemons):
    """cellprovd under an approximation of its unit's sandbox, reading the modem over the bus.

    What systemd does for the unit, in its order: the mount namespace (ProtectSystem=strict: read-only; the
    StateDirectory= bind-mounted writable), then the service's user (User=), then PrivateUsers= (a user namespace
    mapping only that user). Here: `unshare --mount` with the work directory (bus socket, configuration) bound
    read-only and the state directory bound writable on top, then `setpriv` to an unprivileged user, then
    `unshare --user` mapping only that user. RestrictAddressFamilies= keeps AF_UNIX, which
    scripts/check-systemd-unit.sh checks in the unit itself. Without umockdev (the user cannot read the
    testbed), so the slot is the device's sysfs path, not its ID_PATH."""
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            check(False, f"sandbox: {tool} not found (util-linux, mount)")
            return
    user = pwd.getpwnam("nobody")
    uid, gid = user.pw_uid, user.pw_gid
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("UMOCKDEV_DIR", None)
    os.chmod(workdir, 0o755)
    state = os.path.join(workdir, "state-sandbox")
    # A copy the unprivileged user can run whatever the permissions of the checkout's directories.
    binary = os.path.join(workdir, "cellprovd")
    shutil.copy(CELLPROVD, binary)
    os.chmod(binary, 0o755)
    script = (
        'set -e; mount --bind "$W" "$W"; mount -o remount,bind,ro "$W"; '
        'mount --bind "$S" "$S"; mount -o remount,bind,rw "$S"; '
        f'exec setpriv --reuid={uid} --regid={gid} --clear-groups -- '
        f'unshare --user --map-user={uid} --map-group={gid} -- "$@"')
    env["W"], env["S"] = workdir, state
    wrap = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sandbox"]
    os.makedirs(state, exist_ok=True)
    os.chown(state, uid, gid)
    # The sandbox is what it claims: the work directory read-only, the state directory writable, our uid only.
    probe = subprocess.run(
        [*wrap, "sh", "-c", 'touch "$W/probe" 2>/dev/null && echo W-WRITABLE; touch "$S/probe" && echo S-OK; '
         'id -u; wc -l < /proc/self/uid_map'], env=env, capture_output=True, text=True, timeout=20)
    check(probe.stdout.split() == ["S-OK", str(uid), "1"],
          "sandbox self-check: bus socket's directory read-only, state writable, one uid mapped (ours)",
          (probe.stdout, probe.stderr))
    d = Daemon(workdir, "sandbox", "always", udev=False, wrap=wrap, env=env, owner=uid, state_mode=0o700,
               binary=binary)
    daemons.append(d)
    hit = d.wait_for(mm_identity_read(ID_2, slot="/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1"), 20)
    check(hit is not None, "sandbox (unprivileged user, user namespace, read-only bus socket and config): "
          "cellprovd reads the modem from ModemManager", d.tail())
    hit = d.wait_for(lambda line, m: m.get("event") == "enrolled", 5)
    check(hit is not None, "sandbox: enrolled (the state directory is writable)", d.tail())
    check(not d.find_all(lambda line, m: "ModemManager is not on the system bus" in line
                         or "cannot be reached" in line),
          "sandbox: no bus error (the EXTERNAL authentication and ModemManager's policy let it read)")


def main():
    for binary in (CELLPROV, CELLPROVD):
        if not os.path.exists(binary):
            print(f"FAIL {binary} not found (swift build first)")
            return 1
    for tool, what in ((MODEMMANAGER, "apt-get install modemmanager"), (MM_POLICY, "apt-get install modemmanager")):
        if not os.path.exists(tool):
            print(f"SKIP: {tool} missing ({what})")
            return 77
    if shutil.which("dbus-daemon") is None:
        print("SKIP: dbus-daemon missing (apt-get install dbus)")
        return 77
    if "umockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
        print("FAIL not running under umockdev-wrapper (use Tests/modemmanager/run.sh)")
        return 1
    os.environ.pop("JOURNAL_STREAM", None)
    os.environ.pop("NOTIFY_SOCKET", None)
    workdir = tempfile.mkdtemp(prefix="cellprovd-mm.")
    start = time.monotonic()
    bus = Bus(workdir)  # before the testbed: the bus runs without the umockdev preload
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    try:
        testbed = UMockdev.Testbed.new()
        run(workdir, testbed, bus)
    finally:
        bus.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"     (ModemManager checks took {time.monotonic() - start:.1f} s)")
    return td.CHECKS.summary("ModemManager")


if __name__ == "__main__":
    sys.exit(main())
