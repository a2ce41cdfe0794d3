#!/usr/bin/env python3
"""Check that udev/77-cellprov.rules and udev/ports.tsv say the same thing.

Every rule line that sets CELLPROV_PORT_ROLE must have exactly one row in the table with the same
vid, pid, interface, role and family, and every table row must have exactly one such rule line.
It also checks the table's own consistency: column formats, known roles, no duplicate ports, one
"at" port per USB ID (class-matched rows excepted: they are alternative encodings of one port),
a source on every row, and that the rules' vendor guard lists every vendor in the table. WWAN rows
(interface "at1": a PCIe module's Linux WWAN port, keyed by PCI subsystem vendor:device) are matched
against the rules' ENV{.CELLPROV_WKEY} lines, and each of their modules needs its .CELLPROV_PCIID line.

Usage: scripts/check-udev-data.py [--rules PATH] [--table PATH]
Exit status 0 when they agree, 1 with one line per problem otherwise. Python 3.9+, stdlib only.
"""

import argparse
import collections
import csv
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROLES = {"at", "at-secondary", "qcdm", "gps", "ignore"}
MM_ROLES = {"AT_PRIMARY", "AT_SECONDARY", "AT_PPP", "QCDM", "GPS", "AUDIO", "IGNORE", "probed"}
COLUMNS = ["vid", "pid", "interface", "role", "family", "mm_role", "source"]

HEX4 = re.compile(r"^[0-9a-f]{4}$")
IFNUM = re.compile(r"^[0-9a-f]{2}$")
IFCLASS = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{2}$")
# A WWAN port's name without its device (drivers/net/wwan/wwan_core.c port type names, lower case).
WWANPORT = re.compile(r"^(at|mbim|qmi|qcdm|firehose|xmmrpc|fastboot|adb|mipc|nmea)[0-9]{1,3}$")
FAMILY = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")

# ENV{.CELLPROV_KEY}=="2c7c:0125:03", ENV{CELLPROV_PORT_ROLE}="at", ENV{CELLPROV_MODULE}="quectel-ec2x"
PORT_RULE = re.compile(
    r'^ENV\{\.CELLPROV_(?P<kind>KEY|CKEY|WKEY)\}=="(?P<vid>[^:"]+):(?P<pid>[^:"]+):(?P<iface>[^"]+)", '
    r'ENV\{CELLPROV_PORT_ROLE\}="(?P<role>[^"]+)", ENV\{CELLPROV_MODULE\}="(?P<family>[^"]+)"$'
)
VENDOR_GUARD = re.compile(r'ATTRS\{idVendor\}=="(?P<list>[0-9a-f|]+)", GOTO="cellprov_usb"')
# SUBSYSTEMS=="pci", ATTRS{subsystem_vendor}=="0x1c5d", ATTRS{subsystem_device}=="0x2010", ENV{.CELLPROV_PCIID}="1c5d:2010"
PCI_GUARD = re.compile(
    r'^SUBSYSTEMS=="pci", ATTRS\{subsystem_vendor\}=="0x(?P<v>[0-9a-f]{4})", '
    r'ATTRS\{subsystem_device\}=="0x(?P<d>[0-9a-f]{4})", ENV\{\.CELLPROV_PCIID\}="(?P<id>[^"]+)"$'
)


def interface_kind(iface):
    """The rules' key variable for an interface: KEY (number), CKEY (class triple), WKEY (WWAN port)."""
    if IFCLASS.match(iface):
        return "CKEY"
    if WWANPORT.match(iface):
        return "WKEY"
    return "KEY"


def read_rules(path):
    """Return ([(lineno, key, role, family)], vendor guard set, PCI subsystem ID set, problems)."""
    entries, problems, guard, pci_ids = [], [], set(), set()
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = VENDOR_GUARD.search(line)
        if m:
            guard |= set(m.group("list").split("|"))
        m = PCI_GUARD.match(line)
        if m:
            if m.group("id") != f"{m.group('v')}:{m.group('d')}":
                problems.append(f"{path.name}:{lineno}: .CELLPROV_PCIID {m.group('id')} does not match the attributes")
            pci_ids.add((m.group("v"), m.group("d")))
        if "CELLPROV_PORT_ROLE}=\"" not in line or line.startswith("ENV{CELLPROV_PORT_ROLE}!="):
            continue
        m = PORT_RULE.match(line)
        if not m:
            problems.append(f"{path.name}:{lineno}: sets CELLPROV_PORT_ROLE but is not of the expected form")
            continue
        iface = m.group("iface")
        if m.group("kind") != interface_kind(iface):
            problems.append(f"{path.name}:{lineno}: {m.group('kind')} used with interface {iface!r}")
        key = (m.group("vid"), m.group("pid"), iface)
        entries.append((lineno, key, m.group("role"), m.group("family")))
    if not guard:
        problems.append(f"{path.name}: no vendor guard (ATTRS{{idVendor}}==... GOTO=\"cellprov_usb\") found")
    return entries, guard, pci_ids, problems


def read_table(path):
    """Return ([(lineno, row dict)], problems)."""
    problems, rows = [], []
    lines = [
        (n, l) for n, l in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if l.strip() and not l.startswith("#")
    ]
    if not lines:
        return [], [f"{path.name}: empty table"]
    header_no, header = lines[0]
    if header.split("\t") != COLUMNS:
        problems.append(f"{path.name}:{header_no}: header must be {' '.join(COLUMNS)}")
        return [], problems
    for lineno, line in lines[1:]:
        fields = next(csv.reader([line], delimiter="\t", quoting=csv.QUOTE_NONE))
        if len(fields) != len(COLUMNS):
            problems.append(f"{path.name}:{lineno}: {len(fields)} columns, want {len(COLUMNS)}")
            continue
        row = dict(zip(COLUMNS, fields))
        where = f"{path.name}:{lineno}"
        for col in ("vid", "pid"):
            if not HEX4.match(row[col]):
                problems.append(f"{where}: {col} {row[col]!r} is not 4 lower-case hex digits")
        if not (IFNUM.match(row["interface"]) or IFCLASS.match(row["interface"]) or WWANPORT.match(row["interface"])):
            problems.append(
                f"{where}: interface {row['interface']!r} is neither 'nn' nor 'cc/ss/pp' (lower-case hex) "
                "nor a WWAN port ('at1')")
        if row["role"] not in ROLES:
            problems.append(f"{where}: unknown role {row['role']!r}")
        if row["mm_role"] not in MM_ROLES:
            problems.append(f"{where}: unknown mm_role {row['mm_role']!r}")
        if not FAMILY.match(row["family"]):
            problems.append(f"{where}: family {row['family']!r} is not vendor-model in lower case")
        if not row["source"].strip():
            problems.append(f"{where}: no source")
        rows.append((lineno, row))
    return rows, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=pathlib.Path, default=ROOT / "udev" / "77-cellprov.rules")
    parser.add_argument("--table", type=pathlib.Path, default=ROOT / "udev" / "ports.tsv")
    args = parser.parse_args()

    rules, guard, pci_ids, problems = read_rules(args.rules)
    table, table_problems = read_table(args.table)
    problems += table_problems

    rule_keys = collections.defaultdict(list)
    for lineno, key, role, family in rules:
        rule_keys[key].append((lineno, role, family))
    table_keys = collections.defaultdict(list)
    for lineno, row in table:
        table_keys[(row["vid"], row["pid"], row["interface"])].append((lineno, row["role"], row["family"]))

    for key, hits in sorted(rule_keys.items()):
        name = ":".join(key)
        if len(hits) > 1:
            problems.append(f"rules: {name} set on lines {', '.join(str(h[0]) for h in hits)}")
        if key not in table_keys:
            problems.append(f"rules:{hits[0][0]}: {name} has no row in the table")
            continue
        if (hits[0][1], hits[0][2]) != (table_keys[key][0][1], table_keys[key][0][2]):
            problems.append(
                f"rules:{hits[0][0]} vs table:{table_keys[key][0][0]}: {name} is "
                f"{hits[0][1]}/{hits[0][2]} in the rules but "
                f"{table_keys[key][0][1]}/{table_keys[key][0][2]} in the table"
            )
    for key, hits in sorted(table_keys.items()):
        name = ":".join(key)
        if len(hits) > 1:
            problems.append(f"table: {name} on lines {', '.join(str(h[0]) for h in hits)}")
        if key not in rule_keys:
            problems.append(f"table:{hits[0][0]}: {name} has no rule line")

    at_ports = collections.defaultdict(list)
    usb_ids = set()
    wwan_ids = set()
    for lineno, row in table:
        if WWANPORT.match(row["interface"]):
            wwan_ids.add((row["vid"], row["pid"]))
        else:
            usb_ids.add((row["vid"], row["pid"]))
        if row["role"] == "at" and (IFNUM.match(row["interface"]) or WWANPORT.match(row["interface"])):
            at_ports[(row["vid"], row["pid"])].append(row["interface"])
        if row["role"] == "at" and IFCLASS.match(row["interface"]):
            at_ports[(row["vid"], row["pid"])].append("class")
    for usb_id in sorted(usb_ids | wwan_ids):
        ports = at_ports.get(usb_id, [])
        numbered = [p for p in ports if p != "class"]
        if not ports:
            problems.append(f"table: {':'.join(usb_id)} has no 'at' port")
        elif len(numbered) > 1:
            problems.append(f"table: {':'.join(usb_id)} has several 'at' ports: {', '.join(numbered)}")

    missing = sorted({vid for vid, _ in usb_ids} - guard)
    if missing:
        problems.append(f"rules: vendor guard lacks {', '.join(missing)}")
    for pci_id in sorted(wwan_ids - pci_ids):
        problems.append(f"rules: no .CELLPROV_PCIID line for the WWAN module {':'.join(pci_id)}")

    for problem in problems:
        print(problem)
    if problems:
        print(f"check-udev-data: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-udev-data: ok: {len(rule_keys)} ports, {len(usb_ids)} USB IDs, {len(wwan_ids)} PCI (WWAN) IDs, "
          f"{len({r['family'] for _, r in table})} families agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
