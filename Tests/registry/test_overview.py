#!/usr/bin/env python3
# registry-suite: overview needs=selenium:selenium
"""The fleet overview (`/overview`, `GET /v1/overview`; issue 17 item 6, issue 20's firmware inventory) in a real
headless Chromium, at 10 000 units, black box.

Starts the built registry on SQLite; a factory station posts 10 000 manufacturing records (10 000 units, never
seen in the field) and three devices report from the field: GW-OV-1 and GW-OV-2 on an EC25 of one revision
(GW-OV-2 with a SIM swap), GW-OV-3 on an EG25 whose module swap raises `imei_changed`. In the browser, signed in
as a viewer: the unit figures, today's bar of the events chart, the weekly chart, the open flag linking to
`/flags?kind=imei_changed`, the firmware rows, the EC25 row leading to the affected-units page that lists
GW-OV-1 and GW-OV-2; no script on the page, the same content security policy as the search page, no identifier
digits. The API answers the same figures. A screenshot of the page (`registry-overview`) goes to a temp
directory; with --docs it is also copied to docs/images/.
Exit status: 0 passed (or skipped, SKIP: reason), 1 failed.
"""
import os
import shutil
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import blackbox  # noqa: E402
import browser  # noqa: E402

T = blackbox.Checks("registry overview")
UNITS = 10_000


def skip(reason):
    blackbox.skip(T.name, reason)


webdriver, By = browser.require(skip)


def field(serial, etype, seq, imei, imsi, iccid, model, revision, previous=None):
    ev = h.event(serial, "usb-1", etype, seq, imei, imsi, iccid, previous=previous)
    ev["module"].update({"manufacturer": "Quectel", "model": model, "revision": revision})
    return ev


def main():
    h.require_registry(skip)
    work = tempfile.mkdtemp(prefix="cellprov-overview-")
    shots = os.path.join(work, "screenshots")
    os.makedirs(shots)
    reg = h.Registry("sqlite://" + os.path.join(work, "registry.db"), work)
    driver = None
    secrets = []
    try:
        reg.start()
        station = reg.station_add("line-1")
        viewer = reg.operator_add("vera", "viewer")
        start = time.monotonic()
        stored = 0
        for n in range(UNITS):
            rec = h.event(f"GW-F-{n:05d}", "probe", "manufactured", 1, h.make_imei(), h.make_imsi(), h.make_iccid())
            stored += reg.post_event(station, rec).status == 201
        T.check(stored == UNITS, f"{UNITS} manufacturing records stored ({stored}, {time.monotonic() - start:.0f} s)")

        a06 = "EC25EFAR06A06M4G"
        tokens = {s: reg.device_add(s) for s in ("GW-OV-1", "GW-OV-2", "GW-OV-3")}
        ids = [(h.make_imei(), h.make_imsi(), h.make_iccid()) for _ in range(4)]
        secrets += [v for t in ids for v in t]
        i1, i2, i3, i4 = ids
        new_imsi, new_iccid, new_imei = h.make_imsi(), h.make_iccid(), h.make_imei()
        secrets += [new_imsi, new_iccid, new_imei]
        posts = [
            ("GW-OV-1", field("GW-OV-1", "enrolled", 1, *i1, "EC25", a06)),
            ("GW-OV-2", field("GW-OV-2", "enrolled", 1, *i2, "EC25", a06)),
            ("GW-OV-2", field("GW-OV-2", "sim_changed", 2, i2[0], new_imsi, new_iccid, "EC25", a06,
                              previous={"imei": i2[0], "imsi": i2[1], "iccid": i2[2]})),
            ("GW-OV-3", field("GW-OV-3", "enrolled", 1, *i3, "EG25", "EG25GGBR07A08M2G")),
            ("GW-OV-3", field("GW-OV-3", "imei_changed", 2, new_imei, i3[1], i3[2], "EG25", "EG25GGBR07A08M2G",
                              previous={"imei": i3[0], "imsi": i3[1], "iccid": i3[2]})),
        ]
        T.check(all(reg.post_event(tokens[s], ev).status == 201 for s, ev in posts), "the field events are stored")

        # The API.
        r = reg.request("GET", "/v1/overview", token=viewer)
        T.check(r.status == 200, "GET /v1/overview answers a viewer")
        o = r.json()
        T.check(o["units"] == {"total": UNITS + 3, "seen_24h": 3, "silent": 0, "lost": 0},
                f"the unit figures ({o['units']})")
        today = time.strftime("%Y-%m-%d", time.gmtime())
        days = o["events_per_day"]
        T.check(len(days) == 30 and days[-1]["day"] == today and days[-1]["events"] == UNITS + 5,
                f"30 days, today last with every event ({days[-1]})")
        T.check(len(o["sim_swaps_per_week"]) == 12 and o["sim_swaps_per_week"][-1]["sim_swaps"] == 1,
                "12 weeks, this week's SIM swap")
        T.check(o["open_flags"].get("imei_changed") == 1, "the open imei_changed flag")
        fw = [(f["model"], f["revision"], f["units"]) for f in o["firmware"]]
        T.check(fw == [("EC25", a06, 2), ("EG25", "EG25GGBR07A08M2G", 1)], f"the firmware inventory ({fw})")
        T.check(not h.leaks_in(r.text, secrets), "no identifier in the API's answer")

        # The page.
        driver = browser.chromium(webdriver, height=1400, implicit_wait=5)
        driver.get(reg.base + "/overview")
        T.check(driver.find_elements(By.ID, "token"), "signed out, /overview leads to the sign-in page")
        driver.find_element(By.ID, "token").send_keys(viewer)
        browser.follow(driver, driver.find_element(By.ID, "signin"))
        driver.get(reg.base + "/overview")
        T.check(driver.find_element(By.ID, "units-total").text == str(UNITS + 3), "the page's unit total")
        T.check(driver.find_element(By.ID, "units-seen").text == "3", "seen in the last 24 h")
        bars = driver.find_elements(By.CSS_SELECTOR, "#chart-events rect.bar")
        T.check(len(bars) == 30 and bars[-1].get_attribute("data-count") == str(UNITS + 5)
                and float(bars[-1].get_attribute("height")) > 0, "the events chart: 30 bars, today's drawn")
        T.check(len(driver.find_elements(By.CSS_SELECTOR, "#chart-swaps rect.bar-swaps")) == 12, "the weekly chart")
        source = driver.page_source
        T.check("<script" not in source.lower(), "no script on the page")
        T.check(not h.leaks_in(source, secrets), "no identifier on the page")
        driver.save_screenshot(os.path.join(shots, "registry-overview.png"))
        csp_page = reg.request("GET", "/overview", headers={"Cookie": "x=y"}).headers.get("content-security-policy")
        csp_search = reg.request("GET", "/").headers.get("content-security-policy")
        T.check(csp_page and csp_page == csp_search, "the page's content security policy is the search page's")
        flag = driver.find_element(By.CSS_SELECTOR, "a.flag-count[data-kind=imei_changed]")
        T.check(flag.text == "1" and flag.get_attribute("href").endswith("/flags?kind=imei_changed"),
                "the open flag count links to its list")
        links = driver.find_elements(By.CSS_SELECTOR, "a.firmware-units")
        T.check(len(links) == 2, "each firmware row links to its units")
        browser.follow(driver, links[0])
        query = urllib.parse.parse_qs(urllib.parse.urlparse(driver.current_url).query)
        T.check(query == {"manufacturer": ["Quectel"], "model": ["EC25"], "revision": [a06]},
                f"the EC25 row opens the affected units, all three exact ({query})")
        listed = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "a.unit-link")] or \
            [a.text for a in driver.find_elements(By.CSS_SELECTOR, "td a") if a.text.startswith("GW-")]
        T.check(sorted(set(listed)) == ["GW-OV-1", "GW-OV-2"], f"the affected-units page lists them ({listed})")
        T.check(reg.stop() == 0, "the registry exits 0 on SIGTERM")
        if "--docs" in sys.argv:
            images = os.path.join(h.REPO, "docs", "images")
            os.makedirs(images, exist_ok=True)
            shutil.copy(os.path.join(shots, "registry-overview.png"), images)
        print(f"screenshot in {shots}")
    except Exception as e:  # noqa: BLE001
        T.check(False, f"unexpected: {type(e).__name__}: {e}")
        reg.kill()
    finally:
        if driver:
            driver.quit()
    T.finish()


if __name__ == "__main__":
    main()
