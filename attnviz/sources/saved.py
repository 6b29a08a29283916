"""Maps saved before (by attnviz's ``-o maps.npz``/``.json`` or another tool) as a source."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from attnviz.errors import AttnvizError, AttnvizWarning
from attnviz.io.text import printable, shorten
from attnviz.maps.data import AttentionMaps
from attnviz.sources.base import Request


def open(name: str) -> SavedMaps:  # noqa: A001 - every source module has open()
    return SavedMaps(name, Path(name))


@dataclass(frozen=True)
class SavedMaps:
    """A file of attention maps: reading it is the point, so it is never cached."""

    name: str
    path: Path

    def fingerprint(self, request: Request) -> str | None:
        return None

    def maps(self, request: Request) -> AttentionMaps:
        """The file's maps. A request's text that differs from the saved one is named in a
        warning; a part the file lacks (no encoder, no decoder), weights other than those
        saved (norm-based ones of attention maps) and a repeated sequence are errors."""
        name = printable(str(self.path))
        if request.repeated is not None:
            raise AttnvizError(f"{name} holds the maps of one text, not of a repeated random "
                               "sequence, which the induction score reads: give the model "
                               "that made them as \u27e8model\u27e9")
        maps = AttentionMaps.load(self.path)
        if request.weights != "attention" and request.weights != maps.measure:
            raise AttnvizError(f"{name} holds the {maps.measure} weights it was saved with, "
                               f"not {request.weights} ones: leave \u27e8weights\u27e9 out, or "
                               "compute them from the model that made the maps")
        wanted = {"encoder": ("encoder_self",), "decoder": ("decoder_self", "cross")}.get(
            request.part or "", ())
        if wanted and not any(kind in maps.kinds for kind in wanted):
            raise AttnvizError(f"{name} holds no {request.part} maps (it holds "
                               f"{', '.join(maps.kinds)})")
        saved = maps.provenance.source_text
        if request.text is not None and saved is not None and request.text != saved:
            warnings.warn(f"{name} holds the maps of {printable(shorten(saved, 60))!r}, not of "
                          "the text given", AttnvizWarning, stacklevel=2)
        return maps
