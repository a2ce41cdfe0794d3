"""The headless Chromium the registry's browser suites drive (test_browser.py, test_pagination.py, test_overview.py):
Debian's chromium and chromium-driver through selenium, found once here, the suite skipped with the reason when one
is missing.

    import browser
    webdriver, By = browser.require(skip)      # skip(reason) is the suite's own (its name, its exit status)
    driver = browser.chromium(webdriver)       # headless, 1280 x 900 unless told otherwise
"""
import shutil

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def require(skip):
    """selenium's `webdriver` module and `By`; calls `skip(reason)` when selenium, chromium or chromedriver is
    missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.common.by import By
    except ImportError:
        skip("selenium not installed: python3 -m pip install selenium")
    if not CHROMIUM or not DRIVER:
        skip("chromium or chromedriver missing: apt-get install -y chromium chromium-driver")
    return webdriver, By


def chromium(webdriver, width=1280, height=900, implicit_wait=2):
    """A headless Chromium (no sandbox: the tests run as root in CI), waiting up to `implicit_wait` s for an
    element a step looks for."""
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(implicit_wait)
    return driver


def follow(driver, element, timeout=15):
    """Clicks `element` (a link or a form's button: every click of these pages loads a page, they have no script)
    and waits until the browser has left the current document and the next one is loaded. Without the wait, the
    next `find_element` can still answer from the page being left (a stale element, or the previous page's rows).
    While the page changes, the driver may answer a question about the old document with another error than
    "stale" (its execution context is being torn down): that counts as not yet, until `timeout`."""
    import time
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    current = driver.find_element("tag name", "html")
    element.click()
    deadline = time.monotonic() + timeout
    while True:
        try:
            current.is_enabled()
        except StaleElementReferenceException:
            break
        except WebDriverException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not change within {timeout} s of the click")
        time.sleep(0.05)
    while True:
        try:
            if driver.execute_script("return document.readyState") == "complete":
                return
        except WebDriverException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the next page did not load within {timeout} s of the click")
        time.sleep(0.05)
