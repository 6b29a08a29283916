"""The atlas of the heads as a PNG, SVG or PDF file: per kind, a layers x heads grid for the
labels and one for each figure, each figure on its own colour scale (0 to its largest value
over every kind), drawn with matplotlib's object API."""

from __future__ import annotations

import numpy as np

from attnviz.maps.atlas import LABELS, Atlas, threshold_text
from attnviz.maps.heads import INDUCTION, SELF_ONLY
from attnviz.maps.kinds import TITLES, WEIGHT_TITLES
from attnviz.render.colors import LABEL_COLORS, NO_LABEL, colormap
from attnviz.render.layout import PNG_DPI

NOT_MEASURED = "#cccccc"  # a figure that does not apply to a kind (or a head with no query)
# Inches. A cell is at most CELL, and a grid at most GRID_TALL high and GRID_WIDE wide: a
# model of 100 layers of 64 heads still draws a picture of a few million pixels.
CELL = 0.35
GRID_TALL, GRID_WIDE = 8.0, 3.0
WIDE = 18.0  # a picture wider than this puts a kind's grids on two rows (or more)
LEFT, BAR, GAP, HEADING, TITLE, BELOW, CAPTION = 0.55, 0.75, 0.25, 0.4, 0.35, 0.5, 0.45
LEGEND = 0.45
FONT = 8


def figure(atlas: Atlas, cmap: str):
    """The atlas's figure: per kind, its grids in rows (the labels' first) no wider than
    :data:`WIDE` where they fit; NaN cells grey."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from attnviz.render.figure import Figure  # shows itself in a notebook

    names = atlas.names
    largest = max((atlas.shape(kind) for kind in atlas.kinds), key=lambda s: s[0] * s[1])
    layers, heads = largest
    cell = max(0.04, min(CELL, GRID_TALL / max(layers, 1), GRID_WIDE / max(heads, 1)))
    panel = LEFT + heads * cell + BAR  # one grid with its layer labels and its colour bar
    grids = 1 + len(names)
    lines = -(-grids // max(1, int((WIDE - GAP) // (panel + GAP))))  # rows of grids a kind
    across = -(-grids // lines)  # grids a row, the rows as even as they can be
    width = GAP + across * (panel + GAP)
    band = [TITLE + atlas.shape(kind)[0] * cell + BELOW for kind in atlas.kinds]
    rows = [HEADING + lines * height for height in band]
    height = CAPTION + sum(rows) + LEGEND + GAP
    fig = Figure(figsize=(width, height))
    fig.text(GAP / width, 1 - 0.12 / height, atlas.caption, fontsize=FONT, color="#555555",
             va="top", parse_math=False)
    palette = colormap(cmap).with_extremes(bad=NOT_MEASURED)
    order = [name for name, _, _ in LABELS]
    categories = ListedColormap([NO_LABEL, *(LABEL_COLORS[name] for name in order)])
    top = height - CAPTION
    for kind, row, line in zip(atlas.kinds, rows, band, strict=True):
        kind_layers, kind_heads = atlas.shape(kind)
        fig.text(GAP / width, (top - 0.05) / height, TITLES[kind] + WEIGHT_TITLES[atlas.measure],
                 fontsize=11, fontweight="bold", va="top")
        for place, name in enumerate(("label", *names)):
            column = place % across
            bottom = top - HEADING - (place // across) * line - TITLE - kind_layers * cell
            x = GAP + column * (panel + GAP) + LEFT
            ax = fig.add_axes((x / width, bottom / height, kind_heads * cell / width,
                               kind_layers * cell / height))
            if name == "label":
                codes = np.array([[0 if (label := atlas.label(kind, layer, head)) is None
                                   else 1 + order.index(label) for head in range(kind_heads)]
                                  for layer in range(kind_layers)])  # (L, H)
                ax.imshow(codes, cmap=categories, vmin=-0.5, vmax=len(order) + 0.5,
                          interpolation="nearest", aspect="auto")
                title = "label"
            else:
                values = atlas.figures[kind][name]  # (L, H)
                image = ax.imshow(np.ma.masked_invalid(values), cmap=palette, vmin=0.0,
                                  vmax=atlas.limit(name), interpolation="nearest",
                                  aspect="auto")
                title = name
                if not np.isfinite(values).any():
                    only = name in SELF_ONLY or (name == INDUCTION and kind == "cross")
                    ax.text(0.5, 0.5, "self-attention\nkinds only" if only else "not measured",
                            transform=ax.transAxes, ha="center", va="center",
                            fontsize=FONT - 1, color="#555555")
                bar = fig.add_axes(((x + kind_heads * cell + 0.08) / width, bottom / height,
                                    0.1 / width, kind_layers * cell / height))
                fig.colorbar(image, cax=bar).ax.tick_params(labelsize=FONT - 1)
            ax.set_title(title, fontsize=FONT + 1)
            _ticks(ax, kind_layers, kind_heads, cell, first=column == 0)
        top -= row
    handles = [Patch(facecolor=LABEL_COLORS[name], label=threshold_text(name)) for name in order]
    handles.append(Patch(facecolor=NO_LABEL, label="no label"))
    fig.legend(handles=handles, loc="lower left", ncols=len(handles), fontsize=FONT,
               frameon=False, bbox_to_anchor=(GAP / width, GAP / 2 / height))
    return fig


def to_bytes(atlas: Atlas, fmt: str, cmap: str, dpi: int = PNG_DPI) -> bytes:
    """The atlas drawn as a ``png``, ``svg`` or ``pdf`` file, the same bytes every time."""
    from attnviz.render.figure import figure_bytes

    return figure_bytes(figure(atlas, cmap), fmt, dpi)


def _ticks(ax, layers: int, heads: int, cell: float, first: bool) -> None:
    """Heads along the bottom, layers down the side, every one where there is room (a
    label needs about 0.12 inches), else every few."""
    step = max(1, int(np.ceil(0.14 / cell)))
    ax.set_xticks(range(0, heads, step), labels=[str(h) for h in range(0, heads, step)],
                  fontsize=FONT - 1)
    ax.set_yticks(range(0, layers, step), labels=[str(lay) for lay in range(0, layers, step)],
                  fontsize=FONT - 1)
    ax.set_xlabel("head", fontsize=FONT)
    if first:
        ax.set_ylabel("layer", fontsize=FONT)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
