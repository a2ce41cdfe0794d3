#!/usr/bin/python3
"""umockdev integration test of Linux WWAN framework ports: PCIe modules whose AT port is /dev/wwan0at0, not a tty.

Run through Tests/umockdev/run.sh (under `umockdev-wrapper`; see test_discovery.py and test_daemon.py, whose
helpers this file reuses).

What it builds (drivers/net/wwan/wwan_core.c's layout: PCI device > mhi0 > wwan/wwanN > wwanN<type><index>):
  - module R, a Quectel RM520N-GL in PCIe mode (PCI 1eac:1007) at 0000:55:00.0: wwan0at0 (type AT, served by
    `cellprov simulate`), wwan0mbim0 (MBIM) and wwan0qcdm0 (QCDM), nothing from our udev rules: the kernel's
    port type and order decide (at0 is the module's only AT port);
  - module T, a Telit FN990 (PCI 17cb:0308, subsystem 1c5d:2010) at 0000:56:00.0: wwan1at0 (DUN), wwan1at1
    (DUN2, served by a simulator), wwan1mbim0: the port table (keyed by the PCI subsystem IDs) gives at1 to cellprov.
Each node is a PTY (umockdev gives a non-tty major a PTY too; its preload's isatty() answers 0). The AT nodes get
an ioctl handler that records every request and answers ENOTTY, as a WWAN port does for TIOCEXCL (and every tty
ioctl on Linux 5.13). termios calls are glibc system calls the preload does not see; instead the PTY's settings
are set to a sentinel (9600 baud) that cellprov's tty mode would change to 115200: the check can fail. Opens of
the nodes that must never be opened (MBIM, QCDM, the FN990's at0) are watched with inotify on their PTYs.

Checks:
  1. `cellprov ports --json`: roles (at/ignore/qcdm; at-secondary/at for the FN990), evidence (kernel, table),
     chosen ports, slots pci-0000:55:00.0 / pci-0000:56:00.0, PCI IDs, port names;
  2. `cellprov probe --json /dev/wwan0at0`: IMEI, IMSI, ICCID read; `cellprov probe /dev/wwan0mbim0`: exit 2,
     port_unavailable "not an AT port", the MBIM node never opened;
  3. cellprovd (udev = true): `modem slot appeared` for both slots with the right ports, identities read;
     unplug module R (remove uevents, then the devices): `modem slot removed`; re-plug it (as wwan2: umockdev
     cannot re-create a removed node's name): identities read again for the same slot; the FN990 likewise,
     re-plugged in umockdev-record's order (ports before their PCI device): at1 again, never at0; SIGTERM: exit 0; no
     identifier in its log; `cellprov ports --monitor --json` reports the remove and add events meanwhile;
  4. over everything: no ioctl on the AT nodes was TIOCEXCL/TIOCNXCL or a termios request, the sentinel settings
     are untouched, the MBIM/QCDM/at0 nodes were never opened; a self-check shows an open is seen.

Environment: CELLPROV, CELLPROVD, PORTS_TABLE, UMOCKDEV_TEST_VERBOSE=1 (see test_daemon.py).
Exit status: 0 all checks passed, 1 a check failed, 77 skipped (umockdev's GI bindings missing).
"""

import ctypes
import errno
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_discovery as td  # noqa: E402  (exits 77 itself when the GI bindings are missing)
import test_daemon as tdd  # noqa: E402

UMockdev = td.UMockdev
CELLPROV = td.CELLPROV
CELLPROVD = tdd.CELLPROVD
PORTS_TABLE = td.PORTS_TABLE
VERBOSE = td.VERBOSE
check = td.check

WWAN_MAJOR = 236  # dynamic on a real kernel; any non-tty major does here
MINOR_BASE = 200  # away from anything the host's udev database could hold for c236:N
BRIDGE = "/devices/pci0000:00/0000:00:1c.0"

ID_R = tdd.Identity("86810204739218", "262017394021857", "8949107739402185736", 2)
ID_T = tdd.Identity("35361811482913", "310260583920174", "8901260583920174918", 3)
SLOT_R = "pci-0000:55:00.0"
SLOT_T = "pci-0000:56:00.0"
# The simulator's dialects for the two modules.
SIM_R = ["--profile", "quectel", "--model", "RM520N-GL"]
SIM_T = ["--profile", "telit", "--model", "FN990A28"]

# ioctl requests a WWAN port must never see from cellprov: TIOCEXCL, TIOCNXCL and the termios family.
FORBIDDEN = {
    0x540C: "TIOCEXCL", 0x540D: "TIOCNXCL", 0x5401: "TCGETS", 0x5402: "TCSETS", 0x5403: "TCSETSW", 0x5404: "TCSETSF",
    0x540B: "TCFLSH", 0x5409: "TCSBRK", 0x540A: "TCXONC", 0x802C542A: "TCGETS2", 0x402C542B: "TCSETS2",
    0x402C542C: "TCSETSW2", 0x402C542D: "TCSETSF2", 0x5415: "TIOCMGET", 0x5418: "TIOCMSET",
}


# ---------------------------------------------------------------------------------------------------------
# Device descriptions


def bridge():
    return f"P: {BRIDGE}\nE: DRIVER=pcieport\nE: SUBSYSTEM=pci\nA: vendor=0x8086\\n\nA: device=0xa110\\n\n"


def pci_ids(ids):
    """The PCI device's ID attributes, as sysfs spells them."""
    v, d, sv, sd = ids
    return [("vendor", f"0x{v}\n"), ("device", f"0x{d}\n"), ("subsystem_vendor", f"0x{sv}\n"),
            ("subsystem_device", f"0x{sd}\n")]


def pci_module(address, ids, wwan, ports, child_first=False, ids_later=False):
    """umockdev text for a PCIe module: the PCI device, mhi0, wwan/wwanN and its ports, parent first (with
    child_first, in umockdev-record's order: each port's add uevent comes before its PCI device exists). With
    ids_later the PCI device has no ID attributes: the caller writes them (pci_ids) once it has added the text.

    ids: (vendor, device, subsystem_vendor, subsystem_device); ports: [(name suffix, type, minor)].
    Returns (text, {devnode: syspath}, [every syspath, deepest first, the PCI device last])."""
    pci = f"{BRIDGE}/{address}"
    v, d, sv, sd = ids
    id_lines = "" if ids_later else "".join(f"A: {name}={value[:-1]}\\n\n" for name, value in pci_ids(ids))
    records = [
        f"P: {pci}\nE: DRIVER=mhi-pci-generic\nE: SUBSYSTEM=pci\nE: PCI_ID={v.upper()}:{d.upper()}\n"
        f"E: PCI_SUBSYS_ID={sv.upper()}:{sd.upper()}\nE: PCI_SLOT_NAME={address}\n"
        f"{id_lines}A: class=0x0d4000\\n\n",
        f"P: {pci}/mhi{wwan}\nE: SUBSYSTEM=mhi\n",
        f"P: {pci}/mhi{wwan}/wwan/wwan{wwan}\nE: SUBSYSTEM=wwan\nE: DEVTYPE=wwan_dev\n",
    ]
    nodes = {}
    syspaths = []
    for suffix, port_type, minor in ports:
        name = f"wwan{wwan}{suffix}"
        sys_path = f"{pci}/mhi{wwan}/wwan/wwan{wwan}/{name}"
        records.append(
            f"P: {sys_path}\nN: {name}\nE: DEVNAME=/dev/{name}\nE: SUBSYSTEM=wwan\nE: DEVTYPE=wwan_port\n"
            f"E: MAJOR={WWAN_MAJOR}\nE: MINOR={minor}\nA: type={port_type}\\n\nA: dev={WWAN_MAJOR}:{minor}\\n\n")
        nodes[f"/dev/{name}"] = "/sys" + sys_path
        syspaths.insert(0, "/sys" + sys_path)
    syspaths += ["/sys" + f"{pci}/mhi{wwan}/wwan/wwan{wwan}", "/sys" + f"{pci}/mhi{wwan}", "/sys" + pci]
    if child_first:
        records.reverse()
    return "\n".join(records), nodes, syspaths


def rm520n(wwan, minor):
    return pci_module("0000:55:00.0", ("1eac", "1007", "1eac", "5007"), wwan,
                      [("at0", "AT", minor), ("mbim0", "MBIM", minor + 1), ("qcdm0", "QCDM", minor + 2)])


FN990_IDS = ("17cb", "0308", "1c5d", "2010")


def fn990(wwan, minor, child_first=False, ids_later=False):
    return pci_module("0000:56:00.0", FN990_IDS, wwan,
                      [("at0", "AT", minor), ("at1", "AT", minor + 1), ("mbim0", "MBIM", minor + 2)], child_first,
                      ids_later)


# ---------------------------------------------------------------------------------------------------------
# Nodes: recorded ioctls, a simulator behind the AT ports, inotify on the ones never to be opened


class WWANIoctls(UMockdev.IoctlBase):
    """Records every ioctl request on a WWAN node and answers ENOTTY, as the kernel does for tty ioctls there."""

    def __init__(self):
        super().__init__()
        self.requests = []
        self.lock = threading.Lock()

    def do_handle_ioctl(self, client):
        with self.lock:
            self.requests.append(client.get_request())
        client.complete(-1, errno.ENOTTY)
        return True


class WWANNode(tdd.FakeTty):
    """An emulated WWAN AT port: test_daemon's FakeTty with the recording ioctl handler, sentinel line settings on
    its PTY, and a `cellprov simulate` of the given profile behind it."""

    def __init__(self, testbed, devnode, identity, profile):
        super().__init__(testbed, devnode, identity, handler=WWANIoctls(), sim_args=profile)

    def configure_master(self):
        # Raw (a WWAN port is a byte pipe) at 9600 baud: termios calls on the master act on the slave's settings,
        # so this is what a client opening the node finds, and what cellprov's tty mode would change.
        attrs = termios.tcgetattr(self.master)
        attrs[4] = attrs[5] = termios.B9600
        termios.tcsetattr(self.master, termios.TCSANOW, attrs)

    def speed(self):
        return termios.tcgetattr(self.master)[5] if self.master is not None else None

    def forbidden(self):
        with self.handler.lock:
            return [FORBIDDEN.get(r, hex(r)) for r in self.handler.requests if r in FORBIDDEN]

    def all_requests(self):
        with self.handler.lock:
            return [hex(r) for r in self.handler.requests]


libc = ctypes.CDLL(None, use_errno=True)
IN_OPEN = 0x20


class OpenWatch:
    """inotify IN_OPEN on the PTYs behind emulated nodes (the testbed's /dev entries are symlinks to /dev/pts/N)."""

    def __init__(self, testbed):
        self.root = testbed.get_root_dir()
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.names = {}  # wd -> devnode
        self.opens = {}  # devnode -> count

    def watch(self, devnode):
        target = os.path.realpath(os.path.join(self.root, devnode.lstrip("/")))
        wd = libc.inotify_add_watch(self.fd, target.encode(), IN_OPEN)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {target}")
        self.names[wd] = devnode
        self.opens.setdefault(devnode, 0)

    def poll(self):
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return dict(self.opens)
            offset = 0
            while offset + 16 <= len(data):
                wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                offset += 16 + length
                if mask & IN_OPEN and wd in self.names:
                    self.opens[self.names[wd]] += 1


# ---------------------------------------------------------------------------------------------------------
# Checks


def test_ports():
    result = td.run_cellprov("ports", "--json", "--ports-table", PORTS_TABLE)
    check(result.returncode == 0, "cellprov ports --json exits 0", result.stderr)
    ports = td.by_devnode(td.parse_json_lines(result.stdout))
    if VERBOSE:
        print(result.stdout, result.stderr)
    expected = {
        "/dev/wwan0at0": ("at", "kernel", True, SLOT_R, "at0"),
        "/dev/wwan0mbim0": ("ignore", "kernel", False, SLOT_R, "mbim0"),
        "/dev/wwan0qcdm0": ("qcdm", "kernel", False, SLOT_R, "qcdm0"),
        "/dev/wwan1at0": ("at-secondary", "table", False, SLOT_T, "at0"),
        "/dev/wwan1at1": ("at", "table", True, SLOT_T, "at1"),
        "/dev/wwan1mbim0": ("ignore", "kernel", False, SLOT_T, "mbim0"),
    }
    for devnode, (role, evidence, chosen, slot, interface) in expected.items():
        r = ports.get(devnode)
        got = r and (r["role"], r["evidence"], r["chosen"], r["slot"], r["interface"])
        check(got == (role, evidence, chosen, slot, interface),
              f"ports: {devnode} is {role} ({evidence}){' and chosen' if chosen else ''}, slot {slot}", r)
    r = ports.get("/dev/wwan1at1") or {}
    check((r.get("vendorID"), r.get("productID"), r.get("family"), r.get("usbSerial")) ==
          ("17cb", "0308", "telit-fn990", None), "ports: the FN990's PCI IDs and family, no USB serial", r)
    text = td.run_cellprov("ports", "--ports-table", PORTS_TABLE)
    if VERBOSE:  # scripts/demo.sh shows these lines
        for line in text.stdout.splitlines():
            print(f"  [ports] {line}")
    row = next((line for line in text.stdout.splitlines() if line.startswith("/dev/wwan0at0 ")), "")
    check(" at* " in row and SLOT_R in row, "ports (text): wwan0at0 marked at* with its PCI slot", text.stdout)


def test_probe(watch, nodes):
    result = td.run_cellprov("probe", "--json", "--timeout", "10", "--state-directory", "/nonexistent",
                             "/dev/wwan0at0")
    records = td.parse_json_lines(result.stdout)
    record = records[0] if records else {}
    check(result.returncode == 0, "probe /dev/wwan0at0 exits 0", (result.returncode, result.stderr[-1500:]))
    check((record.get("imei"), record.get("imsi"), record.get("iccid")) == (ID_R.imei, ID_R.imsi, ID_R.iccid),
          "probe /dev/wwan0at0: IMEI, IMSI, ICCID read over the WWAN port", record)
    check(nodes["/dev/wwan0at0"].speed() == termios.B9600 and not nodes["/dev/wwan0at0"].forbidden(),
          "probe: no termios applied and no TIOCEXCL/termios ioctl on wwan0at0",
          (nodes["/dev/wwan0at0"].speed(), nodes["/dev/wwan0at0"].all_requests()))

    if VERBOSE:  # the table, identifiers redacted (scripts/demo.sh shows it)
        table = td.run_cellprov("probe", "--state-directory", "/nonexistent", "/dev/wwan0at0", "/dev/wwan0mbim0")
        for line in table.stdout.splitlines():
            print(f"  [probe] {line}")
    result = td.run_cellprov("probe", "--json", "--timeout", "5", "--state-directory", "/nonexistent",
                             "/dev/wwan0mbim0")
    records = td.parse_json_lines(result.stdout)
    problems = records[0].get("problems", []) if records else []
    check(result.returncode == 2 and any(p["code"] == "port_unavailable" and "not an AT port" in p["message"]
                                         for p in problems),
          "probe /dev/wwan0mbim0: refused (exit 2, port_unavailable: not an AT port)", (result.returncode, problems))
    time.sleep(0.1)
    check(watch.poll().get("/dev/wwan0mbim0") == 0, "probe /dev/wwan0mbim0: the MBIM node was never opened",
          watch.poll())


def appeared(slot, port):
    return tdd.appeared(slot, port)


def test_daemon(testbed, workdir, watch, nodes, r_nodes, r_syspaths, t_nodes, t_syspaths):
    d = tdd.Daemon(workdir, "wwan", probe_unknown=False)
    # `cellprov ports --monitor` follows the same unplug and re-plug.
    monitor = subprocess.Popen([CELLPROV, "ports", "--monitor", "--json", "--ports-table", PORTS_TABLE],
                               stdout=subprocess.PIPE, stderr=None if VERBOSE else subprocess.DEVNULL)
    reader = td.LineReader(monitor.stdout)
    try:
        last, seen = reader.until(lambda r: r["devnode"] == "/dev/wwan1mbim0", 15)
        check(last is not None, "monitor: initial list printed", seen)
        for slot, port, identity in ((SLOT_R, "/dev/wwan0at0", ID_R), (SLOT_T, "/dev/wwan1at1", ID_T)):
            hit = d.wait_for(appeared(slot, port), 10)
            check(hit is not None, f"daemon: `modem slot appeared` slot={slot} port={port}", d.tail())
            hit = d.wait_for(tdd.identity_read(slot, identity, port), 10)
            check(hit is not None and hit[2].get("reason") == "start",
                  f"daemon: `identity read:` for {slot} (TAC {identity.tac}) on {port}", hit[1] if hit else d.tail())

        # Unplug module R: remove uevents (ports first, as the kernel sends them), then the devices.
        mark = d.mark()
        for devnode in sorted(r_nodes, reverse=True):
            testbed.uevent(r_nodes[devnode], "remove")
        hit = d.wait_for(lambda line, m: "modem slot removed" in line and m.get("slot") == SLOT_R, 10, mark)
        check(hit is not None, f"daemon: `modem slot removed` slot={SLOT_R} after the remove uevents", d.tail())
        nodes["/dev/wwan0at0"].stop()
        for syspath in r_syspaths:
            testbed.remove_device(syspath)
        time.sleep(0.2)
        check(d.proc.poll() is None, "daemon: still running after the unplug", d.proc.poll())

        # Re-plug it: parent first, as the kernel announces a PCI device and then its ports.
        text, _, _ = rm520n(2, MINOR_BASE + 10)
        node = WWANNode(testbed, "/dev/wwan2at0", ID_R, SIM_R)
        nodes["/dev/wwan2at0"] = node
        mark = d.mark()
        start = time.monotonic()
        testbed.add_from_string(text)
        node.activate()
        watch.watch("/dev/wwan2mbim0")
        watch.watch("/dev/wwan2qcdm0")
        hit = d.wait_for(tdd.identity_read(SLOT_R, ID_R, "/dev/wwan2at0"), 10, mark)
        check(hit is not None and hit[2].get("reason") in ("udev add", "start"),
              f"daemon: re-plugged module: `identity read:` for {SLOT_R} on /dev/wwan2at0", d.tail())
        if hit:
            print(f"     (WWAN re-plug: add -> identities read: {(hit[0] - start) * 1000:.0f} ms)")
        # Unplug the FN990 and re-plug it child first: its ports' add uevents come before the PCI device (and its
        # subsystem IDs, the table's key) can be read; the udev monitor waits for it, or at0 would be taken. The
        # PCI device's IDs are written 0.3 s after it appears (umockdev, like a device being added, creates the
        # device before its attributes): the monitor waits for the IDs too, not only for the device.
        mark = d.mark()
        for devnode in sorted(t_nodes, reverse=True):
            testbed.uevent(t_nodes[devnode], "remove")
        hit = d.wait_for(lambda line, m: "modem slot removed" in line and m.get("slot") == SLOT_T, 10, mark)
        check(hit is not None, f"daemon: `modem slot removed` slot={SLOT_T} (FN990 unplugged)", d.tail())
        nodes["/dev/wwan1at1"].stop()
        for syspath in t_syspaths:
            testbed.remove_device(syspath)
        text, _, t3_syspaths = fn990(3, MINOR_BASE + 20, child_first=True, ids_later=True)
        node = WWANNode(testbed, "/dev/wwan3at1", ID_T, SIM_T)
        nodes["/dev/wwan3at1"] = node
        mark = d.mark()
        testbed.add_from_string(text)
        node.activate()
        time.sleep(0.3)
        for name, value in pci_ids(FN990_IDS):
            testbed.set_attribute(t3_syspaths[-1], name, value)
        watch.watch("/dev/wwan3at0")
        watch.watch("/dev/wwan3mbim0")
        hit = d.wait_for(tdd.identity_read(SLOT_T, ID_T, "/dev/wwan3at1"), 10, mark)
        check(hit is not None, "daemon: FN990 re-plugged child first: identities read on /dev/wwan3at1 (DUN2)",
              d.tail())
        wrong = d.find_all(lambda line, m: m.get("port") == "/dev/wwan3at0", mark)
        check(not wrong, "daemon: the re-plugged FN990's at0 (ModemManager's) was not taken", [w[1] for w in wrong])

        problems = d.find_all(lambda line, m: "cannot open" in line or "with problems" in line)
        check(not problems, "daemon: no open failure or read problem", [p[1] for p in problems])

        added, seen = reader.until(lambda r: r["event"] == "add" and r["devnode"] == "/dev/wwan2at0", 10)
        events = {(r["event"], r["devnode"]): r for r in seen}
        gone = events.get(("remove", "/dev/wwan0at0"))
        check(gone is not None and (gone["role"], gone["slot"]) == ("at", SLOT_R),
              "monitor: remove of wwan0at0 reported with its role and slot", sorted(events))
        check(("remove", "/dev/wwan0mbim0") in events and ("remove", "/dev/wwan0qcdm0") in events,
              "monitor: remove of wwan0mbim0 and wwan0qcdm0", sorted(events))
        check(added is not None and (added["role"], added["chosen"], added["slot"]) == ("at", True, SLOT_R),
              "monitor: re-plugged wwan2at0 is the module's chosen AT port in the same slot", added)
        monitor.send_signal(signal.SIGTERM)
        check(monitor.wait(10) == 0, "monitor: exits 0 on SIGTERM")
    finally:
        if monitor.poll() is None:
            monitor.kill()
            monitor.wait()
        if d.proc.poll() is None:
            tdd.check_sigterm(d)
        tdd.check_leaks(d, {"module R": ID_R, "module T": ID_T})


def run(testbed, workdir):
    r_text, r_nodes, r_syspaths = rm520n(0, MINOR_BASE)
    t_text, t_nodes, t_syspaths = fn990(1, MINOR_BASE + 3)
    nodes = {
        "/dev/wwan0at0": WWANNode(testbed, "/dev/wwan0at0", ID_R, SIM_R),
        "/dev/wwan1at1": WWANNode(testbed, "/dev/wwan1at1", ID_T, SIM_T),
    }
    try:
        for text in (bridge(), r_text, t_text):
            if not testbed.add_from_string(text):
                print("FAIL Testbed.add_from_string")
                return
        for node in nodes.values():
            node.activate()
        watch = OpenWatch(testbed)
        never = ["/dev/wwan0mbim0", "/dev/wwan0qcdm0", "/dev/wwan1at0", "/dev/wwan1mbim0"]
        for devnode in never:
            watch.watch(devnode)

        test_ports()
        test_probe(watch, nodes)
        test_daemon(testbed, workdir, watch, nodes, r_nodes, r_syspaths, t_nodes, t_syspaths)

        # Over everything: the AT nodes saw no tty ioctl and kept their settings; the others were never opened.
        for devnode, node in nodes.items():
            check(not node.forbidden(), f"{devnode}: no TIOCEXCL, TIOCNXCL or termios ioctl",
                  node.all_requests())
            if node.thread:  # still served (wwan0at0 was unplugged with its PTY)
                check(node.speed() == termios.B9600, f"{devnode}: line settings untouched (sentinel 9600 baud)",
                      node.speed())
            with node.lock:
                check(b"AT" in node.written, f"{devnode}: cellprov wrote AT commands to it", bytes(node.written[:40]))
        opens = watch.poll()
        check(all(count == 0 for count in opens.values()),
              "the MBIM, QCDM and the FN990's at0 nodes were never opened", opens)

        # Self-check: an open of a watched node is seen.
        subprocess.run([sys.executable, "-c", "import os; os.close(os.open('/dev/wwan2mbim0', os.O_RDWR))"],
                       timeout=10)
        time.sleep(0.1)
        check(watch.poll().get("/dev/wwan2mbim0", 0) >= 1, "self-check: an open of a watched node is seen",
              watch.poll())
    finally:
        for node in nodes.values():
            node.stop()


def main():
    return tdd.harness("WWAN", "cellprov-wwan-umockdev.", run)

if __name__ == "__main__":
    sys.exit(main())
