"""The line written above a picture of maps: where they come from, in words."""

from __future__ import annotations

from collections.abc import Callable

from attnviz.io.text import columns, printable, shorten
from attnviz.maps.data import Provenance

# Of a text quoted in a caption, at most: a picture or a terminal cuts it further only where
# it has no room for it (see lines()). A bound all the same, as a text may be a book long.
TEXT_CHARS = 1000
PARTS = " · "  # between the parts of a caption (model · version · source · ...)


def caption(provenance: Provenance) -> str:
    """One printable line for a picture's title: the model, the attnviz that computed the
    maps, the texts and the options."""
    parts = []
    if provenance.model:
        parts.append(f"model {provenance.model}"
                     + (f" ({provenance.model_sha256[:8]})" if provenance.model_sha256 else ""))
    if provenance.attnviz_version:
        parts.append(f"attnviz {provenance.attnviz_version}")
    if provenance.source_text:
        parts.append(f"source {shorten(provenance.source_text, TEXT_CHARS)!r}")
    if provenance.target_text:
        parts.append(f"target {shorten(provenance.target_text, TEXT_CHARS)!r}"
                     + (" (written by the model)" if provenance.target_generated else ""))
    parts += [f"{name} {value}" for name, value in provenance.options.items()
              if isinstance(value, (str, int, float, bool))]
    return printable(PARTS.join(parts))


def lines(caption: str, fits: Callable[[str], bool]) -> list[str]:
    """``caption`` in lines that each ``fits``, broken between its parts (``a · b``); only a
    part too wide for a line of its own is cut, keeping its start. Nothing for no caption.

    Args:
        caption: what :func:`caption` gave.
        fits: whether a line fits the room there is (a picture measures it with its fonts,
            a terminal counts its columns).
    """
    broken: list[str] = []
    for part in caption.split(PARTS) if caption else []:
        if broken and fits(broken[-1] + PARTS + part):
            broken[-1] += PARTS + part
            continue
        if not fits(part):  # wider than a line: the longest start that fits, and …
            low, high = 1, columns(part)  # shorten(part, low) is kept if nothing fits
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if fits(shorten(part, middle)) else (low, middle - 1)
            part = shorten(part, low)
        broken.append(part)
    return broken


def in_columns(caption: str, width: int) -> str:
    """``caption`` in lines of at most ``width`` terminal columns (see :func:`lines`)."""
    return "\n".join(lines(caption, lambda line: columns(line) <= width))
