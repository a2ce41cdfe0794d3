#!/usr/bin/env python3
"""cellprovd's logging into a real systemd-journald, the way systemd runs it.

Starts Debian's systemd-journald by hand when none runs (a container or CI without systemd as PID 1), then
runs cellprovd with its stderr connected to the journal's stdout stream and JOURNAL_STREAM set, exactly as
systemd does for a service: cellprovd must then choose its journald handler and send structured entries.
Checks, with `journalctl -o json`: SYSLOG_IDENTIFIER, PRIORITY, MESSAGE_ID of the start and identity-read
entries, CELLPROV_SLOT / CELLPROV_TAC / CELLPROV_IMEI_REF, and that no field of any entry carries the full
IMEI, the IMEI's serial digits, the IMSI, the MSIN or the full ICCID.

Usage: test_journald.py BIN_DIR   (exit 0: passed or skipped with a reason; 1: failed)
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import blackbox  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/debug"
JOURNALD = blackbox.JOURNALD
SOCKET = "/run/systemd/journal/socket"
IMEI, IMSI, ICCID = "356938035643809", "262011234567890", "8949200001234567895"
SECRETS = [IMEI, IMEI[8:14], IMSI, IMSI[5:], ICCID]
MESSAGE_ID_STARTED = "4b01827722414b9c99877cfaede9cb5a"
MESSAGE_ID_IDENTITY_READ = "d4234c5153974689b7afcdb0bae6699e"

T = blackbox.Checks("journald")
check = T.check


def skip(reason):
    blackbox.skip("journald test", reason)


def main():
    if os.geteuid() != 0:
        skip("needs root to start systemd-journald")
    if not os.path.exists(JOURNALD) or not shutil.which("journalctl"):
        skip("systemd-journald or journalctl missing (apt-get install -y systemd)")
    started, listening = blackbox.start_journald()
    if not listening:
        skip("systemd-journald did not start here")
    work = tempfile.mkdtemp(prefix="cellprov-journald-")
    sim = daemon = None
    try:
        link = os.path.join(work, "modem")
        sim = subprocess.Popen([os.path.join(BIN, "cellprov"), "simulate", "--profile", "quectel", "--link", link,
                                "--imei", IMEI, "--imsi", IMSI, "--iccid", ICCID],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(link):
                break
            time.sleep(0.02)
        config = blackbox.write_cellprovd_config(os.path.join(work, "cellprovd.toml"), f"{work}/state",
                                                 "GW-JOURNAL", ports=[link])
        stream = blackbox.stream_to_journal("cellprovd")
        env = blackbox.journal_environment(stream)
        env.pop("NOTIFY_SOCKET", None)
        daemon = subprocess.Popen([os.path.join(BIN, "cellprovd"), "--config", config],
                                  stdout=stream.fileno(), stderr=stream.fileno(), env=env)
        stream.close()
        entries = []
        deadline = time.time() + 15
        while time.time() < deadline:
            entries = blackbox.journal_entries(daemon.pid)
            if any(e.get("MESSAGE_ID") == MESSAGE_ID_IDENTITY_READ for e in entries):
                break
            time.sleep(0.1)
        daemon.send_signal(signal.SIGTERM)
        status = daemon.wait(timeout=10)
        check(status == 0, f"cellprovd exited 0 on SIGTERM (status {status})")
        time.sleep(0.3)
        entries = blackbox.journal_entries(daemon.pid)

        check(len(entries) > 0, f"journald holds cellprovd's entries ({len(entries)})")
        check(all(e.get("SYSLOG_IDENTIFIER") == "cellprovd" for e in entries), "SYSLOG_IDENTIFIER=cellprovd")
        check(all("CODE_FILE" in e for e in entries),
              "entries came through sd_journal_sendv (structured), not the stderr stream")
        started_entries = [e for e in entries if e.get("MESSAGE_ID") == MESSAGE_ID_STARTED]
        check(len(started_entries) == 1, "one 'cellprovd starting' entry with its MESSAGE_ID")
        reads = [e for e in entries if e.get("MESSAGE_ID") == MESSAGE_ID_IDENTITY_READ]
        check(len(reads) >= 1, "an 'identity read' entry with its MESSAGE_ID")
        if reads:
            r = reads[0]
            check(r.get("PRIORITY") == "6", f"identity read at PRIORITY 6 (info): {r.get('PRIORITY')}")
            check(r.get("CELLPROV_SLOT") == link, "CELLPROV_SLOT is the slot")
            check(r.get("CELLPROV_TAC") == IMEI[:8], "CELLPROV_TAC is the TAC")
            ref = r.get("CELLPROV_IMEI_REF", "")
            check(len(ref) == 10 and all(c in "0123456789abcdef" for c in ref), "CELLPROV_IMEI_REF is a reference")
        check(any("stopping" in e.get("MESSAGE", "") for e in entries), "a 'stopping' entry")
        blob = json.dumps(entries)
        leaks = [s for s in SECRETS if s in blob]
        check(not leaks, f"no identifier digits in any journal field ({len(leaks)} leaked)")
    finally:
        for p in (daemon, sim):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        if started:
            started.terminate()
            started.wait()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(T.summary())


if __name__ == "__main__":
    main()
