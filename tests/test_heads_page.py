"""The atlas on the page, in a real browser: headless Chromium opens what ``attnviz heads
TEXT -o heads.html`` wrote, from file://; the atlas is the first view, a head's cell has its
figure's colour, hovering says its figures, and clicking opens its map.

Skipped, with the reason, where Chromium or selenium is missing (see tests/chromium.py); CI
requires them (ATTNVIZ_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.render.colors import LABEL_COLORS
from tests import chromium
from tests.test_page_browser import COLORS, REQUIRED, errors

pytestmark = pytest.mark.skipif(chromium.missing() is not None and not REQUIRED,
                                reason=chromium.missing() or "")
SENTENCE = "the small black cats see a red car"


@pytest.fixture(scope="module")
def browser():
    driver = chromium.driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The page and the json of one ``attnviz heads --induction`` of the translate model."""
    folder = tmp_path_factory.mktemp("heads")
    html, numbers = folder / "heads.html", folder / "heads.json"
    result = CliRunner().invoke(app, ["heads", SENTENCE, "--induction", "-o", str(html),
                                      "-o", str(numbers)],
                                env={"ATTNVIZ_CACHE_DIR": str(folder / "cache")})
    assert result.exit_code == 0, result.stderr
    data = json.loads(numbers.read_text())
    return html, {(r["kind"], r["layer"], r["head"]): r for r in data["heads"]}


def center(view, kind: str, name: str, layer: int, head: int) -> dict:
    return view.call("api.atlasCenter(...args)", kind, name, layer, head)


def point_at(view, point: dict, click: bool = False) -> None:
    """Move the mouse to ``point`` of the atlas (CSS pixels from its corner), and click."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = view.part("atlas-hover")
    box = view.browser.execute_script("return arguments[0].getBoundingClientRect().toJSON()",
                                      element)
    actions = ActionChains(view.browser)
    actions.w3c_actions.pointer_action.move_to_location(round(box["left"] + point["x"]),
                                                        round(box["top"] + point["y"]))
    if click:
        actions.w3c_actions.pointer_action.click()
    actions.perform()


def opened(browser, path):
    state = chromium.open_page(browser, path)
    assert state["ready"] and state["error"] is None
    (view,) = chromium.views(browser)
    return view


def test_the_page_opens_on_the_atlas_and_a_click_opens_the_head_s_map(browser, written):
    html, records = written
    view = opened(browser, html)
    assert view.state["view"] == "atlas"
    assert view.part("atlas-view").is_displayed()
    assert not view.part("heatmap-view").is_displayed()
    button = view.root.find_element("css selector", '.av-show[data-view="atlas"]')
    assert button.is_displayed() and button.get_attribute("aria-pressed") == "true"
    # Hovering a head says its label and figures, as the json has them.
    record = records[("decoder_self", 1, 3)]
    point_at(view, center(view, "decoder_self", "entropy", 1, 3))
    said = view.part("atlas-head").text
    assert said.startswith("Masked decoder self-attention · layer 1 · head 3: label "
                           f"{record['label'] or 'none'}")
    assert f"entropy {record['entropy']:.3f}" in said
    assert f"induction {record['induction']:.3f}" in said
    # Clicking a head opens its map: the heatmap of that kind, layer and head.
    point_at(view, center(view, "cross", "first", 1, 2), click=True)
    assert view.state == {"kind": "cross", "layer": 1, "head": 2, "scale": "panel",
                          "view": "heatmap"}
    assert view.part("heatmap-view").is_displayed()
    assert view.part("kind").get_attribute("value") == "cross"
    assert view.part("head").get_attribute("value") == "2"
    assert view.call("api.title()") == "Cross-attention · layer 1 · head 2 · scale panel"
    view.show("atlas")  # and back
    assert view.part("atlas-view").is_displayed()
    assert errors(browser) == []


def test_each_head_has_its_figure_s_colour_and_its_label_s(browser, written):
    html, records = written
    view = opened(browser, html)
    largest = max(r["entropy"] for r in records.values())  # the entropy's scale: 0 to it
    for where, record in records.items():
        drawn = view.pixel("atlas", center(view, where[0], "entropy", *where[1:]))
        index = min(255, int(record["entropy"] / largest * 256))
        assert np.abs(drawn - COLORS[index]).max() <= 2, where
        label = view.pixel("atlas", center(view, where[0], "label", *where[1:]))
        color = LABEL_COLORS.get(record["label"], "#eeeeee")
        assert list(label) == [int(color[i:i + 2], 16) for i in (1, 3, 5)], where
    # A figure that does not apply is grey.
    grey = view.pixel("atlas", center(view, "cross", "previous", 0, 0))
    assert list(grey) == [0xcc] * 3


def test_a_page_without_an_atlas_has_no_atlas_button(browser, tmp_path):
    result = CliRunner().invoke(app, ["decode", SENTENCE, "-o", str(tmp_path / "v.html")],
                                env={"ATTNVIZ_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.stderr
    view = opened(browser, tmp_path / "v.html")
    button = view.root.find_element("css selector", '.av-show[data-view="atlas"]')
    assert not button.is_displayed()
    assert view.state["view"] == "heatmap"
