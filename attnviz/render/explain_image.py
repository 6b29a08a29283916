"""The explain view as a picture: where Q, K and V come from, then the scaled scores, the
mask and the softmax weights of one head, side by side (PNG, SVG, PDF)."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from attnviz.io.text import display_label, rounded, shorten
from attnviz.maps.caption import caption
from attnviz.maps.explanation import Explanation
from attnviz.maps.views import KEY_AXES, QUERY_AXES, Heatmap
from attnviz.render import fonts, image

DIVERGING = "RdBu_r"  # queries, keys, values and scores have a sign: blue below 0, red above
LABEL_CHARS = 16
ANNOTATE_UP_TO = 12  # write the numbers in the cells when both sides have at most this many
TEXT_WRAP = 44  # characters a line of the "where from" texts
# Page geometry, in inches, placed by hand as in image.py (a layout engine would take
# longer than the drawing).
CELL = 0.38  # a cell of the score, mask and weight maps, for short sequences
MAP_MAX = 6.0  # no map of the bottom row is wider or taller than this
VECTOR_WIDTH = 2.6  # a Q, K or V panel, whatever d_k is
ROW = 0.26  # a token's row in a Q, K or V panel
CHAR = 0.6 * 8 / 72  # the width of a label character at 8 points
AXIS_LABEL = 0.3  # an axis title
HEADER = 0.7  # three lines: title and formula, d_k, where the model comes from
VECTOR_TITLE = 0.75  # four lines above Q, K and V: the formula and where x comes from
MAP_TITLE = 0.6  # above the bottom row, and the gap to the panels above it
COLORBAR = 1.0  # right of a panel: the bar, its ticks and its label
MIN_COLUMN = 4.2  # a column is at least as wide as its titles
GAP = 0.25


def figure(explanation: Explanation, cmap: str):
    """The explain view of ``explanation`` as a matplotlib Figure.

    Top: Q, K and V of the head, each with its shape and where it comes from. Bottom: the
    scaled scores Q Kᵀ / √d_k, the mask M (0 where a key may be seen, -∞ where it is hidden)
    and the weights softmax(Q Kᵀ / √d_k + M), drawn as every other attnviz map.
    """
    from matplotlib import rc_context, rcParams

    labels = [_label(token) for token in (*explanation.query_tokens, *explanation.key_tokens)]
    choice = fonts.choose(labels)
    fonts.warn_missing(choice.missing)
    families = {"font.family": [*rcParams["font.family"], *choice.families]}
    with rc_context(families) if choice.families else nullcontext():
        return _figure(explanation, cmap)


def to_bytes(explanation: Explanation, fmt: str, cmap: str, dpi: int = 150) -> bytes:
    """The explain view as a ``png``, ``svg`` or ``pdf`` file."""
    from attnviz.render.figure import figure_bytes

    return figure_bytes(figure(explanation, cmap), fmt, dpi)


def _figure(explanation: Explanation, cmap: str):
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    from attnviz.render.figure import Figure

    e = explanation
    rows, cols = len(e.query_tokens), len(e.key_tokens)
    cell = min(CELL, MAP_MAX / max(rows, cols, 1))
    longest_row = max((len(_label(t)) for t in e.query_tokens), default=1)
    longest_key = max((len(_label(t)) for t in e.key_tokens), default=1)
    left = AXIS_LABEL + 0.15 + CHAR * max(longest_row, longest_key)  # y labels and title
    map_width, map_height = max(cols * cell, 1.0), max(rows * cell, 1.0)
    row_height = min(ROW, cell)  # a token's row in Q, K and V, the same in all three
    vector_height = max(max(rows, cols) * row_height, 1.0)
    below = AXIS_LABEL + 0.2 + CHAR * longest_key * 0.75  # key labels at 45°, axis title
    column = max(left + max(map_width, VECTOR_WIDTH) + COLORBAR, MIN_COLUMN)
    width = 2 * GAP + 3 * column
    height = (2 * GAP + HEADER + VECTOR_TITLE + vector_height + AXIS_LABEL + MAP_TITLE
              + map_height + below)
    fig = Figure(figsize=(width, height))
    fig.text(GAP / width, 1 - GAP / height, _header(e, int((width - 2 * GAP) / (CHAR * 10 / 8))),
             fontsize=10, va="top", parse_math=False)

    def axes(column_index: int, bottom: float, panel_width: float, panel_height: float):
        x = GAP + column_index * column + left
        return fig.add_axes((x / width, bottom / height, panel_width / width,
                             panel_height / height))

    def colorbar(drawn, ax, bottom: float, panel_height: float, label: str = ""):
        x0 = ax.get_position().x1 * width + 0.1
        bar = fig.add_axes((x0 / width, bottom / height, 0.13 / width, panel_height / height))
        fig.colorbar(drawn, cax=bar, label=label)
        bar.tick_params(labelsize=7)

    vector_bottom = height - GAP - HEADER - VECTOR_TITLE - vector_height
    # One colour scale for Q, K and V, so that their sizes can be compared.
    limit = max(max((float(np.abs(values).max()) for values in (e.queries, e.keys, e.values)
                     if values.size), default=0.0), 1e-6)
    for index, (name, letter, values, tokens) in enumerate((
            ("queries", "Q", e.queries, e.query_tokens),
            ("keys", "K", e.keys, e.key_tokens),
            ("values", "V", e.values, e.key_tokens))):
        own_height = max(len(tokens) * row_height, 0.5)  # top-aligned with the others
        ax = axes(index, vector_bottom + vector_height - own_height, VECTOR_WIDTH, own_height)
        drawn = _matrix(ax, values, tokens, None, DIVERGING,
                        TwoSlopeNorm(0.0, -limit, limit), annotate=False)
        ax.set_xlabel(f"d_k = {e.d_k} dimensions of head {e.head}", fontsize=8)
        ax.set_title(f"{e.projection(letter)}  {e.shapes[name]}\n"
                     + _wrap(f"x: {e.origins[name]}"), fontsize=8, loc="left",
                     parse_math=False)
    colorbar(drawn, ax, vector_bottom + vector_height - own_height, own_height, "Q, K and V")

    map_bottom = GAP + below
    panels = [axes(index, map_bottom, map_width, map_height) for index in range(3)]
    limit = max(float(np.abs(e.scores).max()) if e.scores.size else 0.0, 1e-6)
    drawn = _matrix(panels[0], e.scores, e.query_tokens, e.key_tokens, DIVERGING,
                    TwoSlopeNorm(0.0, -limit, limit), annotate=True, decimals=1)
    panels[0].set_title(f"{e.scores_name}, the scaled scores  {e.shapes['scores']}", fontsize=9,
                        loc="left", parse_math=False)
    colorbar(drawn, panels[0], map_bottom, map_height, "score")

    _matrix(panels[1], np.where(e.mask, 0.0, 1.0), e.query_tokens, e.key_tokens,
            ListedColormap(["#ffffff", "#bdbdbd"]), None, annotate=True,
            texts=np.where(e.mask, "0", "−∞"), vmin=0.0, vmax=1.0, borders=True)
    panels[1].set_title("+ M, the mask: 0 (white) or −∞ (grey)\n" + _wrap(e.mask_meaning, 46),
                        fontsize=9, loc="left", parse_math=False)
    if not e.masked and max(rows, cols) > ANNOTATE_UP_TO:  # no zeros written: say it
        panels[1].text(0.5, 0.5, "M = 0 everywhere:\nnothing is masked", ha="center",
                       va="center", fontsize=9, transform=panels[1].transAxes,
                       bbox={"facecolor": "white", "edgecolor": "#d0d0d0"})

    weights = Heatmap(kind=e.kind, layer=e.layer, head=e.head, head_count=e.heads,
                      weights=e.weights, query_tokens=list(e.query_tokens),
                      key_tokens=list(e.key_tokens), visible=e.mask)
    drawn = image.draw_heatmap(panels[2], weights, cmap)
    panels[2].set_title("", loc="center")  # the heatmap's own title: said in the header
    panels[2].set_title(f"softmax, row by row = the weights\n({e.map_name} of the maps)",
                        fontsize=9, loc="left", parse_math=False)
    colorbar(drawn, panels[2], map_bottom, map_height, "attention weight")
    for ax in panels:
        ax.set_xlabel(KEY_AXES[e.kind], fontsize=8)
        ax.set_ylabel(QUERY_AXES[e.kind], fontsize=8)
    return fig


def _header(e: Explanation, chars: int) -> str:
    """The lines above the panels; the caption cut to the ``chars`` the figure has room for."""
    lines = [f"{e.title}: {e.formula}", e.widths]
    heading = caption(e.provenance)
    if heading:
        lines.append(shorten(heading, chars))
    return "\n".join(lines)


def _matrix(ax, values: np.ndarray, row_tokens: list[str], col_tokens: list[str] | None,
            cmap, norm, *, annotate: bool, decimals: int = 2,
            texts: np.ndarray | None = None, vmin: float | None = None,
            vmax: float | None = None, borders: bool = False):
    """Draw a matrix with token labels on its rows (and columns); returns the image.

    ``annotate`` writes each value (or its entry of ``texts``) in its cell, dark on light
    colours and light on dark ones; ``borders`` draws grey cell borders (for a matrix whose
    cells may all be white).
    """
    drawn = ax.imshow(values, cmap=cmap, norm=norm, vmin=vmin, vmax=vmax,
                      interpolation="nearest", aspect="auto")
    rows, cols = values.shape
    ax.set_yticks(range(rows), labels=[_label(t) for t in row_tokens], fontsize=8,
                  parse_math=False)
    if col_tokens is None:
        ax.set_xticks([])
    else:
        ax.set_xticks(range(cols), labels=[_label(t) for t in col_tokens], fontsize=8,
                      rotation=45, ha="right", rotation_mode="anchor", parse_math=False)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(borders)
        spine.set_color("#d0d0d0")
    if borders and max(rows, cols) <= ANNOTATE_UP_TO:
        ax.vlines(np.arange(cols + 1) - 0.5, -0.5, rows - 0.5, colors="#d0d0d0", linewidth=0.8)
        ax.hlines(np.arange(rows + 1) - 0.5, -0.5, cols - 0.5, colors="#d0d0d0", linewidth=0.8)
        ax.set_xlim(-0.5, cols - 0.5)
        ax.set_ylim(rows - 0.5, -0.5)
    if annotate and max(rows, cols) <= ANNOTATE_UP_TO:
        colours = drawn.to_rgba(values)  # (R, C, 4)
        for (row, col), value in np.ndenumerate(values):
            text = texts[row, col] if texts is not None else rounded(float(value), decimals)
            red, green, blue, _ = colours[row, col]
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            ax.text(col, row, text, ha="center", va="center", fontsize=6,
                    color="black" if light else "white", parse_math=False)
    return drawn


def _label(token: str) -> str:
    return shorten(display_label(token), LABEL_CHARS)


def _wrap(text: str, width: int = TEXT_WRAP) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))
