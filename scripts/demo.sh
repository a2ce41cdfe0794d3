#!/usr/bin/env bash
# `make demo`: simulated modems of several vendors, probed in parallel by `cellprov probe`.
# Uses the debug build `make demo` just made; needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CELLPROV_BIN:-.build/debug}
work=$(mktemp -d /tmp/cellprov-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

start_sim() { # name profile [flags...]
    local name=$1 profile=$2; shift 2
    "$BIN/cellprov" simulate --profile "$profile" --link "$work/$name" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
}

echo "== Starting simulated modems (PTYs) in $work"
start_sim quectel-ec25   quectel   --urc-noise
start_sim sierra-em7455  sierra
start_sim telit-le910    telit     --echo-always
start_sim ublox-sara     ublox     --delay-ms 20
start_sim simcom-sim7600 simcom    --sim-busy 2
start_sim huawei-me909s  huawei    --no-ccid
start_sim cinterion-pls8 cinterion --no-ccid --no-vendor-iccid
start_sim quectel-nosim  quectel   --sim-absent
start_sim quectel-pin    quectel   --sim-pin

for n in quectel-ec25 sierra-em7455 telit-le910 ublox-sara simcom-sim7600 huawei-me909s cinterion-pls8 \
         quectel-nosim quectel-pin; do
    for _ in $(seq 100); do [ -e "$work/$n" ] && break; sleep 0.05; done
    [ -e "$work/$n" ] || { echo "simulator $n did not start:"; cat "$work/$n.err"; exit 1; }
done
ports=("$work"/quectel-ec25 "$work"/sierra-em7455 "$work"/telit-le910 "$work"/ublox-sara "$work"/simcom-sim7600
       "$work"/huawei-me909s "$work"/cinterion-pls8 "$work"/quectel-nosim "$work"/quectel-pin)

echo
echo "== cellprov probe (identifiers redacted; add --reveal to show them)"
status=0
"$BIN/cellprov" probe "${ports[@]}" || status=$?
echo
echo "exit status $status (0 all valid, 1 identity missing or invalid, 2 port unusable): the two SIM-less"
echo "modems are expected to make it 1."
echo
echo "== cellprov probe --json (the data channel for factory stations: full identifiers)"
"$BIN/cellprov" probe --json "${ports[@]:0:3}" || true

echo
echo "== cellprovd: the daemon watching two modules on static ports, reporting to a local receiver"
"$BIN/cellprov-receiver" >"$work/receiver.out" 2>"$work/receiver.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/receiver.out" ] && break; sleep 0.05; done
receiver_url=$(head -n1 "$work/receiver.out")
echo "receiver: $receiver_url (plays the fleet backend: POST /v1/enrollments)"
cat >"$work/gw1.json" <<'JSON'
{"imei": "356938035643809", "imsi": "262011234567890", "iccid": "8949200001234567895"}
JSON
start_sim gw-slot1 quectel --identity-file "$work/gw1.json"
slot1_sim=${pids[-1]}
start_sim gw-slot2 telit --imei 866954041234569 --imsi 310260987654321 --iccid 8901260881234567898
for n in gw-slot1 gw-slot2; do
    for _ in $(seq 100); do [ -e "$work/$n" ] && break; sleep 0.05; done
done
cat >"$work/cellprovd.toml" <<TOML
[daemon]
state_directory = "$work/state"
[discovery]
udev = false
static_ports = ["$work/gw-slot1", "$work/gw-slot2"]
reprobe_interval_seconds = 600
[backend]
url = "$receiver_url"
[device]
serial = "GW-DEMO-1"
TOML
"$BIN/cellprovd" --config "$work/cellprovd.toml" --check
"$BIN/cellprovd" --config "$work/cellprovd.toml" 2>"$work/cellprovd.log" &
daemon=$!
pids+=("$daemon")
wait_for() { # file pattern count
    for _ in $(seq 200); do
        [ "$(grep -c -- "$2" "$1" || true)" -ge "$3" ] && return 0
        sleep 0.05
    done
    echo "(timed out waiting for: $2)"
}
wait_for "$work/receiver.out" "received enrolled" 2
echo
echo "-- slot 1: the SIM is swapped (the simulator sends +CPIN: NOT READY, +CPIN: READY, +QUSIM: 1 ...)"
cat >"$work/gw1.json" <<'JSON'
{"imei": "356938035643809", "imsi": "262029876543210", "iccid": "8949200009876543215"}
JSON
kill -HUP "$slot1_sim"
wait_for "$work/receiver.out" "received sim_changed" 1
echo "-- slot 1: the module now reports another IMEI (a red flag: tampering or a swapped module)"
cat >"$work/gw1.json" <<'JSON'
{"imei": "866954041111114", "imsi": "262029876543210", "iccid": "8949200009876543215"}
JSON
kill -HUP "$slot1_sim"
wait_for "$work/receiver.out" "received imei_changed" 1
kill -TERM "$daemon"
wait "$daemon" || true
echo
echo "-- what the receiver got (it prints identities redacted; the payload carries the digits):"
sed -e 's/^/   /' "$work/receiver.out" | tail -n +2
echo
echo "-- cellprov status"
"$BIN/cellprov" status --state-directory "$work/state" | sed -e 's/^/   /'
echo
echo "-- cellprov events"
"$BIN/cellprov" events --state-directory "$work/state" | sed -e 's/^/   /'
echo
echo "-- the daemon's log (identifiers appear only as TAC / MCC-MNC / issuer prefix and keyed references):"
sed -e 's/^/   /' "$work/cellprovd.log"

# udev hotplug, where umockdev can fake it (make demo installs it): the test harness's first daemon run, shown.
if command -v umockdev-wrapper >/dev/null && [ -x Tests/umockdev/run.sh ]; then
    echo
    echo "== cellprovd with udev (umockdev): a fake Quectel EC25 on USB is found through udev (AT port ttyUSB3,"
    echo "   not its QCDM, GPS or ModemManager ports), read, unplugged, and read again when plugged back"
    UMOCKDEV_TEST_VERBOSE=1 Tests/umockdev/run.sh >"$work/umockdev.out" 2>&1 || true
    grep -E '^  \[run1\] (NOTICE|INFO|WARNING)|^udev add' "$work/umockdev.out" | sed -e 's/^  \[run1\] /   /' || true
    echo
    echo "== PCIe modules over Linux WWAN ports (umockdev): a Quectel RM520N (its only AT port /dev/wwan0at0, never"
    echo "   its MBIM or QCDM port) and a Telit FN990 (wwan1at1, the AT port ModemManager leaves), opened without"
    echo "   termios or TIOCEXCL; both are unplugged and read again when plugged back (the FN990's ports announced"
    echo "   before its PCI device, as umockdev-record orders them)"
    grep -E '^  \[(ports|probe)\] |^  \[wwan\] (NOTICE|INFO|WARNING)|WWAN re-plug' "$work/umockdev.out" \
        | sed -e 's/^  \[[a-z]*\] /   /' || true
fi

# A module whose only AT port ModemManager owns: read through ModemManager's D-Bus API, never by taking the
# port (the real ModemManager on a private bus; the ModemManager test harness's first daemon, shown).
if command -v umockdev-wrapper >/dev/null && [ -x /usr/sbin/ModemManager ] && [ -x Tests/modemmanager/run.sh ]; then
    echo
    echo "== cellprovd and ModemManager: a fake Quectel EC25 whose only AT port (ttyUSB2) ModemManager owns is"
    echo "   read over D-Bus (source=modemmanager), then its SIM is swapped; ModemManager is killed and restarted"
    UMOCKDEV_TEST_VERBOSE=1 Tests/modemmanager/run.sh 2>&1 \
        | grep -E '^  \[auto\] (NOTICE|WARNING|ERROR|CRITICAL)|published the identities' \
        | sed -e 's/^  \[auto\] /   /' || true
fi

# The fleet registry (issue 9): a local cellprov-registry on SQLite; two factory stations record units at the end
# of the line (`cellprov probe --report`, a station token), the daemon of one of them reports to it from the
# field (a device token); then an IMEI lookup, the unit marked lost, and the flag raised when it reports again.
if [ -x "$BIN/cellprov-registry" ] && "$BIN/cellprov-registry" serve --help >/dev/null 2>&1; then
    echo
    echo "== cellprov-registry: the fleet registry on SQLite; two factory probes and the daemon report to it"
    regdb="sqlite://$work/registry.db"
    reg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    reg_url="http://127.0.0.1:$reg_port"
    "$BIN/cellprov-registry" serve --listen "127.0.0.1:$reg_port" --database "$regdb" 2>"$work/registry.log" &
    pids+=($!)
    wait_for "$work/registry.log" "listening on" 1
    # api METHOD PATH TOKEN [JSON]: one call to the registry's operator API; prints the status and the JSON answer.
    api() {
        python3 - "$reg_url" "$@" <<'PY'
import json, sys, urllib.request, urllib.error
base, method, path, token = sys.argv[1:5]
data = sys.argv[5].encode() if len(sys.argv) > 5 else None
req = urllib.request.Request(base + path, data=data, method=method,
                             headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
print(f"   HTTP {status}")
try:
    print("\n".join("   " + l for l in json.dumps(json.loads(body), indent=2).splitlines()[:90]))
except ValueError:
    print("   " + body.decode(errors="replace")[:500])
PY
    }
    admin=$("$BIN/cellprov-registry" operator add demo-admin --role admin --database "$regdb")
    station=$("$BIN/cellprov-registry" station add factory-line-1 --database "$regdb")
    device=$("$BIN/cellprov-registry" device add GW-DEMO-7 --database "$regdb")
    (umask 077; echo "$station" >"$work/station.token"; echo "$device" >"$work/device.token")
    echo "registry: $reg_url; tokens made with 'cellprov-registry operator|station|device add' (printed once)"
    cat >"$work/reg1.json" <<'JSON'
{"imei": "356938035643809", "imsi": "262011234567890", "iccid": "8949200001234567895"}
JSON
    start_sim reg-slot1 quectel --identity-file "$work/reg1.json"
    reg_sim=${pids[-1]}
    start_sim reg-slot2 telit --imei 866954041234569 --imsi 310260987654321 --iccid 8901260881234567898
    start_sim fab-other sierra --imei 359072061234569 --imsi 262019876543210 --iccid 8949200007654321093
    for n in reg-slot1 reg-slot2 fab-other; do
        for _ in $(seq 100); do [ -e "$work/$n" ] && break; sleep 0.05; done
    done
    echo
    echo "-- factory station 1: unit GW-DEMO-7 (two modules) is probed and recorded as manufactured"
    "$BIN/cellprov" probe "$work/reg-slot1" "$work/reg-slot2" --device-serial GW-DEMO-7 --report "$reg_url" \
        --token-file "$work/station.token" | sed -e 's/^/   /' || echo "   (probe --report failed: $?)"
    echo "-- factory station 2: unit GW-DEMO-8"
    "$BIN/cellprov" probe "$work/fab-other" --device-serial GW-DEMO-8 --report "$reg_url" \
        --token-file "$work/station.token" | sed -e 's/^/   /' || echo "   (probe --report failed: $?)"
    echo
    echo "-- GW-DEMO-7 in the field: cellprovd reports its modules with the unit's device token"
    cat >"$work/cellprovd-reg.toml" <<TOML
[daemon]
state_directory = "$work/state-reg"
[discovery]
udev = false
static_ports = ["$work/reg-slot1", "$work/reg-slot2"]
reprobe_interval_seconds = 600
[backend]
url = "$reg_url"
token_file = "$work/device.token"
[device]
serial = "GW-DEMO-7"
TOML
    "$BIN/cellprovd" --config "$work/cellprovd-reg.toml" 2>"$work/cellprovd-reg.log" &
    reg_daemon=$!
    pids+=("$reg_daemon")
    for _ in $(seq 100); do
        api GET "/v1/units/GW-DEMO-7" "$admin" 2>/dev/null | grep -q '"enrolled"' && break
        sleep 0.1
    done
    echo
    echo "-- support looks the unit up by an IMEI: GET /v1/units?q=356938035643809 (identifiers masked)"
    api GET "/v1/units?q=356938035643809" "$admin"
    echo
    # An eSIM unit (issue 15): the card's EID is read over logical channels (AT+CCHO/AT+CGLA/AT+CCHC); a remote
    # profile switch on the same card is told apart from a physical swap to another card.
    echo "-- GW-DEMO-9 has an eSIM (eUICC): its EID is read with the identities; two profiles on the card"
    esim_device=$("$BIN/cellprov-registry" device add GW-DEMO-9 --database "$regdb")
    (umask 077; echo "$esim_device" >"$work/esim-device.token")
    esim_eid=89882119900000000000000000000005
    cat >"$work/esim-card.json" <<JSON
{"eid": "$esim_eid", "enabledProfile": 0,
 "profiles": [{"iccid": "8949200005550001116", "imsi": "262015550001110"},
              {"iccid": "8931440400000002228", "imsi": "204080000000222"}]}
JSON
    start_sim esim-slot quectel --imei 861075030123459 --euicc-file "$work/esim-card.json"
    esim_sim=${pids[-1]}
    for _ in $(seq 100); do [ -e "$work/esim-slot" ] && break; sleep 0.05; done
    "$BIN/cellprov" probe "$work/esim-slot" | sed -e 's/^/   /'
    cat >"$work/cellprovd-esim.toml" <<TOML
[daemon]
state_directory = "$work/state-esim"
[discovery]
udev = false
static_ports = ["$work/esim-slot"]
[backend]
url = "$reg_url"
token_file = "$work/esim-device.token"
[device]
serial = "GW-DEMO-9"
TOML
    "$BIN/cellprovd" --config "$work/cellprovd-esim.toml" 2>"$work/cellprovd-esim.log" &
    esim_daemon=$!
    pids+=("$esim_daemon")
    for _ in $(seq 100); do api GET "/v1/units/GW-DEMO-9" "$admin" 2>/dev/null | grep -q '"enrolled"' && break; sleep 0.1; done
    echo "-- the provider switches the card to its second profile (remotely: +CPIN: READY, +QUSIM: 1)"
    sed -i 's/"enabledProfile": 0/"enabledProfile": 1/' "$work/esim-card.json"
    kill -HUP "$esim_sim"
    for _ in $(seq 100); do
        api GET "/v1/units/GW-DEMO-9" "$admin" 2>/dev/null | grep -q profile_switched && break
        sleep 0.1
    done
    echo "-- then a technician puts another card in (another EID): a physical swap"
    esim_eid2=89049032000000000000000000000163
    cat >"$work/esim-card.json" <<JSON
{"eid": "$esim_eid2", "enabledProfile": 0,
 "profiles": [{"iccid": "8949200005550003336", "imsi": "262015550003330"}]}
JSON
    kill -HUP "$esim_sim"
    for _ in $(seq 100); do
        api GET "/v1/units/GW-DEMO-9" "$admin" 2>/dev/null | grep -q sim_changed && break
        sleep 0.1
    done
    echo "-- what cellprovd recorded (cellprov events: EIDs redacted; profile_switched is info, sim_changed a warning):"
    "$BIN/cellprov" events --state-directory "$work/state-esim" 2>&1 | sed -e 's/^/   /' | head -30
    echo
    echo "-- support finds the unit by its card's EID: GET /v1/units?q=$esim_eid2 (masked in the answer)"
    api GET "/v1/units?q=$esim_eid2" "$admin"
    echo "-- its timeline: enrolled, profile_switched (no red flag: same card), sim_changed (another card)"
    api GET "/v1/units/GW-DEMO-9" "$admin" | grep -E '"type"|HTTP' | sed -e 's/^ *//;s/^/   /'
    echo "-- and no red flag for it (a profile switch on the same card is not iccid_moved):"
    esim_flags=$(api GET "/v1/flags" "$admin" | grep -c '"GW-DEMO-9"' || true)
    echo "   open flags of GW-DEMO-9: $esim_flags"
    kill -TERM "$esim_daemon" 2>/dev/null || true
    echo
    # Every holder, and as of a moment (issue 20): a SIM moved from GW-DEMO-10 to GW-DEMO-11 on 3 November at
    # 09:30. The two units' reports are sent as cellprovd sends them (device API, each unit's own token), dated by
    # the units' clocks; the carrier asks which unit used the IMSI at 14:22 that day.
    echo "-- a SIM moved: GW-DEMO-10 reported it from 1 November, took it out on 3 November at 09:00; GW-DEMO-11 has it since 09:30"
    moved_imsi=262015550001234
    python3 - "$reg_url" "$moved_imsi" \
        "$("$BIN/cellprov-registry" device add GW-DEMO-10 --database "$regdb")" \
        "$("$BIN/cellprov-registry" device add GW-DEMO-11 --database "$regdb")" <<'PY'
import json, sys, urllib.request, uuid
base, imsi, token10, token11 = sys.argv[1:5]
iccid = "8949200005550012345"
def post(token, serial, imei, kind, sequence, at, identity, previous=None):
    body = {"event_id": str(uuid.uuid4()), "type": kind, "sequence": sequence,
            "severity": "info" if kind == "enrolled" else "warning", "occurred_at": at,
            "device": {"serial": serial}, "identity": identity, "previous": previous, "problems": [],
            "module": {"slot": "usb-1-1.2", "manufacturer": "Quectel", "model": "EG25-G", "source": "at"}}
    req = urllib.request.Request(base + "/v1/enrollments", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201, r.status
sim = {"imsi": imsi, "iccid": iccid}
post(token10, "GW-DEMO-10", "356938035640003", "enrolled", 1, "2026-11-01T08:00:00Z", {"imei": "356938035640003", **sim})
post(token11, "GW-DEMO-11", "356938035640011", "enrolled", 1, "2026-11-01T08:05:00Z",
     {"imei": "356938035640011", "imsi": "262015550009999", "iccid": "8949200005550099995"})
post(token10, "GW-DEMO-10", "356938035640003", "sim_removed", 2, "2026-11-03T09:00:00Z", {"imei": "356938035640003"},
     {"imei": "356938035640003", **sim})
post(token11, "GW-DEMO-11", "356938035640011", "sim_changed", 2, "2026-11-03T09:30:00Z", {"imei": "356938035640011", **sim},
     {"imei": "356938035640011", "imsi": "262015550009999", "iccid": "8949200005550099995"})
PY
    echo "-- the carrier flagged the IMSI at 14:22 on 3 November: GET /v1/units?q=$moved_imsi&at=2026-11-03T14:22:00Z"
    api GET "/v1/units?q=$moved_imsi&at=2026-11-03T14:22:00Z" "$admin" | grep -E 'HTTP|"serial"|"slot"|"from"|"until"|"current"'
    echo "-- and on 2 November: GET /v1/units?q=$moved_imsi&at=2026-11-02T12:00:00Z"
    api GET "/v1/units?q=$moved_imsi&at=2026-11-02T12:00:00Z" "$admin" | grep -E 'HTTP|"serial"|"from"|"until"'
    echo "-- every unit that ever held it, the current holder first: GET /v1/units?q=$moved_imsi"
    api GET "/v1/units?q=$moved_imsi" "$admin" | grep -E 'HTTP|"serial"|"from"|"until"|"current"'
    echo
    echo "-- the unit was stolen: POST /v1/units/GW-DEMO-7/lost (admin): its device token is revoked"
    api POST "/v1/units/GW-DEMO-7/lost" "$admin" '{"note": "stolen from the depot (demo)"}'
    echo "-- ... and it comes back on the network with another SIM: cellprovd reports, the registry refuses it (403)"
    cat >"$work/reg1.json" <<'JSON'
{"imei": "356938035643809", "imsi": "262029876543210", "iccid": "8949200009876543215"}
JSON
    kill -HUP "$reg_sim"
    for _ in $(seq 100); do
        api GET "/v1/flags" "$admin" 2>/dev/null | grep -q lost_unit_seen && break
        sleep 0.1
    done
    echo
    echo "-- the open red flags: GET /v1/flags (lost_unit_seen raised by the refused report)"
    api GET "/v1/flags" "$admin"
    kill -TERM "$reg_daemon" 2>/dev/null || true
    echo
    echo "-- the registry's log (no identifier digits, no tokens):"
    sed -e 's/^/   /' "$work/registry.log" | tail -20
else
    echo
    echo "== cellprov-registry: not built in this tree yet (issue 9); the registry part of the demo is skipped"
fi
