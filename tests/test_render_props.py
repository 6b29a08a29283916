"""Properties of the terminal renderer over widths, sizes and labels: every line fits."""

from __future__ import annotations

import io
import itertools
import re

import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, settings
from rich.cells import cell_len
from rich.console import Console

from attnviz.io.text import display_label
from attnviz.maps.views import Heatmap
from attnviz.render import terminal, terminal_fit
from tests.test_render import _assert_laid_out_within

# Letters of one and two terminal columns, marks of none, and what display_label escapes.
ALPHABET = st.sampled_from(
    list("abcxyz019<>_-é") + list("我爱你こんにちは한국어") + ["🙂", "👍🏽", "❤\ufe0f"]
    + ["\u0301", "\u200d", " ", "\t", "\x1b", "\u202e"])
TOKENS = st.lists(ALPHABET, max_size=30).map("".join)
LABELS = st.lists(TOKENS, min_size=1, max_size=12)


def _heatmap(q_count: int, k_count: int, labels: list[str], seed: int, masked: bool) -> Heatmap:
    """A map of the given size whose tokens cycle through ``labels``; rows sum to 1."""
    rng = np.random.default_rng(seed)
    weights = rng.random((q_count, k_count)).astype(np.float32)
    weights /= weights.sum(-1, keepdims=True)
    visible = rng.random((q_count, k_count)) > 0.3 if masked else np.ones_like(weights, bool)
    queries = [labels[i % len(labels)] for i in range(q_count)]
    keys = [labels[(i * 7 + 3) % len(labels)] for i in range(k_count)]
    return Heatmap("cross", 0, None, 4, weights, queries, keys, visible)


def _lines(heatmap: Heatmap, width: int, color: bool) -> list[str]:
    """The text a terminal of ``width`` columns shows. Printed with ``crop=False``, so a grid
    line laid out too wide keeps its length here rather than being cut by rich."""
    group = terminal.render(heatmap, "viridis", width, color)
    _assert_laid_out_within(group, width)
    console = Console(width=width, color_system="truecolor" if color else None, record=True,
                      file=io.StringIO())
    console.print(group, crop=False)
    return console.export_text().splitlines()


# Colour changes no width (a cell is spaces on a colour, or ramp characters) but costs twice
# the time to print, so one example in four has it.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(20, 300), q_count=st.integers(1, 600), k_count=st.integers(1, 600),
       labels=LABELS, seed=st.integers(0, 2**16), masked=st.booleans(),
       color=st.sampled_from([False, False, False, True]))
def test_every_line_fits_the_terminal(width, q_count, k_count, labels, seed, masked, color):
    heatmap = _heatmap(q_count, k_count, labels, seed, masked)
    lines = _lines(heatmap, width, color)
    too_wide = [line for line in lines if cell_len(line) > width]
    assert not too_wide, too_wide[:3]
    assert any(line.startswith("scale 0") for line in lines)  # the map was drawn


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 19), q_count=st.integers(1, 200), k_count=st.integers(1, 200),
       labels=LABELS)
def test_a_narrow_terminal_never_gets_a_line_too_wide(width, q_count, k_count, labels):
    lines = _lines(_heatmap(q_count, k_count, labels, 0, False), width, False)
    assert all(cell_len(line) <= width for line in lines)
    drawn = any(line.startswith("scale") for line in lines)
    assert drawn == (width >= terminal_fit.MIN_WIDTH)


@settings(max_examples=200, deadline=None)
@given(width=st.integers(terminal_fit.MIN_WIDTH, 300), k_count=st.integers(1, 5000),
       tokens=st.lists(TOKENS, min_size=1, max_size=300))
def test_the_layout_pools_no_more_than_it_must(width, k_count, tokens):
    """The chosen factor fits, and one less would not have: the map is as sharp as it can be."""
    labels = [display_label(token) for token in tokens]
    layout = terminal_fit.fit(labels, k_count, width)
    cap = min(terminal_fit.LABEL_WIDTH, max(terminal_fit.MIN_LABEL, (width - 1) // 3))

    def line_width(factor: int, cell: int) -> int:
        label_width = max(1, min(cap, terminal_fit.widest_row_label(labels, factor)))
        return label_width + 1 + -(-k_count // factor) * cell

    assert layout is not None
    assert line_width(layout.factor, layout.cell) <= width
    if layout.cell == 2:
        assert line_width(1, 3) > width  # cells of three did not fit
        if layout.factor > 1:
            assert line_width(layout.factor - 1, 2) > width


def _plan(layers: int, heads: int, q_count: int, k_count: int, labels: list[str], seed: int,
          scale: str, predicts: bool):
    """A grid of every layer and head of one cross-attention map of the given size."""
    from attnviz.maps import views
    from attnviz.maps.data import AttentionMaps

    rng = np.random.default_rng(seed)
    weights = rng.random((layers, heads, q_count, k_count)).astype(np.float32)
    weights /= weights.sum(-1, keepdims=True)
    queries = [labels[i % len(labels)] for i in range(q_count)]
    keys = [labels[(i * 7 + 3) % len(labels)] for i in range(k_count)]
    plan = views.plan(AttentionMaps(keys, queries, cross=weights), layer="all", head="all",
                      scale=scale)
    if not predicts:
        from dataclasses import replace

        blocks = [replace(block, panels=tuple(tuple(replace(p, predicts=False) for p in row)
                                              for row in block.panels))
                  for block in plan.blocks]
        plan = replace(plan, blocks=tuple(blocks))
    return plan


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 250), layers=st.integers(1, 3), heads=st.integers(1, 4),
       q_count=st.integers(1, 200), k_count=st.integers(1, 200), labels=LABELS,
       seed=st.integers(0, 2**16), scale=st.sampled_from(["panel", "shared", "unit", "row"]),
       predicts=st.booleans(), color=st.sampled_from([False, False, False, True]))
def test_every_line_of_small_multiples_fits_the_terminal(width, layers, heads, q_count,
                                                         k_count, labels, seed, scale,
                                                         predicts, color):
    plan = _plan(layers, heads, q_count, k_count, labels, seed, scale, predicts)
    console = Console(width=width, color_system="truecolor" if color else None, record=True,
                      file=io.StringIO())
    for group in terminal.render_plan(plan, "viridis", width, color):
        _assert_laid_out_within(group, width)
        console.print(group, crop=False)
    lines = console.export_text().splitlines()
    too_wide = [line for line in lines if cell_len(line) > width]
    assert not too_wide, too_wide[:3]
    if width >= 30:  # every panel is named by its layer and head, in full or in short
        text = "\n".join(lines)
        for layer, head in itertools.product(range(layers), [*map(str, range(heads)), "mean"]):
            full = f"layer {layer} · " + ("mean" if head == "mean" else f"head {head}")
            short = f"L{layer} " + ("mean" if head == "mean" else f"H{head}")
            assert full in text or re.search(rf"{short}\b", text), (full, text)
