#!/usr/bin/env python3
# registry-suite: pagination needs=selenium:selenium {bin}
"""Pages of the registry's lists in a real headless Chromium (Debian's chromium + chromium-driver, selenium).

Starts `cellprov-registry serve` on a fresh SQLite database on loopback with five devices of one TAC; each enrolls
over the real device API and reports a new IMEI (an `imei_changed` flag, critical); two also report one IMEI in
two slots (`duplicate_imei`, warning); the first reports six SIM changes more (a timeline of nine events). Then, in
the browser, signed in as an admin: the search by the TAC, two units a page, walked over three pages forward and
back; the first unit's timeline, four events a page, over three pages forward and back; the flags page filtered by
kind (as the overview links it), severity and status through its form, with a resolved flag, and a bad filter
refused with its reason. No identifier digits on any page. Screenshots go to a temp directory (printed).

    python3 Tests/registry/test_pagination.py [BUILD_DIR]      # BUILD_DIR: .build/debug

Exit status 0 on success, 1 on a failed check, 77 when selenium, chromium or chromedriver is missing and
CELLPROV_TEST_NO_SKIP is not set (then 1).
"""

import os
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import blackbox  # noqa: E402
import browser  # noqa: E402
import harness  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAC = "35209900"
SERIALS = [f"GW-PAGE-{n}" for n in range(1, 6)]


def skip(reason):
    blackbox.skip("test_pagination", reason, status=77)


webdriver, By = browser.require(skip)
from selenium.webdriver.support.ui import Select  # noqa: E402


def imei(tac, n):
    return blackbox.luhn_complete(tac + f"{n:06d}")


def iccid(n):
    return blackbox.luhn_complete("8949020000" + f"{n:08d}")


def imsi(n):
    return "26201" + f"{n:010d}"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def event(serial, kind, sequence, severity, occurred, identity, slot="usb-1", previous=None):
    return {
        "event_id": str(uuid.uuid4()), "type": kind, "sequence": sequence, "severity": severity,
        "occurred_at": occurred, "device": {"serial": serial},
        "module": {"slot": slot, "manufacturer": "Quectel", "model": "EG25-G", "source": "at"},
        "identity": identity, "previous": previous, "problems": [],
    }


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    build = os.path.abspath(args[0] if args else os.path.join(ROOT, ".build", "debug"))
    harness.REGISTRY = os.path.join(build, "cellprov-registry")
    if not os.access(harness.REGISTRY, os.X_OK):
        print(f"test_pagination: {harness.REGISTRY} not built (swift build --product cellprov-registry)",
              file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="cellprov-registry-pagination-")
    shots = os.path.join(work, "screenshots")
    os.makedirs(shots)
    reg = harness.Registry("sqlite://" + os.path.join(work, "registry.db"), work)
    tokens = {serial: reg.device_add(serial) for serial in SERIALS}
    admin = reg.operator_add("alice", "admin")
    identifiers = set()
    driver = None
    status = 1
    try:
        reg.start()
        base = reg.base

        # The fleet: per unit an enrollment on 1 November and a new IMEI (of the same TAC) on 2 November; units 1
        # and 2 also one IMEI in two slots; unit 1 six SIM changes on 3 November, an hour apart.
        for n, serial in enumerate(SERIALS, start=1):
            first = {"imei": imei(TAC, n), "imsi": imsi(n), "iccid": iccid(n)}
            second = {"imei": imei(TAC, 100 + n), "imsi": imsi(n), "iccid": iccid(n)}
            identifiers.update(first.values())
            identifiers.update(second.values())
            sent = [
                event(serial, "enrolled", 1, "info", f"2026-11-01T08:0{n}:00Z", first),
                event(serial, "imei_changed", 2, "critical", f"2026-11-02T08:0{n}:00Z", second, previous=first),
            ]
            if n <= 2:
                sent.append(event(serial, "duplicate_imei", 1, "warning", f"2026-11-02T09:0{n}:00Z",
                                  {"imei": second["imei"]}, slot="usb-2"))
            if n == 1:
                for k in range(6):
                    card = {"imei": second["imei"], "imsi": imsi(50 + k), "iccid": iccid(50 + k)}
                    identifiers.update(card.values())
                    sent.append(event(serial, "sim_changed", 3 + k, "warning", f"2026-11-03T1{k}:00:00Z", card))
            for body in sent:
                check(reg.post_event(tokens[serial], body).status == 201,
                      f"{serial}'s {body['type']} was not stored")

        driver = browser.chromium(webdriver)

        def shot(name):
            driver.save_screenshot(os.path.join(shots, name + ".png"))

        def no_identifiers(what):
            source = driver.page_source
            check(not any(value in source for value in identifiers), f"an identifier is shown unmasked on {what}")

        def ids(selector, attribute=None):
            elements = driver.find_elements(By.CSS_SELECTOR, selector)
            return [e.get_attribute(attribute) if attribute else e.text for e in elements]

        def present(element_id):
            return bool(driver.find_elements(By.ID, element_id))

        driver.get(base + "/")
        driver.find_element(By.ID, "token").send_keys(admin)
        browser.follow(driver, driver.find_element(By.ID, "signin"))
        check(present("q"), "no search box after sign-in")

        # Search results, two a page: three pages forward, then back.
        driver.get(base + "/?q=" + TAC + "&limit=2")
        pages = []
        for number in range(3):
            pages.append(ids("a.unit-link"))
            no_identifiers(f"search page {number + 1}")
            if number == 1:
                shot("pagination-search")
            if number < 2:
                check(present("next-page"), f"no next page link on search page {number + 1}")
                browser.follow(driver, driver.find_element(By.ID, "next-page"))
        check(pages == [SERIALS[0:2], SERIALS[2:4], SERIALS[4:5]], f"search pages: {pages}")
        check(not present("next-page"), "a next page link on the last search page")
        check(driver.find_element(By.ID, "result-from").text == "5", "the last page does not start at number 5")
        browser.follow(driver, driver.find_element(By.ID, "previous-page"))
        check(ids("a.unit-link") == SERIALS[2:4], "the previous page of the last is not the second")
        browser.follow(driver, driver.find_element(By.ID, "previous-page"))
        check(ids("a.unit-link") == SERIALS[0:2], "back to the first page")
        check(not present("previous-page"), "a previous page link on the first search page")

        # The first unit's timeline (nine events), four a page: newest first over three pages, then back.
        driver.get(base + "/units/" + SERIALS[0] + "?limit=4")
        timeline = []
        for number in range(3):
            timeline.append(ids(".timeline-entry", "data-type"))
            no_identifiers(f"timeline page {number + 1}")
            if number == 1:
                shot("pagination-timeline")
            if number < 2:
                browser.follow(driver, driver.find_element(By.ID, "timeline-next"))
        check(timeline == [["sim_changed"] * 4, ["sim_changed"] * 2 + ["duplicate_imei", "imei_changed"],
                           ["enrolled"]], f"timeline pages: {timeline}")
        check(not present("timeline-next"), "an older-events link on the oldest page")
        browser.follow(driver, driver.find_element(By.ID, "timeline-previous"))
        check(ids(".timeline-entry", "data-type") == timeline[1], "newer events from the last page: not the second")
        browser.follow(driver, driver.find_element(By.ID, "timeline-previous"))
        check(ids(".timeline-entry", "data-type") == timeline[0], "back to the newest events")
        check(not present("timeline-previous"), "a newer-events link on the newest page")

        # Flags: the overview's link (kind), then the form (severity, status), a resolved flag, a bad filter.
        driver.get(base + "/flags?kind=imei_changed")
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.flag")
        check(len(rows) == 5 and {r.get_attribute("data-kind") for r in rows} == {"imei_changed"},
              "flags of kind imei_changed: not the five")
        check(Select(driver.find_element(By.ID, "kind")).first_selected_option.text == "imei_changed",
              "the kind is not selected in the filter")
        check("Open flags of kind imei_changed" in driver.find_element(By.ID, "filter-text").text, "the filter is not said")
        shot("pagination-flags-kind")
        rows[0].find_element(By.NAME, "note").send_keys("module replaced under warranty")
        browser.follow(driver, rows[0].find_element(By.CSS_SELECTOR, "button.resolve"))
        check("Flag resolved." in driver.find_element(By.ID, "message").text, "no resolved message")
        Select(driver.find_element(By.ID, "kind")).select_by_visible_text("any")
        Select(driver.find_element(By.ID, "severity")).select_by_visible_text("warning")
        browser.follow(driver, driver.find_element(By.ID, "filter"))
        check(ids("tr.flag", "data-kind") == ["duplicate_imei", "duplicate_imei"], "open warnings: not the two duplicates")
        Select(driver.find_element(By.ID, "severity")).select_by_visible_text("critical")
        Select(driver.find_element(By.ID, "status")).select_by_visible_text("resolved")
        browser.follow(driver, driver.find_element(By.ID, "filter"))
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.flag")
        check(len(rows) == 1 and rows[0].get_attribute("data-open") == "false" and "resolved by alice" in rows[0].text,
              "resolved critical flags: not the one resolved")
        check("Resolved critical flags" in driver.find_element(By.ID, "filter-text").text, "the filter is not said")
        # Critical flags of every state, two a page, over three pages.
        driver.get(base + "/flags?severity=critical&status=all&limit=2")
        seen = []
        for number in range(3):
            seen += ids("tr.flag", "data-kind")
            if number < 2:
                browser.follow(driver, driver.find_element(By.ID, "next-page"))
        check(seen == ["imei_changed"] * 5 and not present("next-page"), f"critical flags by pages: {seen}")
        check("/flags?severity=critical&status=all&limit=2&before=" in driver.current_url,
              "the filters are not kept in the page links")
        no_identifiers("the flags page")
        driver.get(base + "/flags?status=closed")
        check("status: must be open, resolved or all" in driver.find_element(By.ID, "flags-error").text,
              "a bad status is not refused with its reason")
        status = 0
        print(f"test_pagination: ok (screenshots in {shots})")
    except Failure as failure:
        print(f"test_pagination: FAILED: {failure}", file=sys.stderr)
        if driver:
            driver.save_screenshot(os.path.join(shots, "failure.png"))
            print(f"test_pagination: screenshots in {shots}", file=sys.stderr)
    finally:
        if driver:
            driver.quit()
        code = reg.stop()
        if code != 0:
            print(f"test_pagination: FAILED: the server exited with {code} on SIGTERM", file=sys.stderr)
            status = 1
        text = reg.log_text()
        for value in (*identifiers, admin, *tokens.values()):
            if value in text:
                print("test_pagination: FAILED: an identifier or a token is in the server's log", file=sys.stderr)
                status = 1
                break
        if status == 0:
            for name in os.listdir(work):
                if name.startswith("registry."):
                    os.remove(os.path.join(work, name))
    return status


if __name__ == "__main__":
    sys.exit(main())
