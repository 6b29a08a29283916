"""The one colour map that drives both the image and the terminal renderers."""

from __future__ import annotations

import numpy as np

from attnviz.errors import AttnvizError

DEFAULT_CMAP = "viridis"  # perceptually uniform, readable in grey and by colour-blind readers
# The heads' labels (attnviz.maps.atlas.LABELS) in every picture of the atlas, a colour each
# as a reader tells them apart (matplotlib's tab10), and the colour of no label.
LABEL_COLORS = {"induction": "#d62728", "previous-token": "#1f77b4", "self": "#2ca02c",
                "sink": "#ff7f0e", "broad": "#9467bd"}
NO_LABEL = "#eeeeee"


def colormap(name: str = DEFAULT_CMAP):
    """The matplotlib colour map called ``name``; an unknown name lists a few good ones."""
    from matplotlib import colormaps

    try:
        return colormaps[name]
    except KeyError:
        raise AttnvizError(f"unknown colour map {name!r}; try viridis, magma, cividis, "
                           "plasma, inferno, Blues or Greys (any matplotlib colour map)") from None


def check(name: str) -> None:
    """Raise AttnvizError if ``name`` is not a colour map; the default needs no matplotlib."""
    if name != DEFAULT_CMAP:
        colormap(name)


def lookup_table(name: str) -> np.ndarray:
    """The colour map as 256 colours, 0-255 integers. Shape: ``[256, 3]``."""
    if name == DEFAULT_CMAP:
        from attnviz.render.viridis import VIRIDIS_HEX

        return np.frombuffer(bytes.fromhex("".join(VIRIDIS_HEX)), dtype=np.uint8).reshape(256, 3)
    rgba = np.asarray(colormap(name)(np.linspace(0.0, 1.0, 256)))  # (256, 4) floats in [0, 1]
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


def rgb(name: str, values: np.ndarray) -> np.ndarray:
    """The colours of ``values`` in [0, 1] as 0-255 integers. Shape: ``[...] -> [..., 3]``.

    A value picks one of the map's 256 colours the way matplotlib's colour maps do.
    """
    index = np.minimum((np.clip(values, 0.0, 1.0) * 256).astype(np.intp), 255)  # (...)
    return lookup_table(name)[index]
