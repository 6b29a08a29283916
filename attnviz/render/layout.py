"""Where each panel of a picture goes, in inches, and how much room its labels take:
measured before anything is drawn (with the fonts in use), so that labels never overlap and
a picture too large to draw is refused before it is drawn."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.io.text import shorten
from attnviz.maps.caption import lines
from attnviz.maps.views import Heatmap, Plan
from attnviz.render.fonts import glyphs_said

LABEL_UP_TO = 80  # beyond this many tokens, labels stand upright (and may be thinned)
LABEL_CHARS = 24  # longer labels end with …
LINE = 1.3  # a label's line, in font sizes: labels closer than this would touch
PAD = 4  # points between a map and its labels
PNG_DPI = 150  # dots per inch of PNG files
# The largest picture drawn, in pixels at PNG_DPI (400 MB of RGBA while drawing): a 12 x 12
# grid of every kind at 128 tokens is 48 million; 3,000 one-token layers, 690 million, took
# 3.4 GB and 82 s (and no screen shows them).
MAX_PIXELS = 100_000_000
# The memory a picture takes to draw, known from its layout before it is drawn. matplotlib
# resamples each map's coloured cells (or, for a map of fewer cells than pixels, its pixels)
# as premultiplied float RGBA, in several copies: the peak address space grew by 56 to 61
# bytes a cell, the figure itself included, for one map of 3,000 to 6,000 tokens a side, to
# PNG, SVG and PDF alike (`python benchmarks/picture_memory.py`: 0.9 GB at 4,000 tokens;
# 16,000 x 16,000 took 7.3 GB before failing), some 52 a cell beyond the first cells.
DRAWING_BYTES_PER_CELL = 56
CANVAS_BYTES_PER_PIXEL = 8  # the picture's RGBA canvas, and its encoded copy
DRAWING_BASE_BYTES = 64 * 1024**2
# The most a picture may take to draw: twice the maps' own budget (attnviz.maps.budget),
# some 37 million cells, one map of 6,000 tokens a side. A larger map is no more legible in
# a picture than a window of it, or its terminal view pooled to fit.
MAX_DRAWING_BYTES = 2 * 1024**3
NOTEBOOK_DPI = 100  # dots per inch of the pictures a notebook shows
MEASURED_DPI = (NOTEBOOK_DPI, PNG_DPI)  # labels are measured as notebooks and PNG files draw them
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


def title_font(font: float) -> float:
    """A panel title's size, for labels of size ``font``."""
    return TITLE_FONT if font >= TICK_FONT else GRID_TITLE_FONT


def wrapped(text: str, inches: float, font: float) -> str:
    """``text`` in lines no longer than ``inches`` at ``font`` points (an axis title along
    its map)."""
    import textwrap

    return "\n".join(textwrap.wrap(text, max(12, int(inches / (CHAR * font / TICK_FONT))),
                                    break_on_hyphens=False))


def stands_upright(heatmap: Heatmap) -> bool:
    """Key labels stand upright on long maps (where they may be thinned), else lean at 45°."""
    return max(heatmap.weights.shape) > LABEL_UP_TO


def label_step(count: int, extent: float, font: float, straight: bool) -> int:
    """Label every n-th token so that labels ``font`` points high, spread over ``extent``
    inches, never touch: one a line (leaning at 45°, √2 lines), and when some must be left
    out, one every :data:`THIN_LINE` font sizes."""
    if count == 0:
        return 1
    room = LINE * font / 72 * (1.0 if straight else 2 ** 0.5)  # inches
    if room * count > extent:  # some must go: leave air between those that stay
        room *= THIN_LINE / LINE
    return max(1, int(np.ceil(room / (extent / count) - 1e-9)))


def short_labels(labels: list[str]) -> list[str]:
    return [shorten(label, LABEL_CHARS) for label in labels]


def ticks(labels: list[str], start: int = 0, step: int | None = None
           ) -> tuple[list[int], list[str]]:
    """Where the labels go and what they say: every ``step``-th label (default: at most
    LABEL_UP_TO of them), and when labels are skipped, each with its position
    (counting from ``start``, a window's first position)."""
    if step is None:
        step = max(1, -(-len(labels) // LABEL_UP_TO))  # ceil: at most LABEL_UP_TO labels
    positions = list(range(0, len(labels), step))
    return positions, [labels[i] if step == 1 else f"{labels[i]} ({start + i})"
                       for i in positions]


def label_room(labels: list[str], start: int, step: int, font: float) -> float:
    """Inches the longest label shown takes along its line (its position included when the
    labels are thinned), as the fonts in use measure it."""
    from matplotlib import rcParams

    _, shown = ticks(labels, start, step)
    families = tuple(rcParams["font.family"])
    return max((text_width(label, font, families) for label in shown), default=0.0)


@lru_cache(maxsize=8192)
def text_width(text: str, font: float, families: tuple[str, ...]) -> float:
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
    with glyphs_said():  # a glyph no font has: figure() has said so, once
        for dpi in MEASURED_DPI:
            width, _, _ = measurer(dpi).get_text_width_height_descent(text, properties,
                                                                       ismath=False)
            widths.append(width / dpi)
    return max(widths) * 1.03


@lru_cache(maxsize=len(MEASURED_DPI))
def measurer(dpi: int):
    """A renderer of one pixel at ``dpi`` dots per inch, to measure text with."""
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, dpi)


def label_depth(length: float, font: float, upright: bool) -> float:
    """Inches that key labels ``length`` inches long reach below their map: upright, their
    length; leaning at 45°, the diagonal of their length and their line's height."""
    return length if upright else (length + LINE * font / 72) * 0.5 ** 0.5


class Geometry:
    """The size of one panel's map in inches, and the room its labels take around it."""

    def __init__(self, heatmap: Heatmap, span: float, font: float, show_x: bool,
                 show_y: bool, single: bool) -> None:
        q_count, k_count = heatmap.weights.shape
        cell = min(CELL if font >= TICK_FONT else GRID_CELL, span / max(q_count, k_count, 1))
        self.map_width, self.map_height = max(k_count * cell, 1.0), max(q_count * cell, 1.0)
        self.left = self.below = 0.0
        if show_y:
            queries = [heatmap.query_label(row, LABEL_CHARS) for row in range(q_count)]
            room = label_room(queries, heatmap.query_start,
                               label_step(q_count, self.map_height, font, True), font)
            lines = wrapped(heatmap.query_axis, self.map_height, font + 1).count("\n") + 1
            self.left = AXIS_LABEL * (font + 1) / 10 * lines + PAD / 72 + 0.1 + room
        if show_x:
            upright = stands_upright(heatmap)
            room = label_depth(label_room(short_labels(heatmap.key_labels), heatmap.key_start,
                                            label_step(k_count, self.map_width, font, upright),
                                            font), font, upright)
            lines = wrapped(heatmap.key_axis, self.map_width, font + 1).count("\n") + 1
            self.below = AXIS_LABEL * (font + 1) / 10 * lines + PAD / 72 + 0.15 + room
        from matplotlib import rcParams

        title = heatmap.title if single else heatmap.short_title
        self.title_width = text_width(title, title_font(font),
                                       tuple(rcParams["font.family"]))
        # A title wider than its map reaches left of it: keep that room too.
        self.left = max(self.left, (self.title_width - self.map_width) / 2)


class Place:
    """One panel in the layout: its band (a row of panels) and column, and which labels it
    shows (a grid labels the keys under its last row, the queries left of its first column).
    ``single``: the panel is titled in full (kind, layer, head), not by its place in a grid."""

    def __init__(self, panel: Heatmap, column: int, show_x: bool, show_y: bool, single: bool,
                 span: float, font: float) -> None:
        self.panel, self.column = panel, column
        self.show_x, self.show_y, self.single = show_x, show_y, single
        self.geometry = Geometry(panel, span, font, show_x, show_y, single)


class Band:
    """A row of panels, under an optional heading (the kind of a grid)."""

    def __init__(self, places: list[Place], heading: str = "") -> None:
        self.places, self.heading = places, heading
        self.height = TITLE + max(p.geometry.map_height for p in places) + max(
            p.geometry.below for p in places) + PANEL_GAP


class Layout:
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
        self.bands: list[Band] = []
        if plan.side_by_side:
            # A column per kind: its panels carry their full titles (kind, layer, head).
            for r in range(max(len(block.panels) for block in plan.blocks)):
                places = [Place(block.panels[r][0], column, r == len(block.panels) - 1, True,
                                 True, span, self.font)
                          for column, block in enumerate(plan.blocks) if r < len(block.panels)]
                self.bands.append(Band(places, ""))
        else:
            for block in plan.blocks:
                for r, row in enumerate(block.panels):
                    places = [Place(panel, column, r == len(block.panels) - 1, column == 0,
                                     False, span, self.font)
                              for column, panel in enumerate(row)]
                    self.bands.append(Band(places, block.title if r == 0 else ""))
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
        self.caption_lines = caption_lines(plan.caption, self.width - 2 * GAP)
        self.caption_height = (CAPTION + CAPTION_LINE * (len(self.caption_lines) - 1)
                               if self.caption_lines else 0.0)
        self.height = (2 * GAP + self.panels_height + self.caption_height
                       + (LEGEND if legend else 0.0))


def caption_lines(caption: str, inches: float) -> list[str]:
    """``caption`` in lines at most ``inches`` wide, as the fonts in use measure them: broken
    between its parts, a part cut only where a line has no room for it (see
    :func:`attnviz.maps.caption.lines`)."""
    from matplotlib import rcParams

    families = tuple(rcParams["font.family"])
    return lines(caption, lambda text: text_width(text, CAPTION_FONT, families) <= inches)


def check_size(layout: Layout, panels: int) -> None:
    """Refuse, before anything is drawn, a picture of more than :data:`MAX_PIXELS`."""
    width, height = round(layout.width * PNG_DPI), round(layout.height * PNG_DPI)
    if width * height > MAX_PIXELS:
        raise AttnvizError(
            f"this picture of {panels:,} panels would be {width:,} x {height:,} pixels, more "
            f"than {MAX_PIXELS // 10**6:,} million: draw fewer layers or heads, or a window "
            "of the maps, or save them as a page (.html) or as numbers (.npz)")


def drawing_bytes(layout: Layout) -> int:
    """The memory drawing ``layout``'s picture takes, about (see DRAWING_BYTES_PER_CELL)."""
    cells = 0
    for band in layout.bands:
        for place in band.places:
            q_count, k_count = place.panel.weights.shape
            pixels = place.geometry.map_width * place.geometry.map_height * PNG_DPI ** 2
            cells += max(q_count * k_count, round(pixels))
    canvas = round(layout.width * PNG_DPI) * round(layout.height * PNG_DPI)
    return DRAWING_BASE_BYTES + DRAWING_BYTES_PER_CELL * cells + CANVAS_BYTES_PER_PIXEL * canvas


WAY_OUT = ("draw a window of the maps (⟨window⟩), or view them in the terminal, which pools "
           "long maps to fit, or save them as numbers (.npz)")


def check_memory(layout: Layout) -> None:
    """Refuse, before anything is drawn, a picture that would take more than
    :data:`MAX_DRAWING_BYTES`, or more memory than this process may still take."""
    from attnviz.io.memory import room

    needed = drawing_bytes(layout)
    free = room()
    if needed > MAX_DRAWING_BYTES:
        limit = f"the {MAX_DRAWING_BYTES / 1024**3:.0f} GB attnviz draws a picture in"
    elif free is not None and needed > free:
        limit = f"the {free / 1024**3:.1f} GB of memory left to this process"
    else:
        return
    raise AttnvizError(f"this picture would take about {needed / 1024**3:.1f} GB of memory to "
                       f"draw, more than {limit}: {WAY_OUT}")


def out_of_memory() -> AttnvizError:
    """The error of a picture whose drawing ran out of memory all the same."""
    return AttnvizError(f"drawing this picture ran out of memory: {WAY_OUT}")


def fraction(inches: float, total: float) -> float:
    return inches / total
