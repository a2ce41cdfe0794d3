#!/usr/bin/python3
"""cellprovd's ModemManager source with an eUICC's EID (`Sim.Eid`) and two SIM slots (`Modem.SimSlots`,
`Modem.PrimarySimSlot`), against a STAND-IN for ModemManager (mm_standin.py), not ModemManager itself.

Why a stand-in: the real ModemManager reads a SIM's EID only over MBIM (src/mm-sim-mbim.c, `load_eid`) and QMI
(src/mm-shared-qmi.c, UIM Get Slot Status), never over AT; the only modem the real-ModemManager test can give it
here is the umockdev EC25 served over AT (test_modemmanager.py), so ModemManager publishes an empty `Sim.Eid` and
no SIM slots for it. The stand-in publishes what ModemManager 1.20 publishes for an MBIM modem with an eUICC in
slot 1 and a plain SIM in slot 2: the same interfaces, property names and D-Bus types as ModemManager's
introspection XML (cited in mm_standin.py), on the same private system-like bus with ModemManager's own bus policy
(test_modemmanager.Bus), with the signals cellprovd subscribes to (InterfacesAdded/InterfacesRemoved on the object
manager, PropertiesChanged on the objects, the name's owner change).

What this test does NOT show: that ModemManager publishes these values this way at these moments on real
hardware (how it re-probes on a profile switch, when `Eid` is filled in). test_modemmanager.py, with the real
ModemManager, still covers the rest of the source: the slot (udev ID_PATH), the first read, a SIM swap and
ModemManager's re-probe, its absence, kill and restart, the bus policy, the unit's sandbox and the latency.

Checks (cellprovd = .build/debug/cellprovd, `[discovery] modemmanager = "always"`, udev off, stderr at debug):
  1. the stand-in takes the name after cellprovd started: `enrolled` with `module.source = "modemmanager"`,
     identity.eid = the eUICC's EID and identity.sim_slot = 1 (`cellprov events --json`);
  2. profile switch: the SIM object's Imsi and SimIdentifier change, Eid stays (PropertiesChanged on the SIM):
     `profile_switched` (identity: the new profile and the EID; previous: the old profile, the same EID), no
     `sim_changed`;
  3. slot failover as ModemManager does it after SetPrimarySimSlot (Modem.xml: "the modem object in DBus will get
     removed, and recreated"): InterfacesRemoved, a gap, InterfacesAdded of a new modem object with
     PrimarySimSlot 2 and Sim = slot 2's object (a plain SIM: Eid empty, SimType physical):
     `sim_slot_switched` (identity.sim_slot 2, no EID; previous.sim_slot 1 with the EID), no `sim_removed`;
  4. failback in place: the modem's PrimarySimSlot 2 -> 1 and Sim -> slot 1's object (PropertiesChanged on the
     modem): `sim_slot_switched` back, identity.eid = the EID again;
  5. nothing else in the history (no sim_changed, sim_removed, identity_invalid, profile_clone_suspected);
  6. cellprovd's stderr holds no EID digits (the EID, its digits after the 8-digit issuer prefix), nor the IMEI,
     IMSIs, MSINs or ICCIDs; SIGTERM stops it within 5 s with status 0.

Run through Tests/modemmanager/run.sh (after test_modemmanager.py), or alone from the repository root after
`swift build`: /usr/bin/python3 Tests/modemmanager/test_modemmanager_standin.py (no umockdev needed).
Environment: CELLPROVD, CELLPROV (default .build/debug/...), UMOCKDEV_TEST_VERBOSE=1 echoes the daemons' stderr.
Exit status: 0 all passed, 1 a check failed, 77 a prerequisite is missing.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_modemmanager as tmm  # noqa: E402  (exits 77 itself when the GI bindings are missing)

tdm = tmm.tdm
check = tmm.check
STANDIN = os.path.join(HERE, "mm_standin.py")

# A device path no host has, so that the slot is the path itself (no udev device behind it).
DEVICE = "/sys/devices/platform/cellprov-standin/usb9/9-1"
SLOT = DEVICE
MODEM_IFACE = "org.freedesktop.ModemManager1.Modem"
SIM_IFACE = "org.freedesktop.ModemManager1.Sim"
SIM_TYPE_PHYSICAL, SIM_TYPE_ESIM = 1, 2            # MMSimType
ESIM_UNKNOWN, ESIM_WITH_PROFILES = 0, 2            # MMSimEsimStatus
STATE_REGISTERED, LOCK_NONE = 8, 1                 # MMModemState, MMModemLock
PORT_NET, PORT_AT, PORT_MBIM = 2, 3, 7             # MMModemPortType


def eid_complete(digits30):
    """The two SGP.29 check digits (ISO 7064 MOD 97-10, as IBAN): the 32-digit number mod 97 is 1."""
    eid = digits30 + f"{98 - int(digits30 + '00') % 97:02d}"
    assert len(eid) == 32 and int(eid) % 97 == 1
    return eid


# Constructed identities (no real card, module or subscriber): one module; on its eUICC in slot 1 two profiles,
# in slot 2 a plain SIM.
EID = eid_complete("890490320000000000000073940218")
PROFILE_1 = tdm.Identity("86676104739218", "262017394021857", "8949107739402185736", 2)
PROFILE_2 = tdm.Identity("86676104739218", "262019928374650", "8949107799283746507", 2)
PLAIN = tdm.Identity("86676104739218", "310260583920174", "8901260583920174918", 3)


def sim(identity, eid, sim_type, esim_status, active):
    return {SIM_IFACE: {
        "Active": ["b", active], "SimIdentifier": ["s", identity.iccid], "Imsi": ["s", identity.imsi],
        "Eid": ["s", eid], "SimType": ["u", sim_type], "EsimStatus": ["u", esim_status]}}


def modem(sim_path, slots, primary):
    return {
        MODEM_IFACE: {
            "Device": ["s", DEVICE], "EquipmentIdentifier": ["s", PROFILE_1.imei],
            "Manufacturer": ["s", "Quectel"], "Model": ["s", "EM060K-GL"], "Revision": ["s", "EM060KGLAAR01A07M4G"],
            "State": ["i", STATE_REGISTERED], "StateFailedReason": ["u", 0], "UnlockRequired": ["u", LOCK_NONE],
            "PrimaryPort": ["s", "cdc-wdm0"],
            "Ports": ["a(su)", [["cdc-wdm0", PORT_MBIM], ["ttyUSB2", PORT_AT], ["wwan0", PORT_NET]]],
            "Sim": ["o", sim_path], "SimSlots": ["ao", slots], "PrimarySimSlot": ["u", primary]},
        "org.freedesktop.ModemManager1.Modem.Modem3gpp": {"Imei": ["s", PROFILE_1.imei]}}


def path(kind, n):
    return f"/org/freedesktop/ModemManager1/{kind}/{n}"


class StandIn:
    """mm_standin.py in a process of its own, driven over its stdin."""

    def __init__(self, workdir, initial):
        spec = os.path.join(workdir, "standin-initial.json")
        with open(spec, "w") as f:
            json.dump(initial, f)
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN, "--initial", spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None, text=True)
        self.ready = self._answer(10) == "ready"

    def _answer(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else None

    def run(self, **command):
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            answer = self._answer(10)
        except BrokenPipeError:
            answer = f"the stand-in exited (status {self.proc.poll()})"
        check(answer == "ok", f"stand-in: {command['op']} {command['path']}", answer)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def events_of(daemon):
    events, err = tmm.events_json(daemon.state)
    check(events is not None, "`cellprov events --json` runs", err)
    return events or []


def run(workdir):
    daemon = tmm.Daemon(workdir, "standin", "always", udev=False)
    standin = None
    try:
        hit = daemon.wait_for(lambda line, m: "ModemManager is not on the system bus" in line, 10)
        check(hit is not None, "cellprovd (always) runs and waits for ModemManager", daemon.tail())

        # ---- 1. enrolled with the EID, slot 1
        mark = daemon.mark()
        slots = [path("SIM", 0), path("SIM", 1)]
        standin = StandIn(workdir, [
            {"op": "add", "path": slots[0], "interfaces": sim(PROFILE_1, EID, SIM_TYPE_ESIM, ESIM_WITH_PROFILES, True)},
            {"op": "add", "path": slots[1], "interfaces": sim(PLAIN, "", SIM_TYPE_PHYSICAL, ESIM_UNKNOWN, False)},
            {"op": "add", "path": path("Modem", 0), "interfaces": modem(slots[0], slots, 1)}])
        check(standin.ready, "the stand-in owns org.freedesktop.ModemManager1 on the private bus")
        if not standin.ready:
            return
        hit = daemon.wait_for(tmm.event_line("enrolled", SLOT), 15, mark)
        check(hit is not None, "the stand-in appears: `enrolled`", daemon.tail())
        enrolled = [e for e in events_of(daemon) if e.get("type") == "enrolled"]
        check(len(enrolled) == 1 and enrolled[0]["module"].get("source") == "modemmanager"
              and enrolled[0]["identity"] == {"imei": PROFILE_1.imei, "imsi": PROFILE_1.imsi,
                                              "iccid": PROFILE_1.iccid, "eid": EID, "sim_slot": 1},
              "enrolled: module.source = modemmanager, identity.eid = Sim.Eid, identity.sim_slot = PrimarySimSlot 1",
              enrolled)

        # ---- 2. profile switch on the eUICC (same SIM object, same Eid)
        mark = daemon.mark()
        standin.run(op="set", path=slots[0], interface=SIM_IFACE,
                    properties={"Imsi": ["s", PROFILE_2.imsi], "SimIdentifier": ["s", PROFILE_2.iccid]})
        hit = daemon.wait_for(tmm.event_line("profile_switched", SLOT), 10, mark)
        check(hit is not None, "profile switch (Sim PropertiesChanged: new Imsi and SimIdentifier, same Eid): "
              "`profile_switched`", daemon.tail())
        switched = [e for e in events_of(daemon) if e.get("type") == "profile_switched"]
        check(len(switched) == 1
              and switched[0]["identity"] == {"imei": PROFILE_2.imei, "imsi": PROFILE_2.imsi,
                                              "iccid": PROFILE_2.iccid, "eid": EID, "sim_slot": 1}
              and switched[0]["previous"].get("iccid") == PROFILE_1.iccid
              and switched[0]["previous"].get("eid") == EID,
              "profile_switched: identity = the new profile with the EID, previous = the old profile, same EID",
              switched)

        # ---- 3. slot failover: ModemManager re-creates the modem object with slot 2 primary
        mark = daemon.mark()
        standin.run(op="remove", path=path("Modem", 0))
        for p in slots:
            standin.run(op="remove", path=p)
        gone = daemon.wait_for(lambda line, m: "modem slot removed" in line and m.get("slot") == SLOT, 5, mark)
        check(gone is not None, "InterfacesRemoved: cellprovd lets the slot go during the re-probe", daemon.tail())
        slots = [path("SIM", 2), path("SIM", 3)]
        standin.run(op="add", path=slots[0],
                    interfaces=sim(PROFILE_2, EID, SIM_TYPE_ESIM, ESIM_WITH_PROFILES, False))
        standin.run(op="add", path=slots[1], interfaces=sim(PLAIN, "", SIM_TYPE_PHYSICAL, ESIM_UNKNOWN, True))
        standin.run(op="add", path=path("Modem", 1), interfaces=modem(slots[1], slots, 2))
        hit = daemon.wait_for(tmm.event_line("sim_slot_switched", SLOT), 10, mark)
        check(hit is not None, "slot failover (InterfacesAdded: PrimarySimSlot 2, Sim = slot 2's object): "
              "`sim_slot_switched`", daemon.tail())
        failover = [e for e in events_of(daemon) if e.get("type") == "sim_slot_switched"]
        check(len(failover) == 1
              and failover[0]["identity"] == {"imei": PLAIN.imei, "imsi": PLAIN.imsi, "iccid": PLAIN.iccid,
                                              "sim_slot": 2}
              and failover[0]["previous"].get("sim_slot") == 1 and failover[0]["previous"].get("eid") == EID
              and failover[0]["previous"].get("iccid") == PROFILE_2.iccid,
              "sim_slot_switched: identity = slot 2's plain SIM (no EID), previous = slot 1's profile with the EID",
              failover)

        # ---- 4. failback in place (PropertiesChanged on the modem)
        mark = daemon.mark()
        standin.run(op="set", path=slots[1], interface=SIM_IFACE, properties={"Active": ["b", False]})
        standin.run(op="set", path=slots[0], interface=SIM_IFACE, properties={"Active": ["b", True]})
        standin.run(op="set", path=path("Modem", 1), interface=MODEM_IFACE,
                    properties={"Sim": ["o", slots[0]], "PrimarySimSlot": ["u", 1]})
        hit = daemon.wait_for(tmm.event_line("sim_slot_switched", SLOT), 10, mark)
        check(hit is not None, "failback (Modem PropertiesChanged: PrimarySimSlot 1, Sim = slot 1's object): "
              "`sim_slot_switched`", daemon.tail())
        events = events_of(daemon)
        back = [e for e in events if e.get("type") == "sim_slot_switched"][1:]
        check(len(back) == 1
              and back[0]["identity"] == {"imei": PROFILE_2.imei, "imsi": PROFILE_2.imsi,
                                          "iccid": PROFILE_2.iccid, "eid": EID, "sim_slot": 1}
              and back[0]["previous"].get("sim_slot") == 2,
              "sim_slot_switched back: identity = slot 1's profile with the EID, previous = slot 2", back)

        # ---- 5. nothing else
        time.sleep(0.3)
        types = [e.get("type") for e in events_of(daemon)]
        check(types == ["enrolled", "profile_switched", "sim_slot_switched", "sim_slot_switched"],
              "the history is exactly: enrolled, profile_switched, sim_slot_switched, sim_slot_switched "
              "(no sim_changed, sim_removed, identity_invalid)", types)

        # ---- 6. no EID digits (nor the others) in the logs; SIGTERM
        text = daemon.raw.decode(errors="replace")
        secrets = {"EID": EID, "EID after its issuer prefix": EID[8:]}
        for name, identity in (("profile 1", PROFILE_1), ("profile 2", PROFILE_2), ("plain SIM", PLAIN)):
            secrets.update({f"{k} of {name}": v for k, v in identity.secrets().items()})
        leaked = [name for name, value in secrets.items() if value in text]
        check(f"EID({EID[:8]}, ref " in text, "cellprovd's stderr shows the EID redacted (issuer prefix and keyed "
              "reference), so the scan below looks at lines that name it")
        check(not leaked, f"cellprovd's stderr ({len(daemon.lines)} lines) holds no EID digits, IMEI, IMSI, MSIN "
              "or ICCID", leaked)
        tdm.check_sigterm(daemon)
    finally:
        daemon.kill()
        if standin:
            standin.stop()


def main():
    for binary in (tmm.CELLPROV, tmm.CELLPROVD):
        if not os.path.exists(binary):
            print(f"FAIL {binary} not found (swift build first)")
            return 1
    if not os.path.exists(tmm.MM_POLICY):
        print(f"SKIP: {tmm.MM_POLICY} missing (apt-get install modemmanager: the bus policy)")
        return 77
    if shutil.which("dbus-daemon") is None:
        print("SKIP: dbus-daemon missing (apt-get install dbus)")
        return 77
    for name in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "LD_PRELOAD", "UMOCKDEV_DIR"):
        os.environ.pop(name, None)
    workdir = tempfile.mkdtemp(prefix="cellprovd-mm-standin.")
    start = time.monotonic()
    bus = tmm.Bus(workdir)
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    try:
        run(workdir)
    finally:
        bus.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"     (stand-in checks took {time.monotonic() - start:.1f} s)")
    return tmm.td.CHECKS.summary("ModemManager stand-in", " (a stand-in, not ModemManager: see the docstring)")


if __name__ == "__main__":
    sys.exit(main())
