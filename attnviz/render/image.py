"""Heatmaps as PNG, SVG or PDF files, drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

import io
import warnings
from contextlib import nullcontext

import numpy as np
from rich.cells import cell_len

from attnviz.render import fonts
from attnviz.render.colors import colormap
from attnviz.text import shorten
from attnviz.views import Heatmap

MASKED_COLOR = "#d0d0d0"  # hatched grey: clearly not a colour of the map
ANNOTATE_UP_TO = 16  # write the weight in each cell when both sides have at most this many tokens
LABEL_UP_TO = 80  # beyond this many tokens, label every n-th one
LABEL_CHARS = 24  # longer labels end with …
# Page geometry, in inches. The panels are placed by hand: a layout engine would measure
# every label and take longer than everything else in the picture.
CELL = 0.38  # side of a cell, for short sequences
MAP_MAX = 14.0  # a map never gets wider or taller than this; its cells shrink instead
TICK_FONT = 9  # points
CHAR = 0.6 * TICK_FONT / 72  # average width of a label character (DejaVu Sans); a wide
# character (Chinese, an emoji) counts twice, as it takes two columns in a terminal
AXIS_LABEL = 0.3  # the line of an axis title
TITLE = 0.45  # the panel's title above the map
CAPTION = 0.25  # the line above the panels saying where the maps come from
CAPTION_FONT = 8  # points
COLORBAR = 1.05  # colour bar, its ticks and its label, right of the map
GAP = 0.25  # around the figure
# Files carry no creation date, so the same input gives the same bytes.
_NO_DATES = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def draw_heatmap(ax, heatmap: Heatmap, cmap: str):
    """Draw one attention map on ``ax``; returns the image artist (for a colour bar).

    Rows are queries, columns keys. Cells the mask hid are hatched grey, so a future
    position reads differently from a weight that is merely small.
    """
    q_count, k_count = heatmap.weights.shape
    palette = colormap(cmap).with_extremes(bad=(0, 0, 0, 0))  # masked cells: transparent
    data = np.ma.masked_array(heatmap.weights, mask=~heatmap.visible)  # (Q, K)
    image = ax.imshow(data, cmap=palette, vmin=0.0, vmax=heatmap.scale_max,
                      interpolation="nearest", aspect="auto")
    if not heatmap.visible.all():
        # Behind the transparent cells: grey with hatching.
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.5, -0.5), k_count, q_count, facecolor=MASKED_COLOR,
                               hatch="///", edgecolor="#a0a0a0", linewidth=0, zorder=0))
        image.set_zorder(1)

    _label_axis(ax.xaxis, _labels(heatmap.key_labels), rotate=True)
    _label_axis(ax.yaxis, _labels(heatmap.query_labels), rotate=False)
    if max(q_count, k_count) <= LABEL_UP_TO:
        # Cell borders as two line collections: minor-tick grid lines would cost a Tick
        # object per line, a tenth of a second for a pair of small maps.
        ax.vlines(np.arange(k_count + 1) - 0.5, -0.5, q_count - 0.5, colors="white",
                  linewidth=1.0, zorder=1.5)
        ax.hlines(np.arange(q_count + 1) - 0.5, -0.5, k_count - 0.5, colors="white",
                  linewidth=1.0, zorder=1.5)
        ax.set_xlim(-0.5, k_count - 0.5)
        ax.set_ylim(q_count - 0.5, -0.5)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(heatmap.key_axis)
    ax.set_ylabel(heatmap.query_axis)
    ax.set_title(heatmap.title, fontsize=11)
    if max(q_count, k_count) <= ANNOTATE_UP_TO:
        _annotate(ax, heatmap, palette)
    return image


def _labels(labels: list[str]) -> list[str]:
    return [shorten(label, LABEL_CHARS) for label in labels]


def _ticks(labels: list[str]) -> tuple[list[int], list[str]]:
    """Where the labels go and what they say: every label, or every n-th with its position
    when there are more than LABEL_UP_TO."""
    step = max(1, -(-len(labels) // LABEL_UP_TO))  # ceil: at most LABEL_UP_TO labels
    positions = list(range(0, len(labels), step))
    return positions, [labels[i] if step == 1 else f"{labels[i]} ({i})" for i in positions]


def _label_axis(axis, labels: list[str], rotate: bool) -> None:
    positions, shown = _ticks(labels)
    # parse_math=False: a token such as "$x$" is text to show, not mathtext to typeset
    # (and "$\\frac{$" would fail to parse).
    if rotate:
        axis.set_ticks(positions, labels=shown, rotation=45, ha="right",
                       rotation_mode="anchor", fontsize=TICK_FONT, parse_math=False)
    else:
        axis.set_ticks(positions, labels=shown, fontsize=TICK_FONT, parse_math=False)


def _annotate(ax, heatmap: Heatmap, palette) -> None:
    """Write each visible weight in its cell, dark on light colours and light on dark ones.

    Weights that round to .00 are left blank: the colour says they are near zero, and a
    page of ".00" would hide the few numbers that matter (and cost a text each to draw).
    """
    norm = heatmap.weights / heatmap.scale_max
    for (row, col), weight in np.ndenumerate(heatmap.weights):
        if not heatmap.visible[row, col] or weight < 0.005:
            continue
        red, green, blue, _ = palette(float(norm[row, col]))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ax.text(col, row, f"{weight:.2f}".removeprefix("0"),
                ha="center", va="center", fontsize=7, color="black" if light else "white",
                zorder=2)


def figure(heatmaps: list[Heatmap], cmap: str):
    """A figure with one panel per heatmap, side by side, each with its colour bar.

    Labels in scripts the default font lacks are drawn with installed fonts that have them
    (see :mod:`attnviz.render.fonts`); characters no installed font has give one
    :class:`AttnvizWarning` naming them, and are drawn as boxes.
    """
    from matplotlib import rc_context, rcParams

    choice = fonts.choose(label for heatmap in heatmaps
                          for labels in (heatmap.query_labels, heatmap.key_labels)
                          for label in _ticks(_labels(labels))[1])
    fonts.warn_missing(choice.missing)
    # Each text keeps the families it was made with, so the list is needed while drawing
    # the figure, not while saving it.
    families = {"font.family": [*rcParams["font.family"], *choice.families]}
    with rc_context(families) if choice.families else nullcontext():
        return _figure(heatmaps, cmap)


def _figure(heatmaps: list[Heatmap], cmap: str):
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    panels = [_Panel.of(heatmap) for heatmap in heatmaps]
    below = max(panel.below for panel in panels)  # the maps share a baseline
    caption = next((heatmap.caption for heatmap in heatmaps if heatmap.caption), "")
    width = 2 * GAP + sum(panel.width for panel in panels)
    height = 2 * GAP + below + max(panel.map_height for panel in panels) + TITLE + (
        CAPTION if caption else 0.0)
    fig = Figure(figsize=(width, height))
    if caption:  # where the maps come from, above the panels
        room = int((width - 2 * GAP) / (CHAR * CAPTION_FONT / TICK_FONT))
        fig.text(_fraction(GAP, width), 1 - _fraction(GAP, height), shorten(caption, room),
                 fontsize=CAPTION_FONT, color="#555555", va="top", parse_math=False)
    x = GAP
    for panel, heatmap in zip(panels, heatmaps, strict=True):
        bottom = GAP + below
        ax = fig.add_axes((_fraction(x + panel.left, width), _fraction(bottom, height),
                           _fraction(panel.map_width, width), _fraction(panel.map_height, height)))
        bar = fig.add_axes((_fraction(x + panel.left + panel.map_width + 0.12, width),
                            _fraction(bottom, height), _fraction(0.15, width),
                            _fraction(panel.map_height, height)))
        image = draw_heatmap(ax, heatmap, cmap)
        fig.colorbar(image, cax=bar, label="attention weight")
        if not heatmap.visible.all():
            ax.legend(handles=[Patch(facecolor=MASKED_COLOR, hatch="///", edgecolor="#a0a0a0",
                                     label="masked: a future position, weight exactly 0")],
                      loc="upper right", fontsize=7, framealpha=0.9)
        x += panel.width
    return fig


class _Panel:
    """Where one heatmap goes, in inches: its map, and the room its labels need around it."""

    def __init__(self, map_width: float, map_height: float, left: float, below: float,
                 title_width: float) -> None:
        self.map_width, self.map_height = map_width, map_height
        self.left, self.below = left, below
        self.width = max(left + map_width + COLORBAR, title_width)

    @classmethod
    def of(cls, heatmap: Heatmap) -> _Panel:
        q_count, k_count = heatmap.weights.shape
        cell = min(CELL, MAP_MAX / max(q_count, k_count, 1))
        longest_query = max((cell_len(label) for label in _labels(heatmap.query_labels)),
                            default=1)
        longest_key = max((cell_len(label) for label in _labels(heatmap.key_labels)), default=1)
        suffix = 0 if max(q_count, k_count) <= LABEL_UP_TO else 7  # " (1234)" on every n-th
        left = AXIS_LABEL + 0.15 + CHAR * (longest_query + suffix)
        below = AXIS_LABEL + 0.2 + CHAR * (longest_key + suffix) * 0.75  # labels at 45°
        title_width = 0.1 * len(heatmap.title)  # 11 pt
        return cls(max(k_count * cell, 1.0), max(q_count * cell, 1.0), left, below,
                   title_width)


def _fraction(inches: float, total: float) -> float:
    return inches / total


def to_bytes(heatmaps: list[Heatmap], fmt: str, cmap: str, dpi: int = 150) -> bytes:
    """The heatmaps drawn as a ``png``, ``svg`` or ``pdf`` file."""
    return figure_bytes(figure(heatmaps, cmap), fmt, dpi)


def figure_bytes(fig, fmt: str, dpi: int = 150) -> bytes:
    """Any attnviz figure as a ``png``, ``svg`` or ``pdf`` file, the same bytes every time."""
    buffer = io.BytesIO()
    from matplotlib import rc_context

    # SVG: labels stay text (searchable, editable), and element ids do not change between runs.
    # PNG: light compression; the default level takes a sixth of the drawing time to save
    # a sixth of the bytes.
    extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "attnviz"}), \
            warnings.catch_warnings():
        # figure() has warned once, in attnviz's words, about the characters no font has;
        # matplotlib would add a line per character, naming its own source file.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font",
                                category=UserWarning)
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_NO_DATES[fmt], **extra)
    return buffer.getvalue()
