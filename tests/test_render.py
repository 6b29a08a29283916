"""Renderers, checked by reading their output back: pixels, XML, PDF structure, numbers, text."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from attnviz import views
from attnviz.errors import AttnvizError
from attnviz.maps import AttentionMaps
from attnviz.render import check_outputs, image, output_format, terminal
from attnviz.render.colors import rgb
from tests.test_maps import make_maps


def _pixels(path_or_bytes) -> np.ndarray:
    return np.asarray(Image.open(path_or_bytes).convert("RGB"))


def test_png_has_the_heatmap_colours_and_the_masked_grey(tmp_path):
    maps = make_maps(s=5, t=6)
    path = tmp_path / "dec.png"
    image.save([views.heatmap(maps, "decoder_self", 1, None),
                views.heatmap(maps, "cross", 1, 0)], path, "viridis")
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        width, height = picture.size
    assert width > 800 and height > 400  # two panels side by side
    pixels = _pixels(path)
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert len(colours) > 50
    # The brightest cell of the map is drawn in the colour map's top colour.
    distance_to_top = np.abs(pixels.astype(int) - rgb("viridis", np.array(1.0))).sum(-1)
    assert (distance_to_top < 12).sum() > 100
    assert (np.abs(pixels.astype(int) - [0xd0, 0xd0, 0xd0]).sum(-1) < 6).sum() > 500  # masked


def test_png_of_another_cmap_uses_its_colours(tmp_path):
    path = tmp_path / "enc.png"
    image.save([views.heatmap(make_maps(), "encoder_self", 0, None)], path, "Reds")
    top = rgb("Reds", np.array(1.0)).astype(int)
    assert (np.abs(_pixels(path).astype(int) - top).sum(-1) < 12).sum() > 100


def test_svg_is_valid_xml_with_the_labels_as_text_and_a_drawn_map(tmp_path):
    maps = make_maps(s=4, t=3)
    path = tmp_path / "cross.svg"
    image.save([views.heatmap(maps, "cross", 0, None)], path, "viridis")
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert float(root.get("width").rstrip("pt")) > 200
    text = path.read_text()
    for token in [*maps.source_tokens, "&lt;bos&gt;", "Cross-attention"]:
        assert token in text
    embedded = re.search(r'xlink:href="data:image/png;base64,([^"]+)"', text)
    assert embedded, "the heatmap cells are embedded as an image"
    cells = _pixels(io.BytesIO(base64.b64decode(embedded.group(1))))
    assert cells.std() > 5


def test_pdf_is_a_pdf_with_one_page_of_the_figure_size(tmp_path):
    path = tmp_path / "enc.pdf"
    heatmap = views.heatmap(make_maps(), "encoder_self", 0, 0)
    image.save([heatmap], path, "viridis")
    width, height = image.figure([heatmap], "viridis").get_size_inches() * 72  # points
    content = path.read_bytes()
    assert content.startswith(b"%PDF-") and content.rstrip().endswith(b"%%EOF")
    assert content.count(b"/Type /Page\n") + content.count(b"/Type /Page ") >= 1
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", content)
    assert box and abs(float(box.group(1)) - width) < 0.5
    assert abs(float(box.group(2)) - height) < 0.5
    assert width > 150 and height > 150


def test_images_are_reproducible_byte_for_byte(tmp_path):
    heatmap = views.heatmap(make_maps(), "cross", 0, None)
    for suffix in (".png", ".svg", ".pdf"):
        first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        image.save([heatmap], first, "viridis")
        image.save([heatmap], second, "viridis")
        assert first.read_bytes() == second.read_bytes(), suffix


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_data_files_round_trip_every_number(tmp_path, suffix):
    maps = make_maps()
    path = tmp_path / f"maps{suffix}"
    maps.save(path)
    back = AttentionMaps.load(path)
    assert back.source_tokens == maps.source_tokens and back.target_tokens == maps.target_tokens
    for kind in ("encoder_self", "decoder_self", "cross"):
        assert np.array_equal(getattr(back, kind), getattr(maps, kind))
    assert back.provenance == maps.provenance


def test_npz_loads_with_plain_numpy_and_no_pickle(tmp_path):
    maps = make_maps()
    maps.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(["source_tokens", "target_tokens",
                                                "encoder_self", "decoder_self", "cross",
                                                "provenance"])
        assert archive["cross"].shape == maps.cross.shape


def test_unknown_suffix_lists_the_supported_ones(tmp_path):
    with pytest.raises(AttnvizError, match=r"'\.gif' is not a supported output; use one of "
                                           r"\.png, \.svg, \.pdf, \.npz, \.json"):
        output_format(tmp_path / "x.gif")
    with pytest.raises(AttnvizError, match="has no suffix"):
        check_outputs([tmp_path / "x"], "viridis")
    assert output_format(tmp_path / "X.PNG") == "png"


def test_unknown_colour_map_is_refused_early(tmp_path):
    with pytest.raises(AttnvizError, match="unknown colour map 'nope'"):
        check_outputs([tmp_path / "x.png"], "nope")
    check_outputs([tmp_path / "x.npz"], "nope")  # data files have no colours


def _vertical_labels(lines: list[str], start: int, cell: int, count: int) -> list[str]:
    """Read the column labels that the terminal renderer writes downwards."""
    labels = []
    for col in range(count):
        centre = start + col * cell + (cell - 1) // 2
        labels.append("".join(line[centre] if centre < len(line) else " "
                              for line in lines).strip())
    return labels


def _render_text(heatmap, width=80, color=False) -> str:
    console = Console(width=width, color_system="truecolor" if color else None, record=True,
                      file=io.StringIO())
    terminal.show(console, [heatmap], "viridis")
    return console.export_text()


def test_terminal_shows_every_token_on_both_axes():
    maps = make_maps(s=5, t=4)
    heatmap = views.heatmap(maps, "cross", 0, None)
    lines = _render_text(heatmap).splitlines()
    assert lines[0] == "Cross-attention · layer 0 · mean of 3 heads"
    rows = [line for line in lines if line.strip().split(" ")[0] in heatmap.query_tokens]
    assert [row.split()[0] for row in rows] == heatmap.query_tokens
    label_width = max(len(t) for t in heatmap.query_tokens)
    header = lines[2:2 + max(len(t) for t in heatmap.key_tokens)]
    assert _vertical_labels(header, label_width + 1, 3, 5) == heatmap.key_tokens


def test_terminal_plain_text_ramp_follows_the_weights():
    maps = make_maps(s=3, t=3)
    heatmap = views.heatmap(maps, "encoder_self", 0, 0)
    lines = _render_text(heatmap).splitlines()
    body = [line for line in lines if line[:2] in ("s0", "s1", "s2")]
    peak = np.unravel_index(heatmap.weights.argmax(), heatmap.weights.shape)
    assert body[peak[0]][3 + peak[1] * 3: 6 + peak[1] * 3] == "@@@"


def test_terminal_marks_masked_cells_and_explains_them():
    text = _render_text(views.heatmap(make_maps(t=4), "decoder_self", 0, None))
    first_row = next(line for line in text.splitlines() if line.startswith("<bos>"))
    assert first_row.count("·") == 3
    assert "masked: a future position, weight exactly 0" in text


def test_terminal_colour_cells_use_the_colour_map():
    heatmap = views.heatmap(make_maps(), "cross", 0, 0)
    console = Console(width=80, color_system="truecolor", file=io.StringIO(), force_terminal=True)
    terminal.show(console, [heatmap], "viridis")
    out = console.file.getvalue()
    row, col = np.unravel_index(heatmap.weights.argmax(), heatmap.weights.shape)
    r, g, b = rgb("viridis", np.array(1.0))
    assert f"48;2;{r};{g};{b}m" in out  # the largest weight gets the top colour, 24-bit
    # Another colour map: rich caches the codes of a style it has drawn once, per process.
    console256 = Console(width=80, color_system="256", file=io.StringIO(), force_terminal=True)
    terminal.show(console256, [heatmap], "magma")
    assert "48;5;" in console256.file.getvalue() and "48;2;" not in console256.file.getvalue()


def test_long_maps_are_pooled_to_the_width_with_a_note():
    rng = np.random.default_rng(0)
    n = 500
    weights = np.tril(rng.random((n, n))).astype(np.float32)
    weights /= weights.sum(-1, keepdims=True)
    maps = make_maps(s=2, t=n)
    heatmap = views.heatmap(maps, "decoder_self", 0, 0)
    heatmap = type(heatmap)(**{**heatmap.__dict__, "weights": weights})
    text = _render_text(heatmap, width=100)
    assert max(len(line) for line in text.splitlines()[:-3]) <= 100
    assert "pooled to" in text and "500×500" in text
    grid = terminal.pool(heatmap, 12)
    np.testing.assert_allclose(grid.weights.sum(-1), 1.0, rtol=1e-5)
    assert grid.weights.shape == (42, 42)
    assert grid.row_labels[0] == "0-11 <bos>" and grid.row_labels[-1] == "492-499 t491"
    assert not grid.visible[0, 1] and grid.visible[1, 0]


def test_pooled_cells_are_coloured_on_the_pooled_scale():
    """A pooled cell holds several keys' weight; the scale must follow, not saturate."""
    n = 400
    heatmap = views.heatmap(make_maps(s=n, t=2), "encoder_self", 0, 0)
    weights = np.ones((n, n), dtype=np.float32)
    weights[:, : n // 2] = 2.0  # the first half of the keys gets twice the weight
    weights /= weights.sum(-1, keepdims=True)
    heatmap = type(heatmap)(**{**heatmap.__dict__, "weights": weights})
    text = _render_text(heatmap, width=100)
    rows = [re.match(r"^\s*\d+-\d+ s\d+ (.*)$", line) for line in text.splitlines()]
    body = [match.group(1) for match in rows if match]
    assert body, text
    assert all(row[:2] == "@@" and row[-4:-2] == "++" for row in body)  # full scale, and half
    legend = next(line for line in text.splitlines() if line.startswith("scale 0"))
    largest = float(legend.split("]")[1].split()[0])
    factor = -(-n * 2 // (100 - len("392-399") - 1))
    assert abs(largest - factor * 2 / (1.5 * n)) < 0.01


def test_long_labels_end_with_an_ellipsis_in_images_and_terminal():
    from attnviz.text import shorten

    assert shorten("abcdefghij", 5) == "abcd…" and shorten("abc", 5) == "abc"


def test_a_pooled_block_of_one_row_is_named_by_its_position():
    heatmap = views.heatmap(make_maps(s=3, t=11), "decoder_self", 0, None)
    grid = terminal.pool(heatmap, 2)
    assert grid.row_labels[0] == "0-1 <bos>" and grid.row_labels[-1] == "10 t9"
    assert grid.column_labels[-1] == "10"
