"""The page in a real browser: headless Chromium opens what ``attnviz decode -o view.html``
wrote, from file://, and is driven through the page's own controls and the mouse.

Skipped, with the reason, where Chromium or selenium is missing (see tests/chromium.py); CI
installs both and sets ATTNVIZ_REQUIRE_BROWSER=1, under which a missing browser fails them.
ATTNVIZ_PAGE_PICTURE=path also saves the screenshot there (docs/page.png).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from attnviz.cli.app import app
from attnviz.io.text import display_label
from attnviz.maps import views
from attnviz.maps.data import AttentionMaps
from attnviz.render import page
from attnviz.render.colors import lookup_table
from tests import chromium
from tests.test_page import hostile_maps

REQUIRED = os.environ.get("ATTNVIZ_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(chromium.missing() is not None and not REQUIRED,
                                reason=chromium.missing() or "")
SENTENCE = "the small black cats see a red car"
TOLERANCE = 1 / 510 + 0.0005  # the page's stated rounding, and the 3 decimals it shows
COLORS = lookup_table("viridis").astype(int)  # (256, 3)


@pytest.fixture(scope="module")
def browser():
    driver = chromium.driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """The page and the numbers of one ``attnviz decode`` of the shipped translate model."""
    folder = tmp_path_factory.mktemp("page")
    html, numbers = folder / "view.html", folder / "maps.npz"
    result = CliRunner().invoke(app, ["decode", SENTENCE, "-o", str(html), "-o", str(numbers)],
                                env={"ATTNVIZ_CACHE_DIR": str(folder / "cache")})
    assert result.exit_code == 0, result.stderr
    return html, AttentionMaps.load(numbers)


def errors(browser) -> list[dict]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def choose(browser, control: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", control)).select_by_value(value)


def hover(browser, canvas_id: str, point: dict) -> dict:
    """Move the mouse to ``point`` (CSS pixels from the canvas's corner); the tooltip's text."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = browser.find_element("id", canvas_id)
    size = canvas.size  # selenium's offsets count from the element's centre
    ActionChains(browser).move_to_element_with_offset(
        canvas, round(point["x"] - size["width"] / 2), round(point["y"] - size["height"] / 2)
    ).perform()
    assert browser.find_element("id", "tooltip").is_displayed()
    return {field: browser.find_element("id", f"tip-{field}").text
            for field in ("query", "key", "weight")}


def pixel(browser, canvas_id: str, point: dict) -> np.ndarray:
    rgba = browser.execute_script(
        "const c = document.getElementById(arguments[0]); const r = window.devicePixelRatio;"
        "return Array.from(c.getContext('2d').getImageData(Math.floor(arguments[1] * r),"
        " Math.floor(arguments[2] * r), 1, 1).data);", canvas_id, point["x"], point["y"])
    return np.array(rgba[:3])


def cell(browser, row: int, col: int) -> dict:
    return browser.execute_script("return window.attnviz.cellCenter(arguments[0], arguments[1])",
                                  row, col)


def test_the_browser_is_here_where_it_is_required():
    # Runs where Chromium is found, or where CI requires it: there, its absence is a failure.
    assert chromium.missing() is None, chromium.missing()


@pytest.mark.process
def test_the_decode_page_opens_from_a_file_without_a_console_error(browser, decoded):
    html, maps = decoded
    state = chromium.open_page(browser, html)
    assert state["ready"] and state["error"] is None
    assert errors(browser) == []
    kinds = [option.get_attribute("value")
             for option in browser.find_elements("css selector", "#kind option")]
    assert kinds == ["encoder", "self", "cross"]
    scales = [option.get_attribute("value")
              for option in browser.find_elements("css selector", "#scale option")]
    assert scales == list(views.SCALES)
    assert browser.find_element("id", "scale").get_attribute("value") == "panel"
    facts = browser.find_element("css selector", ".facts").text
    assert f"source\n{SENTENCE}" in facts and "model\ntranslate" in facts
    assert "(written by the model)" in facts and "attnviz\n" in facts


def test_hovering_a_cell_reads_its_tokens_and_weight(browser, decoded):
    html, maps = decoded
    chromium.open_page(browser, html)
    choose(browser, "kind", "cross")
    choose(browser, "layer", "0")
    choose(browser, "head", "1")
    assert browser.execute_script("return window.attnviz.state") == {
        "kind": "cross", "layer": 0, "head": 1, "scale": "panel", "view": "heatmap"}
    row, col = 2, 3
    tip = hover(browser, "heatmap-hover", cell(browser, row, col))
    # A decoder row reads "input → next", as in the images.
    assert tip["query"] == (f"{display_label(maps.target_tokens[row])} → "
                            f"{display_label(maps.target_tokens[row + 1])} ({row})")
    assert tip["key"] == f"{display_label(maps.source_tokens[col])} ({col})"
    assert abs(float(tip["weight"]) - maps.cross[0, 1, row, col]) <= TOLERANCE
    # The mean over heads, at the largest weight of another row.
    choose(browser, "head", "mean")
    mean = maps.cross[0].mean(0)  # (T, S)
    col = int(mean[1].argmax())
    tip = hover(browser, "heatmap-hover", cell(browser, 1, col))
    assert abs(float(tip["weight"]) - mean[1, col]) <= TOLERANCE
    assert errors(browser) == []


def test_the_last_decoder_row_reads_the_token_after_it_as_the_images_do(browser, decoded):
    html, maps = decoded
    assert maps.provenance.next_token == "<eos>"
    chromium.open_page(browser, html)
    last = len(maps.target_tokens) - 1
    for kind in ("self", "cross"):
        choose(browser, "kind", kind)
        tip = hover(browser, "heatmap-hover", cell(browser, last, 0))
        assert tip["query"] == f"{display_label(maps.target_tokens[last])} → <eos> ({last})"
    layout = browser.execute_script("return window.attnviz.layout()")
    assert layout["rows"][last] == [last, f"{display_label(maps.target_tokens[last])} → <eos>"]
    assert errors(browser) == []


def test_the_title_names_a_lone_head_as_the_images_do(browser, tmp_path):
    one = hostile_maps(["a", "b"])
    one = AttentionMaps(one.source_tokens, [], one.encoder_self[:, :1])  # (1, 1, 2, 2)
    path = tmp_path / "one.html"
    path.write_bytes(page.to_bytes(one))
    chromium.open_page(browser, path)
    title = browser.execute_script("return window.attnviz.title()")
    assert title == f"{views.heatmap(one, 'encoder_self').title} · scale panel"
    assert title == "Encoder self-attention · layer 0 · the only head · scale panel"
    from selenium.webdriver.support.ui import Select

    menu = Select(browser.find_element("id", "head"))
    assert [option.text for option in menu.options] == ["the only head", "0"]


def test_masked_cells_are_hatched_grey_and_said_to_be_masked(browser, decoded):
    html, maps = decoded
    chromium.open_page(browser, html)
    choose(browser, "kind", "self")
    point = cell(browser, 0, 2)  # the first query cannot see the third token
    tip = hover(browser, "heatmap-hover", point)
    assert tip["weight"].startswith("masked")
    colour = pixel(browser, "heatmap", point)
    assert min(np.abs(colour - grey).sum() for grey in (0xd0, 0xa0)) < 20 or \
        (np.abs(colour - colour[0]) <= 2).all() and 0x90 <= colour[0] <= 0xe0  # hatch line
    assert tip["query"] == f"<bos> → {display_label(maps.target_tokens[1])} (0)"


def test_each_scale_colours_as_the_images_do(browser, decoded):
    html, maps = decoded
    chromium.open_page(browser, html)
    choose(browser, "kind", "encoder")
    choose(browser, "layer", "1")
    choose(browser, "head", "0")
    weights = maps.encoder_self[1, 0]  # (S, S)

    size = browser.execute_script("return window.attnviz.layout().cell")

    def index_at(row, col) -> int:  # the colour-map entry nearest to the drawn pixel
        centre = cell(browser, row, col)  # which may hold the weight, written in the cell
        corner = {"x": centre["x"] - size / 2 + 3, "y": centre["y"] - size / 2 + 3}
        drawn = pixel(browser, "heatmap", corner)
        return int(np.abs(COLORS - drawn).sum(1).argmin())

    choose(browser, "scale", "row")
    for row in range(weights.shape[0]):
        assert index_at(row, int(weights[row].argmax())) == 255
    choose(browser, "scale", "panel")
    top = tuple(int(i) for i in np.unravel_index(weights.argmax(), weights.shape))
    assert index_at(*top) == 255
    choose(browser, "scale", "unit")
    for row, col in [(0, 0), (3, 5), top]:
        assert abs(index_at(row, col) - min(255, int(weights[row, col] * 256))) <= 1
    choose(browser, "scale", "shared")  # the largest weight of every layer and head
    shared = maps.encoder_self.max()
    assert abs(index_at(*top) - min(255, int(weights[top] / shared * 256))) <= 1
    choose(browser, "head", "mean")  # the mean over heads, on the same maximum
    mean = maps.encoder_self[1].mean(0)  # (S, S)
    for row, col in [(0, 0), [int(i) for i in np.unravel_index(mean.argmax(), mean.shape)]]:
        assert abs(index_at(row, col) - min(255, int(mean[row, col] / shared * 256))) <= 1


@pytest.fixture
def narrow(browser):
    """A window of the README picture's width."""
    size = browser.get_window_size()
    browser.set_window_size(960, size["height"])
    yield browser
    browser.set_window_size(size["width"], size["height"])


def test_the_head_view_follows_a_token_and_switches_back(narrow, decoded, tmp_path):
    html, maps = decoded
    browser = narrow
    chromium.open_page(browser, html)
    choose(browser, "kind", "cross")
    choose(browser, "layer", "1")
    browser.find_element("id", "show-heads").click()
    assert browser.find_element("id", "heads").is_displayed()
    assert not browser.find_element("id", "heatmap").is_displayed()
    row = 2
    point = browser.execute_script("return window.attnviz.tokenCenter('query', arguments[0])", row)
    tip = hover(browser, "heads-hover", point)
    strongest = int(maps.cross[1].mean(0)[row].argmax())
    assert tip["query"] == f"{views.heatmap(maps, 'cross').query_labels[row]} ({row})"
    assert tip["key"] == f"{display_label(maps.source_tokens[strongest])} ({strongest})"
    browser.find_element("id", "show-heatmap").click()
    assert browser.find_element("id", "heatmap").is_displayed()
    assert not browser.find_element("id", "heads").is_displayed()
    tip = hover(browser, "heatmap-hover", cell(browser, row, strongest))
    assert tip["key"] == f"{display_label(maps.source_tokens[strongest])} ({strongest})"
    picture = tmp_path / "page.png"
    browser.save_screenshot(str(picture))
    assert picture.read_bytes().startswith(b"\x89PNG") and picture.stat().st_size > 20_000
    if os.environ.get("ATTNVIZ_PAGE_PICTURE"):  # for the README, without the empty margin
        from PIL import Image, ImageChops

        with Image.open(picture) as shot:
            shot = shot.convert("RGB")
            box = ImageChops.difference(shot, Image.new("RGB", shot.size, "white")).getbbox()
            shot.crop((0, 0, min(shot.width, box[2] + 24), min(shot.height, box[3] + 16))
                      ).save(os.environ["ATTNVIZ_PAGE_PICTURE"])
    assert errors(browser) == []


def test_long_sequences_get_thinned_labels(browser, tmp_path):
    tokens = [f"w{i}" for i in range(300)]
    path = tmp_path / "long.html"
    path.write_bytes(page.to_bytes(hostile_maps(tokens)))
    chromium.open_page(browser, path)
    layout = browser.execute_script("return window.attnviz.layout()")
    assert 20 <= len(layout["rows"]) <= 720 / 14 + 1 and len(layout["cols"]) == len(layout["rows"])
    step = layout["rows"][1][0]
    assert layout["rows"][1] == [step, f"w{step} ({step})"]
    browser.find_element("id", "show-heads").click()  # too many lines: the strongest only
    assert "each query's 13 strongest are drawn" in browser.find_element("id", "heads-limit").text
    short = tmp_path / "short.html"
    short.write_bytes(page.to_bytes(hostile_maps(tokens[:10])))
    chromium.open_page(browser, short)
    assert [label for _, label in browser.execute_script("return window.attnviz.layout()")
            ["rows"]] == tokens[:10]


def test_the_page_makes_no_network_request(browser, tmp_path):
    bait = ["<img src=http://127.0.0.1:9/x.png onerror=window.owned=1>", "http://127.0.0.1:9/",
            "</script><script>window.owned=2</script>", "url(http://127.0.0.1:9/y)"]
    path = tmp_path / "bait.html"
    path.write_bytes(page.to_bytes(hostile_maps(bait)))
    chromium.requests(browser)  # forget what came before
    chromium.open_page(browser, path)
    assert chromium.requests(browser) == [path.resolve().as_uri()]
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert browser.execute_script("return window.owned") is None
    assert browser.execute_script("return document.scripts.length") == 2
    assert errors(browser) == []
    # And with the network switched off, the page draws all the same.
    browser.set_network_conditions(offline=True, latency=0, download_throughput=0,
                                   upload_throughput=0)
    try:
        assert chromium.open_page(browser, path)["ready"]
    finally:
        browser.delete_network_conditions()
