"""Heatmaps as PNG, SVG or PDF files, drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from attnviz.maps.views import UNKNOWN_MARK, Heatmap, Plan, arrange
from attnviz.render import fonts
from attnviz.render.colors import colormap
from attnviz.render.layout import (
    CAPTION_FONT,
    GAP,
    HEADING,
    LABEL_CHARS,
    LABEL_UP_TO,
    PAD,
    PNG_DPI,
    TICK_FONT,
    TITLE,
    Layout,
    check_memory,
    check_size,
    fraction,
    label_depth,
    label_room,
    label_step,
    out_of_memory,
    short_labels,
    stands_upright,
    ticks,
    title_font,
    wrapped,
)

MASKED_COLOR = "#d0d0d0"  # hatched grey: clearly not a colour of the map
MASKED_LABEL = "masked: a future position, weight exactly 0"
ANNOTATE_UP_TO = 16  # write the weight in each cell when both sides have at most this many tokens
ANNOTATE_PANELS = 3  # ... and the figure has at most this many panels (a grid's cells are small)
UNKNOWN_NOTE = f"word{UNKNOWN_MARK}: a word the model's vocabulary lacks (its map holds <unk>)"
BAR_LABELS = {  # the colour bar's label: what a colour means, and which scale
    "panel": "attention weight\n(panel scale: each panel to its largest)",
    "shared": "attention weight\n(shared scale: one for the figure)",
    "unit": "attention weight\n(unit scale: 0 to 1)",
    "row": "share of the row's largest weight\n(row scale)",
    "log": "attention weight, log scale\n(4 decades below the largest)",
}
WINDOW_BAR_LABELS = {  # ... when the panels are windows: the scales reach over the whole map
    **BAR_LABELS,
    "panel": "attention weight\n(panel scale: each to its whole map's largest)",
    "shared": "attention weight\n(shared scale: the whole maps' largest)",
    "row": "share of the whole row's largest weight\n(row scale)",
}


def draw_heatmap(ax, heatmap: Heatmap, cmap: str, plan: Plan | None = None, *,
                 show_x: bool = True, show_y: bool = True, title: str | None = None,
                 font: float = TICK_FONT, annotate: bool | None = None):
    """Draw one attention map on ``ax``; returns the image artist (for a colour bar), or None
    for an empty map (no query or no key), which is said rather than drawn.

    Rows are queries, columns keys. Cells the mask hid are hatched grey, so a future
    position reads differently from a weight that is merely small. The colours follow
    ``plan``'s scale (None: the panel's own largest weight); labels are thinned to the room
    the axes have, so that they never overlap.

    Args:
        ax: the axes, already placed in its figure.
        heatmap: the map.
        cmap: the colour map's name.
        plan: the figure's plan, for its colour scale.
        show_x: label the keys (a grid labels only its bottom row).
        show_y: label the queries (a grid labels only its first column).
        title: the panel's title (default: the heatmap's full title).
        font: the tick labels' size, in points.
        annotate: write each weight in its cell (default: when the map is small).
    """
    plan = plan or arrange([heatmap], "panel")
    q_count, k_count = heatmap.weights.shape
    ax.set_title(heatmap.title if title is None else title, fontsize=title_font(font))
    if q_count == 0 or k_count == 0:  # said, not drawn (there is nothing to colour)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"the map is empty:\n{q_count} queries, {k_count} keys",
                transform=ax.transAxes, ha="center", va="center", fontsize=font)
        return None
    palette = colormap(cmap)
    values, limit = plan.color(heatmap)  # (Q, K)
    # The cells are coloured here, once, as 8-bit RGBA (masked cells transparent), the way
    # imshow would colour them; resampling bytes to pixels is what takes time at 512 tokens.
    # The image keeps the colour map and limit, for the colour bar and for readers.
    cells = palette(np.clip(values / limit, 0.0, 1.0), bytes=True)  # (Q, K, 4)
    cells[~heatmap.visible] = 0
    image = ax.imshow(cells, interpolation="nearest", aspect="auto")
    image.set_cmap(palette)
    image.set_clim(0.0, limit)
    if not heatmap.visible.all():
        # Behind the transparent cells: grey with hatching.
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.5, -0.5), k_count, q_count, facecolor=MASKED_COLOR,
                               hatch="///", edgecolor="#a0a0a0", linewidth=0, zorder=0))
        image.set_zorder(1)

    width, height = _inches(ax)
    ax.set_xticks([])
    ax.set_yticks([])
    if show_x:
        upright = stands_upright(heatmap)
        keys = short_labels(heatmap.key_labels)
        _label_axis(ax, "x", keys, heatmap.key_start, label_step(k_count, width, font, upright),
                    rotation=90 if upright else 45, font=font)
        ax.set_xlabel(wrapped(heatmap.key_axis, width, font + 1), fontsize=font + 1)
        room = label_depth(label_room(keys, heatmap.key_start,
                                        label_step(k_count, width, font, upright), font),
                            font, upright)
        ax.xaxis.set_label_coords(0.5, -(PAD / 72 + room + 0.06) / height)
    if show_y:
        queries = [heatmap.query_label(row, LABEL_CHARS) for row in range(q_count)]
        _label_axis(ax, "y", queries, heatmap.query_start,
                    label_step(q_count, height, font, True), rotation=0, font=font)
        ax.set_ylabel(wrapped(heatmap.query_axis, height, font + 1), fontsize=font + 1)
        room = label_room(queries, heatmap.query_start, label_step(q_count, height, font, True),
                           font)
        ax.yaxis.set_label_coords(-(PAD / 72 + room + 0.06) / width, 0.5)
    if max(q_count, k_count) <= LABEL_UP_TO:
        # Cell borders as two line collections: minor-tick grid lines would cost a Tick
        # object per line, a tenth of a second for a pair of small maps.
        ax.vlines(np.arange(k_count + 1) - 0.5, -0.5, q_count - 0.5, colors="white",
                  linewidth=1.0 if font >= TICK_FONT else 0.5, zorder=1.5)
        ax.hlines(np.arange(q_count + 1) - 0.5, -0.5, k_count - 0.5, colors="white",
                  linewidth=1.0 if font >= TICK_FONT else 0.5, zorder=1.5)
        ax.set_xlim(-0.5, k_count - 0.5)
        ax.set_ylim(q_count - 0.5, -0.5)
    ax.tick_params(which="major", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if annotate if annotate is not None else max(q_count, k_count) <= ANNOTATE_UP_TO:
        _annotate(ax, heatmap, palette, values / limit)
    return image


def _inches(ax) -> tuple[float, float]:
    """The width and height of ``ax`` in its figure, in inches."""
    box = ax.get_position()
    width, height = ax.figure.get_size_inches()
    return box.width * width, box.height * height


def _label_axis(ax, side: str, labels: list[str], start: int, step: int, rotation: int,
                font: float) -> list:
    """Write the labels of one side of a map (``x``: keys, under it; ``y``: queries, left
    of it) as texts at their cells; returns them.

    Texts, not matplotlib's ticks: a tick is five artists and costs a millisecond to make,
    a quarter of a second for the labels of three long maps.
    """
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    positions, shown = ticks(labels, start, step)
    if side == "x":
        transform = blended_transform_factory(ax.transData, ax.transAxes) + ScaledTranslation(
            0, -PAD / 72, ax.figure.dpi_scale_trans)
        place = {"rotation": rotation, "ha": "right" if rotation == 45 else "center",
                 "va": "top", "rotation_mode": "anchor" if rotation == 45 else "default"}
        at = [(position, 0.0) for position in positions]
    else:
        transform = blended_transform_factory(ax.transAxes, ax.transData) + ScaledTranslation(
            -PAD / 72, 0, ax.figure.dpi_scale_trans)
        place = {"ha": "right", "va": "center_baseline"}
        at = [(0.0, position) for position in positions]
    # parse_math=False: a token such as "$x$" is text to show, not mathtext to typeset
    # (and "$\\frac{$" would fail to parse).
    return [ax.text(x, y, label, transform=transform, fontsize=font, parse_math=False,
                    clip_on=False, **place) for (x, y), label in zip(at, shown, strict=True)]


def _annotate(ax, heatmap: Heatmap, palette, levels: np.ndarray) -> None:
    """Write each visible weight in its cell, dark on light colours and light on dark ones.

    Weights that round to .00 are left blank: the colour says they are near zero, and a
    page of ".00" would hide the few numbers that matter (and cost a text each to draw).
    ``levels`` (Q, K) are the cells' colours, 0 to 1.
    """
    for (row, col), weight in np.ndenumerate(heatmap.weights):
        if not heatmap.visible[row, col] or weight < 0.005:
            continue
        red, green, blue, _ = palette(float(min(1.0, levels[row, col])))
        light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
        ax.text(col, row, f"{weight:.2f}".removeprefix("0"),
                ha="center", va="center", fontsize=7, color="black" if light else "white",
                zorder=2)


def figure(heatmaps: list[Heatmap] | Plan, cmap: str):
    """A figure of a plan (or of heatmaps, side by side): per kind, its panels.

    Labels in scripts the default font lacks are drawn with installed fonts that have them
    (see :mod:`attnviz.render.fonts`); characters no installed font has give one
    :class:`AttnvizWarning` naming them, and are drawn as boxes.
    """
    from matplotlib import rc_context, rcParams

    plan = heatmaps if isinstance(heatmaps, Plan) else arrange(heatmaps)
    choice = fonts.choose(label for heatmap in plan.panels
                          for labels in (heatmap.query_labels, heatmap.key_labels)
                          for label in ticks(short_labels(labels))[1])
    fonts.warn_missing(choice.missing)
    # Each text keeps the families it was made with, so the list is needed while drawing
    # the figure, not while saving it.
    families = {"font.family": [*rcParams["font.family"], *choice.families]}
    with rc_context(families) if choice.families else nullcontext():
        try:
            return _figure(plan, cmap)
        except MemoryError:
            raise out_of_memory() from None


def _figure(plan: Plan, cmap: str):
    from attnviz.render.figure import Figure

    layout = Layout(plan)
    check_size(layout, len(plan.panels))
    check_memory(layout)
    fig = Figure(figsize=(layout.width, layout.height))
    top = layout.height - GAP  # inches from the bottom, going down
    caption = plan.caption
    if caption:  # where the maps come from, above the panels
        fig.text(fraction(GAP, layout.width), fraction(top, layout.height),
                 "\n".join(layout.caption_lines), fontsize=CAPTION_FONT, color="#555555",
                 va="top", parse_math=False)
        top -= layout.caption_height
    image = None
    annotate = len(plan.panels) <= ANNOTATE_PANELS
    for band in layout.bands:
        if band.heading:
            fig.text(fraction(GAP, layout.width), fraction(top - 0.1, layout.height),
                     band.heading, fontsize=12, fontweight="bold", va="top")
            top -= HEADING
        for place in band.places:
            panel, geometry = place.panel, place.geometry
            x = GAP + layout.column_x[place.column] + layout.column_left[place.column]
            bottom = top - TITLE - geometry.map_height
            ax = fig.add_axes((fraction(x, layout.width), fraction(bottom, layout.height),
                               fraction(geometry.map_width, layout.width),
                               fraction(geometry.map_height, layout.height)))
            drawn = draw_heatmap(
                ax, panel, cmap, plan, show_x=place.show_x, show_y=place.show_y,
                title=None if place.single else panel.short_title,
                font=layout.font, annotate=annotate and max(panel.weights.shape)
                <= ANNOTATE_UP_TO)
            image = drawn or image
            if plan.scale == "panel" and drawn is not None:
                bar = fig.add_axes((fraction(x + geometry.map_width + 0.12, layout.width),
                                    fraction(bottom, layout.height), fraction(0.15, layout.width),
                                    fraction(geometry.map_height, layout.height)))
                _colorbar(fig, drawn, bar, plan, layout.font)
        top -= band.height
    if plan.scale != "panel" and image is not None:  # one colour bar for every panel
        panels_top = layout.height - GAP - layout.caption_height
        span = min(layout.panels_height, max(3.0, layout.panels_height / 2))
        bar = fig.add_axes((fraction(layout.width - GAP - layout.bar_room + 0.12, layout.width),
                            fraction(panels_top - TITLE - span, layout.height),
                            fraction(0.15, layout.width), fraction(span, layout.height)))
        _colorbar(fig, image, bar, plan, layout.font)
    _legend(fig, plan, layout)
    return fig


def _colorbar(fig, image, bar, plan: Plan, font: float) -> None:
    colorbar = fig.colorbar(image, cax=bar)
    windowed = any(panel.windowed for panel in plan.panels)
    label = (WINDOW_BAR_LABELS if windowed else BAR_LABELS).get(plan.scale,
                                                                 BAR_LABELS[plan.scale])
    if plan.scale == "log":  # the shares 0..1 stand for the weights of 4 decades
        from attnviz.maps.views import LOG_DECADES

        shares = np.linspace(0.0, 1.0, LOG_DECADES + 1)
        colorbar.set_ticks(shares, labels=[f"{plan.shared_max * 10 ** (LOG_DECADES * (s - 1)):.1e}"
                                           for s in shares])
    if plan.sink_note:
        label += f"\n{plan.sink_note}"
    colorbar.set_label(label, fontsize=font)
    bar.tick_params(labelsize=font)


def _legend(fig, plan: Plan, layout: Layout) -> None:
    """Under the panels, apart from every label: what hatched cells and ``word?`` mean."""
    from matplotlib.patches import Patch

    handles = []
    if any(not panel.visible.all() for panel in plan.panels):
        handles.append(Patch(facecolor=MASKED_COLOR, hatch="///", edgecolor="#a0a0a0",
                             label=MASKED_LABEL))
    if any(panel.unknown_words for panel in plan.panels):
        handles.append(Patch(facecolor="none", edgecolor="none", label=UNKNOWN_NOTE))
    if handles:
        fig.legend(handles=handles, loc="lower left", ncols=len(handles), fontsize=8,
                   frameon=False, borderaxespad=0.0,
                   bbox_to_anchor=(fraction(GAP, layout.width),
                                   fraction(GAP, layout.height)))


def to_bytes(heatmaps: list[Heatmap] | Plan, fmt: str, cmap: str, dpi: int = PNG_DPI
             ) -> bytes:
    """The heatmaps (or a plan) drawn as a ``png``, ``svg`` or ``pdf`` file."""
    from attnviz.render.figure import figure_bytes

    return figure_bytes(figure(heatmaps, cmap), fmt, dpi)
