#!/usr/bin/env python3
# registry-suite: security
"""The registry's security model, black box (issue 9, "Security"), against a registry on SQLite:

- no token -> 401 on the device API and the operator API; an unknown token -> 401;
- a device token for another serial -> 403 (nothing stored); a device token posting `manufactured` -> 403; a
  station token posting a field event -> 403; device and station tokens on the operator API -> refused;
- a viewer cannot reveal identifiers, mark a unit lost or found, or export units.csv (403; nothing changes); an
  admin can (the export and a reveal carry the digits; every other answer masks them);
- the device API's answers: repeat -> 409, undecodable or unknown type -> 400/422, over 64 KiB -> 413;
- the pages: sign in with a token gives an HttpOnly, SameSite=Strict session cookie; every POST form found by
  crawling the pages carries a CSRF field, and is refused without it, with a wrong one, or without the session;
  with it, it works (mark lost from the unit page);
- logs: no identifier digits and no token in the registry's stderr, nor in the journal when run the way systemd
  runs it (JOURNAL_STREAM, a real systemd-journald as in Tests/journald), whose entries carry MESSAGE_IDs.
Exit status: 0 passed (or skipped, SKIP: reason), 1 failed.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through harness)
import pages  # noqa: E402

T = blackbox.Checks("registry security")


def skip(reason):
    blackbox.skip("registry security", reason)


def refused(status):
    return status in (401, 403)


def api_checks(reg, tok, ids, all_ids):
    admin, viewer, station, d1, d2 = tok["admin"], tok["viewer"], tok["station"], tok["GW-S1"], tok["GW-S2"]
    imei1, imsi1, iccid1 = ids["S1"]
    # seed
    for serial, key, t in (("GW-S1", "S1", d1), ("GW-S2", "S2", d2)):
        r = reg.post_event(t, h.event(serial, "/dev/ttyS1", "enrolled", 1, *ids[key]))
        T.check(r.status == 201, f"{serial}'s own enrolled event: 201 ({r})")

    # no token, unknown token
    ev = h.event("GW-S1", "/dev/ttyS1", "sim_changed", 2, imei1, *ids["S1b"][1:], previous={"imei": imei1})
    for label, t in (("no token", None), ("an unknown token", "cpd_" + "A" * 43), ("a malformed header", "x")):
        r = reg.post_event(t, ev)
        T.check(r.status == 401, f"POST /v1/enrollments with {label}: 401 ({r.status})")
        for path in ("/v1/units?q=GW-S1", "/v1/flags", "/v1/units/GW-S1", "/v1/units.csv"):
            r = reg.request("GET", path, token=t)
            T.check(r.status == 401, f"GET {path} with {label}: 401 ({r.status})")
        r = reg.request("POST", "/v1/units/GW-S1/lost", token=t, body={})
        T.check(r.status == 401, f"POST /v1/units/GW-S1/lost with {label}: 401 ({r.status})")

    # a device token for another serial
    before = h.timeline_types(reg, admin, "GW-S2")
    r = reg.post_event(d1, h.event("GW-S2", "/dev/ttyS1", "enrolled", 2, *ids["S2"]))
    T.check(r.status == 403, f"GW-S1's token posting for GW-S2: 403 ({r.status})")
    T.check(h.timeline_types(reg, admin, "GW-S2") == before, "nothing stored for GW-S2")
    T.check(not h.leaks_in(r.text, h.secrets_of(*all_ids)), "the 403 answer echoes no identifier")
    # device/station roles
    r = reg.post_event(d1, h.event("GW-S1", "factory", "manufactured", 1, *ids["S1"]))
    T.check(r.status == 403, f"a device token posting manufactured: 403 ({r.status})")
    r = reg.post_event(station, h.event("GW-S1", "/dev/ttyS1", "enrolled", 3, *ids["S1"]))
    T.check(r.status == 403, f"a station token posting a field event: 403 ({r.status})")
    r = reg.post_event(station, h.event("GW-S1", "factory", "manufactured", 1, *ids["S1"]))
    T.check(r.status == 201, f"a station token posting manufactured for any serial: 201 ({r.status})")
    for label, t in (("device", d1), ("station", station)):
        r = reg.units(t, "GW-S1")
        T.check(refused(r.status), f"a {label} token on the operator API: refused ({r.status})")
    # missing device.serial: the token's serial
    ev2 = h.event("GW-S1", "/dev/ttyS2", "enrolled", 1, *ids["S1c"])
    del ev2["device"]["serial"]
    r = reg.post_event(d1, ev2)
    T.check(r.status == 201, f"no device.serial with a device token: stored as the token's serial ({r.status})")
    r = reg.units(admin, ids["S1c"][0])
    T.check(r.status == 200 and [u.get("serial") for u in r.json().get("units", [])] == ["GW-S1"],
            "... and found under GW-S1")

    # the device API's answers
    r = reg.post_event(d1, ev2)
    T.check(r.status == 409, f"a repeated event_id: 409 ({r.status})")
    r = reg.request("POST", "/v1/enrollments", token=d1, raw=b'{"event_id": "not json',
                    headers={"Content-Type": "application/json"})
    T.check(r.status in (400, 422), f"an undecodable body: 400/422 ({r.status})")
    bad = h.event("GW-S1", "/dev/ttyS1", "teleported", 5, *ids["S1"])
    r = reg.post_event(d1, bad)
    T.check(r.status in (400, 422), f"an unknown event type: 400/422 ({r.status})")
    big = h.event("GW-S1", "/dev/ttyS1", "enrolled", 6, *ids["S1"])
    big["problems"] = [{"code": "garbage", "field": "modem", "severity": "warning", "message": "x" * 1000}] * 80
    r = reg.post_event(d1, big)
    T.check(r.status == 413, f"a body over 64 KiB: 413 ({r.status})")

    # masking, reveal, lost/found, export by role
    for label, t in (("viewer", viewer), ("admin", admin)):
        r = reg.unit(t, "GW-S1")
        T.check(r.status == 200 and not h.leaks_in(r.text, h.secrets_of(imei1, imsi1, iccid1)),
                f"GET /v1/units/GW-S1 as {label} masks identifiers")
        r = reg.units(t, imei1)
        T.check(r.status == 200 and not h.leaks_in(r.text, h.secrets_of(imei1, imsi1, iccid1)),
                f"GET /v1/units?q=<IMEI> as {label} masks identifiers")
    r = reg.unit(admin, "GW-S1")
    T.check("TAC 35693803" in r.text or "35693803" in r.text, "the masked IMEI still shows its TAC")
    r = reg.unit(viewer, "GW-S1", reveal=True)
    T.check(r.status == 403, f"viewer reveal=true on a unit: 403 ({r.status})")
    T.check(not h.leaks_in(r.text, [imei1]), "... and no digits in the refusal")
    r = reg.units(viewer, imei1, reveal=True)
    T.check(r.status == 403, f"viewer reveal=true on a search: 403 ({r.status})")
    r = reg.unit(admin, "GW-S1", reveal=True)
    T.check(r.status == 200 and imei1 in r.text, f"admin reveal=true shows the IMEI ({r.status})")
    r = reg.request("GET", "/v1/audit", token=admin)
    T.check(r.status == 200 and "reveal" in r.text and "root-admin" in r.text and "GW-S1" in r.text,
            f"the reveal is in the audit log (who, which unit), readable by admins ({r.status})")
    r = reg.request("GET", "/v1/audit", token=viewer)
    T.check(r.status == 403, f"viewer GET /v1/audit: 403 ({r.status})")
    r = reg.request("POST", "/v1/units/GW-S1/lost", token=viewer, body={"note": "x"})
    T.check(r.status == 403, f"viewer marking a unit lost: 403 ({r.status})")
    r = reg.post_event(d1, h.event("GW-S1", "/dev/ttyS3", "enrolled", 1, *ids["S1d"]))
    T.check(r.status == 201, "... and the unit is not lost (its token still works)")
    r = reg.request("POST", "/v1/units/GW-S1/found", token=viewer, body={})
    T.check(r.status == 403, f"viewer marking a unit found: 403 ({r.status})")
    r = reg.request("GET", "/v1/units.csv", token=viewer)
    T.check(r.status == 403, f"viewer GET /v1/units.csv: 403 ({r.status})")
    T.check(imei1 not in r.text, "... with no identifier")
    r = reg.request("GET", "/v1/units.csv", token=admin)
    T.check(r.status == 200 and "GW-S1" in r.text and imei1 in r.text,
            f"admin GET /v1/units.csv: 200 with serials and identifiers ({r.status})")
    r = reg.request("POST", "/v1/flags/1/resolve", token=viewer, body={"note": "x"})
    T.check(refused(r.status) or r.status == 404, f"viewer resolving a flag: refused ({r.status})")


def euicc_checks(reg, tok, ids, eid):
    """An eUICC unit: enrolled, then a remote profile switch on the same card. Found by its EID, the EID masked in
    every answer but an admin's reveal, and no iccid_moved (nor any flag) for a profile switch. The EID is in the
    leak scans of the logs and the journal (main adds it to all_ids)."""
    admin, viewer, d2 = tok["admin"], tok["viewer"], tok["GW-S2"]
    imei, imsi, iccid = ids["E"]
    _, imsi2, iccid2 = ids["E2"]
    r = reg.post_event(d2, h.event("GW-S2", "/dev/ttyE1", "enrolled", 1, imei, imsi, iccid, eid=eid, sim_slot=1))
    T.check(r.status == 201, f"an eUICC unit's enrolled event with its EID: 201 ({r.status})")
    r = reg.post_event(d2, h.event("GW-S2", "/dev/ttyE1", "profile_switched", 2, imei, imsi2, iccid2, eid=eid,
                                   sim_slot=1, previous={"imei": imei, "imsi": imsi, "iccid": iccid, "eid": eid}))
    T.check(r.status == 201, f"a profile switch on the same EID: 201 ({r.status})")
    r = reg.units(viewer, eid)
    T.check(r.status == 200 and [u.get("serial") for u in r.json().get("units", [])] == ["GW-S2"],
            f"GET /v1/units?q=EID finds the unit ({r.status})")
    T.check(not h.leaks_in(r.text, h.secrets_of(eid, imei, imsi2, iccid2)) and "EID(89049032, ref " in r.text,
            "the search answer shows the EID masked")
    r = reg.unit(admin, "GW-S2", reveal=True)
    T.check(r.status == 200 and eid in r.text, "an admin's reveal shows the EID")
    kinds = [f.get("kind") for f in reg.flags(admin) if f.get("serial") == "GW-S2"]
    T.check("iccid_moved" not in kinds and "euicc_moved" not in kinds, f"no flag for a profile switch ({kinds})")


def csrf_checks(reg, admin, viewer):
    b = pages.Browser(reg.port)
    status, form = b.sign_in(admin)
    if not T.check(form is not None, f"the first page (or its redirect) offers a sign-in form ({status})"):
        return
    T.check(status in (200, 302, 303) and bool(b.cookies), f"sign in with the admin token: session cookie ({status})")
    session_cookies = [c for c in b.set_cookie_headers if "max-age=0" not in c.lower()]
    T.check(bool(session_cookies) and all("httponly" in c.lower() for c in session_cookies),
            "the session cookie is HttpOnly")
    T.check(bool(session_cookies) and all("samesite=strict" in c.lower() for c in session_cookies),
            "the session cookie is SameSite=Strict")
    T.check(not any(admin in c for c in b.set_cookie_headers), "the cookie does not carry the token")
    bad = pages.Browser(reg.port)
    status, _, _ = bad.submit(form, bad.sign_in_values(form, "cpo_" + "B" * 43))
    T.check(not bad.cookies or status >= 400, f"sign in with a wrong token: no session ({status})")

    # crawl: the first page, a search, the unit pages and flags reached by links
    seen, queue, post_forms = set(), ["/", "/?q=GW-S1", "/units/GW-S1", "/flags"], {}
    while queue and len(seen) < 30:
        page = queue.pop(0)
        u = urllib.parse.urlsplit(page)
        if u.netloc and u.netloc != f"127.0.0.1:{reg.port}":
            continue
        path = u.path + (("?" + u.query) if u.query else "")
        if path in seen or any(w in path.lower() for w in ("logout", "sign-out", "signout", ".csv", "static")):
            continue
        seen.add(path)
        status, text, _ = b.get(path)
        if status != 200:
            continue
        forms, links = pages.parse(path, text)
        for f in forms:
            if f.method == "post":
                post_forms.setdefault(urllib.parse.urlsplit(f.action).path, f)
            elif f.method == "get" and f.fields():
                q = urllib.parse.urlencode([(n, "GW-S1" if not v else v) for n, v in f.fields()])
                queue.append(urllib.parse.urlsplit(f.action).path + "?" + q)
        queue.extend(links)
    print(f"     crawled {len(seen)} pages, {len(post_forms)} POST forms: {sorted(post_forms)}")
    T.check(any("lost" in a for a in post_forms), "the unit page has a mark-lost form (admin)")
    for action, f in sorted(post_forms.items()):
        names = f.csrf_names()
        if not T.check(bool(names), f"form POST {action} carries a CSRF field"):
            continue
        base = [(n, v if v else "note") for n, v in f.fields() if n not in names]
        status, _, _ = b.submit(f, base)
        T.check(400 <= status < 500, f"POST {action} without its CSRF token: refused ({status})")
        status, _, _ = b.submit(f, base + [(n, "0" * 43) for n in names])
        T.check(400 <= status < 500, f"POST {action} with a wrong CSRF token: refused ({status})")
        status, _, location = b.submit(f, base + [(n, v) for n, v in f.fields() if n in names], cookies=False)
        to = urllib.parse.urlsplit(location or "").path
        T.check(status in (401, 403) or (300 <= status < 400 and (to in ("/", "/signin") or "sign" in to)),
                f"POST {action} with the CSRF token but no session: refused or sent to sign in ({status} {to})")
    lost = [f for a, f in post_forms.items() if "lost" in a and "GW-S1" in a]
    if lost:
        d = reg._tok_s1
        f = lost[0]
        T.check(reg.post_event(d, h.event("GW-S1", "/dev/ttyS4", "enrolled", 1, *reg._ids_s1e)).status == 201,
                "GW-S1 still accepted: the refused form posts changed nothing")
        status, _, _ = b.submit(f, [(n, v if v else "note") for n, v in f.fields()])
        T.check(status in (200, 302, 303), f"the mark-lost form with its CSRF token works ({status})")
        r = reg.post_event(d, h.event("GW-S1", "/dev/ttyS5", "enrolled", 1, *reg._ids_s1e))
        T.check(r.status == 403, f"... GW-S1 is lost: its token gets 403 ({r.status})")
        T.check(bool(h.flags_of(reg, admin, "lost_unit_seen", "GW-S1")), "... and lost_unit_seen is raised")
    # a viewer's pages show no lost form
    v = pages.Browser(reg.port)
    _, text, _ = v.get("/")
    forms, _ = pages.parse("/", text)
    if forms:
        f = [f for f in forms if f.method == "post"][0]
        tn = [n for n, t, val in f.inputs if t == "password" or (n and "token" in n.lower())]
        if tn:
            v.submit(f, [(n, val) for n, val in f.fields() if n != tn[0]] + [(tn[0], viewer)])
            _, text, _ = v.get("/units/GW-S2")
            vforms, _ = pages.parse("/units/GW-S2", text)
            T.check("GW-S2" in text and v.cookies, "a viewer signs in and sees a unit page")
            T.check(not any("lost" in x.action for x in vforms if x.method == "post"),
                    "a viewer's unit page has no mark-lost form")


def revoke_checks(reg, admin):
    """`cellprov-registry operator revoke` while the server runs: the token is refused at once, the command says
    so, a second revoke fails, and the audit log records who did it."""
    leaver = reg.operator_add("leaver", "admin")
    T.check(reg.request("GET", "/v1/flags", token=leaver).status == 200, "revoke: the token works before")
    out = reg._cli("operator", "revoke", "leaver")  # raises unless it exits 0 with one line on stdout
    T.check(out == "revoked", f"revoke: exit 0, prints revoked ({out!r})")
    T.check(reg.request("GET", "/v1/flags", token=leaver).status == 401, "revoke: the token is refused at once (401)")
    again = subprocess.run([h.REGISTRY, "operator", "revoke", "leaver", "--database", reg.database],
                           capture_output=True, text=True, timeout=60)
    T.check(again.returncode == 1 and "no valid token" in again.stderr,
            f"revoke: twice: exit 1, said why ({again.returncode} {again.stderr!r})")
    audit = reg.request("GET", "/v1/audit", token=admin)
    entries = audit.json().get("audit", []) if audit.status == 200 else []
    T.check(any(e.get("action") == "revoke_operator" and "leaver" in (e.get("detail") or "") for e in entries),
            f"revoke: in the audit log ({audit.body[:300]!r})")


def journal_checks(reg, database, work, tokens, ids, all_ids):
    """The registry run as systemd runs it: stderr on a journal stream, JOURNAL_STREAM set."""
    if os.geteuid() != 0 or not os.path.exists(blackbox.JOURNALD) or not shutil.which("journalctl"):
        print("     (journal check skipped: needs root and systemd-journald; the stderr log was scanned)")
        return
    started, listening = blackbox.start_journald()
    if not listening:
        print("     (journal check skipped: systemd-journald did not start here)")
        return
    proc = None
    try:
        port = h.free_port()
        s = blackbox.stream_to_journal("cellprov-registry")
        proc = subprocess.Popen([h.REGISTRY, "serve", "--listen", f"127.0.0.1:{port}", "--database", database],
                                stdout=s.fileno(), stderr=s.fileno(), env=blackbox.journal_environment(s))
        s.close()

        def entries():
            return blackbox.journal_entries(proc.pid)
        T.check(bool(h.wait_until(lambda: any("listening on" in e.get("MESSAGE", "") for e in entries()), 30)),
                "under JOURNAL_STREAM the registry logs 'listening on' to the journal")
        j = h.Registry(database, work, "journal")
        j.port = port
        imei, imsi, iccid = ids["J"]
        j.post_event(tokens["GW-S2"], h.event("GW-S2", "/dev/ttyS2", "enrolled", 1, imei, imsi, iccid))
        j.post_event(tokens["GW-S2"], h.event("GW-S1", "/dev/ttyS2", "enrolled", 1, imei, imsi, iccid))
        j.units(tokens["admin"], imei, reveal=True)
        j.units(tokens["viewer"], iccid, reveal=True)
        j.request("GET", "/v1/units?q=" + imsi, token="cpo_" + "C" * 43)
        proc.send_signal(signal.SIGTERM)
        T.check(proc.wait(timeout=20) == 0, "journal run: exits 0 on SIGTERM")
        time.sleep(0.3)
        es = entries()
        T.check(len(es) > 0 and any(e.get("MESSAGE_ID") for e in es),
                f"journal entries carry MESSAGE_IDs ({len(es)} entries)")
        blob = json.dumps(es)
        T.check(not h.leaks_in(blob, h.secrets_of(*all_ids)), "no identifier digits in any journal field")
        T.check(not h.leaks_in(blob, list(tokens.values())), "no token in any journal field")
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        if started:
            started.terminate()
            started.wait()


def main():
    h.require_registry(skip)
    work = tempfile.mkdtemp(prefix="cellprov-regsec-")
    reg = None
    try:
        database = f"sqlite://{work}/registry.db"
        reg = h.Registry(database, work).start()
        tokens = {"admin": reg.operator_add("root-admin", "admin"), "viewer": reg.operator_add("support", "viewer"),
                  "station": reg.station_add("line-2"), "GW-S1": reg.device_add("GW-S1"),
                  "GW-S2": reg.device_add("GW-S2")}
        ids = {k: (h.make_imei(), h.make_imsi(), h.make_iccid()) for k in ("S1", "S1b", "S1c", "S1d", "S1e", "S2",
                                                                          "J", "E", "E2")}
        eid = h.make_eid()
        all_ids = [v for t in ids.values() for v in t] + [eid]
        reg._tok_s1, reg._ids_s1e = tokens["GW-S1"], ids["S1e"]
        api_checks(reg, tokens, ids, all_ids)
        euicc_checks(reg, tokens, ids, eid)
        csrf_checks(reg, tokens["admin"], tokens["viewer"])
        revoke_checks(reg, tokens["admin"])
        status = reg.stop()
        T.check(status == 0, f"exits 0 on SIGTERM ({status})")
        log = reg.log_text()
        T.check(not h.leaks_in(log, h.secrets_of(*all_ids)), "no identifier digits in the registry's stderr")
        T.check(not h.leaks_in(log, list(tokens.values())), "no token in the registry's stderr")
        T.check(not re.search(r"\b\d{15}\b", log), "no 15-digit run at all in the registry's stderr")
        journal_checks(reg, database, work, tokens, ids, all_ids)
    except Exception as e:
        T.check(False, f"unexpected: {type(e).__name__}: {e}")
    finally:
        h.clean_up(T, reg, work)
    T.finish()


if __name__ == "__main__":
    main()
