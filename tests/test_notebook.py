"""attnviz in a notebook: maps, an explanation and a figure show themselves as a cell's result.

The notebook is docs/notebook.ipynb, the example a new user opens. The tests marked
``process`` execute it in a real Jupyter kernel (nbclient, with no ``%matplotlib`` line
anywhere), turn it into HTML with nbconvert and open that in headless Chromium, where every
view must draw, answer a hover with its own numbers and ignore the others; and they save it,
read it back and open it again. The others check, without a kernel, what IPython is told and
what the reprs say.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import attnviz
from attnviz.maps import views
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.render.colors import lookup_table
from tests import chromium
from tests.test_maps import make_maps, small_explanation

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.ipynb"
# What the notebook traces and explains, to compare its views with: the test checks that its
# cells still say so.
SENTENCE = "the small black cats see a red car"
DATE = "tuesday, march 3, 2026"
CELLS = {"maps": f'maps = attnviz.trace("{SENTENCE}")',
         "dates": f'dates = attnviz.trace("{DATE}", model="dates")',
         "explained": f'explained = attnviz.explain("{SENTENCE}", kind="cross", layer=1, head=0)'}
TOLERANCE = 1 / 510 + 0.0005  # the page's stated rounding, and the 3 decimals it shows
COLORS = lookup_table("viridis").astype(int)  # (256, 3)
# nbconvert's HTML template loads require.js and MathJax from a CDN; pointed at empty
# scripts, the page asks for nothing, so a request the test sees is one a view made.
NO_CDN = ("require_js_url", "mathjax_url", "mermaid_js_url", "mermaid_layout_elk_js_url",
          "jquery_url")
REQUIRED = os.environ.get("ATTNVIZ_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    for module in ("nbformat", "nbclient", "nbconvert", "ipykernel"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[test]')"
    return chromium.missing()


needs_jupyter = pytest.mark.skipif(_missing() is not None and not REQUIRED,
                                   reason=_missing() or "")


def cells_and_results(notebook) -> list[tuple[str, list[dict]]]:
    return [(cell.source, cell.get("outputs", [])) for cell in notebook.cells
            if cell.cell_type == "code"]


def result_of(notebook, name: str) -> dict:
    """The data of the result of the cell that ends with ``name`` alone (``maps``...)."""
    for source, outputs in cells_and_results(notebook):
        if source.strip().splitlines()[-1] == name:
            (result,) = [out for out in outputs if out["output_type"] == "execute_result"]
            return result["data"]
    raise AssertionError(f"no cell of the notebook ends with {name!r}")


def check_results(notebook) -> None:
    """Every code cell ran; maps, the explanation and the figures gave a picture, maps and
    the explanation an interactive view; text is short; no %matplotlib anywhere."""
    assert not any("%matplotlib" in source for source, _ in cells_and_results(notebook))
    for line in CELLS.values():
        assert any(line in source for source, _ in cells_and_results(notebook)), \
            f"the notebook no longer says {line!r}: update CELLS"
    for source, outputs in cells_and_results(notebook):
        assert outputs, f"a cell gave nothing: {source!r}"
        assert not [out for out in outputs if out["output_type"] == "error"]
        for out in outputs:
            text = out.get("data", {}).get("text/plain", out.get("text", ""))
            assert len(text.encode("utf-8")) < 1024, text[:200]
    for name in CELLS:
        data = result_of(notebook, name)
        assert {"text/plain", "text/html", "image/png"} <= set(data), (name, sorted(data))
        assert data["text/html"].startswith('<div class="attnviz-view" id="attnviz-')
        assert data["text/plain"].startswith(("AttentionMaps(", "Explanation("))
    figures = [outputs[0]["data"] for source, outputs in cells_and_results(notebook)
               if source.startswith("attnviz.plot(")]
    assert len(figures) == 2
    for data in figures:
        assert "image/png" in data and data["text/plain"].startswith("<Figure size")


def test_the_example_notebook_is_stored_executed_with_its_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    check_results(notebook)
    assert notebook.metadata.kernelspec.name == "python3"


# --- What IPython is told (no kernel) ------------------------------------------------------


@pytest.fixture
def formatter(monkeypatch):
    """IPython's own display formatter, as a notebook's kernel has it, with attnviz
    registered in it as ``import attnviz`` does inside IPython."""
    import IPython
    from IPython.core.formatters import DisplayFormatter

    formatter = DisplayFormatter()
    shell = types.SimpleNamespace(display_formatter=formatter)
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    attnviz._show_in_notebooks()
    return formatter


def test_maps_and_an_explanation_show_as_a_view_beside_a_picture(formatter):
    maps, explained = make_maps(), small_explanation()
    for shown, text in ((maps, "AttentionMaps("), (explained, "Explanation(")):
        data, _ = formatter.format(shown)
        assert set(data) == {"text/plain", "text/html", "image/png"}
        assert data["text/plain"].startswith(text) and len(data["text/plain"]) < 1024
        assert data["image/png"].startswith(b"\x89PNG")
        assert data["text/html"].startswith('<div class="attnviz-view" id="attnviz-')
    again, _ = formatter.format(maps)  # the same maps twice: two views, two ids
    assert _root_id(again["text/html"]) != _root_id(formatter.format(maps)[0]["text/html"])


def test_a_figure_shows_itself_and_pyplot_never_holds_it(formatter):
    import matplotlib.pyplot as plt

    maps = make_maps()
    before = plt.get_fignums()
    figure = attnviz.plot(maps, kind="cross")
    data, _ = formatter.format(figure)
    assert set(data) == {"text/plain", "image/png"} and data["image/png"].startswith(b"\x89PNG")
    steps = attnviz.plot(small_explanation())
    assert formatter.format(steps)[0]["image/png"].startswith(b"\x89PNG")
    assert plt.get_fignums() == before  # pyplot's list of figures never saw them
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure) and isinstance(steps, Figure)


def test_a_front_end_that_shows_text_alone_never_draws(formatter, monkeypatch):
    """The terminal's IPython asks for text only: nothing is drawn for it."""
    from attnviz import api

    def refuse(*args, **kwargs):
        raise AssertionError("drawn for a front end that shows text only")

    monkeypatch.setattr(api, "page", refuse)
    monkeypatch.setattr(api, "png", refuse)
    formatter.active_types = ["text/plain"]
    data, _ = formatter.format(make_maps())
    assert list(data) == ["text/plain"]


def test_maps_too_large_for_a_page_show_their_picture_and_say_why(formatter, monkeypatch):
    from attnviz.render import page

    monkeypatch.setattr(page, "MAX_WEIGHTS", 10)
    with pytest.warns(attnviz.AttnvizWarning, match="shows no interactive view of this: these "
                                                    "maps hold .* too many for a page"):
        data, _ = formatter.format(make_maps())
    assert set(data) == {"text/plain", "image/png"}


# --- Text reprs ----------------------------------------------------------------------------


def test_maps_say_what_they_are_in_a_few_lines_never_their_weights():
    text = "the \x1b[31mred\x1b[0m cat " + "very " * 100 + "long"
    maps = AttentionMaps(["a", "b"], ["<bos>", "x", "y"],
                         encoder_self=np.full((6, 12, 2, 2), 0.5, np.float32),
                         decoder_self=np.full((3, 12, 3, 3), 1 / 3, np.float32),
                         cross=np.full((3, 12, 3, 2), 0.5, np.float32),
                         provenance=Provenance(model="hf:" + "x" * 300, source_text=text,
                                               target_text="le chat"))
    shown = repr(maps)
    assert shown == (
        "AttentionMaps(kinds=('encoder_self', 'decoder_self', 'cross'), "
        "layers={'encoder_self': 6, 'decoder_self': 3, 'cross': 3}, heads=12,\n"
        f"              source_tokens=2, target_tokens=3, model='hf:{'x' * 44}…',\n"
        f"              source={text[:47] + '…'!r},\n"
        "              target='le chat')")
    assert "\x1b" not in shown and "\\x1b" in shown  # control characters stay escapes
    assert len(shown) < 1024 and shown.count("\n") == 3 and "array" not in shown
    assert str(maps) == shown
    bare = repr(make_maps())  # another tool's maps: no texts, no model
    assert bare.endswith("source_tokens=3, target_tokens=4, model=None)")


def test_an_explanation_says_what_it_explains_never_its_numbers():
    shown = repr(small_explanation())
    assert shown == ("Explanation(kind='cross', layer=1, head=0, heads=2, d_model=8,\n"
                     "            queries=[T=3 × d_k=4], keys=[S=3 × d_k=4], "
                     "values=[S=3 × d_k=4],\n"
                     "            scores=[T=3 × S=3], weights=[T=3 × S=3], model='by hand')")
    assert len(shown) < 1024 and "array" not in shown


# --- A real kernel, nbconvert and a browser ------------------------------------------------


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """docs/notebook.ipynb, its outputs cleared, executed by a Jupyter kernel that runs this
    Python, with its own render cache and IPython and Jupyter folders (never the user's)."""
    import nbformat
    from nbclient import NotebookClient

    scratch = tmp_path_factory.mktemp("notebook")
    spec = scratch / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (attnviz's tests)", "language": "python"}))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    env = {**os.environ, "JUPYTER_PATH": str(scratch / "jupyter"),
           "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"), "IPYTHONDIR": str(scratch / "ipython"),
           "ATTNVIZ_CACHE_DIR": str(scratch / "cache"), "OMP_NUM_THREADS": "1"}
    with pytest.MonkeyPatch.context() as patch:
        for name in ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR"):  # where the client looks too
            patch.setenv(name, env[name])
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(scratch)}}).execute(env=env)
    return notebook


def html_of(notebook) -> str:
    """The notebook as nbconvert's HTML export (its default, lab template) writes it."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    for name in NO_CDN:
        setattr(config.HTMLExporter, name, "data:text/javascript,")
    body, _ = HTMLExporter(config=config).from_notebook_node(notebook)
    return body


@pytest.fixture(scope="module")
def browser():
    driver = chromium.driver()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def expected():
    """The numbers the notebook's views show, computed here, as the notebook computes them."""
    return {"maps": attnviz.trace(SENTENCE, cache=False),
            "dates": attnviz.trace(DATE, model="dates", cache=False),
            "explained": attnviz.explain(SENTENCE, kind="cross", layer=1, head=0)}


def opened(browser, tmp_path: Path, notebook) -> list[chromium.View]:
    path = tmp_path / "notebook.html"
    path.write_text(html_of(notebook), encoding="utf-8")
    browser.get_log("browser")
    chromium.requests(browser)  # forget what came before
    states = (browser.get(path.as_uri()), chromium.wait_for_views(browser))[1]
    assert [(state["ready"], state["error"]) for state in states] == [(True, None)] * 3
    found = chromium.views(browser)
    assert len({view.root.get_attribute("id") for view in found}) == 3
    return found


def errors(browser) -> list[dict]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def fetched(browser, path: Path) -> list[str]:
    """What the page asked for beyond itself and its inline (data:) scripts; the browser's
    own pages (chrome://) aside."""
    return [url for url in chromium.requests(browser)
            if url != path.as_uri() and not url.startswith(("data:", "chrome://"))]


def drawn(view: chromium.View, row: int, col: int) -> int:
    """How far the pixel at the corner of cell (row, col) is from the nearest colour of the
    colour map: small where the heatmap is drawn."""
    size = view.call("api.layout().cell")
    centre = view.cell(row, col)
    colour = view.pixel("heatmap", {"x": centre["x"] - size / 2 + 3,
                                    "y": centre["y"] - size / 2 + 3})
    return int(np.abs(COLORS - colour).sum(1).min())


def check_hover(view: chromium.View, maps: AttentionMaps, kind: str, layer: int, head: int,
                row: int, col: int) -> None:
    """The view answers a hover of cell (row, col) with that cell of ``maps``."""
    assert view.state["layer"] == layer and view.state["head"] == head
    tip = view.hover("heatmap-hover", view.cell(row, col))
    shown = views.heatmap(maps, kind, layer, head)
    assert tip["query"] == f"{shown.query_labels[row]} ({row})"
    assert tip["key"] == f"{shown.key_labels[col]} ({col})"
    assert abs(float(tip["weight"]) - maps.stack(kind)[layer, head, row, col]) <= TOLERANCE


@needs_jupyter
@pytest.mark.process
def test_the_notebook_runs_in_a_kernel_and_its_results_show_themselves(executed):
    check_results(executed)
    assert "fragment" in executed.cells[-1].source  # its last cell prints an embeddable view
    (printed,) = cells_and_results(executed)[-1][1]
    assert printed["text"].startswith("AttentionMaps(kinds=")
    assert '<div class="attnviz-view" id="attnviz-' in printed["text"]


@needs_jupyter
@pytest.mark.process
def test_the_notebook_as_html_holds_views_that_each_draw_and_answer_alone(
        executed, browser, expected, tmp_path):
    first, second, third = opened(browser, tmp_path, executed)
    for view in (first, second, third):
        for control in ("kind", "layer", "head", "scale"):
            assert view.options(control), control  # every menu filled
        assert drawn(view, 0, 0) <= 6
    assert first.options("kind") == second.options("kind") == ["encoder", "self", "cross"]
    # Each view answers with its own maps.
    maps, dates, explained = expected["maps"], expected["dates"], expected["explained"]
    first.choose("kind", "cross")
    first.choose("layer", "0")
    first.choose("head", "1")
    check_hover(first, maps, "cross", 0, 1, 2, 3)
    second.choose("kind", "cross")
    second.choose("layer", "1")
    second.choose("head", "2")
    check_hover(second, dates, "cross", 1, 2, 1, 4)
    # A layer switched in one view changes no other.
    first.choose("layer", "1")
    assert second.state == {"kind": "cross", "layer": 1, "head": 2, "scale": "panel",
                            "view": "heatmap"}
    check_hover(second, dates, "cross", 1, 2, 1, 4)
    check_hover(first, maps, "cross", 1, 1, 2, 3)
    assert third.state == {"kind": "cross", "layer": 0, "head": 0, "scale": "panel",
                           "view": "heatmap"}
    # The explanation's view: its one layer and head, as the model numbers them, and each
    # cell's score beside its weight.
    from selenium.webdriver.support.ui import Select

    assert [o.text for o in Select(third.part("layer")).options] == ["1"]
    assert [o.text for o in Select(third.part("head")).options] == ["0"]
    tip = third.hover("heatmap-hover", third.cell(2, 3))
    assert tip["query"] == f"{views.heatmap(maps, 'cross').query_labels[2]} (2)"
    assert abs(float(tip["weight"]) - explained.weights[2, 3]) <= TOLERANCE
    assert abs(float(tip["score"]) - explained.scores[2, 3]) <= 0.0005
    assert explained.weights[2, 3] == maps.cross[1, 0, 2, 3]
    assert errors(browser) == []
    assert fetched(browser, tmp_path / "notebook.html") == []
    assert browser.execute_script("return performance.getEntriesByType('resource')"
                                  ".filter((r) => !r.name.startsWith('data:')).length") == 0


@needs_jupyter
@pytest.mark.process
def test_a_saved_and_reopened_notebook_still_shows_its_views(executed, browser, expected,
                                                             tmp_path):
    import nbformat

    path = tmp_path / "saved.ipynb"
    nbformat.write(executed, path)
    reopened = nbformat.read(path, as_version=4)
    for name in CELLS:
        assert result_of(reopened, name) == result_of(executed, name)
    views_ = opened(browser, tmp_path, reopened)
    for view, name in zip(views_, ("maps", "dates"), strict=False):
        assert view.state["kind"] == "encoder" and view.state["head"] == "mean"
        maps = expected[name]
        layer = maps.default_layer("encoder_self")
        assert view.state["layer"] == layer
        tip = view.hover("heatmap-hover", view.cell(0, 1))
        assert tip["key"] == f"{views.heatmap(maps, 'encoder_self').key_labels[1]} (1)"
        mean = maps.encoder_self[layer].mean(0)  # (S, S): the mean over heads
        assert abs(float(tip["weight"]) - mean[0, 1]) <= TOLERANCE
    assert drawn(views_[2], 0, 0) <= 6
    assert errors(browser) == []


def _root_id(html: str) -> str:
    return re.match(r'<div class="attnviz-view" id="(attnviz-[0-9a-f]+)">', html).group(1)
