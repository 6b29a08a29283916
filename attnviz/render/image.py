"""Heatmaps as PNG, SVG or PDF files, drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from attnviz.files import write_atomically
from attnviz.maps import Heatmap
from attnviz.render import output_format
from attnviz.render.colors import colormap

MASKED_COLOR = "#d0d0d0"  # hatched grey: clearly not a colour of the map
ANNOTATE_UP_TO = 16  # write the weight in each cell when both sides have at most this many tokens
LABEL_UP_TO = 80  # beyond this many tokens, label every n-th one
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

    _label_axis(ax.xaxis, heatmap.key_labels, rotate=True)
    _label_axis(ax.yaxis, heatmap.query_labels, rotate=False)
    if max(q_count, k_count) <= LABEL_UP_TO:
        ax.set_xticks(np.arange(k_count + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(q_count + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.0)
        ax.tick_params(which="minor", bottom=False, left=False)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(heatmap.key_axis)
    ax.set_ylabel(heatmap.query_axis)
    ax.set_title(heatmap.title, fontsize=11)
    if max(q_count, k_count) <= ANNOTATE_UP_TO:
        _annotate(ax, heatmap, palette)
    return image


def _label_axis(axis, labels: list[str], rotate: bool) -> None:
    step = max(1, -(-len(labels) // LABEL_UP_TO))  # ceil: at most LABEL_UP_TO labels
    positions = list(range(0, len(labels), step))
    shown = [labels[i] if step == 1 else f"{labels[i]} ({i})" for i in positions]
    if rotate:
        axis.set_ticks(positions, labels=shown, rotation=45, ha="right",
                       rotation_mode="anchor")
    else:
        axis.set_ticks(positions, labels=shown)


def _annotate(ax, heatmap: Heatmap, palette) -> None:
    """Write each visible weight in its cell, dark on light colours and light on dark ones."""
    norm = heatmap.weights / heatmap.scale_max
    for (row, col), weight in np.ndenumerate(heatmap.weights):
        if not heatmap.visible[row, col]:
            continue
        red, green, blue, _ = palette(float(norm[row, col]))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ax.text(col, row, f"{weight:.2f}".lstrip("0") if weight < 1 else "1",
                ha="center", va="center", fontsize=7, color="black" if light else "white",
                zorder=2)


def figure(heatmaps: list[Heatmap], cmap: str):
    """A figure with one panel per heatmap, side by side, each with its colour bar."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    widths = [min(20.0, max(4.5, 0.38 * len(h.key_tokens) + 2.4)) for h in heatmaps]
    height = min(20.0, max(4.0, max(0.38 * len(h.query_tokens) + 2.2 for h in heatmaps)))
    fig = Figure(figsize=(sum(widths), height), layout="constrained")
    axes = fig.subplots(1, len(heatmaps), squeeze=False, width_ratios=widths)[0]
    for ax, heatmap in zip(axes, heatmaps, strict=True):
        image = draw_heatmap(ax, heatmap, cmap)
        fig.colorbar(image, ax=ax, label="attention weight", fraction=0.05, pad=0.02)
        if not heatmap.visible.all():
            ax.legend(handles=[Patch(facecolor=MASKED_COLOR, hatch="///", edgecolor="#a0a0a0",
                                     label="masked: a future position, weight exactly 0")],
                      loc="upper right", fontsize=7, framealpha=0.9)
    return fig


def save(heatmaps: list[Heatmap], path: Path, cmap: str, dpi: int = 150) -> None:
    """Draw the heatmaps and write them to ``path``; the format follows its suffix."""
    fmt = output_format(path)
    fig = figure(heatmaps, cmap)
    buffer = io.BytesIO()
    from matplotlib import rc_context

    # SVG: labels stay text (searchable, editable), and element ids do not change between runs.
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "attnviz"}):
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_NO_DATES[fmt])
    write_atomically(path, buffer.getvalue())
