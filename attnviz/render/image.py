"""Heatmaps as PNG, SVG or PDF files, drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

import io
import warnings
from contextlib import nullcontext
from functools import lru_cache

import numpy as np
from rich.cells import cell_len

from attnviz.errors import AttnvizError
from attnviz.io.text import shorten
from attnviz.maps.views import UNKNOWN_MARK, Heatmap, Plan, arrange
from attnviz.render import fonts
from attnviz.render.colors import colormap

MASKED_COLOR = "#d0d0d0"  # hatched grey: clearly not a colour of the map
MASKED_LABEL = "masked: a future position, weight exactly 0"
ANNOTATE_UP_TO = 16  # write the weight in each cell when both sides have at most this many tokens
ANNOTATE_PANELS = 3  # ... and the figure has at most this many panels (a grid's cells are small)
LABEL_UP_TO = 80  # beyond this many tokens, labels stand upright (and may be thinned)
LABEL_CHARS = 24  # longer labels end with …
LINE = 1.3  # a label's line, in font sizes: labels closer than this would touch
PAD = 4  # points between a map and its labels
PNG_DPI = 150  # dots per inch of PNG files
# The largest picture drawn, in pixels at PNG_DPI (400 MB of RGBA while drawing): a 12 x 12
# grid of every kind at 128 tokens is 48 million; 3,000 one-token layers, 690 million, took
# 3.4 GB and 82 s (and no screen shows them).
MAX_PIXELS = 100_000_000
MEASURED_DPI = (100, PNG_DPI)  # labels are measured as notebooks (100) and PNG files draw them
THIN_LINE = 3.0  # ... and the spacing of labels that must be thinned: every n-th, readable
# Page geometry, in inches. The panels are placed by hand: a layout engine would measure
# every label and take longer than everything else in the picture.
CELL = 0.38  # side of a cell, for short sequences
MAP_MAX = 14.0  # a map never gets wider or taller than this; its cells shrink instead
TICK_FONT = 9  # points
CHAR = 0.6 * TICK_FONT / 72  # average width of a label character (DejaVu Sans); a wide
# character (Chinese, an emoji) counts twice, as it takes two columns in a terminal
AXIS_LABEL = 0.3  # the line of an axis title
TITLE = 0.45  # the panel's title above the map
TITLE_FONT = 11  # points
CAPTION = 0.25  # the line above the panels saying where the maps come from
CAPTION_FONT = 8  # points
CAPTION_LINE = 0.15  # each further line of a caption too long for one
CAPTION_PARTS = " · "  # a caption wraps between its parts (model · version · source · ...)
COLORBAR = 1.2  # colour bar, its ticks and its two-line label, right of the map
GAP = 0.25  # around the figure
SPAN = 18.0  # panels side by side share this width: three maps of 512 tokens, 6 inches each
# Grids: a panel's map is at most GRID_SPAN / (panels across) wide, and its labels smaller.
GRID_SPAN = 20.0
GRID_MAP_MIN = 1.5  # ... but never smaller than this
GRID_CELL = 0.2  # a grid's cells hold no numbers: smaller than a lone map's
GRID_TICK_FONT = 7
GRID_TITLE_FONT = 9
HEADING = 0.4  # a kind's name above its grid
PANEL_GAP = 0.2  # between panels, across and down
LEGEND = 0.35  # the line under the panels: the masked cells' legend, what "word?" means
UNKNOWN_NOTE = f"word{UNKNOWN_MARK}: a word the model's vocabulary lacks (its map holds <unk>)"
BAR_LABELS = {  # the colour bar's label: what a colour means, and which scale
    "panel": "attention weight\n(panel scale: each panel to its largest)",
    "shared": "attention weight\n(shared scale: one for the figure)",
    "unit": "attention weight\n(unit scale: 0 to 1)",
    "row": "share of the row's largest weight\n(row scale)",
}
WINDOW_BAR_LABELS = {  # ... when the panels are windows: the scales reach over the whole map
    **BAR_LABELS,
    "panel": "attention weight\n(panel scale: each to its whole map's largest)",
    "shared": "attention weight\n(shared scale: the whole maps' largest)",
    "row": "share of the whole row's largest weight\n(row scale)",
}
# The attribute of a panel's Axes that keeps its labels, for tick_labels(): texts rather than
# matplotlib's ticks. On the Axes itself, so they go with its Figure (a weak dictionary keyed
# by the Axes kept every Figure alive: its values, the texts, refer back to it).
_TICK_LABELS = "_attnviz_tick_labels"
# Files carry no creation date, so the same input gives the same bytes.
_NO_DATES = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


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
    ax.set_title(heatmap.title if title is None else title, fontsize=_title_font(font))
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
    shown: tuple[list, list] = ([], [])
    if show_x:
        upright = _upright(heatmap)
        keys = _labels(heatmap.key_labels)
        shown[0].extend(_label_axis(ax, "x", keys, heatmap.key_start,
                                    _step(k_count, width, font, upright),
                                    rotation=90 if upright else 45, font=font))
        ax.set_xlabel(_wrapped(heatmap.key_axis, width, font + 1), fontsize=font + 1)
        room = _label_depth(_label_room(keys, heatmap.key_start,
                                        _step(k_count, width, font, upright), font),
                            font, upright)
        ax.xaxis.set_label_coords(0.5, -(PAD / 72 + room + 0.06) / height)
    if show_y:
        queries = [heatmap.query_label(row, LABEL_CHARS) for row in range(q_count)]
        shown[1].extend(_label_axis(ax, "y", queries, heatmap.query_start,
                                    _step(q_count, height, font, True), rotation=0, font=font))
        ax.set_ylabel(_wrapped(heatmap.query_axis, height, font + 1), fontsize=font + 1)
        room = _label_room(queries, heatmap.query_start, _step(q_count, height, font, True),
                           font)
        ax.yaxis.set_label_coords(-(PAD / 72 + room + 0.06) / width, 0.5)
    setattr(ax, _TICK_LABELS, shown)
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


def _title_font(font: float) -> float:
    """A panel title's size, for labels of size ``font``."""
    return TITLE_FONT if font >= TICK_FONT else GRID_TITLE_FONT


def _inches(ax) -> tuple[float, float]:
    """The width and height of ``ax`` in its figure, in inches."""
    box = ax.get_position()
    width, height = ax.figure.get_size_inches()
    return box.width * width, box.height * height


def _wrapped(text: str, inches: float, font: float) -> str:
    """``text`` in lines no longer than ``inches`` at ``font`` points (an axis title along
    its map)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, max(12, int(inches / (CHAR * font / TICK_FONT))),
                                    break_on_hyphens=False))


def _upright(heatmap: Heatmap) -> bool:
    """Key labels stand upright on long maps (where they may be thinned), else lean at 45°."""
    return max(heatmap.weights.shape) > LABEL_UP_TO


def _step(count: int, extent: float, font: float, straight: bool) -> int:
    """Label every n-th token so that labels ``font`` points high, spread over ``extent``
    inches, never touch: one a line (leaning at 45°, √2 lines), and when some must be left
    out, one every :data:`THIN_LINE` font sizes."""
    if count == 0:
        return 1
    room = LINE * font / 72 * (1.0 if straight else 2 ** 0.5)  # inches
    if room * count > extent:  # some must go: leave air between those that stay
        room *= THIN_LINE / LINE
    return max(1, int(np.ceil(room / (extent / count) - 1e-9)))


def _labels(labels: list[str]) -> list[str]:
    return [shorten(label, LABEL_CHARS) for label in labels]


def _ticks(labels: list[str], start: int = 0, step: int | None = None
           ) -> tuple[list[int], list[str]]:
    """Where the labels go and what they say: every ``step``-th label (default: at most
    LABEL_UP_TO of them), and when labels are skipped, each with its position
    (counting from ``start``, a window's first position)."""
    if step is None:
        step = max(1, -(-len(labels) // LABEL_UP_TO))  # ceil: at most LABEL_UP_TO labels
    positions = list(range(0, len(labels), step))
    return positions, [labels[i] if step == 1 else f"{labels[i]} ({start + i})"
                       for i in positions]


def _label_axis(ax, side: str, labels: list[str], start: int, step: int, rotation: int,
                font: float) -> list:
    """Write the labels of one side of a map (``x``: keys, under it; ``y``: queries, left
    of it) as texts at their cells; returns them.

    Texts, not matplotlib's ticks: a tick is five artists and costs a millisecond to make,
    a quarter of a second for the labels of three long maps.
    """
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    positions, shown = _ticks(labels, start, step)
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


def _label_room(labels: list[str], start: int, step: int, font: float) -> float:
    """Inches the longest label shown takes along its line (its position included when the
    labels are thinned), as the fonts in use measure it."""
    from matplotlib import rcParams

    _, shown = _ticks(labels, start, step)
    families = tuple(rcParams["font.family"])
    return max((_text_width(label, font, families) for label in shown), default=0.0)


@lru_cache(maxsize=8192)
def _text_width(text: str, font: float, families: tuple[str, ...]) -> float:
    """The width of one line of ``text`` at ``font`` points in ``families``, in inches.

    Measured with the fonts matplotlib will draw it with (those of ``families``, in order),
    which no estimate from its length could: a W is three times as wide as an i. Hinting
    fits letters to whole pixels, so a text's width changes with the resolution (a tenth
    wider at 150 dots per inch than at 72): it is measured at those of PNG files and of
    notebooks, and the wider kept, with a little to spare.
    """
    from matplotlib.font_manager import FontProperties

    properties = FontProperties(family=list(families), size=font)
    widths = []
    with warnings.catch_warnings():  # a glyph no font has: figure() has said so, once
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font",
                                category=UserWarning)
        for dpi in MEASURED_DPI:
            width, _, _ = _measurer(dpi).get_text_width_height_descent(text, properties,
                                                                       ismath=False)
            widths.append(width / dpi)
    return max(widths) * 1.03


@lru_cache(maxsize=len(MEASURED_DPI))
def _measurer(dpi: int):
    """A renderer of one pixel at ``dpi`` dots per inch, to measure text with."""
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, dpi)


def _label_depth(length: float, font: float, upright: bool) -> float:
    """Inches that key labels ``length`` inches long reach below their map: upright, their
    length; leaning at 45°, the diagonal of their length and their line's height."""
    return length if upright else (length + LINE * font / 72) * 0.5 ** 0.5


def tick_labels(ax) -> tuple[list, list]:
    """The texts that label a panel's keys (under it) and queries (left of it), as drawn."""
    return getattr(ax, _TICK_LABELS, ([], []))


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
                          for label in _ticks(_labels(labels))[1])
    fonts.warn_missing(choice.missing)
    # Each text keeps the families it was made with, so the list is needed while drawing
    # the figure, not while saving it.
    families = {"font.family": [*rcParams["font.family"], *choice.families]}
    with rc_context(families) if choice.families else nullcontext():
        return _figure(plan, cmap)


def _figure(plan: Plan, cmap: str):
    from matplotlib.figure import Figure

    layout = _Layout(plan)
    _check_size(layout, len(plan.panels))
    fig = Figure(figsize=(layout.width, layout.height))
    top = layout.height - GAP  # inches from the bottom, going down
    caption = plan.caption
    if caption:  # where the maps come from, above the panels
        fig.text(_fraction(GAP, layout.width), _fraction(top, layout.height),
                 "\n".join(layout.caption_lines), fontsize=CAPTION_FONT, color="#555555",
                 va="top", parse_math=False)
        top -= layout.caption_height
    image = None
    annotate = len(plan.panels) <= ANNOTATE_PANELS
    for band in layout.bands:
        if band.heading:
            fig.text(_fraction(GAP, layout.width), _fraction(top - 0.1, layout.height),
                     band.heading, fontsize=12, fontweight="bold", va="top")
            top -= HEADING
        for place in band.places:
            panel, geometry = place.panel, place.geometry
            x = GAP + layout.column_x[place.column] + layout.column_left[place.column]
            bottom = top - TITLE - geometry.map_height
            ax = fig.add_axes((_fraction(x, layout.width), _fraction(bottom, layout.height),
                               _fraction(geometry.map_width, layout.width),
                               _fraction(geometry.map_height, layout.height)))
            drawn = draw_heatmap(
                ax, panel, cmap, plan, show_x=place.show_x, show_y=place.show_y,
                title=None if place.single else panel.short_title,
                font=layout.font, annotate=annotate and max(panel.weights.shape)
                <= ANNOTATE_UP_TO)
            image = drawn or image
            if plan.scale == "panel" and drawn is not None:
                bar = fig.add_axes((_fraction(x + geometry.map_width + 0.12, layout.width),
                                    _fraction(bottom, layout.height), _fraction(0.15, layout.width),
                                    _fraction(geometry.map_height, layout.height)))
                _colorbar(fig, drawn, bar, plan, layout.font)
        top -= band.height
    if plan.scale != "panel" and image is not None:  # one colour bar for every panel
        panels_top = layout.height - GAP - layout.caption_height
        span = min(layout.panels_height, max(3.0, layout.panels_height / 2))
        bar = fig.add_axes((_fraction(layout.width - GAP - layout.bar_room + 0.12, layout.width),
                            _fraction(panels_top - TITLE - span, layout.height),
                            _fraction(0.15, layout.width), _fraction(span, layout.height)))
        _colorbar(fig, image, bar, plan, layout.font)
    _legend(fig, plan, layout)
    return fig


def _colorbar(fig, image, bar, plan: Plan, font: float) -> None:
    colorbar = fig.colorbar(image, cax=bar)
    windowed = any(panel.windowed for panel in plan.panels)
    colorbar.set_label((WINDOW_BAR_LABELS if windowed else BAR_LABELS)[plan.scale],
                       fontsize=font)
    bar.tick_params(labelsize=font)


def _legend(fig, plan: Plan, layout: _Layout) -> None:
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
                   bbox_to_anchor=(_fraction(GAP, layout.width),
                                   _fraction(GAP, layout.height)))


class _Geometry:
    """The size of one panel's map in inches, and the room its labels take around it."""

    def __init__(self, heatmap: Heatmap, span: float, font: float, show_x: bool,
                 show_y: bool, single: bool) -> None:
        q_count, k_count = heatmap.weights.shape
        cell = min(CELL if font >= TICK_FONT else GRID_CELL, span / max(q_count, k_count, 1))
        self.map_width, self.map_height = max(k_count * cell, 1.0), max(q_count * cell, 1.0)
        self.left = self.below = 0.0
        if show_y:
            queries = [heatmap.query_label(row, LABEL_CHARS) for row in range(q_count)]
            room = _label_room(queries, heatmap.query_start,
                               _step(q_count, self.map_height, font, True), font)
            lines = _wrapped(heatmap.query_axis, self.map_height, font + 1).count("\n") + 1
            self.left = AXIS_LABEL * (font + 1) / 10 * lines + PAD / 72 + 0.1 + room
        if show_x:
            upright = _upright(heatmap)
            room = _label_depth(_label_room(_labels(heatmap.key_labels), heatmap.key_start,
                                            _step(k_count, self.map_width, font, upright),
                                            font), font, upright)
            lines = _wrapped(heatmap.key_axis, self.map_width, font + 1).count("\n") + 1
            self.below = AXIS_LABEL * (font + 1) / 10 * lines + PAD / 72 + 0.15 + room
        from matplotlib import rcParams

        title = heatmap.title if single else heatmap.short_title
        self.title_width = _text_width(title, _title_font(font),
                                       tuple(rcParams["font.family"]))
        # A title wider than its map reaches left of it: keep that room too.
        self.left = max(self.left, (self.title_width - self.map_width) / 2)


class _Place:
    """One panel in the layout: its band (a row of panels) and column, and which labels it
    shows (a grid labels the keys under its last row, the queries left of its first column).
    ``single``: the panel is titled in full (kind, layer, head), not by its place in a grid."""

    def __init__(self, panel: Heatmap, column: int, show_x: bool, show_y: bool, single: bool,
                 span: float, font: float) -> None:
        self.panel, self.column = panel, column
        self.show_x, self.show_y, self.single = show_x, show_y, single
        self.geometry = _Geometry(panel, span, font, show_x, show_y, single)


class _Band:
    """A row of panels, under an optional heading (the kind of a grid)."""

    def __init__(self, places: list[_Place], heading: str = "") -> None:
        self.places, self.heading = places, heading
        self.height = TITLE + max(p.geometry.map_height for p in places) + max(
            p.geometry.below for p in places) + PANEL_GAP


class _Layout:
    """Where every panel of a plan goes, in inches. Placed by hand: a layout engine would
    measure every label and take longer than everything else in the picture.

    Blocks side by side (one column of panels each: a column per kind), or one under
    another (a grid per kind: rows are layers, columns heads, under the kind's name).
    """

    def __init__(self, plan: Plan) -> None:
        grid = plan.grid
        self.font = GRID_TICK_FONT if grid else TICK_FONT
        across = len(plan.blocks) if plan.side_by_side else max(
            len(row) for block in plan.blocks for row in block.panels)
        down = max(len(b.panels) for b in plan.blocks) if plan.side_by_side else sum(
            len(b.panels) for b in plan.blocks)
        span = max(GRID_MAP_MIN, min(MAP_MAX, (GRID_SPAN if grid else SPAN) / across,
                                     GRID_SPAN / down if grid else MAP_MAX))
        self.bands: list[_Band] = []
        if plan.side_by_side:
            # A column per kind: its panels carry their full titles (kind, layer, head).
            for r in range(max(len(block.panels) for block in plan.blocks)):
                places = [_Place(block.panels[r][0], column, r == len(block.panels) - 1, True,
                                 True, span, self.font)
                          for column, block in enumerate(plan.blocks) if r < len(block.panels)]
                self.bands.append(_Band(places, ""))
        else:
            for block in plan.blocks:
                for r, row in enumerate(block.panels):
                    places = [_Place(panel, column, r == len(block.panels) - 1, column == 0,
                                     False, span, self.font)
                              for column, panel in enumerate(row)]
                    self.bands.append(_Band(places, block.title if r == 0 else ""))
        columns = max(place.column for band in self.bands for place in band.places) + 1
        bar = COLORBAR if plan.scale == "panel" else 0.0
        self.column_left = [max((p.geometry.left for band in self.bands for p in band.places
                                 if p.column == c), default=0.0) for c in range(columns)]
        widths = [max(self.column_left[c] + max(p.geometry.map_width + bar,
                                                (p.geometry.map_width + p.geometry.title_width)
                                                / 2) + PANEL_GAP
                      for band in self.bands for p in band.places if p.column == c)
                  for c in range(columns)]
        self.column_x = [sum(widths[:c]) for c in range(columns)]
        self.bar_room = 0.0 if plan.scale == "panel" else COLORBAR
        self.panels_height = sum(band.height + (HEADING if band.heading else 0.0)
                                 for band in self.bands)
        legend = any(not p.visible.all() or p.unknown_words for p in plan.panels)
        self.width = 2 * GAP + sum(widths) + self.bar_room
        self.caption_lines = _caption_lines(plan.caption, self.width - 2 * GAP)
        self.caption_height = (CAPTION + CAPTION_LINE * (len(self.caption_lines) - 1)
                               if self.caption_lines else 0.0)
        self.height = (2 * GAP + self.panels_height + self.caption_height
                       + (LEGEND if legend else 0.0))


def _caption_lines(caption: str, inches: float) -> list[str]:
    """``caption`` in lines at most ``inches`` wide, broken between its parts (``a · b``),
    as the fonts in use measure them; only a part too wide for a line of its own is cut,
    keeping its start. Nothing for no caption."""
    from matplotlib import rcParams

    families = tuple(rcParams["font.family"])

    def fits(text: str) -> bool:
        return _text_width(text, CAPTION_FONT, families) <= inches

    lines: list[str] = []
    for part in caption.split(CAPTION_PARTS) if caption else []:
        if lines and fits(lines[-1] + CAPTION_PARTS + part):
            lines[-1] += CAPTION_PARTS + part
            continue
        if not fits(part):  # wider than the figure: the longest start that fits, and …
            low, high = 1, cell_len(part)  # shorten(part, low) is kept if nothing fits
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(shorten(part, middle)) else (low, middle - 1)
            part = shorten(part, low)
        lines.append(part)
    return lines


def _check_size(layout: _Layout, panels: int) -> None:
    """Refuse, before anything is drawn, a picture of more than :data:`MAX_PIXELS`."""
    width, height = round(layout.width * PNG_DPI), round(layout.height * PNG_DPI)
    if width * height > MAX_PIXELS:
        raise AttnvizError(
            f"this picture of {panels:,} panels would be {width:,} x {height:,} pixels, more "
            f"than {MAX_PIXELS // 10**6:,} million: draw fewer layers or heads, or a window "
            "of the maps, or save them as a page (.html) or as numbers (.npz)")


def _fraction(inches: float, total: float) -> float:
    return inches / total


def to_bytes(heatmaps: list[Heatmap] | Plan, fmt: str, cmap: str, dpi: int = PNG_DPI
             ) -> bytes:
    """The heatmaps (or a plan) drawn as a ``png``, ``svg`` or ``pdf`` file."""
    return figure_bytes(figure(heatmaps, cmap), fmt, dpi)


def figure_bytes(fig, fmt: str, dpi: int = PNG_DPI) -> bytes:
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
