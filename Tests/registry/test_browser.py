#!/usr/bin/env python3
# registry-suite: browser needs=selenium:selenium {bin}
"""cellprov-registry's pages in a real headless Chromium (Debian's chromium + chromium-driver, selenium).

Starts `cellprov-registry serve` on a fresh SQLite database on loopback, makes a device and an admin with the
executable, lets the device enroll over the real device API, then, in the browser: signs in with the admin token,
searches the unit by its IMEI, opens it, checks the timeline and that no identifier digits are on the page, marks
it lost, lets the device report again (403) and finds the `lost_unit_seen` flag on the flags page. Then two more
devices report a SIM moving from one to the other: the search by its IMSI lists both (current holder first, with
intervals), with a moment only the unit that held it then, whose page shows it as of that moment; the
affected-units page lists the three units by their module model (prefix), masked, with a CSV link. Screenshots of
each step go to a temp directory (printed); with --docs they are also copied to docs/images/.

    python3 Tests/registry/test_browser.py [BUILD_DIR] [--docs]      # BUILD_DIR: .build/debug

Exit status 0 on success, 1 on a failed check, 77 when selenium, chromium or chromedriver is missing and
CELLPROV_TEST_NO_SKIP is not set (then 1).
"""

import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import blackbox  # noqa: E402
import browser  # noqa: E402
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMEI = "490154203237518"
IMSI = "262011234567890"
ICCID = "8949020000123456788"
SERIAL = "GW-BROWSER-1"


def skip(reason):
    blackbox.skip("test_browser", reason, status=77)


webdriver, By = browser.require(skip)


assert blackbox.luhn_ok(IMEI) and blackbox.luhn_ok(ICCID)


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def event(kind, sequence, severity):
    return {
        "event_id": str(uuid.uuid4()), "type": kind, "sequence": sequence, "severity": severity,
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": {"serial": SERIAL},
        "module": {"slot": "usb-1-1.2", "manufacturer": "Quectel", "model": "EG25-G", "source": "at"},
        "identity": {"imei": IMEI, "imsi": IMSI, "iccid": ICCID}, "previous": None, "problems": [],
    }


# The SIM of the "as of a moment" walkthrough (docs/registry.md): in GW-BROWSER-2 from 1 November, taken out on
# 3 November at 09:00, in GW-BROWSER-3 from 09:30.
MOVED_IMSI = "262017777777771"
MOVED_ICCID = "8949020000777777778"
HISTORY = [  # (serial, IMEI, type, sequence, occurred_at, identity IMSI/ICCID or None, previous IMSI/ICCID or None)
    ("GW-BROWSER-2", "356938035643809", "enrolled", 1, "2026-11-01T08:00:00Z", True, False),
    ("GW-BROWSER-3", "352099001761481", "enrolled", 1, "2026-11-01T08:00:00Z", False, False),
    ("GW-BROWSER-3", "352099001761481", "sim_changed", 2, "2026-11-03T09:30:00Z", True, False),
    ("GW-BROWSER-2", "356938035643809", "sim_removed", 2, "2026-11-03T09:00:00Z", False, True),
]


assert all(blackbox.luhn_ok(n) for n in (IMEI, ICCID, MOVED_ICCID, "8949020000555555552"))
assert all(blackbox.luhn_ok(imei) for _, imei, *_ in HISTORY)


def history_event(serial, imei, kind, sequence, occurred, moved_sim, previous_moved):
    if kind == "sim_removed":
        identity = {"imei": imei}
    elif moved_sim:
        identity = {"imei": imei, "imsi": MOVED_IMSI, "iccid": MOVED_ICCID}
    else:
        identity = {"imei": imei, "imsi": "262015555555550", "iccid": "8949020000555555552"}
    previous = {"imei": imei, "imsi": MOVED_IMSI, "iccid": MOVED_ICCID} if previous_moved else None
    severity = "info" if kind == "enrolled" else "warning"
    return {
        "event_id": str(uuid.uuid4()), "type": kind, "sequence": sequence, "severity": severity,
        "occurred_at": occurred, "device": {"serial": serial},
        "module": {"slot": "usb-1-1.2", "manufacturer": "Quectel", "model": "EG25-G", "source": "at"},
        "identity": identity, "previous": previous, "problems": [],
    }


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    to_docs = "--docs" in sys.argv
    build = os.path.abspath(args[0] if args else os.path.join(ROOT, ".build", "debug"))
    harness.REGISTRY = os.path.join(build, "cellprov-registry")
    if not os.access(harness.REGISTRY, os.X_OK):
        print(f"test_browser: {harness.REGISTRY} not built (swift build --product cellprov-registry)",
              file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="cellprov-registry-browser-")
    shots = os.path.join(work, "screenshots")
    os.makedirs(shots)
    reg = harness.Registry("sqlite://" + os.path.join(work, "registry.db"), work)
    device = reg.device_add(SERIAL)
    history_tokens = {serial: reg.device_add(serial) for serial in ("GW-BROWSER-2", "GW-BROWSER-3")}
    admin = reg.operator_add("alice", "admin")
    driver = None
    status = 1
    try:
        reg.start()
        base = reg.base
        check(reg.post_event(device, event("enrolled", 1, "info")).status == 201,
              "the device's enrollment was not stored")

        driver = browser.chromium(webdriver, implicit_wait=5)

        def shot(name):
            driver.save_screenshot(os.path.join(shots, name + ".png"))

        # Sign in.
        driver.get(base + "/")
        shot("registry-signin")
        driver.find_element(By.ID, "token").send_keys(admin)
        browser.follow(driver, driver.find_element(By.ID, "signin"))
        check(driver.find_elements(By.ID, "q"), "no search box after sign-in")
        check("alice (admin)" in driver.find_element(By.ID, "operator").text, "the operator is not shown")
        # Search by IMEI.
        driver.find_element(By.ID, "q").send_keys(IMEI)
        browser.follow(driver, driver.find_element(By.ID, "search"))
        links = driver.find_elements(By.CSS_SELECTOR, "a.unit-link")
        check(len(links) == 1 and links[0].text == SERIAL, "the search by IMEI did not find the unit")
        shot("registry-search")
        # The unit, its timeline, masked identifiers.
        browser.follow(driver, links[0])
        check(driver.find_element(By.ID, "serial").text == SERIAL, "not the unit page")
        entries = driver.find_elements(By.CSS_SELECTOR, ".timeline-entry")
        check(len(entries) == 1 and "enrolled" in entries[0].text, "the timeline does not show the enrollment")
        source = driver.page_source
        for value in (IMEI, IMSI, ICCID):
            check(value not in source, "an identifier is shown unmasked")
        check("IMEI(TAC 49015420, ref " in source, "the masked IMEI is not shown")
        shot("registry-unit")
        # Mark lost (admin).
        driver.find_element(By.ID, "lost-note").send_keys("left in a taxi")
        browser.follow(driver, driver.find_element(By.ID, "mark-lost"))
        check("Marked lost by alice" in driver.find_element(By.ID, "lost-banner").text, "no lost banner")
        check(driver.find_elements(By.ID, "mark-found"), "no found button on a lost unit")
        # The lost unit reports again: refused, flagged.
        check(reg.post_event(device, event("sim_removed", 2, "warning")).status == 403, "the lost unit's token is not refused")
        driver.refresh()
        flags = driver.find_elements(By.CSS_SELECTOR, ".flag[data-kind='lost_unit_seen']")
        check(flags, "no lost_unit_seen flag on the unit page")
        shot("registry-unit-lost")
        browser.follow(driver, driver.find_element(By.ID, "nav-flags"))
        flags = driver.find_elements(By.CSS_SELECTOR, "tr.flag[data-kind='lost_unit_seen']")
        check(len(flags) == 1 and SERIAL in flags[0].text, "the flags page does not list lost_unit_seen")
        shot("registry-flags")
        # Every holder of a SIM, and the holder at a moment (issue 20): the SIM moved between two units.
        for serial, imei, kind, sequence, occurred, moved, previous in HISTORY:
            body = history_event(serial, imei, kind, sequence, occurred, moved, previous)
            check(reg.post_event(history_tokens[serial], body).status == 201, f"{serial}'s {kind} was not stored")
        browser.follow(driver, driver.find_element(By.ID, "nav-search"))
        driver.find_element(By.ID, "q").send_keys(MOVED_IMSI)
        browser.follow(driver, driver.find_element(By.ID, "search"))
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.unit-result")
        check([r.find_element(By.CSS_SELECTOR, "a.unit-link").text for r in rows] == ["GW-BROWSER-3", "GW-BROWSER-2"],
              "every holder, current first: not GW-BROWSER-3 then GW-BROWSER-2")
        check("until now (current holder)" in rows[0].text, "the current holder's interval is not open-ended")
        check("until 2026-11-03T09:00:00Z" in rows[1].text, "the former holder's interval does not end at the removal")
        check(MOVED_IMSI not in driver.find_element(By.ID, "results").get_attribute("outerHTML"),
              "the IMSI is shown unmasked in the results")
        shot("registry-holders")
        at = driver.find_element(By.ID, "at")
        at.clear()
        at.send_keys("2026-11-03T14:22:00Z")
        browser.follow(driver, driver.find_element(By.ID, "search"))
        links = driver.find_elements(By.CSS_SELECTOR, "a.unit-link")
        check([link.text for link in links] == ["GW-BROWSER-3"], "at 14:22 on 3 November: not GW-BROWSER-3 alone")
        check(driver.find_element(By.ID, "as-of").text == "2026-11-03T14:22:00Z", "the moment is not shown")
        at = driver.find_element(By.ID, "at")
        at.clear()
        at.send_keys("2026-11-02T12:00:00+01:00")
        browser.follow(driver, driver.find_element(By.ID, "search"))
        links = driver.find_elements(By.CSS_SELECTOR, "a.unit-link")
        check([link.text for link in links] == ["GW-BROWSER-2"], "on 2 November: not GW-BROWSER-2 alone")
        shot("registry-holder-at")
        browser.follow(driver, links[0])
        check("2026-11-02T11:00:00Z" in driver.find_element(By.ID, "as-of-banner").text, "no as-of banner")
        entries = driver.find_elements(By.CSS_SELECTOR, ".timeline-entry")
        check([e.get_attribute("data-type") for e in entries] == ["enrolled"], "the timeline of then is not the enrollment")
        check(not driver.find_elements(By.ID, "admin-actions"), "actions offered on a page of the past")
        check(MOVED_IMSI not in driver.page_source, "the IMSI is shown unmasked on the unit page of then")
        shot("registry-unit-as-of")
        browser.follow(driver, driver.find_element(By.ID, "now-link"))
        entries = driver.find_elements(By.CSS_SELECTOR, ".timeline-entry")
        check([e.get_attribute("data-type") for e in entries] == ["sim_removed", "enrolled"], "the unit now")
        # The units carrying a module (issue 20): from the search page to the affected-units form.
        browser.follow(driver, driver.find_element(By.ID, "nav-search"))
        browser.follow(driver, driver.find_element(By.ID, "affected-link"))
        driver.find_element(By.ID, "model_prefix").send_keys("EG25")
        browser.follow(driver, driver.find_element(By.ID, "affected-search"))
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.affected-row")
        check([r.find_element(By.CSS_SELECTOR, "a.unit-link").text for r in rows]
              == [SERIAL, "GW-BROWSER-2", "GW-BROWSER-3"], "the EG25 units are not listed in serial order")
        check("LOST" in rows[0].text, "the lost unit is not marked on the affected list")
        results = driver.find_element(By.ID, "affected-results").get_attribute("outerHTML")
        check(IMSI not in results and MOVED_IMSI not in results, "an IMSI is shown unmasked on the affected list")
        check(driver.find_element(By.ID, "affected-csv").get_attribute("href").endswith(
            "/affected.csv?model_prefix=EG25&limit=10000"), "no CSV link for the list")
        shot("registry-affected")
        driver.find_element(By.ID, "model_prefix").clear()
        driver.find_element(By.ID, "model_prefix").send_keys("EG")
        browser.follow(driver, driver.find_element(By.ID, "affected-search"))
        check("model_prefix: a prefix needs at least 3 characters" in driver.find_element(By.ID, "affected-error").text,
              "a 2-character prefix is not refused with its reason")
        status = 0
        print(f"test_browser: ok (screenshots in {shots})")
        if to_docs:
            images = os.path.join(ROOT, "docs", "images")
            os.makedirs(images, exist_ok=True)
            for name in ("registry-search", "registry-unit-lost", "registry-flags"):
                shutil.copy(os.path.join(shots, name + ".png"), images)
            print(f"test_browser: copied 3 screenshots to {images}")
    except Failure as failure:
        print(f"test_browser: FAILED: {failure}", file=sys.stderr)
        if driver:
            driver.save_screenshot(os.path.join(shots, "failure.png"))
            print(f"test_browser: screenshots in {shots}", file=sys.stderr)
    finally:
        if driver:
            driver.quit()
        code = reg.stop()
        if code != 0:
            print(f"test_browser: FAILED: the server exited with {code} on SIGTERM", file=sys.stderr)
            status = 1
        text = reg.log_text()
        for value in (IMEI, IMSI, ICCID, MOVED_IMSI, MOVED_ICCID, device, admin, *history_tokens.values()):
            if value in text:
                print("test_browser: FAILED: an identifier or a token is in the server's log", file=sys.stderr)
                status = 1
        if status == 0:
            # Keep the screenshots; the database and the log hold nothing worth keeping.
            for name in os.listdir(work):
                if name.startswith("registry."):
                    os.remove(os.path.join(work, name))
    return status


if __name__ == "__main__":
    sys.exit(main())
