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


def opened(browser, path) -> chromium.View:
    """The page at ``path``, drawn; its one view."""
    chromium.open_page(browser, path)
    (view,) = chromium.views(browser)
    return view


def test_the_browser_is_here_where_it_is_required():
    # Runs where Chromium is found, or where CI requires it: there, its absence is a failure.
    assert chromium.missing() is None, chromium.missing()


@pytest.mark.process
def test_the_decode_page_opens_from_a_file_without_a_console_error(browser, decoded):
    html, maps = decoded
    state = chromium.open_page(browser, html)
    assert state["ready"] and state["error"] is None
    assert errors(browser) == []
    (view,) = chromium.views(browser)
    assert view.options("kind") == ["encoder", "self", "cross"]
    assert view.options("scale") == list(views.SCALES)
    assert view.part("scale").get_attribute("value") == "panel"
    facts = view.part("facts").text
    assert f"source\n{SENTENCE}" in facts and "model\ntranslate" in facts
    assert "(written by the model)" in facts and "attnviz\n" in facts


def test_hovering_a_cell_reads_its_tokens_and_weight(browser, decoded):
    html, maps = decoded
    view = opened(browser, html)
    view.choose("kind", "cross")
    view.choose("layer", "0")
    view.choose("head", "1")
    assert view.state == {
        "kind": "cross", "layer": 0, "head": 1, "scale": "panel", "view": "heatmap"}
    row, col = 2, 3
    tip = view.hover("heatmap-hover", view.cell(row, col))
    # A decoder row reads "input → next", as in the images.
    assert tip["query"] == (f"{display_label(maps.target_tokens[row])} → "
                            f"{display_label(maps.target_tokens[row + 1])} ({row})")
    assert tip["key"] == f"{display_label(maps.source_tokens[col])} ({col})"
    assert abs(float(tip["weight"]) - maps.cross[0, 1, row, col]) <= TOLERANCE
    # The mean over heads, at the largest weight of another row.
    view.choose("head", "mean")
    mean = maps.cross[0].mean(0)  # (T, S)
    col = int(mean[1].argmax())
    tip = view.hover("heatmap-hover", view.cell(1, col))
    assert abs(float(tip["weight"]) - mean[1, col]) <= TOLERANCE
    assert errors(browser) == []


def test_the_last_decoder_row_reads_the_token_after_it_as_the_images_do(browser, decoded):
    html, maps = decoded
    assert maps.provenance.next_token == "<eos>"
    view = opened(browser, html)
    last = len(maps.target_tokens) - 1
    for kind in ("self", "cross"):
        view.choose("kind", kind)
        tip = view.hover("heatmap-hover", view.cell(last, 0))
        assert tip["query"] == f"{display_label(maps.target_tokens[last])} → <eos> ({last})"
    layout = view.call("api.layout()")
    assert layout["rows"][last] == [last, f"{display_label(maps.target_tokens[last])} → <eos>"]
    assert errors(browser) == []


def test_the_title_names_a_lone_head_as_the_images_do(browser, tmp_path):
    one = hostile_maps(["a", "b"])
    one = AttentionMaps(one.source_tokens, [], one.encoder_self[:, :1])  # (1, 1, 2, 2)
    path = tmp_path / "one.html"
    path.write_bytes(page.to_bytes(one))
    view = opened(browser, path)
    title = view.call("api.title()")
    assert title == f"{views.heatmap(one, 'encoder_self').title} · scale panel"
    assert title == "Encoder self-attention · layer 0 · the only head · scale panel"
    from selenium.webdriver.support.ui import Select

    menu = Select(view.part("head"))
    assert [option.text for option in menu.options] == ["the only head", "0"]


def test_masked_cells_are_hatched_grey_and_said_to_be_masked(browser, decoded):
    html, maps = decoded
    view = opened(browser, html)
    view.choose("kind", "self")
    point = view.cell(0, 2)  # the first query cannot see the third token
    tip = view.hover("heatmap-hover", point)
    assert tip["weight"].startswith("masked")
    colour = view.pixel("heatmap", point)
    assert min(np.abs(colour - grey).sum() for grey in (0xd0, 0xa0)) < 20 or \
        (np.abs(colour - colour[0]) <= 2).all() and 0x90 <= colour[0] <= 0xe0  # hatch line
    assert tip["query"] == f"<bos> → {display_label(maps.target_tokens[1])} (0)"


def test_each_scale_colours_as_the_images_do(browser, decoded):
    html, maps = decoded
    view = opened(browser, html)
    view.choose("kind", "encoder")
    view.choose("layer", "1")
    view.choose("head", "0")
    weights = maps.encoder_self[1, 0]  # (S, S)

    size = view.call("api.layout().cell")

    def index_at(row, col) -> int:  # the colour-map entry nearest to the drawn pixel
        centre = view.cell(row, col)  # which may hold the weight, written in the cell
        corner = {"x": centre["x"] - size / 2 + 3, "y": centre["y"] - size / 2 + 3}
        drawn = view.pixel("heatmap", corner)
        return int(np.abs(COLORS - drawn).sum(1).argmin())

    view.choose("scale", "row")
    for row in range(weights.shape[0]):
        assert index_at(row, int(weights[row].argmax())) == 255
    view.choose("scale", "panel")
    top = tuple(int(i) for i in np.unravel_index(weights.argmax(), weights.shape))
    assert index_at(*top) == 255
    view.choose("scale", "unit")
    for row, col in [(0, 0), (3, 5), top]:
        assert abs(index_at(row, col) - min(255, int(weights[row, col] * 256))) <= 1
    view.choose("scale", "shared")  # the largest weight of every layer and head
    shared = maps.encoder_self.max()
    assert abs(index_at(*top) - min(255, int(weights[top] / shared * 256))) <= 1
    view.choose("head", "mean")  # the mean over heads, on the same maximum
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
    view = opened(browser, html)
    view.choose("kind", "cross")
    view.choose("layer", "1")
    view.show("heads")
    assert view.part("heads").is_displayed()
    assert not view.part("heatmap").is_displayed()
    row = 2
    point = view.call("api.tokenCenter('query', args[0])", row)
    tip = view.hover("heads-hover", point)
    strongest = int(maps.cross[1].mean(0)[row].argmax())
    assert tip["query"] == f"{views.heatmap(maps, 'cross').query_labels[row]} ({row})"
    assert tip["key"] == f"{display_label(maps.source_tokens[strongest])} ({strongest})"
    view.show("heatmap")
    assert view.part("heatmap").is_displayed()
    assert not view.part("heads").is_displayed()
    tip = view.hover("heatmap-hover", view.cell(row, strongest))
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
    view = opened(browser, path)
    layout = view.call("api.layout()")
    assert 20 <= len(layout["rows"]) <= 720 / 14 + 1 and len(layout["cols"]) == len(layout["rows"])
    step = layout["rows"][1][0]
    assert layout["rows"][1] == [step, f"w{step} ({step})"]
    view.show("heads")  # too many lines: the strongest only
    assert "each query's 13 strongest are drawn" in view.part("heads-limit").text
    short = tmp_path / "short.html"
    short.write_bytes(page.to_bytes(hostile_maps(tokens[:10])))
    view = opened(browser, short)
    assert [label for _, label in view.call("api.layout()")["rows"]] == tokens[:10]


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
