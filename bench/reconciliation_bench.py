#!/usr/bin/env python3
"""Carrier reconciliation under load (issue 19 row 7; figures printed, recorded in docs/performance.md by hand,
never asserted).

One `cellprov-registry serve` (SQLite) with RECON_UNITS enrolled units, a generated carrier export of RECON_ROWS
rows (valid ICCIDs and IMSIs, Jasper-like columns), and while `POST /v1/carrier-reconciliations` runs,
RECON_DEVICES devices posting events one after another (each a fresh event on a new connection, as cellprovd
does) whose latency is measured. The registry's VmRSS is read from /proc every 20 ms.

Printed: the upload's time and status, the device events' latency (max and p99 during the upload, p50 before it),
VmRSS before, at its peak during the upload, and 5 s and 20 s after it.

Usage: reconciliation_bench.py BIN_DIR   (BIN_DIR/cellprov-registry, e.g. .build/release)
Environment: RECON_ROWS (150000), RECON_UNITS (300), RECON_ACTIVE ("mixed": the units' SIMs and 1 % of the others
       active, the rest inventory; "all": every row active, so every SIM in no unit is a finding),
       RECON_DEVICES (4), RECON_PAD (columns of filler per row, 6: about 210 bytes a row, 31 MB at 150 000 rows).
"""
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "registry"))
import harness as h  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else ".build/release"
h.REGISTRY = os.path.join(BIN, "cellprov-registry")
ROWS = int(os.environ.get("RECON_ROWS", "150000"))
UNITS = int(os.environ.get("RECON_UNITS", "300"))
ACTIVE = os.environ.get("RECON_ACTIVE", "mixed")
DEVICES = int(os.environ.get("RECON_DEVICES", "4"))
PAD = int(os.environ.get("RECON_PAD", "6"))


def rss_kib(pid):
    return h.blackbox.proc_status_kib(pid).get("VmRSS", 0)


def export(unit_sims):
    """The CSV: the units' SIMs first (active), then ROWS - UNITS other SIMs of the same issuer."""
    header = ["ICCID", "IMSI", "MSISDN", "Status", "Rate Plan", "Communication Plan", "Date Activated"]
    header += [f"Custom {i}" for i in range(PAD)]
    lines = [",".join(header)]
    filler = ",".join(["\"Fleet device, EU\""] * PAD)
    for n in range(ROWS):
        if n < len(unit_sims):
            iccid, imsi = unit_sims[n]
            status = "Activated"
        else:
            iccid, imsi = h.make_iccid("894920"), h.make_imsi("26201")
            status = "Activated" if ACTIVE == "all" or n % 100 == 0 else "Inventory"
        lines.append(f"{iccid},{imsi},4915{n:09d},{status},IoT 10MB EU,Default CP,2026-01-15 10:00:00,{filler}")
    return ("\r\n".join(lines) + "\r\n").encode()


def percentile(values, p):
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def main():
    work = tempfile.mkdtemp(prefix="cellprov-reconbench-")
    reg = h.Registry("sqlite://" + os.path.join(work, "registry.sqlite"), work)
    try:
        reg.start()
        admin = reg.operator_add("bench-admin", "admin")
        print(f"provisioning {UNITS} units ...", flush=True)
        unit_sims = []
        devices = []
        for n in range(UNITS):
            serial = f"RB-{n:06d}"
            token = reg.device_add(serial)
            imei, imsi, iccid = h.make_imei(), h.make_imsi("26201"), h.make_iccid("894920")
            r = reg.post_event(token, h.event(serial, "usb-1", "enrolled", 1, imei=imei, imsi=imsi, iccid=iccid))
            assert r.status == 201, r
            unit_sims.append((iccid, imsi))
            if n < DEVICES:
                devices.append((serial, token, imei, imsi, iccid))
        body = export(unit_sims)
        print(f"export: {ROWS} rows, {len(body) / 1e6:.1f} MB, active: {ACTIVE}", flush=True)

        stop = threading.Event()
        samples = []            # (t, latency s, status)
        rss = []                # (t, KiB)
        pid = reg.proc.pid

        def device_loop(serial, token, imei, imsi, iccid):
            seq = 2
            while not stop.is_set():
                ev = h.event(serial, "usb-1", "sim_inserted", seq, imei=imei, imsi=imsi, iccid=iccid)
                t0 = time.monotonic()
                try:
                    status = reg.post_event(token, ev).status
                except Exception:  # noqa: BLE001 (a timeout is a figure too)
                    status = 0
                samples.append((t0, time.monotonic() - t0, status))
                seq += 1
                time.sleep(0.02)

        def rss_loop():
            while not stop.is_set():
                rss.append((time.monotonic(), rss_kib(pid)))
                time.sleep(0.02)

        threads = [threading.Thread(target=device_loop, args=d, daemon=True) for d in devices]
        threads.append(threading.Thread(target=rss_loop, daemon=True))
        for t in threads:
            t.start()
        time.sleep(3)
        before_rss = rss_kib(pid)
        t_start = time.monotonic()
        r = reg.request("POST", "/v1/carrier-reconciliations", token=admin, raw=body,
                        headers={"Content-Type": "text/csv"}, timeout=600)
        t_end = time.monotonic()
        time.sleep(5)
        after5 = rss_kib(pid)
        time.sleep(15)
        after20 = rss_kib(pid)
        stop.set()
        for t in threads:
            t.join(timeout=35)

        during = [lat for (t0, lat, _) in samples if t_start <= t0 <= t_end or t0 < t_start < t0 + lat]
        before = [lat for (t0, lat, _) in samples if t0 + lat < t_start]
        failed = [s for (t0, _, s) in samples if t_start <= t0 <= t_end and s != 201]
        peak = max((k for (t, k) in rss if t_start <= t <= t_end + 1), default=0)
        summary = ""
        if r.status == 200:
            s = r.json()["summary"]
            summary = (f"rows read {s.get('rows read')}, SIMs {s.get('SIMs in the export')}, "
                       f"matched {s.get('unit SIMs found in the export')}, "
                       f"sim_active_unassigned {s.get('sim_active_unassigned')}, "
                       f"flags in the answer {len(r.json()['flags_raised'])}")
        else:
            summary = r.text[:200]
        print(f"upload: status {r.status} in {t_end - t_start:.1f} s; {summary}")
        print(f"device events during the upload: {len(during)}, max {max(during, default=0) * 1000:.0f} ms, "
              f"p99 {percentile(during, 0.99) * 1000:.0f} ms, p50 {percentile(during, 0.5) * 1000:.0f} ms, "
              f"not 201: {len(failed)}; before it: p50 {percentile(before, 0.5) * 1000:.0f} ms, "
              f"max {max(before, default=0) * 1000:.0f} ms")
        print(f"VmRSS: before {before_rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
              f"5 s after {after5 / 1024:.1f} MiB, 20 s after {after20 / 1024:.1f} MiB")
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
