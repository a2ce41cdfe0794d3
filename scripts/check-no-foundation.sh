#!/usr/bin/env bash
# Issue 8: the installed program (`cellprov`, also run as `cellprovd`) must not need Foundation, only
# FoundationEssentials: one call into Foundation proper links libFoundation.a with CoreFoundation and ICU's
# 33 MB of data into the static release build (docs/decisions.md, "Installed size without Foundation").
# Checks the objects `cellprov` is linked from (debug or release) for two things:
# - an autolink entry -lFoundation (an object whose module, or a module it imports, imports Foundation, even
#   `import struct Foundation.Data`): with libFoundation.a on the link line the driver puts it before
#   libFoundationEssentials.a and lld takes the specializations both define from Foundation's archive, which pulls
#   in the rest of Foundation and ICU (measured: TOMLKit alone did that);
# - a reference to a symbol of Foundation proper (a call such as String.contains(String) that resolved to
#   Foundation's NSString API).
# Usage: scripts/check-no-foundation.sh [BUILD_DIR]   (default .build/debug)
set -euo pipefail
dir=${1:-.build/debug}
list="$dir/cellprov.product/Objects.LinkFileList"
[ -f "$list" ] || { echo "check-no-foundation: $list not found (build the cellprov product first)" >&2; exit 2; }
found=0
while read -r object; do
    object=${object//\"/}
    # Foundation's module in mangled names is "10Foundation"; FoundationEssentials is "20FoundationEssentials".
    if readelf -p .swift1_autolink_entries "$object" 2>/dev/null | grep -qE -- '-lFoundation$'; then
        found=1
        echo "check-no-foundation: $(basename "$(dirname "$object")")/$(basename "$object") links Foundation" \
            "(its module or one it imports imports Foundation)" >&2
    fi
    symbols=$(nm -u "$object" 2>/dev/null | grep -E '10Foundation[A-Za-z0-9_]' || true)
    if [ -n "$symbols" ]; then
        found=1
        echo "check-no-foundation: $(basename "$(dirname "$object")")/$(basename "$object") uses Foundation:" >&2
        echo "$symbols" | awk '{print $2}' | head -5 | while read -r s; do
            echo "    $s  ($(swift demangle --simplified --compact "$s" 2>/dev/null || echo "?"))" >&2
        done
    fi
done < "$list"
if [ "$found" -ne 0 ]; then
    echo "check-no-foundation: use FoundationEssentials or the standard library (CellprovCore/Text/TextSupport.swift)" >&2
    exit 1
fi
echo "check-no-foundation: $(wc -l < "$list") objects of cellprov, none uses Foundation (FoundationEssentials only)"
