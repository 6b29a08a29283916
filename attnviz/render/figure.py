"""The matplotlib Figure that attnviz draws on, and its bytes as a file.

:class:`Figure` is matplotlib's own, with one method more: ``_repr_png_``, IPython's display
protocol, so that a figure returned by ``attnviz.plot`` shows itself as a cell's result in a
notebook, with no ``%matplotlib`` line and without pyplot. Outside a notebook nothing calls
it: a script never opens a window and pyplot's list of figures never holds one of these.
"""

from __future__ import annotations

import io

from matplotlib import figure as mpl_figure
from matplotlib import rc_context

from attnviz.render.fonts import glyphs_said
from attnviz.render.layout import NOTEBOOK_DPI, PNG_DPI, out_of_memory

# Files carry no creation date, so the same input gives the same bytes.
_NO_DATES = {"png": None, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


class Figure(mpl_figure.Figure):
    """A matplotlib Figure that a notebook shows as a PNG (at the dots per inch the labels
    were measured for), as it shows maps: ``figure`` alone as a cell's result."""

    def _repr_png_(self) -> bytes:
        return figure_bytes(self, "png", NOTEBOOK_DPI)


def figure_bytes(fig: mpl_figure.Figure, fmt: str, dpi: int = PNG_DPI) -> bytes:
    """Any attnviz figure as a ``png``, ``svg`` or ``pdf`` file, the same bytes every time."""
    buffer = io.BytesIO()
    # SVG: labels stay text (searchable, editable), and element ids do not change between runs.
    # PNG: light compression; the default level takes a sixth of the drawing time to save
    # a sixth of the bytes.
    extra = {"pil_kwargs": {"compress_level": 1}} if fmt == "png" else {}
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "attnviz"}), glyphs_said():
        try:
            fig.savefig(buffer, format=fmt, dpi=dpi, metadata=_NO_DATES[fmt], **extra)
        except MemoryError:
            raise out_of_memory() from None
    return buffer.getvalue()
