#!/usr/bin/env bash
# No Synchronization.Mutex in cellprov's code (docs/decisions.md, "Locks"): on Linux it takes its lock inside the
# uninstrumented standard library, so ThreadSanitizer (`make sanitize`) reports every access under it as a race.
# Use NIOLock / NIOLockedValueBox (NIOConcurrencyHelpers).
set -euo pipefail
cd "$(dirname "$0")/.."
if found=$(grep -rnE '\bMutex(<|\()' Sources Tests --include='*.swift'); then
    echo "check-locks: Synchronization.Mutex is used (ThreadSanitizer cannot see it; use NIOLockedValueBox/NIOLock):" >&2
    echo "$found" >&2
    exit 1
fi
echo "check-locks: no Synchronization.Mutex"
