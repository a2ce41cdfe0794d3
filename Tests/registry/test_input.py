#!/usr/bin/env python3
# registry-suite: input
"""The registry's input rules and edges, black box (issue 19 rows 3, 4, 5, 6, 8 and 9), against a registry on SQLite:

- the device API's field rules (docs/enrollment-api.yaml, "Input rules"): an IMEI that is a spreadsheet formula, a
  slot key with U+202E, an occurred_at in year 99999 or 0000, an event_id "dup", a key repeated (at the top and
  inside identity), an Idempotency-Key other than the event_id: each 422 naming the field (never echoing the
  value), nothing stored; the same rule for a station's `manufactured` record; the valid event beside them: 201;
- the API's edges: a wrong method -> 405 with `Allow` and the JSON error body; limit=abc and status=bogus -> 400
  naming the parameter; reveal=on -> 400 for an admin and for a viewer alike; a 600-character bearer token ->
  401 "malformed token" (operator and device API);
- the CSV export's neutralisation by first Unicode scalar: a module model `=` + U+0301 (accepted by the rules), and
  a leading tab and CR (refused by the rules today, written to the database as an older registry would have stored
  them), are exported with a leading `'`;
- sessions through the real pages: a signed-out cookie replayed is no session (no page, no form post); a session
  of an operator whose token is revoked and re-issued (`cellprov-registry operator revoke` / `operator add`) stays
  dead, and its form posts change nothing; the new token signs in;
- a lost unit retrying: several refused attempts give one `device_refused` audit row in the hour and one
  `lost_unit_seen` flag;
- logs: no identifier digits, no token, no refused value in the registry's stderr.
Exit status: 0 passed (or skipped, SKIP: reason), 1 failed.
"""
import csv
import io
import json
import os
import sqlite3
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import blackbox  # noqa: E402  (Tests/pylib, on the path through harness)
import pages  # noqa: E402

T = blackbox.Checks("registry input")
FORMULA_IMEI = "-2+3+cmd|' /C calc'!A0"


def skip(reason):
    blackbox.skip("registry input", reason)


def error_of(r):
    try:
        return r.json().get("error") or ""
    except (ValueError, AttributeError):
        return ""


def post_raw(reg, token, body_text, key):
    return reg.request("POST", "/v1/enrollments", token=token, raw=body_text.encode(),
                       headers={"Content-Type": "application/json", "Idempotency-Key": key,
                                "User-Agent": "cellprovd/0.1.0"})


# ---------------------------------------------------------------------------------------------------------------

def field_rule_checks(reg, tok, ids):
    d, station, admin = tok["GW-I1"], tok["station"], tok["admin"]
    imei, imsi, iccid = ids["I1"]
    seq = [1]

    def valid():
        seq[0] += 1
        return h.event("GW-I1", "usb-1", "enrolled", seq[0], imei, imsi, iccid)

    r = reg.post_event(d, h.event("GW-I1", "usb-1", "enrolled", 1, imei, imsi, iccid))
    T.check(r.status == 201, f"the valid event beside the refused ones: 201 ({r})")
    stored = h.timeline_types(reg, admin, "GW-I1")

    def refused(label, field, r, value=None):
        err = error_of(r)
        T.check(r.status == 422 and err.startswith(field + ":"),
                f"{label}: 422 naming {field} ({r.status} {err!r})")
        if value:
            T.check(value not in r.text, f"... the answer does not echo the value ({r.text[:120]!r})")

    ev = valid()
    ev["identity"]["imei"] = FORMULA_IMEI
    refused("an IMEI -2+3+cmd|' /C calc'!A0", "identity.imei", reg.post_event(d, ev), "calc")

    ev = valid()
    ev["module"]["slot"] = "usb-1\u202egnp.exe"
    refused("a slot key with U+202E", "module.slot", reg.post_event(d, ev))

    for when in ("99999-01-01T00:00:00Z", "0000-01-01T00:00:00Z"):
        ev = valid()
        ev["occurred_at"] = when
        refused(f"occurred_at {when}", "occurred_at", reg.post_event(d, ev))

    ev = valid()
    ev["event_id"] = "dup"
    refused('event_id "dup"', "event_id", reg.post_event(d, ev))

    ev = valid()
    text = json.dumps(ev)
    dup_top = text.replace('"type": "enrolled"', '"type": "enrolled", "type": "sim_removed"', 1)
    refused("a repeated key (type)", "type", post_raw(reg, d, dup_top, ev["event_id"]))
    other = h.make_imei()
    dup_nested = text.replace(f'"imei": "{imei}"', f'"imei": "{imei}", "imei": "{other}"', 1)
    refused("a repeated key inside identity (imei)", "identity.imei", post_raw(reg, d, dup_nested, ev["event_id"]))

    ev = valid()
    r = reg.request("POST", "/v1/enrollments", token=d, body=ev,
                    headers={"Idempotency-Key": str(uuid.uuid4()), "User-Agent": "cellprovd/0.1.0"})
    refused("an Idempotency-Key other than event_id", "Idempotency-Key", r)

    # The station API holds a record to the same rules.
    rec = h.event("GW-I1", "factory", "manufactured", 1, imei, imsi, iccid)
    rec["identity"]["imei"] = FORMULA_IMEI
    refused("a station's record with the formula IMEI", "identity.imei", reg.post_event(station, rec), "calc")

    T.check(h.timeline_types(reg, admin, "GW-I1") == stored,
            "nothing of the refused events is stored (the timeline is as before them)")
    r = reg.units(admin, "GW-I1")
    T.check(r.status == 200 and "calc" not in r.text and "\u202e" not in r.text, "no refused value in the registry")
    r = reg.post_event(d, valid())
    T.check(r.status == 201, f"the device's next valid event: 201 ({r.status})")


def api_edge_checks(reg, tok):
    admin, viewer, d = tok["admin"], tok["viewer"], tok["GW-I1"]
    for method, path, token, allowed in (("DELETE", "/v1/flags", admin, "GET"),
                                         ("GET", "/v1/enrollments", d, "POST"),
                                         ("PUT", "/v1/units/GW-I1/lost", admin, "POST")):
        r = reg.request(method, path, token=token)
        allow = r.headers.get("allow", "")
        T.check(r.status == 405 and allowed in [a.strip() for a in allow.split(",")],
                f"{method} {path}: 405 with Allow: {allowed} ({r.status}, Allow {allow!r})")
        T.check(r.headers.get("content-type", "").startswith("application/json") and bool(error_of(r)),
                f"... and the JSON error body ({r.body[:80]!r})")

    for path in ("/v1/audit?limit=5", "/v1/flags?status=all"):
        r = reg.request("GET", path, token=admin)
        T.check(r.status == 200, f"GET {path}: 200 ({r.status})")
    for path, name in (("/v1/audit?limit=abc", "limit"), ("/v1/audit?limit=0", "limit"),
                       ("/v1/flags?status=bogus", "status")):
        r = reg.request("GET", path, token=admin)
        T.check(r.status == 400 and error_of(r).startswith(name), f"GET {path}: 400 naming {name} "
                f"({r.status} {error_of(r)!r})")

    for role, token in (("admin", admin), ("viewer", viewer)):
        for path in ("/v1/units/GW-I1?reveal=on", "/v1/units?q=GW-I1&reveal=on"):
            r = reg.request("GET", path, token=token)
            T.check(r.status == 400 and error_of(r).startswith("reveal"),
                    f"{role} GET {path}: 400 naming reveal ({r.status} {error_of(r)!r})")
    r = reg.unit(admin, "GW-I1", reveal=True)
    T.check(r.status == 200, f"admin reveal=true: 200 ({r.status})")

    long_token = "cpo_" + "A" * 596
    for method, path in (("GET", "/v1/flags"), ("POST", "/v1/enrollments")):
        r = reg.request(method, path, token=long_token, body={} if method == "POST" else None)
        T.check(r.status == 401 and error_of(r) == "malformed token",
                f"{method} {path} with a 600-character token: 401 malformed token ({r.status} {error_of(r)!r})")


def csv_checks(reg, tok, ids, db_path):
    """Module models a spreadsheet would run as formulas: the export prefixes them with a quote."""
    admin = tok["admin"]
    imei, imsi, iccid = ids["I2"]
    ev = h.event("GW-I2", "usb-1", "enrolled", 1, imei, imsi, iccid)
    del ev["module"]["manufacturer"]
    ev["module"]["model"] = "=\u0301HYPERLINK(\"x\")"
    r = reg.post_event(tok["GW-I2"], ev)
    T.check(r.status == 201, f"a model '=' + U+0301 passes the input rules: 201 ({r.status} {error_of(r)!r})")
    ev = h.event("GW-I3", "usb-1", "enrolled", 1, *ids["I3"])
    ev["module"]["model"] = "\tcmd"
    r = reg.post_event(tok["GW-I3"], ev)
    T.check(r.status == 422 and error_of(r).startswith("module.model"),
            f"a model starting with a tab is refused by the input rules: 422 ({r.status} {error_of(r)!r})")
    r = reg.post_event(tok["GW-I3"], h.event("GW-I3", "usb-1", "enrolled", 1, *ids["I3"]))
    T.check(r.status == 201, f"GW-I3 enrolled ({r.status})")
    r = reg.post_event(tok["GW-I4"], h.event("GW-I4", "usb-1", "enrolled", 1, *ids["I4"]))
    T.check(r.status == 201, f"GW-I4 enrolled ({r.status})")
    # Rows an older registry stored before the input rules: written to the database directly.
    with sqlite3.connect(db_path, timeout=30) as db:
        db.execute("UPDATE slots SET manufacturer = NULL, model = ? WHERE serial = 'GW-I3'", ("\t=1+2",))
        db.execute("UPDATE slots SET manufacturer = NULL, model = ? WHERE serial = 'GW-I4'", ("\r@SUM(1)",))
    r = reg.request("GET", "/v1/units.csv", token=admin)
    if not T.check(r.status == 200, f"admin GET /v1/units.csv: 200 ({r.status})"):
        return
    rows = list(csv.DictReader(io.StringIO(r.body.decode("utf-8"), newline="")))
    module = {row["serial"]: row["module"] for row in rows if row.get("origin") == "device"}
    for serial, expected, label in (("GW-I2", "'=\u0301HYPERLINK(\"x\")", "'=' + U+0301"),
                                    ("GW-I3", "'\t=1+2", "a leading tab"),
                                    ("GW-I4", "'\r@SUM(1)", "a leading CR")):
        T.check(module.get(serial) == expected,
                f"the export neutralises a model starting with {label} ({module.get(serial)!r})")
    T.check(module.get("GW-I1", "").startswith("Quectel"), "an ordinary module cell is left as is")


def sign_in(reg, token):
    b = pages.Browser(reg.port)
    b.sign_in(token)
    return b


def signed_in(b, path="/flags"):
    """(signed in, page text): a signed-in page has the sign-out form."""
    status, text, _ = b.get(path)
    forms, _ = pages.parse(path, text)
    return status == 200 and any(f.action.endswith("/signout") for f in forms), text


def form_on(b, path, action_part):
    _, text, _ = b.get(path)
    forms, _ = pages.parse(path, text)
    found = [f for f in forms if action_part in f.action and f.method == "post"]
    return found[0] if found else None


def replay(cookies, reg):
    b = pages.Browser(reg.port)
    b.cookies = dict(cookies)
    return b


def session_checks(reg, tok, ids):
    admin = tok["admin"]
    # Sign-out, then the cookie replayed.
    b = sign_in(reg, admin)
    ok, _ = signed_in(b)
    T.check(ok, "sign in through the page: a session")
    old = dict(b.cookies)
    lost_form = form_on(b, "/units/GW-I1", "/lost")
    signout = form_on(b, "/flags", "/signout")
    if not T.check(signout is not None and lost_form is not None, "the pages have sign-out and mark-lost forms"):
        return
    status, _, _ = b.submit(signout, signout.fields())
    T.check(status in (200, 302, 303), f"sign out ({status})")
    again = replay(old, reg)
    ok, text = signed_in(again)
    T.check(not ok and 'action="/signin"' in text, "the signed-out cookie replayed: no session, the sign-in page")
    status, _, to = again.submit(lost_form, [(n, v if v else "x") for n, v in lost_form.fields()])
    T.check(status >= 300 and "/units/" not in (to or ""), f"... its mark-lost form post is not done ({status} {to})")
    r = reg.post_event(tok["GW-I1"], h.event("GW-I1", "usb-2", "enrolled", 1, *ids["I1b"]))
    T.check(r.status == 201, f"... GW-I1 is not lost (its token still works: {r.status})")

    # A re-issued token does not revive the old session.
    bob1 = reg.operator_add("bob", "admin")
    b = sign_in(reg, bob1)
    ok, _ = signed_in(b)
    T.check(ok, "bob signs in")
    old = dict(b.cookies)
    lost_form = form_on(b, "/units/GW-I1", "/lost")
    out = reg._cli("operator", "revoke", "bob")
    T.check(out == "revoked", f"operator revoke bob ({out!r})")
    bob2 = reg.operator_add("bob", "admin")
    T.check(bob2 != bob1, "operator add bob again: a new token")
    stale = replay(old, reg)
    ok, _ = signed_in(stale)
    T.check(not ok, "bob's old session cookie after revoke + re-issue: no session")
    if lost_form is not None:
        status, _, to = stale.submit(lost_form, [(n, v if v else "x") for n, v in lost_form.fields()])
        T.check(status >= 300 and "/units/" not in (to or ""),
                f"... its mark-lost form post is not done ({status} {to})")
    r = reg.post_event(tok["GW-I1"], h.event("GW-I1", "usb-3", "enrolled", 1, *ids["I1c"]))
    T.check(r.status == 201, f"... GW-I1 is not lost ({r.status})")
    audit = reg.request("GET", "/v1/audit", token=admin).json().get("audit", [])
    T.check(not any(e.get("action") == "mark_lost" and e.get("serial") == "GW-I1" for e in audit),
            "... no mark_lost in the audit log")
    fresh = sign_in(reg, bob2)
    ok, _ = signed_in(fresh)
    T.check(ok, "the re-issued token signs in (a new session)")
    T.check(fresh.cookies != old, "... with another cookie")


def lost_audit_checks(reg, tok, ids):
    admin, d = tok["admin"], tok["GW-L1"]
    imei, imsi, iccid = ids["L1"]
    r = reg.post_event(d, h.event("GW-L1", "usb-1", "enrolled", 1, imei, imsi, iccid))
    T.check(r.status == 201, f"GW-L1 enrolled ({r.status})")
    r = reg.request("POST", "/v1/units/GW-L1/lost", token=admin, body={"note": "stolen from the van"})
    T.check(r.status == 200, f"GW-L1 marked lost ({r.status})")
    statuses = [reg.post_event(d, h.event("GW-L1", "usb-1", "sim_removed", n, imei, None, None)).status
                for n in range(2, 8)]
    T.check(statuses == [403] * 6, f"the lost unit's 6 attempts: 403 each ({statuses})")
    audit = reg.request("GET", "/v1/audit", token=admin).json().get("audit", [])
    refusals = [e for e in audit if e.get("action") == "device_refused" and e.get("serial") == "GW-L1"]
    T.check(len(refusals) == 1, f"6 refused attempts in the hour: one device_refused audit row ({len(refusals)})")
    flags = h.flags_of(reg, admin, "lost_unit_seen", "GW-L1")
    T.check(len(flags) == 1, f"... and one lost_unit_seen flag ({len(flags)})")


def main():
    h.require_registry(skip)
    work = tempfile.mkdtemp(prefix="cellprov-reginput-")
    reg = None
    try:
        db_path = os.path.join(work, "registry.db")
        reg = h.Registry(f"sqlite://{db_path}", work).start()
        tok = {"admin": reg.operator_add("root-admin", "admin"), "viewer": reg.operator_add("support", "viewer"),
               "station": reg.station_add("line-3")}
        for serial in ("GW-I1", "GW-I2", "GW-I3", "GW-I4", "GW-L1"):
            tok[serial] = reg.device_add(serial)
        ids = {k: (h.make_imei(), h.make_imsi(), h.make_iccid())
               for k in ("I1", "I1b", "I1c", "I2", "I3", "I4", "L1")}
        all_ids = [v for t in ids.values() for v in t]
        field_rule_checks(reg, tok, ids)
        api_edge_checks(reg, tok)
        csv_checks(reg, tok, ids, db_path)
        session_checks(reg, tok, ids)
        lost_audit_checks(reg, tok, ids)
        status = reg.stop()
        T.check(status == 0, f"exits 0 on SIGTERM ({status})")
        log = reg.log_text()
        T.check(not h.leaks_in(log, h.secrets_of(*all_ids)), "no identifier digits in the registry's stderr")
        T.check(not h.leaks_in(log, list(tok.values())), "no token in the registry's stderr")
        T.check("calc" not in log and "\u202e" not in log, "no refused value in the registry's stderr")
    except Exception as e:  # noqa: BLE001
        T.check(False, f"unexpected: {type(e).__name__}: {e}")
    finally:
        h.clean_up(T, reg, work)
    T.finish()


if __name__ == "__main__":
    main()
