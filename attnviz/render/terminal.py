"""Heatmaps in the terminal with rich: coloured cells, token labels on both axes, fitted to width.

Colours are 24-bit; rich lowers them to 256 or 8 colours where the terminal has fewer.
Without colour (NO_COLOR, a pipe, a dumb terminal) the cells are drawn with a character
ramp instead. A map wider than the terminal is pooled, and a note says so. Widths are
terminal columns (rich's ``cell_len``), so labels in Chinese or with emoji fit as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.cells import cell_len
from rich.color import Color
from rich.console import Group
from rich.style import Style
from rich.text import Text

from attnviz.render.colors import rgb
from attnviz.text import clusters, shorten
from attnviz.views import Heatmap

RAMP = " .:-=+*#%@"  # plain-text levels, from 0 to the largest weight
MASKED = "·"
LABEL_WIDTH = 12  # longest label shown in full; longer ones end with …
MIN_LABEL = 3  # on a narrow terminal labels shrink to a third of it, but not below this
MIN_WIDTH = MIN_LABEL + 1 + 2  # a row label, a space and one cell of two columns
MASKED_STYLE = Style(color="grey50")


@dataclass(frozen=True)
class Grid:
    """What is drawn: a possibly pooled map with its labels. Shape: weights, visible ``[R, C]``."""

    weights: np.ndarray
    visible: np.ndarray
    row_labels: list[str]
    column_labels: list[str]
    factor: int  # 1, or how many queries (rows) and keys (columns) each cell pools


@dataclass(frozen=True)
class Layout:
    """How a map fits a terminal: every grid line is ``label_width + 1 + columns * cell`` wide."""

    cell: int  # terminal columns per cell: 3, or 2 when the map must be pooled
    factor: int  # queries and keys pooled into one cell (1: none)
    label_width: int  # terminal columns of the row labels


def render(heatmap: Heatmap, cmap: str, width: int, color: bool) -> Group:
    """The heatmap as rich renderables, no line wider than ``width`` terminal columns.

    Labels are measured in terminal columns (a Chinese character or an emoji takes two).
    A map too wide for the terminal is pooled; on a narrow terminal the labels shrink too;
    below :data:`MIN_WIDTH` columns the map is not drawn and a line says why.

    Args:
        heatmap: the map to draw.
        cmap: name of the colour map (the same one images use).
        width: the terminal's width in columns.
        color: draw coloured cells (True) or a plain character ramp (False).
    """
    q_count, k_count = heatmap.weights.shape
    title = Text(heatmap.title, style="bold")
    if heatmap.caption:  # where the maps come from, on its own line (wrapped, never cut)
        title = Text.assemble(title, "\n", Text(heatmap.caption, style="dim"))
    if q_count == 0 or k_count == 0:
        return Group(title, Text(f"(the map is empty: {q_count} queries, {k_count} keys)"))
    query_labels = heatmap.query_labels
    layout = fit(query_labels, k_count, width)
    if layout is None:
        return Group(title, Text(
            f"the terminal is {width} columns wide, too narrow to draw the map ({MIN_WIDTH} at "
            "least): widen it, or save it with -o map.png", style="yellow"))
    grid = pool(heatmap, layout.factor)
    cell, label_width = layout.cell, layout.label_width

    # The brightest colour is the largest weight drawn: a pooled cell holds the weight of
    # several keys, so it is the pooled grid's largest, not the map's.
    shown = grid.weights[grid.visible]
    scale_max = max(float(shown.max()) if shown.size else 0.0, 1e-6)
    lines = [title,
             Text(f"rows = {heatmap.query_axis}   columns = {heatmap.key_axis}", style="dim")]
    lines += _header(grid.column_labels, label_width + 1, cell)
    levels = np.clip(grid.weights / scale_max, 0.0, 1.0)  # (R, C)
    colors = rgb(cmap, levels) if color else None  # (R, C, 3)
    for row, label in enumerate(grid.row_labels):
        fitted = shorten(label, label_width)
        line = _grid_line(" " * (label_width - cell_len(fitted)) + fitted + " ")
        for col in range(len(grid.column_labels)):
            if not grid.visible[row, col]:
                line.append(MASKED.center(cell), MASKED_STYLE)
            elif colors is not None:
                line.append(" " * cell, Style(bgcolor=Color.from_rgb(*colors[row, col])))
            else:
                line.append(_ramp(levels[row, col]) * cell)
        lines.append(line)
    lines.append(_legend(cmap, scale_max, color, width))
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


def fit(query_labels: list[str], k_count: int, width: int) -> Layout | None:
    """The layout whose every line fits ``width`` columns, pooling as little as it can.

    Cells of three columns when the whole map fits so, else cells of two and the smallest
    pooling factor that fits. Row labels take at most :data:`LABEL_WIDTH` columns, and at
    most a third of a narrow terminal. None when even that cannot fit (``width`` below
    :data:`MIN_WIDTH`).
    """
    cap = min(LABEL_WIDTH, max(MIN_LABEL, (width - 1) // 3))
    if width - cap - 1 < 2:
        return None

    def label_width(factor: int) -> int:
        return max(1, min(cap, _widest_row_label(query_labels, factor)))

    def fits(factor: int, cell: int) -> bool:
        return label_width(factor) + 1 + -(-k_count // factor) * cell <= width

    if fits(1, 3):
        return Layout(3, 1, label_width(1))
    # Labels take 1 to `cap` columns, so the factor lies between these two. The upper one
    # always fits: ceil(K / f) <= floor(room / 2) columns of two. (Dividing by the room
    # instead, ceil(2K / room), gives one column too many when the room is odd.)
    lowest = -(-k_count // ((width - 2) // 2))
    highest = -(-k_count // ((width - cap - 1) // 2))
    factor = next(f for f in range(lowest, highest + 1) if fits(f, 2))
    return Layout(2, factor, label_width(factor))


def _widest_row_label(labels: list[str], factor: int) -> int:
    """Terminal columns of the widest row label :func:`pool` writes for ``factor``."""
    if factor <= 1:
        return max((cell_len(label) for label in labels), default=0)
    return max(cell_len(_span(first, min(len(labels), first + factor) - 1)) + 1
               + cell_len(labels[first]) for first in range(0, len(labels), factor))


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


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
            names.append(_span(first, last) + (f" {labels[first]}" if labels else ""))
        return names

    return Grid(weights, pooled_visible, spans(rows, q_count, heatmap.query_labels),
                spans(cols, k_count), factor)


def _header(labels: list[str], indent: int, cell: int) -> list[Text]:
    """Column labels written downwards, one character a line, centred over their cells.

    A character keeps its combining marks on its line; one too wide for a cell (only a
    two-column character in a cell of one) would not be drawn, so it is shown as …
    """
    pieces = [clusters(label) for label in labels]
    height = min(LABEL_WIDTH, max(len(label) for label in pieces))
    fitted = [label if len(label) <= height else [*label[: height - 1], "…"] for label in pieces]
    return [_grid_line(" " * indent + "".join(_centre(label[r] if r < len(label) else " ", cell)
                                              for label in fitted), style="bold")
            for r in range(height)]


def _centre(piece: str, cell: int) -> str:
    """``piece`` in the middle of ``cell`` columns (the extra column on the right)."""
    size = cell_len(piece)
    if size > cell:
        piece, size = "…", 1
    left = (cell - size) // 2
    return " " * left + piece + " " * (cell - size - left)


def _grid_line(text: str, style: str = "") -> Text:
    """A line of the grid: never wrapped (that would tear the map apart). It is laid out to
    fit; were it ever wider, ``Console.print`` would crop it, and a console printing with
    ``crop=False`` (the tests) shows its whole width instead of hiding the fault."""
    return Text(text, style=style, no_wrap=True, overflow="ignore")


def _legend(cmap: str, scale_max: float, color: bool, width: int) -> Text:
    """The scale: 0, the colours (or the ramp) and the largest weight, in ``width`` columns
    when it can; rich wraps it on a terminal narrower than that."""
    tail = f" {scale_max:.2f} (largest weight shown)"
    line = Text("scale 0 ")
    if color:
        swatches = max(2, min(12, (width - len(line) - len(tail)) // 2))
        for r, g, b in rgb(cmap, np.linspace(0.0, 1.0, swatches)):
            line.append("  ", Style(bgcolor=Color.from_rgb(r, g, b)))
    else:
        line.append(f"[{RAMP}]")
    line.append(tail)
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
