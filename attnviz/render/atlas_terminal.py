"""The atlas of the heads in the terminal: per kind, small layers x heads grids of the labels
and of each figure (coloured cells, or a character ramp without colour), side by side as the
width allows; then, for each label, the heads that earn it most clearly."""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.console import Group
from rich.style import Style
from rich.text import Text

from attnviz.maps.atlas import LABELS, Atlas, threshold_text
from attnviz.maps.kinds import TITLES, WEIGHT_TITLES
from attnviz.render.colors import LABEL_COLORS, rgb

RAMP = " .:-=+*#%@"  # plain-text levels, from 0 to the figure's largest value
LETTERS = {"induction": "I", "previous-token": "P", "self": "S", "sink": "F", "broad": "B"}
NOT_MEASURED = "·"
NO_LABEL = "-"
GAP = 3  # columns between two grids
TOP = 5  # heads listed per label


def render(atlas: Atlas, cmap: str, width: int, color: bool) -> Group:
    """The atlas as rich renderables: grids no wider than ``width`` where they fit (a grid
    of more heads than the width holds is cropped by the console)."""
    lines: list[Text] = [Text(atlas.caption, style="dim")]
    for kind in atlas.kinds:
        lines.append(Text(""))
        lines.append(Text(TITLES[kind] + WEIGHT_TITLES[atlas.measure], style="bold"))
        grids = [_grid(atlas, kind, name, cmap, color) for name in ("label", *atlas.names)]
        lines += _side_by_side(grids, width)
    lines.append(Text(""))
    legend = "  ".join(f"{LETTERS[name]} {threshold_text(name)}" for name, _, _ in LABELS)
    lines.append(Text(f"labels: {legend}  {NO_LABEL} none; {NOT_MEASURED} not measured "
                      f"(figures: 0 to each one's largest value, [{RAMP}] without colour)",
                      style="dim"))
    for name, figure, _ in LABELS:
        if figure not in atlas.names:
            continue  # not measured (the induction score, without --induction)
        found = atlas.top(name, TOP)
        heads = ", ".join(f"{kind} L{layer} H{head} {value:.2f}"
                          for kind, layer, head, value in found) or "none"
        count = sum(atlas.label(kind, layer, head) == name for kind in atlas.kinds
                    for layer in range(atlas.shape(kind)[0])
                    for head in range(atlas.shape(kind)[1]))
        more = f" (and {count - len(found)} more)" if count > len(found) else ""
        lines.append(Text(f"{threshold_text(name)}: {heads}{more}"))
    return Group(*lines)


def show(console, atlas: Atlas, cmap: str) -> None:
    """Print the atlas to a rich console, fitted to its width, in colour if it has colour."""
    color = console.color_system is not None and not console.no_color
    console.print(render(atlas, cmap, console.width, color))


def _grid(atlas: Atlas, kind: str, name: str, cmap: str, color: bool) -> list[Text]:
    """One grid's lines: its title, the heads' numbers, then a line per layer."""
    layers, heads = atlas.shape(kind)
    cell = 2 if heads <= 40 else 1
    label = len(f"L{layers - 1}") + 1
    if name == "label":
        title = "label"
    else:
        values = atlas.figures[kind].get(name)
        title = f"{name} 0-{atlas.limit(name):.2f}"
    numbers = "".join(str(head % 10).rjust(cell) for head in range(heads))
    lines = [Text(title, style="bold"), Text(" " * label + numbers, style="dim")]
    for layer in range(layers):
        line = Text(f"L{layer}".ljust(label), style="dim")
        for head in range(heads):
            if name == "label":
                found = atlas.label(kind, layer, head)
                mark = LETTERS[found] if found else NO_LABEL
                style = Style(color=LABEL_COLORS[found], bold=True) if found and color else ""
                line.append(mark.rjust(cell), style)
                continue
            value = float(values[layer, head])
            if not np.isfinite(value):
                line.append(NOT_MEASURED.rjust(cell), "grey50")
            elif color:
                r, g, b = rgb(cmap, np.array(value / atlas.limit(name)))
                line.append(" " * cell, Style(bgcolor=Color.from_rgb(int(r), int(g), int(b))))
            else:
                level = min(len(RAMP) - 1, int(value / atlas.limit(name) * len(RAMP)))
                line.append(RAMP[level] * cell)
        lines.append(line)
    return lines


def _side_by_side(grids: list[list[Text]], width: int) -> list[Text]:
    """Grids placed left to right while the width holds them, then on the next lines."""
    sizes = [max(part.cell_len for part in grid) for grid in grids]
    out: list[Text] = []
    start = 0
    while start < len(grids):
        end, used = start + 1, sizes[start]
        while end < len(grids) and used + GAP + sizes[end] <= width:
            used += GAP + sizes[end]
            end += 1
        for row in range(max(len(grid) for grid in grids[start:end])):
            line = Text(no_wrap=True, overflow="ignore")
            for index in range(start, end):
                part = grids[index][row] if row < len(grids[index]) else Text("")
                line.append_text(part)
                if index < end - 1:
                    line.append(" " * (sizes[index] - part.cell_len + GAP))
            out.append(line)
        start = end
    return out

