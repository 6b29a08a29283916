"""The explain view in the terminal: where Q, K and V come from, then the scaled scores, the
mask and the weights of one head as tables of numbers, one under the other, fitted to the
terminal's width."""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.color import Color
from rich.console import Group
from rich.style import Style
from rich.text import Text

from attnviz.io.text import display_label, rounded, shorten
from attnviz.maps.caption import caption, in_columns
from attnviz.maps.explanation import Explanation
from attnviz.maps.views import KEY_AXES, QUERY_AXES
from attnviz.render.colors import rgb

CELL = 6  # terminal columns per number: "-12.3" and a space
LABEL_WIDTH = 12  # longest row label shown in full
MASKED = "·"
DIM = Style(color="grey50")


def render(explanation: Explanation, cmap: str, width: int, color: bool):
    """The explain view of ``explanation`` as a rich renderable ``width`` columns wide.

    Args:
        explanation: what to show.
        cmap: the colour map of the weights (when ``color``).
        width: the terminal's width in columns.
        color: colour the weights' cells (True), or plain text (False).
    """
    e = explanation
    lines = [Text(e.title, style="bold")]
    heading = caption(e.provenance)
    if heading:
        lines.append(Text(in_columns(heading, width), style="dim"))
    lines.append(Text(f"{e.formula};  {e.widths}"))
    for name, letter in (("queries", "Q"), ("keys", "K"), ("values", "V")):
        lines.append(Text.assemble((f"{e.projection(letter)}  {e.shapes[name]}", "bold"),
                                   f"  x: {e.origins[name]}"))
    lines.append(Text(f"rows = {QUERY_AXES[e.kind]}   columns = {KEY_AXES[e.kind]}",
                      style="dim"))

    def cells(values: np.ndarray, text_of, style_of) -> list[Text]:
        return _table(e, width, values, text_of, style_of)

    lines += [Text(""), Text(f"{e.scores_name}, the scaled scores {e.shapes['scores']}:",
                             style="bold")]
    lines += cells(e.scores, lambda value, seen: rounded(value, 1),
                   lambda row, col: None if e.mask[row, col] else DIM)
    if e.masked:
        lines += [Text(""), Text(f"+ M, the mask: 0 where the key may be seen, -∞ where it "
                                 f"is hidden ({e.mask_meaning}):", style="bold")]
        lines += cells(np.where(e.mask, 0.0, -np.inf),
                       lambda value, seen: "0" if seen else "-∞",
                       lambda row, col: None if e.mask[row, col] else DIM)
    else:  # a table of zeros would say less than this line
        lines += [Text(""), Text.assemble(("+ M, the mask: 0 everywhere", "bold"),
                                          f" ({e.mask_meaning})")]
    lines += [Text(""), Text(f"softmax, row by row = the weights ({e.map_name} of the "
                             "maps; each row sums to 1):", style="bold")]
    colours = rgb(cmap, np.clip(e.weights, 0.0, 1.0)) if color else None  # (Q, K, 3)

    def weight_style(row: int, col: int) -> Style | None:
        if not e.mask[row, col]:
            return DIM
        if colours is None:
            return None
        red, green, blue = (int(c) for c in colours[row, col])
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 127
        return Style(bgcolor=Color.from_rgb(red, green, blue),
                     color="black" if light else "white")

    lines += cells(e.weights, lambda value, seen: rounded(value, 2) if seen else MASKED,
                   weight_style)
    return Group(*lines)


def _table(e: Explanation, width: int, values: np.ndarray, text_of, style_of) -> list[Text]:
    """Rows of numbers under a header of key labels; the keys that do not fit ``width`` are
    left out, and a line says so."""
    row_labels = [display_label(token) for token in e.query_tokens]
    label_width = max(1, min(LABEL_WIDTH, max((cell_len(label) for label in row_labels),
                                              default=1)))
    keys = values.shape[1]
    shown = max(1, min(keys, (width - label_width - 1) // CELL))
    header = Text(" " * (label_width + 1), no_wrap=True, overflow="ignore")
    for token in e.key_tokens[:shown]:
        label = shorten(display_label(token), CELL - 1)
        header.append(" " * (CELL - cell_len(label)) + label, style="bold")
    lines = [header]
    for row, label in enumerate(row_labels):
        fitted = shorten(label, label_width)
        line = Text(" " * (label_width - cell_len(fitted)) + fitted + " ", no_wrap=True,
                    overflow="ignore")
        for col in range(shown):
            text = text_of(float(values[row, col]), bool(e.mask[row, col]))
            line.append(" " + text.rjust(CELL - 1), style=style_of(row, col))
        lines.append(line)
    if shown < keys:
        lines.append(Text(f"(keys {shown} to {keys - 1} do not fit {width} columns: widen "
                          "the terminal, or save every number with -o explain.npz)",
                          style="yellow"))
    return lines


def show(console, explanation: Explanation, cmap: str) -> None:
    """Print the explain view to a rich console, fitted to its width."""
    color = console.color_system is not None and not console.no_color
    console.print(render(explanation, cmap, console.width, color))
