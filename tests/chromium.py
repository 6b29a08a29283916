"""Headless Chromium driven by selenium, for the page's tests and benchmarks.

Debian's ``chromium`` and ``chromium-driver`` packages give /usr/bin/chromium and
/usr/bin/chromedriver; ``selenium`` comes with the ``test`` extra. Without them,
:func:`missing` says what is missing and the browser tests skip.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Chromium talks to Google's services in the background unless told not to; on a machine
# without a network those connections fail and fill the log.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--window-size=1400,1000", "--force-device-scale-factor=1")


def binaries() -> tuple[str | None, str | None]:
    """The browser and its driver, where they are installed."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    return browser, shutil.which("chromedriver")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    browser, driver = binaries()
    if browser is None or driver is None:
        return "no Chromium here (apt-get install -y chromium chromium-driver)"
    return None


def driver():
    """A fresh headless Chromium with its own profile, logging the console and the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='attnviz-chromium-')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def open_page(browser, path: Path, timeout: float = 20.0) -> dict:
    """Open ``path`` from file:// and wait until the page has drawn (or failed); its state."""
    browser.get(path.resolve().as_uri())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = browser.execute_script(
            "return window.attnviz ? {ready: window.attnviz.ready, error: window.attnviz.error,"
            " timings: window.attnviz.timings} : null")
        if state and (state["ready"] or state["error"]):
            return state
        time.sleep(0.02)
    raise TimeoutError(f"the page {path} did not draw within {timeout} s")


def requests(browser) -> list[str]:
    """The URLs the browser asked for since the log was last read (the performance log)."""
    import json

    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
