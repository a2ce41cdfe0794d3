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
