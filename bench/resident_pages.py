#!/usr/bin/python3
"""Which parts of a running static Swift executable are resident, page by page (issue 8).

usage: resident_pages.py PID UNSTRIPPED_BINARY [TOP]

Reads /proc/PID/maps and /proc/PID/pagemap (root) for the executable's file mappings, maps each resident page
to its ELF section (readelf) and to the symbols on it (nm: a stripped copy has the same layout as the unstripped
build, so the installed daemon can be examined with the build's symbols), and attributes the page's bytes to
components: the Swift module of a mangled symbol ($s4GRDB... -> GRDB), or a C library by its prefix (ICU,
BoringSSL, SQLite, CoreFoundation...), or the section when no symbol covers the bytes. Prints KiB resident per
section and per component. A resident page is one mapped into the process: touched, or mapped with a touched
neighbour by the kernel's fault-around.
"""
import bisect
import collections
import os
import re
import struct
import subprocess
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")

C_PREFIXES = [
    ("icudt", "ICU data"), ("_swift_icu", "ICU"), ("icu_", "ICU"), ("u_", "ICU"), ("ucol_", "ICU"),
    ("ubrk_", "ICU"), ("udat_", "ICU"), ("unum_", "ICU"), ("ucal_", "ICU"), ("uloc_", "ICU"), ("ures_", "ICU"),
    ("CCryptoBoringSSL", "BoringSSL (swift-crypto)"), ("CNIOBoringSSL", "BoringSSL (swift-nio-ssl)"),
    ("sqlite3", "SQLite"), ("CF", "CoreFoundation"), ("__CF", "CoreFoundation"), ("_CF", "CoreFoundation"),
    ("swift_", "Swift runtime"), ("_swift_", "Swift runtime"), ("toml", "toml++ (TOMLKit)"),
    ("_dispatch", "libdispatch"), ("dispatch_", "libdispatch"), ("__", "libc/libstdc++"),
]


def component(name):
    if name.startswith("$s"):
        rest = name[2:]
        m = re.match(r"(\d+)", rest)
        if m:
            n = int(m.group(1))
            return rest[len(m.group(1)):len(m.group(1)) + n]
        return "Swift (stdlib)" if rest.startswith("S") else "Swift (other)"
    if name.startswith("_ZN") and "toml" in name:
        return "toml++ (TOMLKit)"
    if name.startswith("_ZN") and "icu" in name:
        return "ICU"
    if name.startswith("_Z"):
        return "C++ (other)"
    for prefix, label in C_PREFIXES:
        if name.startswith(prefix):
            return label
    return "C (other)"


def sections(binary):
    """[(file offset, size, name)] of the allocated sections."""
    out = subprocess.run(["readelf", "-S", "-W", binary], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
        if m and "A" in m.group(5) and int(m.group(4), 16) > 0 and m.group(1) != ".tbss":
            rows.append((int(m.group(3), 16), int(m.group(4), 16), m.group(1), int(m.group(2), 16)))
    return sorted(rows)


def symbols(binary, secs):
    """[(file offset, size, component)] sorted, from nm's addresses turned into file offsets."""
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True).stdout
    by_addr = sorted((addr, off, size) for off, size, _, addr in secs)
    starts = [a for a, _, _ in by_addr]
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        addr, size, name = int(parts[0], 16), int(parts[1], 16), parts[3]
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or size == 0:
            continue
        sec_addr, sec_off, sec_size = by_addr[i]
        if addr >= sec_addr + sec_size:
            continue
        rows.append((addr - sec_addr + sec_off, size, component(name)))
    kept, end = [], 0
    for row in sorted(rows):  # aliases and nested symbols: the first (outermost) one counts
        if row[0] >= end:
            kept.append(row)
            end = row[0] + row[1]
    return kept


def resident_file_offsets(pid, exe):
    """File offsets of the executable's resident pages."""
    offsets = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or os.path.realpath(fields[5]) != exe:
                continue
            low, high = (int(x, 16) for x in fields[0].split("-"))
            offset = int(fields[2], 16)
            pagemap.seek(low // PAGE * 8)
            data = pagemap.read((high - low) // PAGE * 8)
            for i in range(len(data) // 8):
                (entry,) = struct.unpack_from("<Q", data, i * 8)
                if entry >> 63:
                    offsets.append(offset + i * PAGE)
    return offsets


def main():
    pid, binary = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    exe = os.path.realpath(f"/proc/{pid}/exe")
    secs = sections(binary)
    syms = symbols(binary, secs)
    sym_starts = [s[0] for s in syms]
    sec_starts = [s[0] for s in secs]
    by_section, by_component = collections.Counter(), collections.Counter()
    pages = resident_file_offsets(pid, exe)
    for page in pages:
        end = page + PAGE
        i = bisect.bisect_right(sec_starts, page) - 1
        sec = secs[i][2] if i >= 0 and page < secs[i][0] + secs[i][1] else "(no section)"
        by_section[sec] += PAGE
        covered = 0
        j = max(0, bisect.bisect_right(sym_starts, page) - 1)
        while j < len(syms) and syms[j][0] < end:
            s_off, s_size, comp = syms[j]
            overlap = min(end, s_off + s_size) - max(page, s_off)
            if overlap > 0:
                by_component[comp] += overlap
                covered += overlap
            j += 1
        if covered < PAGE:
            by_component[f"[{sec}, no symbol]"] += PAGE - min(covered, PAGE)
    print(f"{len(pages) * PAGE // 1024} KiB of {exe} resident in pid {pid}")
    print("by section (KiB):")
    for name, size in by_section.most_common(top):
        print(f"  {size // 1024:8d}  {name}")
    print("by component (KiB; a page shared by several is split by bytes):")
    for name, size in by_component.most_common(top):
        print(f"  {size // 1024:8d}  {name}")


if __name__ == "__main__":
    main()
