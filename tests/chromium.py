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
    """Open ``path`` from file:// and wait until every view on it has drawn (or failed); the
    state of its first view."""
    browser.get(path.resolve().as_uri())
    return wait_for_views(browser, timeout)[0]


# Each view's state, or null while its script has not run; null when there is no view yet.
STATES = """
const views = [...document.querySelectorAll(".attnviz-view")];
return views.length ? views.map((view) => view.attnviz ? {ready: view.attnviz.ready,
    error: view.attnviz.error, timings: view.attnviz.timings} : null) : null;"""


def wait_for_views(browser, timeout: float = 20.0) -> list[dict]:
    """Wait until every view on the page has drawn (or failed); their states, in page order."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = browser.execute_script(STATES)
        if states and all(state and (state["ready"] or state["error"]) for state in states):
            return states
        time.sleep(0.02)
    raise TimeoutError(f"the views of {browser.current_url} did not draw within {timeout} s")


# Scrolls the page when a point of an element (its y from the element's top) is out of the
# window, so that the mouse can reach it: a page of several views is taller than the window.
SCROLL_TO = """
const y = arguments[0].getBoundingClientRect().top + arguments[1];
if (y < 8 || y > window.innerHeight - 8) window.scrollBy(0, y - window.innerHeight / 2);"""


class View:
    """One view on the page: its element (``root``), its parts (the elements of class
    ``av-NAME`` inside it) and its API (``root.attnviz``), driven as a person does."""

    def __init__(self, browser, root) -> None:
        self.browser, self.root = browser, root

    def part(self, name: str):
        return self.root.find_element("css selector", f".av-{name}")

    def call(self, expression: str, *args):
        """``expression`` evaluated with ``api``, the view's API, and ``args`` as ``args``."""
        return self.browser.execute_script(
            f"const api = arguments[0].attnviz; const args = arguments[1]; return {expression};",
            self.root, list(args))

    @property
    def state(self) -> dict:
        return self.call("api.state")

    def options(self, control: str) -> list[str]:
        return [option.get_attribute("value")
                for option in self.part(control).find_elements("css selector", "option")]

    def choose(self, control: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.part(control)).select_by_value(value)

    def show(self, subview: str) -> None:
        """Press the button of a sub-view: ``heatmap`` or ``heads``."""
        self.root.find_element("css selector", f'.av-show[data-view="{subview}"]').click()

    def cell(self, row: int, col: int) -> dict:
        return self.call("api.cellCenter(args[0], args[1])", row, col)

    def hover(self, canvas: str, point: dict) -> dict:
        """Move the mouse to ``point`` (CSS pixels from the corner of the canvas of class
        ``av-CANVAS``), scrolling the page first if the point is out of the window; the
        tooltip's fields."""
        from selenium.webdriver.common.action_chains import ActionChains

        element = self.part(canvas)
        self.browser.execute_script(SCROLL_TO, element, point["y"])
        box = self.browser.execute_script(
            "return arguments[0].getBoundingClientRect().toJSON()", element)
        # From the window's corner: an offset from the element would count from the centre
        # of its part in the window, which moves as the page scrolls.
        actions = ActionChains(self.browser)
        actions.w3c_actions.pointer_action.move_to_location(round(box["left"] + point["x"]),
                                                            round(box["top"] + point["y"]))
        actions.perform()
        assert self.part("tooltip").is_displayed()
        fields = ["query", "key", "weight"] + (["score"] if self.part("tip-score-row")
                                               .is_displayed() else [])
        return {field: self.part(f"tip-{field}").text for field in fields}

    def pixel(self, canvas: str, point: dict):
        """The colour drawn at ``point`` of the canvas of class ``av-CANVAS``, as r, g, b."""
        import numpy as np

        rgba = self.browser.execute_script(
            "const r = window.devicePixelRatio; return Array.from(arguments[0].getContext('2d')"
            ".getImageData(Math.floor(arguments[1] * r), Math.floor(arguments[2] * r), 1, 1)"
            ".data);", self.part(canvas), point["x"], point["y"])
        return np.array(rgba[:3])


def views(browser) -> list[View]:
    """Every view on the page, in page order."""
    return [View(browser, root)
            for root in browser.find_elements("css selector", ".attnviz-view")]


def requests(browser) -> list[str]:
    """The URLs the browser asked for since the log was last read (the performance log)."""
    import json

    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
