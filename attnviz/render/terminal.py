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

from attnviz.io.text import clusters, shorten
from attnviz.maps.caption import in_columns
from attnviz.maps.kinds import TITLES
from attnviz.maps.views import (
    SINK_NOTES,
    UNKNOWN_MARK,
    Heatmap,
    Plan,
    arrange,
    log_shares,
    scale_rows,
)
from attnviz.render.colors import rgb
from attnviz.render.terminal_fit import (
    LABEL_WIDTH,
    MIN_LABEL,
    MIN_WIDTH,
    PAIR_WIDTH,
    Grid,
    Layout,
    fit,
    pool,
    widest_row_label,
)

RAMP = " .:-=+*#%@"  # plain-text levels, from 0 to the largest weight
MASKED = "·"
MASKED_STYLE = Style(color="grey50")
GAP = 2  # columns between two small multiples
MULTIPLE_HEADER = 6  # lines of the column labels above small multiples (longer ones end with …)
LEGEND_TAILS = {  # after the scale's largest value: what it is
    "panel": "(largest weight shown)",
    "shared": "(largest of every panel of the figure: shared scale)",
    "unit": "(unit scale)",
    "row": "(each row's largest weight: row scale)",
    "log": "(largest weight, log scale down 4 decades)",
}
WINDOW_TAILS = {  # ... when the map is a window: the scales reach over the whole map
    **LEGEND_TAILS,
    "panel": "(largest weight of the whole map)",
    "shared": "(largest of every panel's whole map: shared scale)",
    "row": "(each whole row's largest weight: row scale)",
}
MASKED_NOTE = f"{MASKED} masked: a future position, weight exactly 0"
UNKNOWN_NOTE = f"word{UNKNOWN_MARK}: a word the model's vocabulary lacks (its map holds <unk>)"


def render(heatmap: Heatmap, cmap: str, width: int, color: bool, plan: Plan | None = None,
           limit: float | None = None) -> Group:
    """The heatmap as rich renderables, no line wider than ``width`` terminal columns.

    Labels are measured in terminal columns (a Chinese character or an emoji takes two).
    A map too wide for the terminal is pooled; on a narrow terminal the labels shrink too;
    below :data:`MIN_WIDTH` columns the map is not drawn and a line says why.

    Args:
        heatmap: the map to draw.
        cmap: name of the colour map (the same one images use).
        width: the terminal's width in columns.
        color: draw coloured cells (True) or a plain character ramp (False).
        plan: the figure's plan, for its colour scale (None: the panel's own).
        limit: for the shared scale, the largest cell of every panel as drawn (pooled).
    """
    scale = "panel" if plan is None else plan.scale
    q_count, k_count = heatmap.weights.shape
    title = Text(heatmap.title, style="bold")
    if heatmap.caption:  # where the maps come from, in lines (a text cut only if no line holds it)
        title = Text.assemble(title, "\n", Text(in_columns(heatmap.caption, width), style="dim"))
    if q_count == 0 or k_count == 0:
        return Group(title, Text(f"(the map is empty: {q_count} queries, {k_count} keys)"))
    prepared = _prepare(heatmap, width)
    if prepared is None:
        return Group(title, Text(
            f"the terminal is {width} columns wide, too narrow to draw the map ({MIN_WIDTH} at "
            "least): widen it, or save it with -o map.png", style="yellow"))
    layout, grid = prepared
    cell, label_width = layout.cell, layout.label_width
    levels, scale_max = _levels(grid, scale, limit)  # (R, C)
    lines = [title,
             Text(f"rows = {heatmap.query_axis}   columns = {heatmap.key_axis}", style="dim")]
    lines += _header(grid.column_labels, label_width + 1, cell)
    colors = rgb(cmap, levels) if color else None  # (R, C, 3)
    for row, label in enumerate(grid.row_labels):
        fitted = heatmap.query_label(row, label_width) if grid.factor == 1 else shorten(
            label, label_width)
        line = _grid_line(" " * (label_width - cell_len(fitted)) + fitted + " ")
        _cells(line, grid, row, levels, colors, cell)
        lines.append(line)
    lines.append(_legend(cmap, scale_max, color, width, scale, heatmap.windowed))
    if SINK_NOTES[heatmap.sink]:
        lines.append(Text(SINK_NOTES[heatmap.sink]))
    lines += _notes([heatmap], [grid], width)
    return Group(*lines)


def _prepare(heatmap: Heatmap, width: int) -> tuple[Layout, Grid] | None:
    """How ``heatmap`` fits ``width`` columns, and its (possibly pooled) grid."""
    if heatmap.predicts:  # "input → next", each side cut to its share of the width
        cap = PAIR_WIDTH
        labels = [heatmap.query_label(row, cap) for row in range(len(heatmap.query_tokens))]
    else:
        cap, labels = LABEL_WIDTH, heatmap.query_labels
    layout = fit(labels, heatmap.weights.shape[1], width, cap)
    return None if layout is None else (layout, pool(heatmap, layout.factor))


def _levels(grid: Grid, scale: str, limit: float | None) -> tuple[np.ndarray, float]:
    """The cells' colours, 0 to 1, and the value drawn brightest. Shape: ``(R, C)``.

    The brightest colour of the panel scale is the largest cell drawn: a pooled cell holds
    the weight of several keys, so it is the pooled grid's largest, not the map's.
    """
    if scale == "row":
        return scale_rows(grid.weights, grid.visible, grid.row_largest), 1.0
    if scale == "log":
        top = limit if limit is not None else _largest(grid)
        return log_shares(grid.weights, top), top
    if scale == "unit":
        top = 1.0
    elif scale == "shared" and limit is not None:
        top = limit
    else:
        top = _largest(grid)
    return np.clip(grid.weights / top, 0.0, 1.0), top


def _largest(grid: Grid) -> float:
    """The largest cell of the grid's whole map, pooled as the grid is (at least 1e-6)."""
    if grid.largest is not None:
        return max(grid.largest, 1e-6)
    shown = grid.weights[grid.visible]
    return max(float(shown.max()) if shown.size else 0.0, 1e-6)


def _cells(line: Text, grid: Grid, row: int, levels: np.ndarray, colors: np.ndarray | None,
           cell: int) -> None:
    """Append row ``row``'s cells to ``line``: colours, or the ramp's characters."""
    for col in range(grid.weights.shape[1]):
        if not grid.visible[row, col]:
            line.append(MASKED.center(cell), MASKED_STYLE)
        elif colors is not None:
            line.append(" " * cell, Style(bgcolor=Color.from_rgb(*colors[row, col])))
        else:
            line.append(_ramp(levels[row, col]) * cell)


def _notes(heatmaps: list[Heatmap], grids: list[Grid], width: int) -> list[Text]:
    """What the marks mean: masked cells, unknown words, and pooling."""
    lines = []
    if any(not heatmap.visible.all() for heatmap in heatmaps):
        lines.append(Text(MASKED_NOTE, style="dim"))
    if any(heatmap.unknown_words for heatmap in heatmaps):
        lines.append(Text(UNKNOWN_NOTE, style="dim"))
    pooled = [(heatmap, grid) for heatmap, grid in zip(heatmaps, grids, strict=True)
              if grid.factor > 1]
    if pooled:
        heatmap, grid = pooled[0]
        q_count, k_count = heatmap.weights.shape
        what = "map is" if len(heatmaps) == 1 else "maps are"
        lines.append(Text(
            f"note: the {q_count}×{k_count} {what} pooled to {len(grid.row_labels)}×"
            f"{len(grid.column_labels)} to fit {width} columns: each row averages up to "
            f"{grid.factor} queries, each column sums up to {grid.factor} keys; labels are "
            "token positions (and a row's first token). Save it with -o map.png or -o map.npz "
            "to see every value.",
            style="yellow"))
    return lines


def _header(labels: list[str], indent: int, cell: int, tallest: int = LABEL_WIDTH
            ) -> list[Text]:
    """Column labels written downwards, one character a line, centred over their cells,
    at most ``tallest`` lines.

    A character keeps its combining marks on its line; one too wide for a cell (only a
    two-column character in a cell of one) would not be drawn, so it is shown as …
    """
    pieces = [clusters(label) for label in labels]
    height = min(tallest, max(len(label) for label in pieces))
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


def _legend(cmap: str, scale_max: float, color: bool, width: int, scale: str = "panel",
            windowed: bool = False) -> Text:
    """The scale: 0, the colours (or the ramp) and the largest weight, in ``width`` columns
    when it can; rich wraps it on a terminal narrower than that. ``windowed``: the maps are
    windows, whose scales reach over their whole maps."""
    tail = f" {scale_max:.2f} {(WINDOW_TAILS if windowed else LEGEND_TAILS)[scale]}"
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


def show(console, heatmaps: list[Heatmap] | Plan, cmap: str) -> None:
    """Print a plan (or heatmaps, one after another) to a rich console, fitted to its width,
    in colour if it has colour."""
    color = console.color_system is not None and not console.no_color
    for index, part in enumerate(render_plan(heatmaps, cmap, console.width, color)):
        if index:
            console.print()
        console.print(part)


def render_plan(plan: list[Heatmap] | Plan, cmap: str, width: int, color: bool
                ) -> list[Group]:
    """Every panel of a plan, no line wider than ``width``: one map after another, or (a grid
    of layers and heads) per kind, small multiples side by side, each titled with its layer
    and head. One colour scale for the figure, unless it is the panel scale."""
    plan = plan if isinstance(plan, Plan) else arrange(plan)
    if not plan.grid:
        panels = plan.panels
        prepared = [_prepare(panel, width) if panel.weights.size else None for panel in panels]
        limit = max((_largest(p[1]) for p in prepared if p is not None), default=None)
        return [render(panel, cmap, width, color, plan, limit) for panel in panels]
    return _multiples(plan, cmap, width, color)


@dataclass(frozen=True)
class _Block:
    """A kind's small multiples as laid out: their grids and row labels."""

    title: str
    panels: list[Heatmap]
    grids: list[Grid]
    labels: list[str]  # row labels, already fitted to label_width
    label_width: int
    cell: int
    slot: int  # columns of each small multiple: its cells, or its title when wider
    per_line: int  # small multiples side by side (at most a layer's: layers are rows)
    per_row: int  # a layer's panels: its heads (and their mean)


def _multiples(plan: Plan, cmap: str, width: int, color: bool) -> list[Group]:
    """Per kind, its panels as small multiples fitted to ``width``; then one legend."""
    blocks: list[_Block | Heatmap] = []  # a Heatmap: the first of maps that are empty
    for block in plan.blocks:
        panels = [panel for row in block.panels for panel in row]
        if not panels[0].weights.size:
            blocks.append(panels[0])
            continue
        laid = _lay_out(panels, width, len(block.panels[0]))
        if laid is None:
            return [Group(Text(
                f"the terminal is {width} columns wide, too narrow to draw the maps "
                f"({MIN_WIDTH} at least): widen it, or save them with -o maps.png",
                style="yellow"))]
        blocks.append(_Block(block.title, panels, *laid, len(block.panels[0])))
    drawn = [block for block in blocks if isinstance(block, _Block)]
    limit = max((_largest(grid) for block in drawn for grid in block.grids), default=1.0)
    parts = []
    for index, block in enumerate(blocks):
        if isinstance(block, Heatmap):
            q_count, k_count = block.weights.shape
            parts.append([Text(TITLES[block.kind], style="bold"), Text(
                f"(the maps are empty: {q_count} queries, {k_count} keys)")])
            continue
        lines: list[Text] = [Text(block.title, style="bold")]
        if index == 0 and plan.caption:
            lines.append(Text(in_columns(plan.caption, width), style="dim"))
        first = block.panels[0]
        lines.append(Text(f"rows = {first.query_axis}   columns = {first.key_axis}",
                          style="dim"))
        for layer in range(0, len(block.panels), block.per_row):  # each starts a line
            end = min(len(block.panels), layer + block.per_row)
            for start in range(layer, end, block.per_line):
                lines += _line_of_multiples(block, range(start, min(end, start + block.per_line)),
                                            plan.scale, limit, cmap, color)
        parts.append(lines)
    windowed = any(panel.windowed for panel in plan.panels)
    if plan.scale == "panel":  # each title gives its panel's largest weight
        legend = [Text("scale: each panel from 0 to its largest weight"
                       + (" (of its whole map, not only the window)" if windowed else "")
                       + ", written after its title (panel scale)")]
    else:
        legend = [_legend(cmap, 1.0 if plan.scale in ("unit", "row") else limit, color, width,
                          plan.scale, windowed)]
    if plan.sink_note:
        legend.append(Text(plan.sink_note))
    if drawn:
        legend += _notes([p for b in drawn for p in b.panels], [g for b in drawn for g in b.grids],
                         width)
        parts[-1] += legend
    return [Group(*lines) for lines in parts]


def _compact_title(panel: Heatmap) -> str:
    """A small multiple's place, in few columns: ``L1 H2``, ``L1 mean``."""
    return f"L{panel.layer} {'mean' if panel.head is None else f'H{panel.head}'}"


def _lay_out(panels: list[Heatmap], width: int, per_row: int
             ) -> tuple[list[Grid], list[str], int, int, int, int] | None:
    """Small multiples of panels of one shape in ``width`` columns: the grids (pooled as
    little as they can be), the row labels, their width, the cell's columns, each panel's
    columns (at least its compact title's, room allowing) and how many panels go side by
    side (never more than a layer's ``per_row``: the next layer starts a new line). Cells
    of two columns when a layer's ``per_row`` panels fit so on one line, else of one;
    fewer panels a line, then pooling, when even one does not fit. None below
    :data:`MIN_WIDTH`."""
    first = panels[0]
    q_count, k_count = first.weights.shape
    cap = min(PAIR_WIDTH if first.predicts else LABEL_WIDTH, max(MIN_LABEL, (width - 1) // 3))
    if width - cap - 1 < 2 or q_count == 0 or k_count == 0:
        return None
    labels = [first.query_label(row, cap) for row in range(q_count)]
    title = max(cell_len(_compact_title(panel)) for panel in panels)

    def label_width(factor: int) -> int:
        return max(1, min(cap, widest_row_label(labels, factor)))

    def slot(factor: int, cell: int) -> int:
        """A panel's columns: its cells, widened to its title where the line has room."""
        room = width - label_width(factor) - 1
        return max(-(-k_count // factor) * cell, min(title, room))

    def side_by_side(factor: int, cell: int) -> int:
        room = width - label_width(factor) - 1
        return max(0, (room + GAP) // (slot(factor, cell) + GAP))

    choice = next(((1, cell) for cell in (2, 1) if side_by_side(1, cell) >= min(per_row,
                                                                             len(panels))),
                  None) or next(((1, cell) for cell in (2, 1) if side_by_side(1, cell) >= 1),
                                None)
    if choice is None:
        factor = next(f for f in range(2, k_count + 1) if side_by_side(f, 1) >= 1)
        choice = (factor, 1)
    factor, cell = choice
    grids = [pool(panel, factor) for panel in panels]
    fitted = label_width(factor)
    if factor == 1:
        rows = [first.query_label(row, fitted) for row in range(q_count)]
    else:
        rows = [shorten(label, fitted) for label in grids[0].row_labels]
    return (grids, rows, fitted, cell, slot(factor, cell),
            min(per_row, len(panels), side_by_side(factor, cell)))


def _line_of_multiples(block: _Block, indices: range, scale: str, limit: float, cmap: str,
                       color: bool) -> list[Text]:
    """One line of small multiples: their titles, column labels and rows, side by side."""
    grids = [block.grids[i] for i in indices]
    slot = block.slot
    padding = " " * (slot - grids[0].weights.shape[1] * block.cell)  # right of the cells
    indent = " " * (block.label_width + 1)
    gap = " " * GAP
    titles = []
    for i in indices:
        panel = block.panels[i]
        title = next((t for t in (panel.short_title, _compact_title(panel))
                      if cell_len(t) <= slot), _compact_title(panel))
        if scale == "panel":
            top = f" {_largest(block.grids[i]):.2f}".replace(" 0.", " .")
            title = title + top if cell_len(title + top) <= slot else title
        titles.append(shorten(title, slot).ljust(slot))
    lines = [_grid_line(indent + gap.join(titles), style="bold")]
    header = _header(grids[0].column_labels, 0, block.cell, MULTIPLE_HEADER)
    for text in header:  # each line is as wide as the cells
        lines.append(_grid_line(indent + gap.join([text.plain + padding] * len(grids)),
                                style="bold"))
    painted = []
    for grid in grids:
        levels, _ = _levels(grid, scale, limit)
        painted.append((levels, rgb(cmap, levels) if color else None))
    for row, label in enumerate(block.labels):
        line = _grid_line(" " * (block.label_width - cell_len(label)) + label + " ")
        for index, grid in enumerate(grids):
            if index:
                line.append(gap)
            _cells(line, grid, row, painted[index][0], painted[index][1], block.cell)
            line.append(padding)
        lines.append(line)
    return lines
