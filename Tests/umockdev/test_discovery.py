#!/usr/bin/python3
"""umockdev integration test of port discovery: `cellprov ports` against fake USB modems.

Run through Tests/umockdev/run.sh, which runs this under `umockdev-wrapper` (the preload library): the
process that emits uevents must itself be preloaded (Testbed.uevent() resolves the device through libudev
in this process), and every child inherits the mock environment (LD_PRELOAD, UMOCKDEV_DIR).

What it builds (see `usb_module`):
  - module A, a Quectel EC25 (2c7c:0125) on USB port 1: ttyUSB0..3 = interfaces 00..03, with the properties
    udevd's builtins and ModemManager's rules would set, but WITHOUT ours (CELLPROV_*): the port table decides;
  - module B, another EC25 on USB port 2: ttyUSB4..7, WITH our rules' properties: the rules decide;
  - module C, an unknown module (1234:5678) on USB port 3: ttyUSB8, one vendor-specific interface.
Checks `cellprov ports --json`, then the hotplug path (`cellprov ports --monitor --json` as a child while this
process unplugs and re-plugs module A), then `cellprov probe` on module A's AT port served by `cellprov simulate`
through `serve_with_simulator` (which needs the termios/TIOCEXCL passthrough, see `TtyPassthrough`), and
`cellprov probe --report` on it (the factory record is keyed by udev's slot of the port).

Pitfalls handled here (see shared/peers/modemmanager.md):
  - umockdev 0.17 answers ENOTTY to termios and TIOCEXCL ioctls on its PTY-backed ttys: `TtyPassthrough`
    executes them on the real PTY;
  - umockdev does not redirect /run/udev: libudev reads the host's udev database for a device number it
    finds there (c188:N for ttyUSB, c189:N for USB devices) and would mix a real device's properties into the
    fake one. The fake devices therefore use minors a host hardly has (ttyUSB minors from 200, USB devices
    on bus 7). The tty major is 4, not ttyUSB's 188: umockdev 0.17's isatty() answers 1 for an emulated
    tty only when its major is 4, and cellprov checks isatty() before it configures a port.
  - an add uevent can come before the device's parents exist: cellprov's monitor waits for them.

Environment: CELLPROV (path to the cellprov binary; default <repo>/.build/debug/cellprov), PORTS_TABLE
(default <repo>/udev/ports.tsv), UMOCKDEV_TEST_VERBOSE=1 for the children's stderr.
Exit status: 0 all checks passed, 1 a check failed, 77 skipped (umockdev's GI bindings missing).
"""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty

try:
    import gi

    gi.require_version("UMockdev", "1.0")
    from gi.repository import GLib, UMockdev  # noqa: F401  (GLib: GError)
except (ImportError, ValueError) as error:
    print(f"SKIP: umockdev GI bindings not available ({error}); install gir1.2-umockdev-1.0 python3-gi")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import blackbox  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CELLPROV = os.environ.get("CELLPROV", os.path.join(REPO, ".build", "debug", "cellprov"))
PORTS_TABLE = os.environ.get("PORTS_TABLE", os.path.join(REPO, "udev", "ports.tsv"))
VERBOSE = os.environ.get("UMOCKDEV_TEST_VERBOSE") == "1"

TTY_MAJOR = 4  # not ttyUSB's 188: umockdev's isatty() answers 0 unless the major is 4
TTY_MINOR_BASE = 200  # beyond real ttyS minors (64 + nr_uarts), whose udev db entries would leak in
USB_MAJOR = 189
BUS = 7
PCI = "0000:00:14.0"
PCI_PATH = f"/devices/pci0000:00/{PCI}"

# Identities the simulator serves in the probe check: constructed, check digits computed (Luhn), MCC/MNC 262/01.
SIM_IMEI = "866761041234568"
SIM_IMSI = "262011234567890"
SIM_ICCID = "89491012345678901232"


# ---------------------------------------------------------------------------------------------------------
# Device descriptions


def root_hub():
    """umockdev text for the PCI xHCI controller and the root hub of bus BUS (add once, before modules)."""
    return (
        f"P: {PCI_PATH}\nE: DRIVER=xhci_hcd\nE: PCI_CLASS=C0330\nE: PCI_ID=8086:A36D\nE: SUBSYSTEM=pci\n"
        "A: class=0x0c0330\\n\nA: vendor=0x8086\\n\nA: device=0xa36d\\n\n"
        "\n"
        f"P: {PCI_PATH}/usb{BUS}\nE: DEVTYPE=usb_device\nE: DRIVER=usb\nE: SUBSYSTEM=usb\n"
        f"A: idVendor=1d6b\\n\nA: idProduct=0002\\n\nA: busnum={BUS}\\n\nA: devnum=1\\n\n"
    )


def usb_module(port, vid, pid, serial, interfaces, manufacturer="Quectel", product="EC25", child_first=False):
    """umockdev text for one USB module on bus BUS, port `port`.

    interfaces: [(number, (class, subclass, protocol), driver, tty_index, {extra tty properties})].
    Records are written parent first so that every parent exists when its child is added; with
    child_first, in umockdev-record's order (each tty before its parents), so that the tty's add uevent is
    sent before its USB parents exist.
    Returns (text, {devnode: tty syspath}, [every syspath of the module, deepest first]).
    """
    dev = f"{BUS}-{port}"
    usb_sys = f"{PCI_PATH}/usb{BUS}/{dev}"  # the devpath; the syspath umockdev's API wants is "/sys" + this
    id_path = f"pci-{PCI}-usb-0:{port}"
    usb_minor = (BUS - 1) * 128 + port
    records = []
    records.append(
        f"P: {usb_sys}\n"
        f"E: DEVTYPE=usb_device\nE: DRIVER=usb\nE: SUBSYSTEM=usb\nE: PRODUCT={int(vid, 16):x}/{int(pid, 16):x}/318\n"
        f"E: BUSNUM={BUS:03d}\nE: DEVNUM={port + 1:03d}\nE: MAJOR={USB_MAJOR}\nE: MINOR={usb_minor}\n"
        f"E: ID_BUS=usb\nE: ID_VENDOR={manufacturer}\nE: ID_VENDOR_ID={vid}\nE: ID_MODEL={product}\n"
        f"E: ID_MODEL_ID={pid}\nE: ID_REVISION=0318\nE: ID_SERIAL={manufacturer}_{product}_{serial}\n"
        f"E: ID_SERIAL_SHORT={serial}\nE: ID_PATH={id_path}\nE: ID_PATH_TAG={id_path.replace(':', '_').replace('.', '_').replace('-', '_')}\n"
        f"A: idVendor={vid}\\n\nA: idProduct={pid}\\n\nA: serial={serial}\\n\nA: manufacturer={manufacturer}\\n\n"
        f"A: product={product}\\n\nA: bDeviceClass=ef\\n\nA: bcdDevice=0318\\n\nA: busnum={BUS}\\n\n"
        f"A: devnum={port + 1}\\n\nA: dev={USB_MAJOR}:{usb_minor}\\n\n"
    )
    ttys = {}
    syspaths = ["/sys" + usb_sys]
    for number, (cls, sub, proto), driver, index, extra in interfaces:
        iface = f"{usb_sys}/{dev}:1.{int(number, 16)}"
        records.append(
            f"P: {iface}\nE: DEVTYPE=usb_interface\nE: DRIVER={driver}\nE: SUBSYSTEM=usb\n"
            f"E: INTERFACE={int(cls, 16)}/{int(sub, 16)}/{int(proto, 16)}\n"
            f"A: bInterfaceClass={cls}\\n\nA: bInterfaceNumber={number}\\n\nA: bInterfaceSubClass={sub}\\n\n"
            f"A: bInterfaceProtocol={proto}\\n\nA: bNumEndpoints=03\\n\n"
        )
        port_dir = f"{iface}/ttyUSB{index}"
        records.append(f"P: {port_dir}\nE: DRIVER={driver}1\nE: SUBSYSTEM=usb-serial\nA: port_number=0\\n\n")
        tty_sys = f"{port_dir}/tty/ttyUSB{index}"
        props = {
            "DEVNAME": f"/dev/ttyUSB{index}",
            "MAJOR": str(TTY_MAJOR),
            "MINOR": str(TTY_MINOR_BASE + index),
            "SUBSYSTEM": "tty",
            "ID_BUS": "usb",
            "ID_VENDOR_ID": vid,
            "ID_MODEL_ID": pid,
            "ID_VENDOR": manufacturer,
            "ID_MODEL": product,
            "ID_SERIAL_SHORT": serial,
            "ID_USB_INTERFACE_NUM": number,
            "ID_USB_DRIVER": driver,
            "ID_PATH": f"{id_path}:1.{int(number, 16)}",
        }
        props.update(extra)
        body = "".join(f"E: {k}={v}\n" for k, v in props.items())
        records.append(f"P: {tty_sys}\nN: ttyUSB{index}\n{body}A: dev={TTY_MAJOR}:{TTY_MINOR_BASE + index}\\n\n")
        ttys[f"/dev/ttyUSB{index}"] = "/sys" + tty_sys
        syspaths[:0] = ["/sys" + tty_sys, "/sys" + port_dir, "/sys" + iface]
    if child_first:
        usb_record, rest = records[0], records[1:]
        groups = [rest[i:i + 3] for i in range(0, len(rest), 3)]  # (interface, port, tty) per interface
        records = [r for g in groups for r in reversed(g)] + [usb_record]
    return "\n".join(records), ttys, syspaths


def virtual_ttys():
    """umockdev text for two ttys with no device above them: a virtual console (nothing names it) and an n_gsm
    multiplexer channel that a local udev rule marks as a module's AT port (a UART module behind CMUX)."""
    return (
        "P: /devices/virtual/tty/tty5\nN: tty5\nE: DEVNAME=/dev/tty5\nE: MAJOR=4\nE: MINOR=5\nE: SUBSYSTEM=tty\n"
        "A: dev=4:5\\n\n"
        "\n"
        "P: /devices/virtual/tty/gsmtty1\nN: gsmtty1\nE: DEVNAME=/dev/gsmtty1\nE: MAJOR=249\nE: MINOR=1\n"
        "E: SUBSYSTEM=tty\nE: CELLPROV_PORT_ROLE=at\nE: CELLPROV_MODULE=quectel-ec2x\nA: dev=249:1\\n\n"
    )


# What ModemManager's 77-mm-quectel-port-types.rules set on an EC25 (by interface number).
MM_EC25 = {
    "00": {"ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_QCDM": "1"},
    "01": {"ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_GPS": "1"},
    "02": {"ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_AT_PRIMARY": "1"},
    "03": {"ID_MM_CANDIDATE": "1", "ID_MM_PORT_TYPE_AT_SECONDARY": "1"},
}
# What udev/77-cellprov.rules set on an EC25 (ID_MM_PORT_IGNORE on the port cellprov takes).
OURS_EC25 = {
    "00": {"CELLPROV_PORT_ROLE": "qcdm", "CELLPROV_MODULE": "quectel-ec2x"},
    "01": {"CELLPROV_PORT_ROLE": "gps", "CELLPROV_MODULE": "quectel-ec2x"},
    "02": {"CELLPROV_PORT_ROLE": "at-secondary", "CELLPROV_MODULE": "quectel-ec2x"},
    "03": {"CELLPROV_PORT_ROLE": "at", "CELLPROV_MODULE": "quectel-ec2x", "ID_MM_PORT_IGNORE": "1"},
}


def ec25(port, serial, first_tty, with_our_rules, child_first=False):
    interfaces = []
    for i, number in enumerate(["00", "01", "02", "03"]):
        extra = dict(MM_EC25[number])
        if with_our_rules:
            extra.update(OURS_EC25[number])
        interfaces.append((number, ("ff", "00", "00") if number != "00" else ("ff", "ff", "ff"), "option",
                           first_tty + i, extra))
    return usb_module(port, "2c7c", "0125", serial, interfaces, child_first=child_first)


def unknown_module(port, serial, tty_index):
    return usb_module(port, "1234", "5678", serial, [("00", ("ff", "00", "00"), "option", tty_index, {})],
                      manufacturer="Acme", product="LTE")


# ---------------------------------------------------------------------------------------------------------
# ioctl passthrough and the simulator bridge


class TtyPassthrough(UMockdev.IoctlBase):
    """Executes every ioctl of an emulated tty on the real PTY behind it (termios, TIOCEXCL, TIOCMGET...).

    umockdev 0.17 forwards each ioctl on an emulated node to the testbed process, whose default handler
    answers ENOTTY for a PTY-backed tty; this asks the preloaded client to run it on its real fd.
    """

    def do_handle_ioctl(self, client):
        try:
            result, err = client.execute()
        except GLib.Error:
            return False
        client.complete(result, err)
        return True


def attach_passthrough(testbed, devnode):
    handler = TtyPassthrough()
    testbed.attach_ioctl(devnode, handler)
    return handler  # keep a reference: the handler must outlive the test


class SimulatorBridge:
    """Serves an emulated tty with a `cellprov simulate` process: bytes are copied both ways between the
    umockdev PTY's master side (Testbed.get_dev_fd) and the simulator's PTY slave."""

    def __init__(self, testbed, devnode, extra_args=(), sim_args=None, handler=None):
        """`sim_args` replaces the default identity flags; `handler`: a pass-through attached earlier (before the
        device was added), else one is attached now."""
        self.devnode = devnode
        self.handler = handler or attach_passthrough(testbed, devnode)
        self.master = testbed.get_dev_fd(devnode)
        if self.master < 0:
            raise RuntimeError(f"no PTY behind {devnode}")
        if sim_args is None:
            sim_args = ["--imei", SIM_IMEI, "--imsi", SIM_IMSI, "--iccid", SIM_ICCID]
        self.sim, self.sim_path = blackbox.start_simulator_pty(CELLPROV, [*sim_args, *extra_args], VERBOSE)
        self.sim_fd = os.open(self.sim_path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.sim_fd)
        # The umockdev side: raw as well, so nothing is echoed or translated before the client sets it up.
        tty.setraw(self.master)
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        pairs = {self.master: self.sim_fd, self.sim_fd: self.master}
        while True:
            ready, _, _ = select.select([self.master, self.sim_fd, self.stop_r], [], [])
            if self.stop_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the other side of that PTY is closed (no client right now)
                    data = b""
                if data:
                    os.write(pairs[fd], data)
                else:
                    time.sleep(0.01)

    def close(self):
        os.write(self.stop_w, b"x")
        self.thread.join(2)
        blackbox.stop_process(self.sim, 5)
        os.close(self.sim_fd)


def serve_with_simulator(testbed, devnode, extra_args=()):
    """Makes `devnode` (an emulated tty) answer like a modem: returns a SimulatorBridge; call .close()."""
    return SimulatorBridge(testbed, devnode, extra_args)


# ---------------------------------------------------------------------------------------------------------
# Checks

# One per process: test_daemon.py, test_wwan.py and the ModemManager suites import these and summarise their own.
CHECKS = blackbox.Checks("umockdev discovery")
check = CHECKS.check


def run_cellprov(*args, timeout=30):
    return subprocess.run([CELLPROV, *args], capture_output=True, text=True, timeout=timeout)


def by_devnode(lines):
    return {record["devnode"]: record for record in lines}


def parse_json_lines(text):
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            records.append(json.loads(line))
    return records


class LineReader:
    """Reads a child's stdout line by line with a deadline."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buffer = b""

    def next(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def until(self, predicate, timeout):
        """Lines until one satisfies predicate (returned with the ones before it)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None, seen
            record = json.loads(line)
            seen.append(record)
            if predicate(record):
                return record, seen


def test_enumeration():
    result = run_cellprov("ports", "--json", "--ports-table", PORTS_TABLE)
    check(result.returncode == 0, "cellprov ports --json exits 0", result.stderr)
    ports = by_devnode(parse_json_lines(result.stdout))
    if VERBOSE:
        print(result.stdout, result.stderr)

    # Module A: the table decides (no CELLPROV_* properties; MM's hint says 02 is its primary).
    a = {n: ports.get(f"/dev/ttyUSB{n}") for n in range(4)}
    check(all(a.values()), "module A: ttyUSB0..3 listed", sorted(ports))
    if all(a.values()):
        check([a[n]["role"] for n in range(4)] == ["qcdm", "gps", "at-secondary", "at"],
              "module A: roles from the port table", [a[n]["role"] for n in range(4)])
        check(all(a[n]["evidence"] == "table" for n in range(4)), "module A: evidence is the table")
        check(a[3]["chosen"] and not any(a[n]["chosen"] for n in range(3)), "module A: ttyUSB3 is the chosen AT port")
        check(a[3]["slot"] == f"pci-{PCI}-usb-0:1", "module A: slot is the USB device's ID_PATH", a[3]["slot"])
        check(a[3]["usbSerial"] == "EC25A0000001", "module A: USB serial", a[3]["usbSerial"])
        check((a[3]["vendorID"], a[3]["productID"], a[3]["interface"]) == ("2c7c", "0125", "03"),
              "module A: VID:PID:interface")
        check(a[3]["family"] == "quectel-ec2x", "module A: family from the table", a[3]["family"])

    # Module B: our rules decide.
    b = {n: ports.get(f"/dev/ttyUSB{n}") for n in range(4, 8)}
    check(all(b.values()), "module B: ttyUSB4..7 listed")
    if all(b.values()):
        check([b[n]["role"] for n in range(4, 8)] == ["qcdm", "gps", "at-secondary", "at"], "module B: roles")
        check(all(b[n]["evidence"] == "rules" for n in range(4, 8)), "module B: evidence is our udev rules")
        check(b[7]["chosen"], "module B: ttyUSB7 is the chosen AT port")
        check(b[7]["slot"] == f"pci-{PCI}-usb-0:2" and b[7]["usbSerial"] == "EC25B0000002", "module B: slot and serial")

    # Module C: unknown.
    c = ports.get("/dev/ttyUSB8")
    check(c is not None and c["role"] == "unknown" and not c["chosen"], "module C (1234:5678): unknown, not chosen", c)
    if c:
        check(c["slot"] == f"pci-{PCI}-usb-0:3" and c["evidence"] == "none", "module C: slot, no evidence")

    # Virtual ttys: read without walking up (no USB or PCI device there); a udev rule still names one.
    gsm = ports.get("/dev/gsmtty1")
    check(gsm is not None and gsm["role"] == "at" and gsm["evidence"] == "rules",
          "virtual gsmtty1 marked by a udev rule: role at from the rules", gsm)
    check("/dev/tty5" not in ports, "virtual console tty5 not listed without --all")
    everything = by_devnode(parse_json_lines(run_cellprov("ports", "--json", "--all", "--ports-table",
                                                          PORTS_TABLE).stdout))
    console = everything.get("/dev/tty5")
    check(console is not None and console["role"] == "ignore" and "virtual terminal" in console["reason"],
          "virtual console tty5 listed with --all: ignore, virtual terminal", console)

    # Plain text output: one line per port plus the header.
    text = run_cellprov("ports", "--ports-table", PORTS_TABLE)
    lines = text.stdout.splitlines()
    row3 = next((line for line in lines if line.startswith("/dev/ttyUSB3 ")), "")
    check(text.returncode == 0 and len(lines) == 1 + 10 and " at* " in row3 and "EC25A0000001" in row3,
          "text output: header + 10 ports (9 USB, gsmtty1), ttyUSB3 marked at*", text.stdout)


def test_hotplug(testbed, module_a_ttys, module_a_syspaths):
    """Unplugs module A and plugs it in again at the same USB port. The kernel would often give the ttys
    their old names back; umockdev 0.17 cannot re-create a removed PTY node of the same name (it keeps the
    old one's fd), so the re-plugged module is ttyUSB9..12: the slot is what must stay the same.
    Returns the re-plugged module's AT port."""
    # No env=: Testbed.new() set UMOCKDEV_DIR with setenv(), which Python's os.environ does not see.
    child = subprocess.Popen(
        [CELLPROV, "ports", "--monitor", "--json", "--ports-table", PORTS_TABLE],
        stdout=subprocess.PIPE, stderr=None if VERBOSE else subprocess.DEVNULL)
    reader = LineReader(child.stdout)
    try:
        # The monitor is subscribed before the list is printed: once gsmtty1 (the last by syspath: virtual devices
        # come after the PCI ones) is listed, events count.
        last, seen = reader.until(lambda r: r["devnode"] == "/dev/gsmtty1", 15)
        check(last is not None, "monitor: initial list printed", seen)

        # Unplug module A: remove uevents (children first, as the kernel sends them), then the devices go.
        for devnode in sorted(module_a_ttys, reverse=True):
            testbed.uevent(module_a_ttys[devnode], "remove")
        removed, seen = reader.until(lambda r: r["event"] == "remove" and r["devnode"] == "/dev/ttyUSB0", 10)
        events = {(r["event"], r["devnode"]) for r in seen}
        check(removed is not None and all(("remove", d) in events for d in module_a_ttys),
              "monitor: remove events for ttyUSB0..3", sorted(events))
        gone = next((r for r in seen if r["devnode"] == "/dev/ttyUSB3"), None)
        check(gone is not None and gone["role"] == "at" and gone["slot"] == f"pci-{PCI}-usb-0:1",
              "monitor: the removed AT port is reported with its role and slot", gone)
        # umockdev removes one device's directory and links at a time: children first.
        for syspath in module_a_syspaths:
            testbed.remove_device(syspath)

        # Re-plug: adding the devices emits their add uevents. Child first, as umockdev-record writes them:
        # each tty's add comes before its USB parents exist, and the monitor must wait for them.
        replug_text, _, _ = ec25(1, "EC25A0000001", 9, with_our_rules=False, child_first=True)
        testbed.add_from_string(replug_text)
        added, seen = reader.until(lambda r: r["event"] == "add" and r["devnode"] == "/dev/ttyUSB12", 10)
        check(added is not None, "monitor: add event for the re-plugged AT port", seen)
        if added:
            check(added["role"] == "at" and added["evidence"] == "table" and added["chosen"],
                  "monitor: re-plugged ttyUSB12 is module A's chosen AT port", added)
            check(added["slot"] == f"pci-{PCI}-usb-0:1" and added["usbSerial"] == "EC25A0000001",
                  "monitor: re-plugged slot and serial", added)

        # SIGTERM ends it with status 0.
        child.send_signal(signal.SIGTERM)
        status = child.wait(10)
        check(status == 0, "monitor: exits 0 on SIGTERM", status)
        return "/dev/ttyUSB12"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_probe_through_bridge(testbed, devnode):
    bridge = serve_with_simulator(testbed, devnode)
    try:
        result = run_cellprov("probe", "--json", "--timeout", "10", "--state-directory", "/nonexistent", devnode)
        records = parse_json_lines(result.stdout)
        record = records[0] if records else {}
        check(result.returncode == 0, f"probe {devnode} through umockdev + simulator exits 0",
              (result.returncode, result.stdout, result.stderr[-2000:]))
        check((record.get("imei"), record.get("imsi"), record.get("iccid")) == (SIM_IMEI, SIM_IMSI, SIM_ICCID),
              f"probe {devnode}: IMEI, IMSI, ICCID read", record)
        test_probe_report_slot(devnode)
    finally:
        bridge.close()


def test_probe_report_slot(devnode):
    """`cellprov probe --report` keys its factory record by the slot udev gives the port (what `cellprov ports`
    shows and cellprovd uses), with the module's USB serial: a loopback HTTP receiver records the body. Runs
    while test_probe_through_bridge's simulator serves the port (a devnode takes one ioctl handler only)."""
    import http.server

    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            received.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = by_devnode(parse_json_lines(run_cellprov("ports", "--json", "--ports-table", PORTS_TABLE).stdout))
    expected = ports.get(devnode, {})
    try:
        result = run_cellprov("probe", "--json", "--timeout", "10", "--state-directory", "/nonexistent",
                              "--device-serial", "UMOCK-1", "--report", f"http://127.0.0.1:{server.server_port}",
                              devnode)
        check(result.returncode == 0, f"probe --report {devnode} exits 0",
              (result.returncode, result.stdout, result.stderr[-2000:]))
        body = received[0][1] if len(received) == 1 else {}
        module = body.get("module", {})
        check(len(received) == 1 and received[0][0] == "/v1/enrollments" and body.get("type") == "manufactured",
              "probe --report: one manufactured record posted", received)
        check(expected.get("slot") and module.get("slot") == expected.get("slot"),
              "probe --report: the record's slot is udev's slot of the port", (module, expected.get("slot")))
        check(module.get("usb_serial") == expected.get("usbSerial") and module.get("usb_serial"),
              "probe --report: the record carries the module's USB serial", module)
    finally:
        server.shutdown()


def ready(*binaries):
    """True when every binary is built and this runs under umockdev-wrapper; else prints a FAIL line saying which
    (the umockdev suites' first step, test_daemon.py's too)."""
    for binary in binaries:
        if not os.path.exists(binary):
            print(f"FAIL {binary} not found (swift build first)")
            return False
    if "umockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
        print("FAIL not running under umockdev-wrapper (use Tests/umockdev/run.sh)")
        return False
    return True


def main():
    if not ready(CELLPROV):
        return 1
    testbed = UMockdev.Testbed.new()
    module_a_text, module_a_ttys, module_a_syspaths = ec25(1, "EC25A0000001", 0, with_our_rules=False)
    module_b_text, _, _ = ec25(2, "EC25B0000002", 4, with_our_rules=True)
    module_c_text, _, _ = unknown_module(3, "ACME0003", 8)
    for text in (root_hub(), module_a_text, module_b_text, module_c_text, virtual_ttys()):
        if not testbed.add_from_string(text):
            print("FAIL Testbed.add_from_string")
            return 1

    test_enumeration()
    at_port = test_hotplug(testbed, module_a_ttys, module_a_syspaths)
    test_probe_through_bridge(testbed, at_port or "/dev/ttyUSB7")

    return CHECKS.summary()


if __name__ == "__main__":
    sys.exit(main())
