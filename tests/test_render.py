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

from attnviz.errors import AttnvizError
from attnviz.flow.pipeline import check_outputs, output_format
from attnviz.maps import views
from attnviz.maps.data import AttentionMaps
from attnviz.render import image, layout, terminal, terminal_fit
from attnviz.render.colors import rgb
from tests.test_maps import make_maps


def _save(heatmaps, path, cmap) -> None:
    path.write_bytes(image.to_bytes(heatmaps, path.suffix[1:], cmap))


def _pixels(path_or_bytes) -> np.ndarray:
    return np.asarray(Image.open(path_or_bytes).convert("RGB"))


def test_png_has_the_heatmap_colours_and_the_masked_grey(tmp_path):
    maps = make_maps(s=5, t=6)
    path = tmp_path / "dec.png"
    _save([views.heatmap(maps, "decoder_self", 1, None),
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
    _save([views.heatmap(make_maps(), "encoder_self", 0, None)], path, "Reds")
    top = rgb("Reds", np.array(1.0)).astype(int)
    assert (np.abs(_pixels(path).astype(int) - top).sum(-1) < 12).sum() > 100


def test_svg_is_valid_xml_with_the_labels_as_text_and_a_drawn_map(tmp_path):
    maps = make_maps(s=4, t=3)
    path = tmp_path / "cross.svg"
    _save([views.heatmap(maps, "cross", 0, None)], path, "viridis")
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
    _save([heatmap], path, "viridis")
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
        _save([heatmap], first, "viridis")
        _save([heatmap], second, "viridis")
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
    with pytest.raises(AttnvizError, match=r"'\.bmp' is not a supported output; use one of "
                                           r"\.png, \.svg, \.pdf, \.gif, \.npz, \.json"):
        output_format(tmp_path / "x.bmp")
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
    # Each decoder row reads "input → next": the next input, and last <?>.
    assert [row.strip() for row in rows] == [
        f"{token} → {after}" + row.strip().split(after, 1)[1]
        for token, after, row in zip(heatmap.query_tokens, [*heatmap.query_tokens[1:], "<?>"],
                                     rows, strict=True)]
    label_width = max(len(label) for label in heatmap.query_labels)
    first_row = lines.index(rows[0])  # the column labels end just above it
    header = lines[first_row - max(len(t) for t in heatmap.key_tokens):first_row]
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
    grid = terminal_fit.pool(heatmap, 12)
    np.testing.assert_allclose(grid.weights.sum(-1), 1.0, rtol=1e-5)
    assert grid.weights.shape == (42, 42)
    assert grid.row_labels[0] == "0-11 <bos> → t0"
    assert grid.row_labels[-1] == "492-499 t491 → t492"
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
    from attnviz.io.text import shorten

    assert shorten("abcdefghij", 5) == "abcd…" and shorten("abc", 5) == "abc"


def test_a_pooled_block_of_one_row_is_named_by_its_position():
    heatmap = views.heatmap(make_maps(s=3, t=11), "decoder_self", 0, None)
    grid = terminal_fit.pool(heatmap, 2)
    assert grid.row_labels[0] == "0-1 <bos> → t0" and grid.row_labels[-1] == "10 t9 → <?>"
    assert grid.column_labels[-1] == "10"


# --- Labels in any script, and labels that are not text at all ---------------------------

import warnings  # noqa: E402

from rich.cells import cell_len  # noqa: E402

from attnviz.errors import AttnvizWarning  # noqa: E402
from attnviz.render import fonts  # noqa: E402

NASTY = ["\x1b[2J", "\x1b]0;title\x07", "\x07", "ab\u202ecd", "x" * 10_000, "",
         "\u0301\u0302", "$\\frac{$", "$x$", "\t\n", "我爱你我爱你我爱你我爱你我爱你", "🙂🙂🙂"]


def _with_tokens(heatmap, queries, keys):
    """``heatmap`` with other tokens (and weights of their shape: uniform rows), each row
    labelled by its token alone."""
    weights = np.full((len(queries), len(keys)), 1.0 / len(keys), dtype=np.float32)
    return type(heatmap)(**{**heatmap.__dict__, "weights": weights, "query_tokens": queries,
                            "key_tokens": keys, "visible": np.ones(weights.shape, bool),
                            "predicts": False})


def _cross(queries, keys):
    return _with_tokens(views.heatmap(make_maps(), "cross", 0, 0), list(queries), list(keys))


@pytest.fixture
def no_fallback_fonts(monkeypatch):
    """A machine where no installed font has what the default font lacks."""
    monkeypatch.setattr(fonts, "installed", lambda: ())
    fonts._fallbacks.cache_clear()
    yield
    fonts._fallbacks.cache_clear()


def _draw_recording_warnings(heatmaps, fmt):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        content = image.to_bytes(heatmaps, fmt, "viridis")
    return content, caught


def test_fallback_families_cover_what_each_lacks_in_order():
    charmaps = {"cjk": {0x6211, 0x7231}, "both": {0x6211, 0x1F642}, "emoji": {0x1F642},
                "none": set()}
    candidates = [fonts.Candidate(name, name) for name in ("none", "cjk", "both", "emoji")]
    families, left = fonts.pick({0x6211, 0x7231, 0x1F642, 0x0600}, candidates,
                                lambda path, index: charmaps[path])
    # "none" adds nothing; "both" adds the emoji; "emoji" would add nothing new.
    assert families == ["cjk", "both"] and left == {0x0600}
    assert fonts.pick({0x6211}, candidates, lambda p, i: charmaps[p]) == (["cjk"], set())


def test_fallback_candidates_come_from_matplotlibs_font_list():
    from matplotlib import font_manager

    candidates = fonts.installed()
    families = [c.family for c in candidates]
    assert len(families) == len(set(families)), "one file per family"
    assert "STIXGeneral" in families  # shipped with matplotlib: there on every machine
    assert not any(f.startswith(fonts.NOT_FALLBACKS) for f in families)
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    preferred = [f for f in fonts.PREFERRED if f in installed]
    assert families[: len(preferred)] == preferred
    stix = next(c for c in candidates if c.family == "STIXGeneral")
    assert stix.path.endswith("STIXGeneral.ttf")  # the regular face, not the bold or italic


def test_latin_labels_never_look_at_the_installed_fonts(monkeypatch):
    def fail():
        raise AssertionError("the font list was read for labels the default font draws")

    monkeypatch.setattr(fonts, "installed", fail)
    assert fonts.choose(["<bos>", "the", "cat"]) == fonts.FontChoice((), "")
    assert fonts.choose(["café", "Straße", "␣", "naïve", "Ωμέγα"]) == fonts.FontChoice((), "")


def test_a_glyph_the_default_font_lacks_comes_from_an_installed_font():
    # U+2316 POSITION INDICATOR: not in DejaVu Sans, in matplotlib's own STIXGeneral.
    choice = fonts.choose(["a\u2316"])
    assert choice.missing == "" and choice.families
    heatmap = _cross(["a\u2316", "b"], ["\u2316", "c"])
    for fmt in ("png", "svg", "pdf"):
        first, caught = _draw_recording_warnings([heatmap], fmt)
        assert [str(w.message) for w in caught] == [], fmt
        assert image.to_bytes([heatmap], fmt, "viridis") == first, f"{fmt} is reproducible"
    svg = image.to_bytes([heatmap], "svg", "viridis").decode()
    assert ">a\u2316<" in svg and choice.families[0] in svg  # text, with its fallback font


def test_glyphs_no_installed_font_has_give_one_warning_of_attnvizs_own(no_fallback_fonts):
    heatmap = _cross(["我爱你", "こんにちは", "🙂"], ["我爱你", "x"])
    for fmt in ("png", "svg", "pdf"):
        content, caught = _draw_recording_warnings([heatmap], fmt)
        assert len(caught) == 1, [str(w.message) for w in caught]
        warning = caught[0]
        assert warning.category is AttnvizWarning
        message = str(warning.message)
        assert "\n" not in message and "matplotlib/" not in warning.filename
        assert "我 (U+6211)" in message and "🙂 (U+1F642)" not in message  # eight are named
        assert "9 characters" in message and "and 1 more" in message
        assert "fonts-noto-cjk" in message
        assert content == _draw_recording_warnings([heatmap], fmt)[0], f"{fmt} is reproducible"
    assert "我爱你" in _draw_recording_warnings([heatmap], "svg")[0].decode()  # still text


@pytest.mark.parametrize("token", NASTY, ids=range(len(NASTY)))
def test_any_token_draws_in_an_image_with_readable_text(token, no_fallback_fonts):
    heatmap = _cross([token, "b"], [token, "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttnvizWarning)  # boxes for CJK: tested above
        png = image.to_bytes([heatmap], "png", "viridis")
        svg = image.to_bytes([heatmap], "svg", "viridis").decode()
    assert _pixels(io.BytesIO(png)).shape[0] > 200
    root = ET.fromstring(svg)
    texts = "".join(root.itertext())
    assert "\x1b" not in svg and "\x07" not in svg and "\u202e" not in svg
    shown = layout.short_labels([heatmap.key_labels[0]])[0]
    assert shown in texts  # the label, drawn literally (never as mathtext)
    assert cell_len(shown) <= layout.LABEL_CHARS


@pytest.mark.parametrize("token", NASTY, ids=range(len(NASTY)))
@pytest.mark.parametrize("width", [80, 20])
def test_any_token_draws_in_the_terminal_within_the_width(token, width):
    heatmap = _cross([token, "b", token], [token, "c"])
    text = _print(terminal.render(heatmap, "viridis", width, False), width)
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert all(cell_len(line) <= width for line in text.splitlines()), text
    assert "scale 0" in text
    grid = [line for line in text.splitlines() if line.endswith(("@", "·", " "))]
    assert grid


def test_labels_show_what_the_token_was():
    from attnviz.io.text import display_label

    assert display_label("\x1b[2J") == "\\x1b[2J" and display_label("\u202e") == "\\u202e"
    assert display_label("") == "''"
    assert display_label("\u0301") == "\u25cc\u0301" and cell_len(display_label("\u0301")) == 1


def _print(group, width: int) -> str:
    """What a terminal of ``width`` columns shows, uncropped: a line the renderer made too
    wide keeps its whole length here instead of being cut by rich."""
    _assert_laid_out_within(group, width)
    console = Console(width=width, color_system=None, record=True, file=io.StringIO())
    console.print(group, crop=False)
    return console.export_text()


def _assert_laid_out_within(group, width: int) -> None:
    """The lines rich may not wrap (the grid) are laid out no wider than ``width``: rich
    would crop a wider one, so the printed text alone cannot tell."""
    from rich.text import Text

    for line in group.renderables:
        if isinstance(line, Text) and line.no_wrap:
            assert line.cell_len <= width, (line.cell_len, line.plain)


def test_a_pooled_map_fits_80_columns_with_103_keys():
    # Pooled by 3, the labels "99-101 s99" take 10 columns: 10 + 1 + 35 cells of 2 = 81.
    heatmap = views.heatmap(make_maps(s=103), "encoder_self", 0, None)
    lines = _print(terminal.render(heatmap, "viridis", 80, False), 80).splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert any("pooled to" in line for line in lines)


def test_wide_characters_are_measured_in_terminal_columns():
    queries = ["我爱你我爱你我爱你我爱你", "a", "🙂"]
    keys = ["こんにちは", "e\u0301te\u0301", "🙂x"]
    lines = _print(terminal.render(_cross(queries, keys), "viridis", 80, False), 80).splitlines()
    rows = lines[2:]
    header, body = rows[:5], rows[5:8]
    widths = {cell_len(line) for line in header + body}
    assert widths == {terminal_fit.LABEL_WIDTH + 1 + 3 * 3}, "every grid line is as wide"
    # Five wide characters and the ellipsis: 11 columns of 12, so the label is padded.
    assert body[0].startswith(" 我爱你我爱… ") and body[2].startswith(" " * 10 + "🙂 ")
    # Centred: one column on the right of a wide character, one on each side of a narrow one.
    assert header[0][terminal_fit.LABEL_WIDTH + 1:] == "こ  e\u0301 🙂 "
    assert "e\u0301" in header[0] and "\u0301" not in header[1]  # the mark stays on its e


@pytest.mark.parametrize("width", [10, 12, 20])
def test_a_narrow_terminal_gets_a_small_map_with_short_labels(width):
    heatmap = _cross([f"token{i}" for i in range(50)], [f"s{i}" for i in range(200)])
    text = _print(terminal.render(heatmap, "viridis", width, False), width)
    assert all(cell_len(line) <= width for line in text.splitlines()), text
    assert "pooled to" in " ".join(text.split())  # the note, wrapped at the width
    assert any(line.lstrip().startswith("0-") for line in text.splitlines())  # a row label


def test_a_terminal_too_narrow_for_any_map_says_so():
    heatmap = _cross(["a", "b"], ["c", "d"])
    for width in range(1, terminal_fit.MIN_WIDTH):
        text = _print(terminal.render(heatmap, "viridis", width, False), width)
        assert "toonarrow" in "".join(text.split())  # wrapped, at one column a letter a line
        assert all(cell_len(line) <= width for line in text.splitlines())
    text = _print(terminal.render(heatmap, "viridis", terminal_fit.MIN_WIDTH, False),
                  terminal_fit.MIN_WIDTH)
    assert "too narrow" not in text and "scale" in text


def test_an_empty_map_is_said_not_drawn():
    from attnviz.maps.data import AttentionMaps

    maps = AttentionMaps(["a", "b"], [], np.full((1, 1, 2, 2), 0.5, np.float32),
                         np.zeros((1, 1, 0, 0), np.float32), np.zeros((1, 1, 0, 2), np.float32))
    text = _print(terminal.render(views.heatmap(maps, "cross", 0, 0), "viridis", 80, False), 80)
    assert "the map is empty: 0 queries, 2 keys" in text


def test_a_drawn_figure_is_freed_once_dropped():
    # Labels once kept in a weak dictionary keyed by the Axes kept every Figure alive (11 MB
    # a picture): a long export or notebook grew without end.
    import gc
    import weakref

    from attnviz import api
    from attnviz.maps import views
    from attnviz.render import image

    maps = api.trace("the cat sees the dog", "le chat voit le chien", model="random", cache=False)
    refs = []
    for _ in range(3):
        figure = image.figure(views.heatmaps(maps), "viridis")
        refs.append(weakref.ref(figure))
        del figure
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


class _Drawn(Exception):
    """The figure was made: the refusal it needed did not come first."""


def test_an_image_of_thousands_of_layers_is_refused_before_it_is_drawn(monkeypatch):
    # `show --layer all -o x.png` of a 100 kB hand-written json of 3,000 one-token layers
    # drew a 787 x 742,697 pixel PNG in 82 s at 3.4 GB of memory (300 layers: 7.7 s,
    # 0.4 GB; /usr/bin/time -v): 30,000 layers, a 1 MB file, would not fit in memory.
    import matplotlib.figure

    def drawn(*args, **kwargs):
        raise _Drawn

    monkeypatch.setattr(matplotlib.figure, "Figure", drawn)
    maps = AttentionMaps(["a"], [], encoder_self=np.ones((1000, 1, 1, 1), np.float32))
    with pytest.raises(AttnvizError, match=r"^this picture of 1,000 panels would be .* "
                       r"pixels, more than 100 million: draw fewer layers or heads"):
        image.to_bytes(views.plan(maps, layer="all"), "png", "viridis")


def _long_map(n: int) -> AttentionMaps:
    """One encoder map of ``n`` tokens a side that takes no memory: a broadcast view."""
    weights = np.broadcast_to(np.float32(1.0 / n), (1, 1, n, n))
    return AttentionMaps([f"t{i}" for i in range(n)], [], encoder_self=weights)


def test_a_picture_too_large_for_memory_is_refused_before_it_is_drawn(monkeypatch):
    """A 16,000 x 16,000 map, within attnviz's own file limits, took 7.3 GB to PNG or SVG
    before failing: its memory is known before it is drawn."""
    import matplotlib.figure

    def drawn(*args, **kwargs):
        raise _Drawn

    monkeypatch.setattr(matplotlib.figure, "Figure", drawn)
    plan = views.plan(_long_map(16_000))
    assert layout.drawing_bytes(layout.Layout(plan)) > 16_000**2 * 50
    for fmt in ("png", "svg"):
        with pytest.raises(AttnvizError, match=r"^this picture would take about 13\.\d GB of "
                           r"memory to draw, more than the 2 GB attnviz draws a picture in: "
                           r"draw a window of the maps \(window\), or view them in the "
                           r"terminal, which pools long maps to fit, or save them as numbers"):
            image.to_bytes(plan, fmt, "viridis")


def test_a_picture_is_refused_when_the_memory_left_to_the_process_is_less(monkeypatch):
    monkeypatch.setattr("attnviz.io.memory.room", lambda: 300 * 1024**2)
    plan = views.plan(_long_map(2_000))
    with pytest.raises(AttnvizError, match=r"^this picture would take about 0\.3 GB of memory "
                       r"to draw, more than the 0\.3 GB of memory left to this process: "):
        image.to_bytes(plan, "png", "viridis")
    small = views.plan(make_maps(s=5, t=6))
    assert image.to_bytes(small, "png", "viridis").startswith(b"\x89PNG")


def test_the_mean_of_one_head_and_the_scale_take_no_copy_of_a_long_map():
    """The plan of a long map holds views onto it: a 16,000 x 16,000 map is 1 GB, and the
    mean of its one head, and its largest weight, took a copy each."""
    plan = views.plan(_long_map(16_000))
    (panel,) = plan.panels
    assert np.shares_memory(panel.weights, panel.whole[0])
    assert panel.weights.base is not None and not panel.weights.flags.owndata
    assert plan.shared_max == pytest.approx(1 / 16_000)


def test_running_out_of_memory_while_drawing_is_a_message(monkeypatch):
    import matplotlib.figure

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", no_memory)
    with pytest.raises(AttnvizError, match=r"^drawing this picture ran out of memory: draw a "
                       r"window of the maps"):
        image.to_bytes(views.plan(make_maps(s=5, t=6)), "png", "viridis")


def test_a_large_grid_is_still_drawn():
    """A 12 x 12 grid of every kind at 128 tokens: 48 million pixels, under the limit."""
    rng = np.random.default_rng(0)
    weights = rng.random((12, 12, 128, 128)).astype(np.float32)
    weights /= weights.sum(-1, keepdims=True)
    tokens = [f"t{i}" for i in range(128)]
    maps = AttentionMaps(tokens, [], encoder_self=weights)
    placed = layout.Layout(views.plan(maps, layer="all", head="all"))
    layout.check_size(placed, 12 * 13)  # no refusal


def test_a_token_of_millions_of_characters_is_a_bounded_label_everywhere(tmp_path):
    """One 20-million-character token took 22 s in the terminal, 55 s to PNG, and was stored
    twice, uncut, in a page. Labels are cut; the whole token stays in the maps' files."""
    from attnviz.flow import pipeline
    from attnviz.io.text import MAX_LABEL_CHARS, display_label, shorten
    from tests.test_page import page_data

    token = "ab" * 1_000_000
    assert display_label(token) == token[:MAX_LABEL_CHARS] + "…"
    assert shorten(token, 12) == token[:11] + "…"
    assert shorten("é" * 30, 40) == "é" * 30 and shorten("e\u0301" * 10, 12) == "e\u0301" * 10
    maps = AttentionMaps([token, "b", "c"], [],
                         encoder_self=np.full((1, 1, 3, 3), 1 / 3, np.float32))
    plan = views.plan(maps)
    html = pipeline.to_bytes(maps, plan, "html", "viridis")
    assert len(html) < 100_000
    data = page_data(html)["kinds"][0]
    assert max(map(len, data["queryLabels"] + data["keyLabels"])) <= MAX_LABEL_CHARS + 1
    text = _print(terminal.render(plan.panels[0], "viridis", 100, False), 100)
    assert "ababababab" in text and token[:300] not in text
    assert image.to_bytes(plan, "png", "viridis").startswith(b"\x89PNG")
    maps.save(tmp_path / "m.npz")
    assert AttentionMaps.load(tmp_path / "m.npz").source_tokens[0] == token


def test_the_caption_cuts_a_text_only_where_there_is_no_room():
    """The target was cut ('les petits chats noirs voient une voitu…') in a 2,681-px PNG and
    at 200 terminal columns."""
    import attnviz
    from attnviz.maps.caption import in_columns

    maps = attnviz.trace("the small black cats see a red car")
    target = "'les petits chats noirs voient une voiture rouge' (written by the model)"
    plan = views.plan(maps)
    placed = layout.Layout(plan)
    assert round(placed.width * layout.PNG_DPI) < 3000
    assert any(target in line for line in placed.caption_lines)
    assert "…" not in "".join(placed.caption_lines)
    wide = _print(terminal.render(plan.panels[2], "viridis", 200, False), 200)
    assert target in wide and "…" not in wide.splitlines()[1]
    narrow = in_columns(plan.caption, 40).splitlines()
    assert all(cell_len(line) <= 40 for line in narrow) and narrow[-1].endswith("…")
    assert narrow[0] == "model translate (341e35bf)"  # broken between parts first
