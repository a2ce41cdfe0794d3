#!/bin/sh
# Check systemd/cellprov-registry.service, cellprov-registry.sysusers and cellprov-registry.tmpfiles without
# installing them (the registry's counterpart of scripts/check-systemd-unit.sh):
#
#   1. systemd-analyze verify in a throw-away root (a stub /usr/bin/cellprov-registry); any message fails.
#   2. systemd-analyze security --offline=yes: fails above MAX_EXPOSURE (default 1.5).
#   3. systemd-sysusers and systemd-tmpfiles --create applied to the same throw-away root: the user exists, the
#      directories have their modes.
#   4. No device access at all (PrivateDevices=yes, DevicePolicy=closed, no DeviceAllow=), no capability, and the
#      address families the registry needs (AF_INET, AF_INET6 for the listener and PostgreSQL, AF_UNIX for the
#      journal, sd_notify and a PostgreSQL socket) and nothing else.
#
# Needs the "systemd" package (Debian 12). Any user. Usage: scripts/check-registry-unit.sh [MAX_EXPOSURE]
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
unit="$here/systemd/cellprov-registry.service"
sysusers="$here/systemd/cellprov-registry.sysusers"
tmpfiles="$here/systemd/cellprov-registry.tmpfiles"
max="${1:-1.5}"

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "check-registry-unit: $tool not found; install it: apt-get install -y systemd" >&2
        exit 2
    }
done

root=$(mktemp -d "${TMPDIR:-/tmp}/cellprov-registry-unit.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
mkdir -p "$root/usr/bin" "$root/usr/lib/systemd" "$root/etc"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/system"
cp "$unit" "$root/usr/lib/systemd/system/cellprov-registry.service"
printf '#!/bin/sh\nexit 0\n' >"$root/usr/bin/cellprov-registry"
chmod 0755 "$root/usr/bin/cellprov-registry"

. "$here/scripts/unit-check-lib.sh"
status=0

unit_verify "$root" cellprov-registry.service || status=1
unit_exposure "$unit" "$max" || status=1

echo "== systemd-sysusers / systemd-tmpfiles --root=<tmp>"
if ! out=$(systemd-sysusers --root="$root" "$sysusers" 2>&1); then status=1; fi
[ -n "$out" ] && printf '%s\n' "$out"
grep -q '^cellprov-registry:' "$root/etc/passwd" || { echo "sysusers: user cellprov-registry not created" >&2; status=1; }
if ! out=$(systemd-tmpfiles --root="$root" --create "$tmpfiles" 2>&1); then status=1; fi
[ -n "$out" ] && { printf '%s\n' "$out"; status=1; }
for d in etc/cellprov-registry:750 var/lib/cellprov-registry:700; do
    path=${d%%:*}
    mode=${d##*:}
    got=$(stat -c %a "$root/$path" 2>/dev/null || echo missing)
    [ "$got" = "$mode" ] || { echo "tmpfiles: /$path is $got, want $mode" >&2; status=1; }
done

echo "== devices, capabilities, address families"
grep -qx 'PrivateDevices=yes' "$unit" || { echo "unit: PrivateDevices=yes missing" >&2; status=1; }
grep -qx 'DevicePolicy=closed' "$unit" || { echo "unit: DevicePolicy=closed missing" >&2; status=1; }
if grep -q '^DeviceAllow=' "$unit"; then echo "unit: the registry needs no DeviceAllow=" >&2; status=1; fi
grep -qx 'CapabilityBoundingSet=' "$unit" || { echo "unit: CapabilityBoundingSet= must be empty" >&2; status=1; }
grep -qx 'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' "$unit" || {
    echo "unit: RestrictAddressFamilies= must be exactly AF_UNIX AF_INET AF_INET6" >&2
    status=1
}
grep -q '^ExecStart=/usr/bin/cellprov-registry serve ' "$unit" || { echo "unit: ExecStart= must run serve" >&2; status=1; }

if [ "$status" -eq 0 ]; then
    echo "check-registry-unit: ok (exposure $exposure)"
else
    echo "check-registry-unit: FAILED" >&2
fi
exit "$status"
