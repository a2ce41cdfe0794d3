#!/usr/bin/python3
"""A stand-in for ModemManager on D-Bus: owns `org.freedesktop.ModemManager1` and publishes the objects and
properties cellprovd reads, with the signals it listens to. Used by test_modemmanager_standin.py; it is NOT
ModemManager and does nothing ModemManager does beyond publishing values.

Why a stand-in: ModemManager reads a SIM's EID only over MBIM (src/mm-sim-mbim.c, `load_eid`) and QMI
(src/mm-shared-qmi.c, UIM Get Slot Status), never over AT, and the test's umockdev EC25 is an AT-only modem; nor
does the AT modem publish SimSlots/PrimarySimSlot. So the real ModemManager cannot publish `Sim.Eid` or two SIM
slots here.

What it publishes, with the types of ModemManager's introspection XML (github.com/linux-mobile-broadband/
ModemManager @ 9a2d5863, introspection/org.freedesktop.ModemManager1.Modem.xml, .Modem.Modem3gpp.xml, .Sim.xml):

  - on /org/freedesktop/ModemManager1, `org.freedesktop.DBus.ObjectManager`: GetManagedObjects (the modem
    objects only, as ModemManager's object manager server holds only modems) and the InterfacesAdded /
    InterfacesRemoved signals;
  - per modem, `org.freedesktop.ModemManager1.Modem` (Device s, EquipmentIdentifier s, Manufacturer s, Model s,
    Revision s, State i, StateFailedReason u, UnlockRequired u, PrimaryPort s, Ports a(su), Sim o, SimSlots ao,
    PrimarySimSlot u) and `org.freedesktop.ModemManager1.Modem.Modem3gpp` (Imei s);
  - per SIM, exported on its own (not through the object manager, as src/mm-base-sim.c exports it with
    g_dbus_interface_skeleton_export), `org.freedesktop.ModemManager1.Sim` (Active b, SimIdentifier s, Imsi s,
    Eid s, SimType u, EsimStatus u), read through org.freedesktop.DBus.Properties (GDBus answers Get/GetAll);
  - a property change emits org.freedesktop.DBus.Properties.PropertiesChanged on the object, as GDBus skeletons do.

Control: one JSON command per line on stdin, each answered by one line on stdout (`ok` once the signals are
flushed to the bus, or `error: ...`); the first line on stdout is `ready` once the name is owned.

  {"op": "add", "path": P, "interfaces": {IFACE: {PROP: [SIGNATURE, VALUE]}}}  export (InterfacesAdded for a
                                                                                modem, silent for a SIM)
  {"op": "set", "path": P, "interface": IFACE, "properties": {PROP: [SIGNATURE, VALUE]}}   PropertiesChanged
  {"op": "remove", "path": P}                                                    unexport (InterfacesRemoved)

`add` for a modem path (one under /org/freedesktop/ModemManager1/Modem/) goes through the object manager; the
objects given on the command line as `--initial FILE` (a JSON list of add commands) are exported before the name
is requested, so the first GetManagedObjects sees them all.

Environment: DBUS_SYSTEM_BUS_ADDRESS (the private bus).
"""

import json
import os
import sys
import threading

import gi

gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

NAME = "org.freedesktop.ModemManager1"
ROOT = "/org/freedesktop/ModemManager1"
MODEM_PREFIX = ROOT + "/Modem/"
OM = "org.freedesktop.DBus.ObjectManager"

# Only what the stand-in publishes; types as in ModemManager's introspection XML (see the docstring).
XML = """<node>
  <interface name="org.freedesktop.DBus.ObjectManager">
    <method name="GetManagedObjects">
      <arg name="objects" type="a{oa{sa{sv}}}" direction="out"/>
    </method>
    <signal name="InterfacesAdded">
      <arg name="object_path" type="o"/>
      <arg name="interfaces_and_properties" type="a{sa{sv}}"/>
    </signal>
    <signal name="InterfacesRemoved">
      <arg name="object_path" type="o"/>
      <arg name="interfaces" type="as"/>
    </signal>
  </interface>
  <interface name="org.freedesktop.ModemManager1.Modem">
    <property name="Sim" type="o" access="read"/>
    <property name="SimSlots" type="ao" access="read"/>
    <property name="PrimarySimSlot" type="u" access="read"/>
    <property name="Manufacturer" type="s" access="read"/>
    <property name="Model" type="s" access="read"/>
    <property name="Revision" type="s" access="read"/>
    <property name="Device" type="s" access="read"/>
    <property name="PrimaryPort" type="s" access="read"/>
    <property name="Ports" type="a(su)" access="read"/>
    <property name="EquipmentIdentifier" type="s" access="read"/>
    <property name="UnlockRequired" type="u" access="read"/>
    <property name="State" type="i" access="read"/>
    <property name="StateFailedReason" type="u" access="read"/>
  </interface>
  <interface name="org.freedesktop.ModemManager1.Modem.Modem3gpp">
    <property name="Imei" type="s" access="read"/>
  </interface>
  <interface name="org.freedesktop.ModemManager1.Sim">
    <property name="Active" type="b" access="read"/>
    <property name="SimIdentifier" type="s" access="read"/>
    <property name="Imsi" type="s" access="read"/>
    <property name="Eid" type="s" access="read"/>
    <property name="SimType" type="u" access="read"/>
    <property name="EsimStatus" type="u" access="read"/>
  </interface>
</node>"""

NODE = Gio.DBusNodeInfo.new_for_xml(XML)
INFO = {i.name: i for i in NODE.interfaces}
SIGNATURES = {i.name: {p.name: p.signature for p in i.properties} for i in NODE.interfaces}


class StandIn:
    def __init__(self, conn):
        self.conn = conn
        self.objects = {}  # path -> {interface -> {property -> GLib.Variant}}
        self.registrations = {}  # path -> [registration ids]
        self.registrations[ROOT] = [conn.register_object(
            ROOT, INFO[OM], self._om_call, None, None)]

    def _om_call(self, conn, sender, path, interface, method, params, invocation):
        if method != "GetManagedObjects":
            invocation.return_dbus_error("org.freedesktop.DBus.Error.UnknownMethod", method)
            return
        modems = {p: ifaces for p, ifaces in self.objects.items() if p.startswith(MODEM_PREFIX)}
        invocation.return_value(GLib.Variant.new_tuple(GLib.Variant("a{oa{sa{sv}}}", modems)))

    def _get_property(self, conn, sender, path, interface, name):
        return self.objects.get(path, {}).get(interface, {}).get(name)

    @staticmethod
    def _values(interface, properties):
        """{PROP: [SIGNATURE, VALUE]} -> {PROP: Variant}, each signature checked against the XML above."""
        out = {}
        for name, (signature, value) in properties.items():
            expected = SIGNATURES[interface].get(name)
            if expected != signature:
                raise ValueError(f"{interface}.{name}: type {signature}, ModemManager's is {expected}")
            if signature == "a(su)":
                value = [tuple(x) for x in value]
            out[name] = GLib.Variant(signature, value)
        return out

    def add(self, path, interfaces):
        if path in self.objects:
            raise ValueError(f"{path} is already exported")
        values = {iface: self._values(iface, props) for iface, props in interfaces.items()}
        self.objects[path] = values
        self.registrations[path] = [
            self.conn.register_object(path, INFO[iface], None, self._get_property, None)
            for iface in values]
        if path.startswith(MODEM_PREFIX):
            self.conn.emit_signal(None, ROOT, OM, "InterfacesAdded", GLib.Variant("(oa{sa{sv}})", (path, values)))

    def set(self, path, interface, properties):
        values = self._values(interface, properties)
        self.objects[path][interface].update(values)
        self.conn.emit_signal(None, path, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                              GLib.Variant("(sa{sv}as)", (interface, values, [])))

    def remove(self, path):
        interfaces = list(self.objects.pop(path))
        for rid in self.registrations.pop(path):
            self.conn.unregister_object(rid)
        if path.startswith(MODEM_PREFIX):
            self.conn.emit_signal(None, ROOT, OM, "InterfacesRemoved", GLib.Variant("(oas)", (path, interfaces)))

    def run(self, command):
        op = command["op"]
        if op == "add":
            self.add(command["path"], command["interfaces"])
        elif op == "set":
            self.set(command["path"], command["interface"], command["properties"])
        elif op == "remove":
            self.remove(command["path"])
        else:
            raise ValueError(f"unknown op {op}")
        self.conn.flush_sync(None)


def main():
    initial = []
    if len(sys.argv) == 3 and sys.argv[1] == "--initial":
        with open(sys.argv[2]) as f:
            initial = json.load(f)
    address = os.environ["DBUS_SYSTEM_BUS_ADDRESS"]
    conn = Gio.DBusConnection.new_for_address_sync(
        address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    standin = StandIn(conn)
    for command in initial:
        standin.run(command)
    reply = conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
                           GLib.Variant("(su)", (NAME, 4)), GLib.VariantType("(u)"),  # DO_NOT_QUEUE
                           Gio.DBusCallFlags.NONE, 5000, None).unpack()[0]
    if reply != 1:  # PRIMARY_OWNER
        print(f"error: RequestName answered {reply}", flush=True)
        return 1
    loop = GLib.MainLoop()

    def on_command(command):
        try:
            standin.run(command)
            print("ok", flush=True)
        except (KeyError, ValueError, TypeError, GLib.Error) as error:
            print(f"error: {error}", flush=True)
        return False

    def read_stdin():
        for line in sys.stdin:
            if line.strip():
                GLib.idle_add(on_command, json.loads(line))
        GLib.idle_add(loop.quit)

    threading.Thread(target=read_stdin, daemon=True).start()
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
