"""Views that show more than one map: grids of layers and heads, colour scales, windows of
long maps, top-k listings, decoder rows that read "input → next", unknown words. Each
is read back from what was drawn: a Figure's axes and images, the SVG's text, the terminal's
lines, the listing's numbers."""

from __future__ import annotations

import io
import itertools
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

import attnviz
from attnviz.api import KIND_NAMES
from attnviz.cli.app import app
from attnviz.cli.text import top_k_text
from attnviz.errors import AttnvizError
from attnviz.io.text import display_label
from attnviz.maps import views
from attnviz.maps.caption import caption
from attnviz.maps.data import AttentionMaps, Provenance
from attnviz.maps.kinds import TITLES
from attnviz.model.catalog import shipped_models, vocabulary
from attnviz.model.modelfile import read_metadata
from attnviz.render import image, layout, terminal, terminal_fit
from attnviz.render.colors import rgb
from tests.conftest import SOURCE, TARGET
from tests.test_maps import make_maps

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _panels(figure) -> list:
    """The heatmap panels of a Figure: the axes with a title (colour bars have none)."""
    return [ax for ax in figure.axes if ax.get_title()]


def _clims(figure) -> list[tuple[float, float]]:
    return [tuple(ax.images[0].get_clim()) for ax in _panels(figure)]


def _largest(maps: AttentionMaps, plan: views.Plan) -> float:
    return max(float(p.weights[p.visible].max()) for p in plan.panels)


# --- Grids: every layer and head ------------------------------------------------------------

@pytest.mark.parametrize("layer, head, per_kind", [
    (None, "mean", 1), (None, "all", 3 + 1), ("all", "mean", 2), ("all", "all", 2 * (3 + 1)),
    ("all", 1, 2), (0, "all", 4),
])
def test_the_grid_has_a_panel_per_layer_and_head_of_each_kind(layer, head, per_kind):
    maps = make_maps(layers=2, heads=3)
    figure = attnviz.plot(maps, layer=layer, head=head)
    panels = _panels(figure)
    assert len(panels) == 3 * per_kind
    titles = [ax.get_title() for ax in panels]
    if head == "all":  # every head, then their mean; by default the last layer
        first = 1 if layer is None else 0
        assert titles[:4] == [f"layer {first} · head {h}" for h in range(3)] + [
            f"layer {first} · mean"]
    one_kind = attnviz.plot(maps, kind="cross", layer=layer, head=head)
    assert len(_panels(one_kind)) == per_kind


def test_a_grid_holds_the_maps_of_its_layers_and_heads():
    maps = make_maps(layers=2, heads=3)
    plan = views.plan(maps, ["cross"], "all", "all")
    (block,) = plan.blocks
    assert [[(p.layer, p.head) for p in row] for row in block.panels] == [
        [(layer, 0), (layer, 1), (layer, 2), (layer, None)] for layer in (0, 1)]
    for layer, head in itertools.product(range(2), range(3)):
        assert np.array_equal(block.panels[layer][head].weights, maps.cross[layer, head])
    np.testing.assert_allclose(block.panels[1][3].weights, maps.cross[1].mean(0))


def test_grids_are_refused_with_what_can_be_given():
    with pytest.raises(AttnvizError, match="^head 'two' is not a head: .*'mean' or 'all'"):
        views.plan(make_maps(), head="two")
    with pytest.raises(AttnvizError, match="^layer 'last' is not a layer"):
        views.plan(make_maps(), layer="last")
    with pytest.raises(AttnvizError, match="^head 'every' is not a head"):
        attnviz.plot(make_maps(), head="every")


# --- Colour scales -------------------------------------------------------------------------

def test_shared_scale_gives_every_panel_one_colour_limit_and_one_colour_bar():
    maps = make_maps(s=5, t=6)
    plan = views.plan(maps, layer="all", head="all")
    assert plan.scale == "shared"  # the default of a grid
    figure = attnviz.plot(maps, layer="all", head="all")
    clims = _clims(figure)
    assert len(set(clims)) == 1 and clims[0] == (0.0, pytest.approx(_largest(maps, plan)))
    bars = [ax for ax in figure.axes if not ax.get_title()]
    assert len(bars) == 1 and "(shared scale: one for the figure)" in bars[0].get_ylabel()


def test_side_by_side_kinds_share_their_scale_by_default():
    maps = make_maps(s=5, t=6)
    clims = _clims(attnviz.plot(maps))
    assert len(clims) == 3 and len(set(clims)) == 1
    # A uniform row is no longer as bright as a sharp one: the limit is the figure's.
    assert clims[0][1] == pytest.approx(1.0)  # <bos> sees only itself: weight 1


def test_panel_scale_gives_each_panel_its_own_limit_and_colour_bar():
    maps = make_maps(s=5, t=6)
    figure = attnviz.plot(maps, head="all", scale="panel")
    plan = views.plan(maps, head="all", scale="panel")
    assert _clims(figure) == [(0.0, pytest.approx(p.scale_max)) for p in plan.panels]
    assert len(set(_clims(figure))) > 1
    bars = [ax for ax in figure.axes if not ax.get_title()]
    assert len(bars) == len(plan.panels) and all("panel scale" in b.get_ylabel() for b in bars)


def test_unit_scale_runs_from_0_to_1():
    figure = attnviz.plot(make_maps(), kind="cross", head="all", scale="unit")
    assert set(_clims(figure)) == {(0.0, 1.0)}


def test_row_scale_draws_each_row_as_a_share_of_its_largest_weight():
    maps = make_maps(s=5, t=6)
    figure = attnviz.plot(maps, kind="self", scale="row")
    (panel,) = _panels(figure)
    drawn = panel.images[0].get_array()  # (Q, K, 4): the cells' colours, as drawn
    expected = maps.decoder_self[1].mean(0)
    expected = expected / expected.max(axis=1, keepdims=True)
    colours = (rgb("viridis", expected) * np.tril(np.ones((6, 6)))[..., None]).astype(np.uint8)
    np.testing.assert_allclose(drawn[..., :3], colours, atol=1)  # matplotlib truncates
    assert drawn[..., 3].tolist() == (255 * np.tril(np.ones((6, 6), int))).tolist()
    top = rgb("viridis", np.ones(6)).astype(int)  # each row's largest weight: the top colour
    assert np.abs(drawn[np.arange(6), expected.argmax(1), :3].astype(int) - top).max() <= 1
    assert panel.images[0].get_clim() == (0.0, 1.0)
    assert "row scale" in [ax for ax in figure.axes if not ax.get_title()][0].get_ylabel()
    rows = views.scale_rows(expected, np.ones_like(expected, bool))
    assert np.allclose(rows.max(axis=1), 1.0) and rows.min() >= 0


def test_the_kinds_short_names_are_one_table_that_the_cli_api_and_page_use():
    from attnviz import api
    from attnviz.cli import options
    from attnviz.maps import kinds
    from attnviz.render import page

    assert sorted(kinds.SHORT_NAMES.values()) == sorted(kinds.KINDS)
    assert [kind.value for kind in options.Kind] == [*kinds.SHORT_NAMES, "all"]
    assert [kind.value for kind in options.ExplainKind] == list(kinds.SHORT_NAMES)
    assert api.KIND_NAMES == {**kinds.SHORT_NAMES, **{kind: kind for kind in kinds.KINDS}}
    assert page.CLI_KINDS == {kind: short for short, kind in kinds.SHORT_NAMES.items()}
    for short, kind in kinds.SHORT_NAMES.items():  # each name draws its kind
        shown = run("decode", SOURCE, "-t", TARGET, "--kind", short)
        assert shown.exit_code == 0 and shown.stdout.count(" · layer ") == 1
        assert f"{TITLES[kind]} · layer" in shown.stdout


@pytest.mark.parametrize("settings, setting", [
    ({"window": "x"}, "window"), ({"window_query": "x"}, "window_query"),
    ({"window": "0:2", "window_key": "9:"}, "window_key"), ({"scale": "loud"}, "scale")])
def test_plan_and_arrange_check_scales_and_windows_alike(settings, setting):
    maps = make_maps()
    errors = []
    for draw in (lambda: views.plan(maps, ["cross"], **settings),
                 lambda: views.arrange(views.heatmaps(maps, ["cross"]), **settings)):
        with pytest.raises(AttnvizError) as raised:
            draw()
        errors.append((str(raised.value), raised.value.setting))
    assert errors[0] == errors[1] and errors[0][1] == setting


def test_plan_and_arrange_share_a_scale_the_same_way():
    maps = make_maps(s=5, t=6)
    for scale in (None, *views.SCALES):
        planned = views.plan(maps, scale=scale)
        arranged = views.arrange(views.heatmaps(maps), scale=scale)
        assert (planned.scale, planned.shared_max) == (arranged.scale, arranged.shared_max)
    one = views.heatmaps(maps, ["cross"])
    assert views.plan(maps, ["cross"]).scale == views.arrange(one).scale == "panel"


def test_a_scale_that_does_not_exist_is_named():
    with pytest.raises(AttnvizError, match="^scale 'loud' is not a scale: use one of panel, "
                                           "shared, unit, row"):
        views.plan(make_maps(), scale="loud")
    result = run("decode", SOURCE, "--scale", "loud")
    assert result.exit_code == 2 and "'loud' is not one of" in result.stderr


def test_the_terminal_colours_every_small_multiple_on_one_scale():
    maps = make_maps(s=4, t=3, layers=1, heads=2)
    plan = views.plan(maps, ["encoder_self"], head="all")
    text = _terminal(plan, 80)
    legend = next(line for line in text.splitlines() if line.startswith("scale 0"))
    largest = float(legend.split("]")[1].split()[0])
    assert largest == pytest.approx(_largest(maps, plan), abs=0.005)
    assert "(largest of every panel of the figure: shared scale)" in legend
    # The panel with the figure's largest weight has the top of the ramp; the others lower.
    peak = max(plan.panels, key=lambda p: p.weights.max())
    assert "@" in text and peak.weights.max() == pytest.approx(largest, abs=0.005)


# --- The legend under a short target's maps -------------------------------------------------

def _drawn(figure, dpi: int = layout.PNG_DPI):
    """Draw ``figure`` as a PNG file of ``dpi`` dots per inch would, and return the renderer:
    the extents of text are known once drawn (and depend on the resolution: hinting)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


@pytest.mark.parametrize("t", [2, 4, 6])
def test_the_masked_legend_overlaps_no_label_and_no_map(t):
    figure = attnviz.plot(make_maps(s=3, t=t), kind="self")
    renderer = _drawn(figure)
    (legend,) = figure.legends
    box = legend.get_window_extent(renderer)
    assert any("masked" in text.get_text() for text in legend.get_texts())
    others = [ax.get_window_extent(renderer) for ax in figure.axes]
    for ax in figure.axes:
        keys, queries = drawn_labels(ax)
        others += [label.get_window_extent(renderer) for label in keys + queries]
        others += [ax.xaxis.label.get_window_extent(renderer),
                   ax.yaxis.label.get_window_extent(renderer)]
    assert len(others) > 2 * t and not [other for other in others if box.overlaps(other)]


# --- Thinned labels on long maps ------------------------------------------------------------

def _leaning_boxes(labels, renderer) -> list[tuple[float, float, float, float]]:
    """Labels that lean at an angle, as boxes in their own (rotated) frame: two parallel
    labels overlap exactly when these do. (Their upright bounding boxes overlap as soon as
    they are long, though the letters do not touch.)"""
    boxes = []
    for label in labels:
        angle = np.radians(label.get_rotation())
        x, y = label.get_transform().transform(label.get_position())
        u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        width, height, _ = renderer.get_text_width_height_descent(
            label.get_text(), label.get_fontproperties(), ismath=False)
        boxes.append((u - width, v - height, u, v))  # right and top aligned at the anchor
    return boxes


def _overlapping_labels(figure) -> list[str]:
    """Labels that overlap their neighbour, their axis title, or another panel's map, in a
    PNG file and in a notebook (which draws at 100 dots per inch)."""
    return [f"{dpi} dpi: {found}" for dpi in (layout.PNG_DPI, 100)
            for found in _overlapping_at(figure, dpi)]


def drawn_labels(ax) -> tuple[list, list]:
    """The texts that label a panel's keys (under it) and queries (left of it), as drawn:
    key labels hang from the top of their line, query labels sit on their row's middle (the
    weights written in cells are centred, and are neither)."""
    keys = [text for text in ax.texts if text.get_va() == "top"]
    queries = [text for text in ax.texts if text.get_va() == "center_baseline"]
    return keys, queries


def _overlapping_at(figure, dpi: int) -> list[str]:
    renderer = _drawn(figure, dpi)
    maps = [ax.get_window_extent(renderer) for ax in _panels(figure)]
    found = []
    for ax in _panels(figure):
        for labels, title in zip(drawn_labels(ax), (ax.xaxis.label, ax.yaxis.label),
                                 strict=True):
            boxes = [(label.get_text(), label.get_window_extent(renderer)) for label in labels]
            if labels and labels[0].get_rotation() % 90:
                leaning = _leaning_boxes(labels, renderer)
                found += [f"{a} / {b}" for ((a, _), box_a), ((b, _), box_b) in
                          itertools.pairwise(zip(boxes, leaning, strict=True))
                          if box_a[2] > box_b[0] and box_b[2] > box_a[0]
                          and box_a[3] > box_b[1] and box_b[3] > box_a[1]]
            else:
                found += [f"{a} / {b}" for (a, box_a), (b, box_b) in itertools.pairwise(boxes)
                          if box_a.overlaps(box_b)]
            if title.get_text():
                found += [f"{a} / title" for a, box in boxes
                          if box.overlaps(title.get_window_extent(renderer))]
            found += [f"{a} / a map" for a, box in boxes for other in maps
                      if box.overlaps(other)]
    return found


@pytest.mark.parametrize("kind, layer, head", [("all", None, "mean"), ("cross", "all", "all"),
                                               ("encoder", "all", "all")])
def test_thinned_labels_never_overlap_at_512_tokens(kind, layer, head):
    maps = make_maps(s=512, t=512, layers=2, heads=2)
    figure = attnviz.plot(maps, kind=kind, layer=layer, head=head)
    assert _overlapping_labels(figure) == []
    shown = [label.get_text() for label in drawn_labels(_panels(figure)[0])[1]]
    assert 10 < len(shown) < 512  # thinned, and still many
    kinds = None if kind == "all" else [KIND_NAMES[kind]]
    first = views.plan(maps, kinds, layer, head).panels[0]
    for text in shown:  # each thinned label says its token and its position
        label, position = re.fullmatch(r"(.+) \((\d+)\)", text).groups()
        assert label == first.query_label(int(position))


def test_short_maps_keep_every_label():
    figure = attnviz.plot(make_maps(s=9, t=10))
    for ax in _panels(figure):
        keys, queries = drawn_labels(ax)
        assert len(keys) == ax.images[0].get_array().shape[1]
        assert len(queries) == ax.images[0].get_array().shape[0]
    assert _overlapping_labels(figure) == []


@pytest.mark.filterwarnings("ignore::UserWarning")  # glyphs this machine's fonts may lack
@pytest.mark.parametrize("tokens", [["WWWWWWWW", "MMMM", "<bos>"], ["我爱你我爱你", "x", "🙂🙂"],
                                    [f"token{i}" for i in range(100)],
                                    [f"w{i * 37 % 200}" for i in range(256)]])
def test_labels_leave_room_for_the_axis_titles(tokens):
    """The labels are measured, not guessed from their length; and measured at the
    resolutions they are drawn at, since hinting makes small text wider at 150 dpi."""
    heatmap = views.heatmap(make_maps(), "cross", 0, 0)
    weights = np.full((len(tokens), len(tokens)), 1 / len(tokens), np.float32)
    heatmap = views.replace(heatmap, weights=weights, query_tokens=tokens, key_tokens=tokens,
                            visible=np.ones(weights.shape, bool))
    assert _overlapping_labels(image.figure([heatmap], "viridis")) == []


# --- Windows --------------------------------------------------------------------------------

def test_a_window_selects_exactly_its_positions():
    maps = make_maps(s=20, t=12)
    plan = views.plan(maps, window="3:7")
    encoder, decoder, cross = (block.panels[0][0] for block in plan.blocks)
    np.testing.assert_array_equal(encoder.weights, maps.encoder_self[1].mean(0)[3:7, 3:7])
    np.testing.assert_array_equal(decoder.weights, maps.decoder_self[1].mean(0)[3:7, 3:7])
    np.testing.assert_array_equal(cross.weights, maps.cross[1].mean(0)[3:7, 3:7])
    assert encoder.query_tokens == maps.source_tokens[3:7] == encoder.key_tokens
    assert decoder.visible.tolist() == np.tril(np.ones((12, 12), bool))[3:7, 3:7].tolist()
    # The last row shown predicts the input after the window, not <?>.
    assert cross.query_labels[-1] == f"{maps.target_tokens[6]} → {maps.target_tokens[7]}"
    assert "positions 3 to 6" in cross.query_axis and "positions 3 to 6" in cross.key_axis


def test_query_and_key_windows_apply_to_their_side_alone():
    maps = make_maps(s=20, t=12)
    plan = views.plan(maps, ["cross"], 0, 2, window="0:2", window_query=(5, None),
                      window_key=slice(None, 4))
    (panel,) = plan.panels
    np.testing.assert_array_equal(panel.weights, maps.cross[0, 2, 5:, :4])
    assert (panel.query_start, panel.key_start) == (5, 0)
    assert panel.query_labels[-1].endswith("→ <?>")  # the last row of the map, still unknown
    clipped = views.plan(maps, ["encoder_self"], window="15:99").panels[0]
    assert clipped.weights.shape == (5, 5)  # a stop beyond the end is the end


@pytest.mark.parametrize("window, message", [
    ("7", "^window '7' is not a range: give A:B"),
    ("a:b", "^window 'a:b' is not a range"),
    ("5:3", "^window 5:3 selects no position"),
    ("-2:3", "^window '-2:3' is not a range"),
    ("30:40", "^window starts at position 30, but the encoder self-attention has 20 queries"),
])
def test_a_window_that_shows_nothing_is_refused(window, message):
    with pytest.raises(AttnvizError, match=message):
        views.plan(make_maps(s=20), ["encoder_self"], window=window)


def test_window_options_on_the_command_line(tmp_path):
    saved = tmp_path / "m.npz"
    make_maps(s=20, t=12).save(saved)
    result = run("show", saved, "--kind", "cross", "--window-key", "2:5", "--top-k", "1")
    assert result.exit_code == 0, result.stderr
    positions = [int(m) for m in re.findall(r": s\d+ \((\d+)\)", result.stdout)]
    assert len(positions) == 12 and set(positions) <= {2, 3, 4}
    bad = run("show", saved, "--window-query", "40:")
    assert bad.exit_code == 1
    assert bad.stderr.strip().startswith("error: --window-query starts at position 40")


def test_a_page_with_a_window_says_it_holds_the_whole_maps(tmp_path):
    """Was: -o x.html --window 2:5 wrote the page of the whole maps without a word."""
    saved = tmp_path / "m.npz"
    make_maps(s=20, t=12).save(saved)
    result = run("show", saved, "--window", "2:5", "-o", tmp_path / "x.html",
                 "-o", tmp_path / "x.png")
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert said == ["warning: the .html page holds the whole maps, not a window of them: draw "
                    "the window to .png .svg .pdf .gif or to the terminal"]
    assert (tmp_path / "x.html").is_file() and (tmp_path / "x.png").is_file()
    plain = run("show", saved, "-o", tmp_path / "y.html")
    assert plain.exit_code == 0 and "warning" not in plain.stderr


# --- Top-k listings -------------------------------------------------------------------------

def test_top_k_lists_numpys_argsort_of_the_maps():
    maps = make_maps(s=7, t=6)
    for kind in maps.kinds:
        heatmap = views.heatmap(maps, kind, 0, 1)
        for row, listed in enumerate(views.top_keys(heatmap, 3)):
            weights = maps.stack(kind)[0, 1, row]
            order = [int(c) for c in np.argsort(-weights, kind="stable")
                     if heatmap.visible[row, c]][:3]
            assert [column for column, _ in listed] == order
            assert [weight for _, weight in listed] == [float(weights[c]) for c in order]
    # Masked keys are never listed: <bos> sees itself alone.
    assert len(views.top_keys(views.heatmap(maps, "decoder_self", 0, 1), 3)[0]) == 1


def test_top_k_on_the_command_line_prints_the_strongest_keys(tmp_path):
    saved = tmp_path / "m.npz"
    assert run("decode", SOURCE, "-t", TARGET, "-o", saved).exit_code == 0
    maps = AttentionMaps.load(saved)
    result = run("show", saved, "--kind", "cross", "--head", "2", "--top-k", "2")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if re.match(r"^\d+ ", line)]
    assert len(lines) == len(maps.target_tokens)
    for row, line in enumerate(lines):
        weights = maps.cross[1, 2, row]
        order = np.argsort(-weights, kind="stable")[:2]
        listed = re.findall(r"\((\d+)\) (\d\.\d{3})", line.split(": ", 1)[1])
        assert [int(p) for p, _ in listed] == order.tolist()
        assert [float(w) for _, w in listed] == [round(float(weights[c]), 3) for c in order]
    assert "Cross-attention · layer 1 · head 2" in result.stdout
    assert "█" not in result.stdout and "scale 0" not in result.stdout  # no heatmap


def test_top_k_with_files_writes_them_and_lists_too(tmp_path):
    png = tmp_path / "x.png"
    result = run("encode", SOURCE, "--top-k", "1", "-o", png)
    assert result.exit_code == 0 and png.exists()
    assert result.stdout.count("\n") >= len(SOURCE.split()) + 1
    assert run("encode", SOURCE, "--top-k", "0").exit_code == 2  # typer: at least 1


def test_the_listing_keeps_every_panel_of_a_grid():
    plan = views.plan(make_maps(layers=2, heads=2), ["cross"], "all", "all")
    text = top_k_text(plan, 1)
    assert text.count("Cross-attention · layer") == 2 * 3


# --- Rows that read right -------------------------------------------------------------------

def test_decoder_rows_name_the_token_they_predict_and_the_last_predicts_the_end():
    maps = attnviz.trace(SOURCE, TARGET, cache=False)
    assert maps.provenance.next_token == "<eos>"
    for kind in ("decoder_self", "cross"):
        heatmap = views.heatmap(maps, kind, 1, None)
        after = [*TARGET.split(), "<eos>"]
        assert heatmap.query_labels == [f"{token} → {nxt}" for token, nxt in
                                        zip(["<bos>", *TARGET.split()], after, strict=True)]
        # The target was given: the right side is its next token, not the model's prediction.
        assert heatmap.query_axis == "query: decoder input token → the next target token"
    assert views.heatmap(maps, "encoder_self", 1, None).query_labels == [*SOURCE.split(),
                                                                         "<eos>"]
    # The npz and json keys keep their meaning: the decoder's input tokens.
    assert maps.target_tokens == ["<bos>", *TARGET.split()]


def test_the_query_axis_says_predicted_only_when_the_model_wrote_the_target(tmp_path):
    given = attnviz.trace(SOURCE, TARGET, cache=False)
    written = attnviz.trace(SOURCE, cache=False)
    assert written.provenance.target_generated and not given.provenance.target_generated
    axes = {"given": "query: decoder input token → the next target token",
            "written": "query: decoder input token → the token it predicts"}
    for name, maps in (("given", given), ("written", written)):
        for kind in ("decoder_self", "cross"):
            assert views.heatmap(maps, kind).query_axis == axes[name]
        svg = image.to_bytes(views.plan(maps, ["cross"]), "svg", "viridis").decode()
        texts = " ".join(" ".join(ET.fromstring(svg).itertext()).split())
        assert axes[name] in texts and axes[{"given": "written", "written": "given"}[name]] \
            not in texts
    shown = run("decode", SOURCE, "-t", TARGET, "--kind", "cross")
    assert "rows = query: decoder input token → the next target token" in shown.stdout
    assert "predicts" not in shown.stdout
    shown = run("decode", SOURCE, "--kind", "cross")
    assert "rows = query: decoder input token → the token it predicts" in shown.stdout


@pytest.mark.filterwarnings("ignore:the random model writes random words")
def test_a_generated_target_predicts_the_end_token_unless_it_hit_the_length_limit():
    for seed in range(3):
        maps = attnviz.trace(SOURCE, model="random", seed=seed, cache=False)
        steps = len(maps.target_tokens)
        limit = min(32, max(8, 2 * len(SOURCE.split())))
        assert maps.provenance.next_token == ("<eos>" if steps <= limit else None)


def test_maps_that_do_not_say_what_follows_show_it_as_unknown(tmp_path):
    causal = np.tril(np.ones((3, 3)))
    causal /= causal.sum(-1, keepdims=True)
    path = tmp_path / "gpt.json"
    path.write_text(json.dumps({"target_tokens": ["The", " cat", " sat"],
                                "decoder_self": [[causal.tolist()]]}))
    shown = run("show", path)
    assert shown.exit_code == 0, shown.stderr
    assert "␣sat → <?>" in shown.stdout and "The → ␣cat" in shown.stdout
    assert "the next target token (<?>: not in these maps)" in " ".join(shown.stdout.split())


def test_the_terminal_writes_input_and_predicted_token_on_each_row():
    result = run("decode", SOURCE, "-t", TARGET, "--kind", "cross")
    assert result.exit_code == 0
    rows = [line.strip() for line in result.stdout.splitlines()]
    words = ["<bos>", *TARGET.split(), "<eos>"]
    for token, nxt in itertools.pairwise(words):
        assert any(row.startswith(f"{token} → {nxt} ") for row in rows), (token, nxt)


# --- Unknown words --------------------------------------------------------------------------

def test_unknown_words_keep_their_text_in_maps_files_and_labels(model_file, tmp_path):
    with pytest.warns(attnviz.AttnvizWarning, match="models .* --vocab"):
        maps = attnviz.trace("the Zebra sees the red Gnu", "le Gnu voit", model=str(model_file),
                             cache=False)
    assert maps.source_tokens[1] == maps.source_tokens[5] == "<unk>"  # the maps keep <unk>
    assert maps.provenance.source_written == {1: "Zebra", 5: "Gnu"}
    assert maps.provenance.target_written == {2: "Gnu"}  # after <bos> and le
    for suffix in ("npz", "json"):
        maps.save(tmp_path / f"m.{suffix}")
        assert AttentionMaps.load(tmp_path / f"m.{suffix}").provenance == maps.provenance
    cross = views.heatmap(maps, "cross", 0, None)
    assert cross.key_labels[1] == "Zebra?" and cross.query_labels[1:3] == ["le → Gnu?",
                                                                           "Gnu? → voit"]
    svg = image.to_bytes(views.plan(maps), "svg", "viridis").decode()
    texts = "".join(ET.fromstring(svg).itertext())
    assert "Zebra?" in texts and "Gnu? → voit" in texts and "<unk>" not in texts.replace(
        "(its map holds <unk>)", "")
    assert "word?: a word the model's vocabulary lacks" in texts


def test_old_files_without_the_new_provenance_still_load(tmp_path):
    maps = make_maps()
    arrays = maps.to_arrays()
    arrays["provenance"] = np.array(json.dumps({"model": "old", "attnviz_version": "0.0.1"}))
    np.savez(tmp_path / "old.npz", **arrays)
    back = AttentionMaps.load(tmp_path / "old.npz")
    assert back.provenance.source_written == {} and back.provenance.next_token is None
    odd = Provenance.from_dict({"source_written": {"x": "a", "2": 3, "1": "Zebra", "-1": "b"}})
    assert odd.source_written == {1: "Zebra"}  # only positions with words are kept


def test_models_vocab_lists_every_token_of_a_shipped_model_and_a_file(model_file):
    for name in ("translate", "dates", str(model_file)):
        result = run("models", name, "--vocab")
        assert result.exit_code == 0, result.stderr
        path = shipped_models().get(name, model_file)
        meta = read_metadata(path.read_bytes(), name)
        listed = [line.split() for line in result.stdout.split("\n\n")]
        sides = [meta["source_vocab"]] if meta["source_vocab"] == meta["target_vocab"] else [
            meta["source_vocab"], meta["target_vocab"]]
        assert len(listed) == len(sides)
        for words, tokens in zip(listed, sides, strict=True):
            heading = words.index("<unk>)")  # the first line ends "(... read as <unk>)"
            assert words[heading + 1:] == [display_label(t) for t in tokens]
    assert vocabulary("dates").source_kind == "char"


def test_models_vocab_refuses_what_has_no_vocabulary_of_its_own():
    for args, fragment in [(["random", "--vocab"], "random model has no vocabulary"),
                           (["hf:bert", "--vocab"], "not an attnviz model"),
                           (["--vocab"], "name it"), (["translate"], "add --vocab")]:
        result = run("models", *args)
        assert result.exit_code == 1 and fragment in result.stderr, (args, result.stderr)


# --- The command line -----------------------------------------------------------------------

def _terminal(plan, width: int, color: bool = False) -> str:
    console = Console(width=width, color_system="truecolor" if color else None, record=True,
                      file=io.StringIO())
    for part in terminal.render_plan(plan, "viridis", width, color):
        console.print(part, crop=False)
    return console.export_text()


def test_layer_all_and_head_all_to_the_terminal_write_every_panels_place(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    result = run("decode", SOURCE, "-t", TARGET, "--layer", "all", "--head", "all")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(cell_len(line) <= 100 for line in lines)
    for title in ("Encoder self-attention", "Masked decoder self-attention", "Cross-attention"):
        assert title in lines
    for layer, head in itertools.product(range(2), ["H0", "H1", "H2", "H3", "mean"]):
        place = re.compile(rf"(layer {layer} · {head.replace('H', 'head ')}|L{layer} {head})\b")
        assert sum(bool(place.search(line)) for line in lines) >= 3, (layer, head)


def test_a_grid_to_png_is_drawn_whole(tmp_path):
    from PIL import Image

    grid, single = tmp_path / "grid.png", tmp_path / "one.png"
    assert run("decode", SOURCE, "-t", TARGET, "--kind", "cross", "--layer", "all", "--head",
               "all", "-o", grid, "-o", grid.with_suffix(".svg")).exit_code == 0
    assert run("decode", SOURCE, "-t", TARGET, "--kind", "cross", "-o", single).exit_code == 0
    with Image.open(grid) as big, Image.open(single) as small:
        assert big.format == "PNG" and big.size[0] > small.size[0]  # five panels across
        assert np.asarray(big.convert("L")).std() > 10
    svg = grid.with_suffix(".svg").read_text()
    for layer, head in itertools.product(range(2), ["head 0", "head 3", "mean"]):
        assert svg.count(f"layer {layer} · {head}<") == 1


def test_bad_layer_and_head_values_say_what_is_allowed():
    def said(result) -> str:  # typer's message, out of its box
        return " ".join(result.stderr.replace("│", " ").split())

    result = run("encode", SOURCE, "--layer", "x")
    assert result.exit_code == 2 and "give an index (0, 1, ...) or 'all'" in said(result)
    result = run("encode", SOURCE, "--head", "x")
    assert result.exit_code == 2 and "'mean' or 'all'" in said(result)


def test_empty_maps_are_said_in_the_terminal_and_in_images():
    maps = make_maps()
    empty = AttentionMaps(maps.source_tokens, [], maps.encoder_self,
                          np.zeros((2, 3, 0, 0), np.float32), np.zeros((2, 3, 0, 3), np.float32))
    text = _terminal(views.plan(empty, layer="all", head="all"), 80)
    assert "(the maps are empty: 0 queries, 3 keys)" in text
    assert "L1 mean" in text or "layer 1 · mean" in text  # the encoder's grid is drawn
    for layer, head in (("all", "all"), (None, "mean")):
        svg = image.to_bytes(views.plan(empty, layer=layer, head=head), "svg", "viridis")
        texts = " ".join("".join(ET.fromstring(svg.decode()).itertext()).split())
        assert "the map is empty: 0 queries, 3 keys" in texts and "s2" in texts


def test_rollout_takes_the_same_scale_windows_and_listing():
    result = run("encode", SOURCE, "--rollout", "--window", "0:3", "--top-k", "1")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if re.match(r"^\d+ ", line)]
    assert result.stdout.count("Encoder attention rollout") == 2  # one listing per layer
    assert len(lines) == 2 * 3 and all(re.search(r"\(([0-2])\) \d\.\d{3}$", line)
                                       for line in lines)
    from attnviz.maps.rollout import rollout

    # A window is a view onto the map: its scale reaches the whole map's largest weight.
    rolled = rollout(attnviz.trace(SOURCE, part="encoder", cache=False))  # (L, S, S)
    largest = {"panel": [f"{w.max():.2f}" for w in rolled],
               "shared": [f"{rolled.max():.2f}"] * 2, "unit": ["1.00"] * 2, "row": ["1.00"] * 2}
    for scale, tail in (("panel", "(largest weight of the whole map)"),
                        ("shared", "(largest of every panel's whole map: shared scale)"),
                        ("unit", "(unit scale)"),
                        ("row", "(each whole row's largest weight: row scale)")):
        shown = run("encode", SOURCE, "--rollout", "--window", "0:3", "--scale", scale)
        assert shown.exit_code == 0, shown.stderr
        legends = [line for line in shown.stdout.splitlines() if line.startswith("scale 0")]
        assert [line.split("]")[1].split()[0] for line in legends] == largest[scale]
        assert all(line.endswith(tail) for line in legends), (scale, legends)


def test_an_unknown_kind_is_an_attnviz_error_naming_the_kinds():
    with pytest.raises(AttnvizError, match="^kind 'both' is not a kind of attention; use one "
                                           "of encoder, self, cross, encoder_self, "
                                           "decoder_self$") as raised:
        views.heatmap(make_maps(), "both")
    assert raised.value.setting == "kind"
    with pytest.raises(AttnvizError, match="^kind 'both' is not a kind") as raised:
        views.plan(make_maps(), ["both"])


def test_the_animation_refuses_a_grid_in_its_own_words(tmp_path):
    result = run("decode", SOURCE, "-t", TARGET, "--head", "all", "-o", tmp_path / "x.gif")
    assert result.exit_code == 1 and "pick one layer and one head" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("width", [60, 80, 120])
def test_each_layer_of_a_terminal_grid_starts_its_own_line(monkeypatch, width):
    """Layers are rows: a layer's panels may wrap onto several lines on a short width, but
    the next layer never shares a line with the one before it."""
    monkeypatch.setenv("COLUMNS", str(width))
    result = run("decode", "the small black cats see a red car", "--layer", "all", "--head",
                 "all", "--kind", "cross")
    assert result.exit_code == 0, result.stderr
    place = re.compile(r"\b(?:L(\d+) (H\d+|mean)|layer (\d+) · (head \d+|mean))\b")
    lines = [[(a or c, (b or d).replace("head ", "H")) for a, b, c, d in place.findall(line)]
             for line in result.stdout.splitlines()]
    lines = [panels for panels in lines if panels]
    assert all(len({layer for layer, _ in panels}) == 1 for panels in lines), lines
    order = [panels[0][0] for panels in lines]
    assert order == sorted(order, key=int) and set(order) == {"0", "1"}
    found = [panel for panels in lines for panel in panels]
    assert len(found) == len(set(found)) == 2 * (4 + 1)  # every panel, once


@pytest.mark.parametrize("scale", ["row", "panel", "shared"])
def test_a_window_is_coloured_on_the_whole_maps_scale(scale):
    """A window is a view onto its map: the row scale divides each row by its whole row's
    largest weight (a key outside the window included), the panel and shared scales reach
    the whole map's largest; the colour bar and the terminal's legend say so."""
    maps = make_maps(s=6, t=5, layers=1, heads=2, seed=3)
    whole = maps.cross[0].mean(0)  # (T, S)
    expected = {"row": whole[1:4, 2:5] / whole[1:4].max(axis=1, keepdims=True),
                "panel": whole[1:4, 2:5] / whole.max(), "shared": whole[1:4, 2:5] / whole.max()}
    assert (whole[1:4, 2:5].max(axis=1) < whole[1:4].max(axis=1)).any()  # the test can fail
    figure = attnviz.plot(maps, kind="cross", window_query="1:4", window_key="2:5",
                          scale=scale)
    (panel,) = _panels(figure)
    drawn = panel.images[0].get_array()[..., :3].astype(int)  # (3, 3, 3)
    assert np.abs(drawn - rgb("viridis", expected[scale]).astype(int)).max() <= 1
    bar = next(ax for ax in figure.axes if not ax.get_title()).get_ylabel()
    assert bar == image.WINDOW_BAR_LABELS[scale] and ("whole" in bar)
    plan = views.arrange(views.heatmaps(maps, ["cross"]), scale, window_query="1:4",
                         window_key="2:5")
    text = _terminal(plan, 80)
    legend = next(line for line in text.splitlines() if line.startswith("scale 0"))
    assert legend.endswith(terminal.WINDOW_TAILS[scale]) and "whole" in legend
    top = 1.0 if scale == "row" else whole.max()
    assert float(legend.split("]")[1].split()[0]) == pytest.approx(top, abs=0.005)
    rows = [line[-9:] for line in text.splitlines() if re.match(r"^ *t\d+ → ", line)]
    cells = [[row[i] for i in range(0, 9, 3)] for row in rows]  # cells of three columns
    assert cells == [[terminal._ramp(level) for level in row] for row in expected[scale]]


def test_a_pooled_window_is_scaled_by_its_whole_rows_pooled_alike():
    """In a terminal too narrow for the window, the whole map is pooled in blocks lined up
    with the window's, so that its row scale still divides by the whole row's largest."""
    weights = np.zeros((1, 1, 4, 8), np.float32)
    weights[0, 0, :, 0] = 0.8  # outside the window
    weights[0, 0, :, 1:] = 0.2 / 7
    maps = AttentionMaps(source_tokens=[f"s{i}" for i in range(8)],
                         target_tokens=["<bos>", "a", "b", "c"], encoder_self=None,
                         decoder_self=None, cross=weights)
    heatmap = views.arrange(views.heatmaps(maps, ["cross"]), "row", window_key="4:8").panels[0]
    grid = terminal_fit.pool(heatmap, 2)  # blocks of keys 4-5 and 6-7; the whole: 0-1 holds 0.8+
    assert grid.weights.shape == (2, 2)
    np.testing.assert_allclose(grid.row_largest, [0.8 + 0.2 / 7] * 2, rtol=1e-6)
    levels, _ = terminal._levels(grid, "row", None)
    np.testing.assert_allclose(levels, 2 * 0.2 / 7 / (0.8 + 0.2 / 7), rtol=1e-5)


# --- The caption: where the maps come from, never cut --------------------------------------

@pytest.mark.parametrize("dpi", [100, layout.PNG_DPI])
def test_a_narrow_figures_caption_wraps_at_its_parts_and_stays_inside(dpi):
    """The shipped example's single panel is narrower than its caption: the caption goes on
    over more lines, broken between its parts, each part whole, and no text leaves the
    figure."""
    maps = attnviz.trace("the black cat sees the red car")  # as `attnviz encode` draws it
    figure = attnviz.plot(maps, kind="encoder")
    parts = caption(maps.provenance).split(" · ")
    (drawn,) = [t for t in figure.texts if parts[0] in t.get_text()]
    lines = drawn.get_text().split("\n")
    assert len(lines) >= 2 and " · ".join(lines).split(" · ") == parts  # every part, in full
    renderer = _drawn(figure, dpi)
    width, height = figure.bbox.width, figure.bbox.height
    for text in figure.findobj(lambda artist: hasattr(artist, "get_text")):
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, \
            (text.get_text(), box, width)


def test_a_caption_part_wider_than_the_figure_keeps_its_start():
    long = "source '" + "word " * 200 + "'"
    lines = layout.caption_lines(f"model m · {long} · target 't'", 4.0)
    assert lines[0] == "model m" and lines[2] == "target 't'"
    assert lines[1].startswith("source 'word word") and lines[1].endswith("…")
    assert layout.text_width(lines[1], layout.CAPTION_FONT, ("DejaVu Sans",)) <= 4.0


def test_the_command_models_suggests_runs_as_given_in_a_shell():
    # An unquoted "attnviz models my model.st --vocab" names two models; "" named none.
    for name, shown in [("my model.safetensors", "attnviz models 'my model.safetensors' --vocab"),
                        ("", "attnviz models '' --vocab")]:
        result = run("models", name)
        assert result.exit_code == 1 and shown in result.stderr, result.stderr


def test_every_name_of_a_kind_chooses_it_in_the_library_too():
    """The command line's short names (self, encoder) and the maps' own name the same maps
    everywhere a kind is chosen: one check of a kind, whose answer is used."""
    from attnviz.flow import pipeline
    from attnviz.maps.rollout import rollout_heatmaps

    maps = make_maps()
    assert np.array_equal(views.heatmap(maps, "self").weights,
                          views.heatmap(maps, "decoder_self").weights)
    assert [b.kind for b in views.plan(maps, ["self", "cross"]).blocks] == ["decoder_self",
                                                                           "cross"]
    assert [p.kind for p in pipeline.plan(maps, pipeline.View(kinds=("encoder",))).panels] \
        == ["encoder_self"]
    assert len(rollout_heatmaps(maps, kinds=["encoder"])) == maps.encoder_self.shape[0]
    with pytest.raises(AttnvizError, match="^Masked decoder self-attention is not in these"):
        views.heatmap(attnviz.AttentionMaps(maps.source_tokens, [],
                                            encoder_self=maps.encoder_self), "self")
