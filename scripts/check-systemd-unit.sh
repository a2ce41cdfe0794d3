#!/bin/sh
# Check systemd/cellprovd.service, cellprov.sysusers and cellprov.tmpfiles without installing them.
#
#   1. systemd-analyze verify: in a throw-away root holding a copy of the host's unit directory,
#      the unit and a stub /usr/bin/cellprovd (verify refuses a unit whose ExecStart= binary is
#      missing). Any message at all counts as a failure: verify exits 0 on unknown keys and bad
#      values, it only prints them.
#   2. systemd-analyze security --offline=yes: prints the exposure; fails above MAX_EXPOSURE (1.5).
#   3. systemd-sysusers and systemd-tmpfiles --create, applied to the same throw-away root.
#   4. The device allow-list: DevicePolicy=closed, and read-write access to every kind of AT port cellprov
#      opens (ttyUSB, ttyACM, ttyS, and the WWAN framework's wwan_port); nothing else may be allowed; and the
#      modules registering those majors (wwan, usbserial, cdc_acm) are loaded before the unit (modprobe@).
#   5. The system bus stays reachable under the sandbox (cellprovd reads ModemManager over D-Bus): AF_UNIX in
#      RestrictAddressFamilies=, @network-io not filtered out, /run/dbus not hidden (InaccessiblePaths=,
#      TemporaryFileSystem=, a private /run), no BindPaths= over it. ProtectSystem=strict and PrivateUsers= do
#      not get in the way (a read-only mount does not stop connect(); the bus sees the real uid): that part is
#      run for real, with ModemManager, by Tests/modemmanager/test_modemmanager.py (its sandbox check).
#
# Works without systemd as PID 1 (containers, CI) and does not touch the host's /etc or /usr.
# Needs, on Debian 12: the "systemd" package (systemd-analyze, systemd-sysusers, systemd-tmpfiles;
# `apt-get install -y systemd`) and coreutils, grep, sed, awk (all Essential). Run as any user;
# root is not required. Called by `make test`.
#
# Usage: scripts/check-systemd-unit.sh [MAX_EXPOSURE]
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
unit="$here/systemd/cellprovd.service"
sysusers="$here/systemd/cellprov.sysusers"
tmpfiles="$here/systemd/cellprov.tmpfiles"
max="${1:-1.5}"

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "check-systemd-unit: $tool not found; install it: apt-get install -y systemd" >&2
        exit 2
    }
done

root=$(mktemp -d "${TMPDIR:-/tmp}/cellprov-unit.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd" "$root/etc"
# verify resolves the unit's dependencies (sysinit.target, ...) inside --root.
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/system"
cp "$unit" "$root/usr/lib/systemd/system/cellprovd.service"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/cellprovd"
chmod 0755 "$root/usr/bin/cellprovd"
# ExecReload= runs /bin/kill (procps): a stub in the throw-away root as well.
mkdir -p "$root/bin"
printf '#!/bin/sh\nexit 0\n' >"$root/bin/kill"
chmod 0755 "$root/bin/kill"

. "$here/scripts/unit-check-lib.sh"
status=0

unit_verify "$root" cellprovd.service || status=1
unit_exposure "$unit" "$max" || status=1

echo "== systemd-sysusers --root=<tmp> systemd/cellprov.sysusers"
if ! out=$(systemd-sysusers --root="$root" "$sysusers" 2>&1); then status=1; fi
[ -n "$out" ] && printf '%s\n' "$out"
grep -q '^cellprov:' "$root/etc/passwd" || { echo "sysusers: user cellprov not created" >&2; status=1; }
grep -Eq '^dialout:[^:]*:[0-9]+:(.*,)?cellprov(,|$)' "$root/etc/group" || {
    echo "sysusers: cellprov is not in dialout" >&2
    status=1
}

echo "== systemd-tmpfiles --root=<tmp> --create systemd/cellprov.tmpfiles"
if ! out=$(systemd-tmpfiles --root="$root" --create "$tmpfiles" 2>&1); then status=1; fi
[ -n "$out" ] && { printf '%s\n' "$out"; status=1; }
for d in etc/cellprov:750 var/lib/cellprov:700; do
    path=${d%%:*}
    mode=${d##*:}
    got=$(stat -c %a "$root/$path" 2>/dev/null || echo missing)
    [ "$got" = "$mode" ] || { echo "tmpfiles: /$path is $got, want $mode" >&2; status=1; }
done

echo "== device allow-list"
grep -qx 'DevicePolicy=closed' "$unit" || { echo "unit: DevicePolicy=closed missing" >&2; status=1; }
for dev in ttyUSB ttyACM ttyS wwan_port; do
    grep -qx "DeviceAllow=char-$dev rw" "$unit" || { echo "unit: DeviceAllow=char-$dev rw missing" >&2; status=1; }
done
others=$(grep '^DeviceAllow=' "$unit" | grep -vxE 'DeviceAllow=char-(ttyUSB|ttyACM|ttyS|wwan_port) rw' || true)
[ -z "$others" ] || { echo "unit: unexpected device access: $others" >&2; status=1; }
# Their majors are looked up in /proc/devices at unit start: the modules registering them must be loaded before.
for mod in wwan usbserial cdc_acm; do
    for key in Wants After; do
        grep -Eq "^$key=.*modprobe@$mod\.service" "$unit" || {
            echo "unit: $key=modprobe@$mod.service missing (DeviceAllow= would miss the device if loaded later)" >&2
            status=1
        }
    done
done
[ "$status" -eq 0 ] && echo "devices: ttyUSB ttyACM ttyS wwan_port (rw), nothing else; their modules loaded first"

echo "== the system bus under the sandbox (AF_UNIX, @network-io, /run/dbus visible)"
# Every value of a directive, in order (a later empty assignment resets the list, as systemd does).
values() {
    awk -F= -v key="$1" '
        /^[[:space:]]*[#;]/ { next }
        { k = $1; gsub(/[[:space:]]/, "", k) }
        k == key { v = substr($0, index($0, "=") + 1); if (v == "") list = ""; else list = list " " v }
        END { print list }' "$unit"
}
families=$(values RestrictAddressFamilies)
case " $families " in
    *" ~"*) case " $families " in *AF_UNIX*) echo "bus: RestrictAddressFamilies= denies AF_UNIX" >&2; status=1 ;; esac ;;
    "  ") ;;
    *) case " $families " in *" AF_UNIX "*) ;; *) echo "bus: RestrictAddressFamilies= lacks AF_UNIX" >&2; status=1 ;; esac ;;
esac
case " $(values SystemCallFilter) " in
    *"~"*"@network-io"*) echo "bus: SystemCallFilter= removes @network-io (connect, sendmsg)" >&2; status=1 ;;
esac
for key in InaccessiblePaths TemporaryFileSystem BindPaths BindReadOnlyPaths; do
    for path in $(values "$key"); do
        path=${path#-}
        path=${path%%:*}
        case "$path" in
            /|/run|/run/|/run/dbus|/run/dbus/*) echo "bus: $key=$path hides or replaces the system bus socket" >&2; status=1 ;;
        esac
    done
done
[ "$status" -eq 0 ] && echo "bus: /run/dbus/system_bus_socket reachable (AF_UNIX allowed: $families)"

if [ "$status" -eq 0 ]; then
    echo "check-systemd-unit: ok (exposure $exposure)"
else
    echo "check-systemd-unit: FAILED" >&2
fi
exit "$status"
