#!/usr/bin/env python3
# registry-suite: e2e-sqlite sqlite
# registry-suite: e2e-postgres postgres
"""End to end (issue 9, "Tests that must exist"): cellprovd with simulated modems and `cellprov probe --report`
against a running cellprov-registry, on SQLite or on a real PostgreSQL.

  test_e2e.py sqlite|postgres

Four units: GW-A and GW-B are field units (cellprovd on PTYs, device tokens); GW-C and GW-D have a factory record
(`cellprov probe PORT --device-serial SN --report URL --token-file F`, a station token) and then a cellprovd;
GW-E reports in the field first and gets its factory record afterwards. Checked: the units appear (by IMEI, by
serial, by the pseudonym reference cellprovd logs); a SIM swap and an IMEI change land in GW-A's timeline; GW-B
taking GW-A's IMEI raises imei_on_two_units; GW-A's SIM put into GW-D raises iccid_moved; GW-C's field IMEI
differs from its factory record: module_swapped_since_manufacturing (GW-D's matches: no flag; GW-E's record
arrives late: flag); GW-B marked lost: its daemon gets 403 and lost_unit_seen is raised; found: the new token is
accepted and the waiting event is delivered. The registry exits 0 on SIGTERM and its log holds no identifier
digits and no token.
Exit status: 0 passed (or skipped with SKIP and the reason, a failure under CELLPROV_TEST_NO_SKIP=1), 1 failed.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import pages  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through harness)

KIND = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
T = blackbox.Checks(f"registry e2e ({KIND})")
WAIT = 40


def skip(reason):
    blackbox.skip(f"registry e2e ({KIND})", reason)


def probe_report(port, serial, url, token_file):
    return subprocess.run([h.CELLPROV, "probe", port, "--device-serial", serial, "--report", url,
                           "--token-file", token_file], capture_output=True, text=True, timeout=60)


def main():
    h.require_registry(skip, h.CELLPROV, h.CELLPROVD)
    work = tempfile.mkdtemp(prefix="cellprov-rege2e-")
    os.chmod(work, 0o755)
    pg = None
    procs = []
    reg = None
    try:
        if KIND == "postgres":
            pg = h.PostgresServer()
            if not pg.available():
                skip("PostgreSQL server binaries missing (apt-get install postgresql)")
            pg.start()
            database = pg.new_database()
        else:
            database = f"sqlite://{work}/registry.db"
        reg = h.Registry(database, work).start()
        admin = reg.operator_add("alice", "admin")
        viewer = reg.operator_add("victor", "viewer")
        station = reg.station_add("line-1")
        T.check(admin.startswith("cpo_") and station.startswith("cps_"),
                "operator and station tokens carry their prefixes (cpo_, cps_)")
        station_file = os.path.join(work, "station.token")
        with open(os.open(station_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(station + "\n")

        ids = {k: (h.make_imei(), h.make_imsi(), h.make_iccid()) for k in
               ("A1", "A2", "A1new", "B1", "Cfab", "Cfield", "D1", "E1", "Efab")}
        all_ids = [v for t in ids.values() for v in t]
        tokens = {s: reg.device_add(s) for s in ("GW-A", "GW-B", "GW-C", "GW-D", "GW-E")}
        T.check(all(t.startswith("cpd_") for t in tokens.values()), "device tokens carry the cpd_ prefix")

        def sim(name, key, profile="quectel"):
            s = h.Simulator(work, name, profile, *ids[key])
            procs.append(s)
            return s

        # -- factory: C and D probed at the end of the line, with the station token
        for serial, key in (("GW-C", "Cfab"), ("GW-D", "D1")):
            fab = sim(f"fab-{serial}", key)
            out = probe_report(fab.link, serial, reg.base, station_file)
            T.check(out.returncode == 0, f"cellprov probe --report for {serial} exits 0 ({out.returncode}: "
                                         f"{out.stderr.strip()[-300:]})")
            fab.stop()
        r = reg.units(viewer, ids["Cfab"][0])
        T.check(r.status == 200 and any(u.get("serial") == "GW-C" for u in r.json().get("units", [])),
                f"the factory record makes GW-C findable by its IMEI ({r})")
        T.check(h.values_of_key(reg.unit(viewer, "GW-C").json(), "type").count("manufactured") >= 1
                if reg.unit(viewer, "GW-C").status == 200 else False, "GW-C's timeline holds its manufactured record")

        # -- field: cellprovd on every unit
        a1, a2 = sim("a1", "A1"), sim("a2", "A2", "telit")
        b1 = sim("b1", "B1", "sierra")
        c1 = sim("c1", "Cfield")
        d1 = sim("d1", "D1", "ublox")
        daemons = {}
        for serial, ports in (("GW-A", [a1, a2]), ("GW-B", [b1]), ("GW-C", [c1]), ("GW-D", [d1])):
            d = h.Daemon(work, serial.lower(), serial, [p.link for p in ports], reg.base, tokens[serial])
            procs.append(d)
            daemons[serial] = d

        def enrolled_count(serial):
            return h.timeline_types(reg, viewer, serial).count("enrolled")

        for serial, n in (("GW-A", 2), ("GW-B", 1), ("GW-C", 1), ("GW-D", 1)):
            T.check(h.wait_until(lambda: enrolled_count(serial) >= n, WAIT),
                    f"{serial}: {n} enrolled event(s) from cellprovd in the timeline")
        for serial, key in (("GW-A", "A1"), ("GW-A", "A2"), ("GW-B", "B1")):
            r = reg.units(viewer, ids[key][0])
            T.check(r.status == 200 and [u.get("serial") for u in r.json().get("units", [])] == [serial],
                    f"GET /v1/units?q=<IMEI of {key}> finds exactly {serial}")
        r = reg.units(viewer, ids["A1"][2])
        T.check(r.status == 200 and any(u.get("serial") == "GW-A" for u in r.json().get("units", [])),
                "found by ICCID")
        r = reg.units(viewer, "GW-B")
        T.check(r.status == 200 and any(u.get("serial") == "GW-B" for u in r.json().get("units", [])),
                "found by device serial")
        r = reg.units(viewer, ids["A1"][0])
        T.check(not h.leaks_in(r.text, h.secrets_of(*all_ids)), "search answers mask identifiers")
        refs = re.findall(r"ref ([0-9a-f]{10})", daemons["GW-A"].log_text())
        if T.check(bool(refs), "cellprovd's log carries pseudonym references"):
            r = reg.units(viewer, refs[0])
            T.check(r.status == 200 and any(u.get("serial") == "GW-A" for u in r.json().get("units", [])),
                    "a reference from cellprovd's log finds the unit (the references the daemon reports)")
        T.check(not h.flags_of(reg, viewer, "module_swapped_since_manufacturing", "GW-D"),
                "GW-D: field IMEI matches the factory record: no module_swapped_since_manufacturing")
        T.check(bool(h.wait_until(lambda: h.flags_of(reg, viewer, "module_swapped_since_manufacturing", "GW-C"),
                                  WAIT)), "GW-C: field IMEI differs from the factory record: "
                                          "module_swapped_since_manufacturing")

        # -- GW-C: a firmware update of its module (same IMEI, new revision): firmware_changed, delivered, on the
        # timeline as "firmware OLD -> NEW", no flag; /v1/affected finds the unit by the new revision only
        old_rev, new_rev = "EC25EFAR06A06M4G", "EC25EFAR06A08M4G"

        def affected(revision):
            r = reg.request("GET", f"/v1/affected?revision={revision}", token=viewer)
            return [u.get("serial") for u in r.json().get("units", [])] if r.status == 200 else None

        T.check("GW-C" in (affected(old_rev) or []), f"GW-C is listed under its first revision {old_rev}")
        flags_before = [f.get("kind") for f in reg.flags(viewer) if f.get("serial") == "GW-C"]
        c1.update_firmware(new_rev)
        daemons["GW-C"].reload()
        T.check(h.wait_until(lambda: "firmware_changed" in h.timeline_types(reg, viewer, "GW-C"), WAIT),
                "GW-C: the firmware update lands in the timeline (firmware_changed)")
        timeline = [e for t in h.values_of_key(reg.unit(viewer, "GW-C").json(), "timeline") for e in t]
        entries = [e for e in timeline if e.get("type") == "firmware_changed"]
        T.check(len(entries) == 1 and entries[0].get("previous_revision") == old_rev
                and entries[0].get("revision") == new_rev and entries[0].get("severity") == "info",
                f"the timeline entry has the old and the new revision, severity info ({entries})")
        browser = pages.Browser(reg.port)
        browser.sign_in(viewer, "/units/GW-C")
        status, text, _ = browser.get("/units/GW-C")
        T.check(status == 200 and f"firmware {old_rev} -&gt; {new_rev}" in text,
                f"the unit page's timeline says firmware OLD -> NEW ({status})")
        T.check(affected(new_rev) == ["GW-C"], f"/v1/affected?revision={new_rev} lists GW-C ({affected(new_rev)})")
        T.check("GW-C" not in (affected(old_rev) or ["GW-C"]),
                f"/v1/affected?revision={old_rev} no longer lists GW-C ({affected(old_rev)})")
        T.check([f.get("kind") for f in reg.flags(viewer) if f.get("serial") == "GW-C"] == flags_before,
                "a firmware update raises no flag")
        T.check("firmware changed: " + old_rev + " -> " + new_rev in daemons["GW-C"].log_text(),
                "cellprovd's log line names both revisions")

        # -- GW-A slot 1: SIM swap, then an IMEI change
        new_imsi, new_iccid = ids["A1new"][1], ids["A1new"][2]
        a1.swap(ids["A1"][0], new_imsi, new_iccid)
        T.check(h.wait_until(lambda: "sim_changed" in h.timeline_types(reg, viewer, "GW-A"), WAIT),
                "GW-A: the SIM swap lands in the timeline (sim_changed)")
        a1.swap(ids["A1new"][0], new_imsi, new_iccid)
        T.check(h.wait_until(lambda: "imei_changed" in h.timeline_types(reg, viewer, "GW-A"), WAIT),
                "GW-A: the IMEI change lands in the timeline (imei_changed)")
        T.check(bool(h.wait_until(lambda: h.flags_of(reg, viewer, "imei_changed", "GW-A"), WAIT)),
                "GW-A: imei_changed flag")
        T.check(not h.flags_of(reg, viewer, "imei_on_two_units"), "no imei_on_two_units before two units share one")
        T.check(not h.flags_of(reg, viewer, "iccid_moved"), "no iccid_moved before a SIM moves")

        # -- GW-B's module starts answering with GW-A slot 2's IMEI (a clone)
        b1.swap(ids["A2"][0], ids["B1"][1], ids["B1"][2])
        T.check(bool(h.wait_until(lambda: h.flags_of(reg, viewer, "imei_on_two_units"), WAIT)),
                "same IMEI on GW-A and GW-B: imei_on_two_units")
        f = h.flags_of(reg, viewer, "imei_on_two_units")
        T.check(bool(f) and f[0].get("serial") in ("GW-A", "GW-B") and f[0].get("severity") == "critical",
                f"imei_on_two_units is about GW-A or GW-B, critical ({f[:1]})")

        # -- GW-A slot 1's SIM (its current ICCID) now reported by GW-D: the rule's definite case (the registry
        # still holds it as GW-A's current SIM; a sim_removed first is the ambiguous "last event had it" case)
        d1.swap(ids["D1"][0], new_imsi, new_iccid)
        T.check(bool(h.wait_until(lambda: h.flags_of(reg, viewer, "iccid_moved", "GW-D"), WAIT)),
                "GW-A's SIM in GW-D: iccid_moved on GW-D")
        T.check(not h.flags_of(reg, viewer, "module_swapped_since_manufacturing", "GW-D"),
                "a SIM move is not a module swap")

        # -- GW-E: field event first, factory record afterwards with another IMEI
        ev = h.event("GW-E", "/dev/ttyS1", "enrolled", 1, *ids["E1"])
        r = reg.post_event(tokens["GW-E"], ev)
        T.check(r.status == 201, f"GW-E's enrolled event stored: 201 ({r})")
        fab = sim("fab-GW-E", "Efab")
        out = probe_report(fab.link, "GW-E", reg.base, station_file)
        T.check(out.returncode == 0, f"late factory record for GW-E posted ({out.returncode})")
        T.check(bool(h.wait_until(lambda: h.flags_of(reg, viewer, "module_swapped_since_manufacturing", "GW-E"),
                                  5)), "a factory record arriving after field events is checked too (GW-E)")

        # -- lost / found
        r = reg.request("POST", "/v1/units/GW-B/lost", token=admin, body={"note": "stolen from site 12"})
        T.check(200 <= r.status < 300, f"POST /v1/units/GW-B/lost (admin) answers 2xx ({r.status})")
        sw = (h.make_imsi(), h.make_iccid())
        all_ids.extend(sw)
        before = h.timeline_types(reg, viewer, "GW-B").count("sim_changed")
        b1.swap(ids["A2"][0], *sw)
        T.check(bool(h.wait_until(lambda: h.flags_of(reg, viewer, "lost_unit_seen", "GW-B"), WAIT)),
                "GW-B reports after being marked lost: lost_unit_seen")
        T.check(h.wait_until(lambda: "refuses our credentials" in daemons["GW-B"].log_text() or
                             "403" in daemons["GW-B"].log_text(), WAIT),
                "GW-B's cellprovd was refused (403)")
        T.check(h.timeline_types(reg, viewer, "GW-B").count("sim_changed") == before,
                "the lost unit's event was not stored")
        r = reg.post_event(tokens["GW-B"], h.event("GW-B", "/dev/ttyX", "enrolled", 1, *ids["B1"]))
        T.check(r.status == 403, f"the lost unit's revoked token: 403 ({r.status})")
        r = reg.request("POST", "/v1/units/GW-B/found", token=admin, body={"note": "recovered"})
        T.check(200 <= r.status < 300, f"POST /v1/units/GW-B/found (admin) answers 2xx ({r.status})")
        new = re.findall(r"cpd_[A-Za-z0-9_-]+", r.text)
        if new:
            new_token = new[0]
        else:   # found restores the unit; its new token may be issued by `device add` instead
            new_token = reg.device_add("GW-B")
        all_tokens = list(tokens.values()) + [admin, viewer, station, new_token]
        daemons["GW-B"].set_token(new_token)
        daemons["GW-B"].reload()
        T.check(h.wait_until(lambda: h.timeline_types(reg, viewer, "GW-B").count("sim_changed") > before, WAIT),
                "found + new token: the waiting event is accepted (cellprovd reloaded its token file)")

        for d in daemons.values():
            d.stop()
        status = reg.stop()
        T.check(status == 0, f"cellprov-registry exits 0 on SIGTERM ({status})")
        log = reg.log_text()
        T.check("listening on" in log, "the registry logged 'listening on'")
        leaked = h.leaks_in(log, h.secrets_of(*all_ids))
        T.check(not leaked, f"no identifier digits in the registry's log ({len(leaked)} leaked)")
        T.check(not h.leaks_in(log, all_tokens), "no token in the registry's log")
    except Exception as e:   # a harness failure (a process did not start) is a test failure, with its reason
        T.check(False, f"unexpected: {type(e).__name__}: {e}")
    finally:
        for p in procs:
            p.stop()
        if reg:
            reg.kill()
        if pg:
            pg.stop()
        if T.failed and reg:
            print("--- registry log (tail) ---\n" + reg.log_text()[-4000:])
        shutil.rmtree(work, ignore_errors=True)
    T.finish()


if __name__ == "__main__":
    main()
