# Shared steps of scripts/check-systemd-unit.sh and scripts/check-registry-unit.sh (sourced, POSIX sh).

# unit_verify ROOT NAME: `systemd-analyze verify` of NAME inside the throw-away root ROOT; any message fails.
unit_verify() {
    echo "== systemd-analyze verify --root=<tmp> --man=no --generators=no $2"
    _rc=0
    _out=$(systemd-analyze verify --root="$1" --man=no --generators=no "$2" 2>&1) || _rc=1
    if [ "$_rc" -ne 0 ] || [ -n "$_out" ]; then
        printf '%s\n' "$_out"
        return 1
    fi
    echo "verify: clean"
}

# unit_exposure UNIT MAX: `systemd-analyze security --offline=yes`, setting $exposure; fails above MAX or when the
# level cannot be read.
unit_exposure() {
    echo "== systemd-analyze security --offline=yes ${1##*/}"
    _sec=$(systemd-analyze security --offline=yes --no-pager "$1" 2>&1) || true
    printf '%s\n' "$_sec" | grep -E '^✗' || true
    exposure=$(printf '%s\n' "$_sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$exposure" ]; then
        printf '%s\n' "$_sec"
        echo "security: could not read the exposure level" >&2
        return 1
    fi
    echo "exposure: $exposure (limit $2)"
    if awk -v e="$exposure" -v m="$2" 'BEGIN { exit !(e > m) }'; then
        echo "security: exposure $exposure is above $2" >&2
        return 1
    fi
}
