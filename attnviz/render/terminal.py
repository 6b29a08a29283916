"""Heatmaps in the terminal with rich: coloured cells, token labels on both axes, fitted to width.

Colours are 24-bit; rich lowers them to 256 or 8 colours where the terminal has fewer.
Without colour (NO_COLOR, a pipe, a dumb terminal) the cells are drawn with a character
ramp instead. A map wider than the terminal is pooled, and a note says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.color import Color
from rich.console import Group
from rich.style import Style
from rich.text import Text

from attnviz.render.colors import rgb
from attnviz.text import shorten
from attnviz.views import Heatmap

RAMP = " .:-=+*#%@"  # plain-text levels, from 0 to the largest weight
MASKED = "·"
LABEL_WIDTH = 12  # longest label shown in full; longer ones end with …
MASKED_STYLE = Style(color="grey50")


@dataclass(frozen=True)
class Grid:
    """What is drawn: a possibly pooled map with its labels. Shape: weights, visible ``[R, C]``."""

    weights: np.ndarray
    visible: np.ndarray
    row_labels: list[str]
    column_labels: list[str]
    factor: int  # 1, or how many queries (rows) and keys (columns) each cell pools


def render(heatmap: Heatmap, cmap: str, width: int, color: bool) -> Group:
    """The heatmap as rich renderables, at most ``width`` columns wide.

    Args:
        heatmap: the map to draw.
        cmap: name of the colour map (the same one images use).
        width: the terminal's width in columns.
        color: draw coloured cells (True) or a plain character ramp (False).
    """
    q_count, k_count = heatmap.weights.shape
    label_width = min(LABEL_WIDTH, max(len(label) for label in heatmap.query_labels))
    room = max(2, width - label_width - 1)
    cell = 3 if k_count * 3 <= room else 2
    factor = -(-k_count * cell // room)  # ceil: how many keys one column must hold
    grid = pool(heatmap, factor)
    if factor > 1:
        label_width = min(LABEL_WIDTH, max(len(label) for label in grid.row_labels))
        factor = -(-k_count * cell // max(2, width - label_width - 1))  # the labels grew
        grid = pool(heatmap, factor)

    # The brightest colour is the largest weight drawn: a pooled cell holds the weight of
    # several keys, so it is the pooled grid's largest, not the map's.
    shown = grid.weights[grid.visible]
    scale_max = max(float(shown.max()) if shown.size else 0.0, 1e-6)
    lines = [Text(heatmap.title, style="bold"),
             Text(f"rows = {heatmap.query_axis}   columns = {heatmap.key_axis}", style="dim")]
    lines += _header(grid.column_labels, label_width, cell)  # (these lines never wrap)
    levels = np.clip(grid.weights / scale_max, 0.0, 1.0)  # (R, C)
    colors = rgb(cmap, levels) if color else None  # (R, C, 3)
    for row, label in enumerate(grid.row_labels):
        line = Text(shorten(label, label_width).rjust(label_width) + " ", no_wrap=True)
        for col in range(len(grid.column_labels)):
            if not grid.visible[row, col]:
                line.append(MASKED.center(cell), MASKED_STYLE)
            elif colors is not None:
                line.append(" " * cell, Style(bgcolor=Color.from_rgb(*colors[row, col])))
            else:
                line.append(_ramp(levels[row, col]) * cell)
        lines.append(line)
    lines.append(_legend(cmap, scale_max, color))
    if not heatmap.visible.all():
        lines.append(Text(f"{MASKED} masked: a future position, weight exactly 0", style="dim"))
    if grid.factor > 1:
        lines.append(Text(
            f"note: the {q_count}×{k_count} map is pooled to {len(grid.row_labels)}×"
            f"{len(grid.column_labels)} to fit {width} columns: each row averages up to "
            f"{grid.factor} queries, each column sums up to {grid.factor} keys; labels are "
            "token positions (and a row's first token). Save it with -o map.png or -o map.npz "
            "to see every value.",
            style="yellow"))
    return Group(*lines)


def pool(heatmap: Heatmap, factor: int) -> Grid:
    """Blocks of ``factor`` queries by ``factor`` keys become one cell.

    A cell holds the weight its queries give to its keys: summed over the keys, averaged over
    the queries, so each row still sums to 1. A cell is masked only if all its keys were.
    A factor of 1 keeps the map as it is.
    """
    if factor <= 1:
        return Grid(heatmap.weights, heatmap.visible, heatmap.query_labels,
                    heatmap.key_labels, 1)
    q_count, k_count = heatmap.weights.shape
    rows, cols = -(-q_count // factor), -(-k_count // factor)
    padded = np.zeros((rows * factor, cols * factor), dtype=np.float64)
    padded[:q_count, :k_count] = heatmap.weights
    visible = np.zeros(padded.shape, dtype=bool)
    visible[:q_count, :k_count] = heatmap.visible
    blocks = padded.reshape(rows, factor, cols, factor)  # (R, f, C, f)
    queries_per_row = np.minimum(factor, q_count - np.arange(rows) * factor)  # (R,)
    weights = blocks.sum(axis=(1, 3)) / queries_per_row[:, None]  # (R, C)
    pooled_visible = visible.reshape(rows, factor, cols, factor).any(axis=(1, 3))  # (R, C)

    def spans(count: int, total: int, labels: list[str] | None = None) -> list[str]:
        """Token positions of each block, and (for rows) the block's first token."""
        names = []
        for i in range(count):
            first, last = i * factor, min(total, (i + 1) * factor) - 1
            span = str(first) if first == last else f"{first}-{last}"
            names.append(span + (f" {labels[first]}" if labels else ""))
        return names

    return Grid(weights, pooled_visible, spans(rows, q_count, heatmap.query_labels),
                spans(cols, k_count), factor)


def _header(labels: list[str], indent: int, cell: int) -> list[Text]:
    """Column labels written downwards, one character a line, centred over their cells."""
    height = min(LABEL_WIDTH, max(len(label) for label in labels))
    fitted = [shorten(label, height) for label in labels]
    return [Text(" " * (indent + 1)
                 + "".join((label[r] if r < len(label) else " ").center(cell) for label in fitted),
                 style="bold", no_wrap=True)
            for r in range(height)]


def _legend(cmap: str, scale_max: float, color: bool) -> Text:
    line = Text("scale 0 ")
    if color:
        for r, g, b in rgb(cmap, np.linspace(0.0, 1.0, 12)):
            line.append("  ", Style(bgcolor=Color.from_rgb(r, g, b)))
    else:
        line.append(f"[{RAMP}]")
    line.append(f" {scale_max:.2f} (largest weight shown)")
    return line


def _ramp(level: float) -> str:
    return RAMP[min(len(RAMP) - 1, int(level * len(RAMP)))]


def show(console, heatmaps: list[Heatmap], cmap: str) -> None:
    """Print each heatmap to a rich console, fitted to its width, in colour if it has colour."""
    color = console.color_system is not None and not console.no_color
    for index, heatmap in enumerate(heatmaps):
        if index:
            console.print()
        console.print(render(heatmap, cmap, console.width, color))
