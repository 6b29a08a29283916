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
        warning; a part the file lacks (no encoder, no decoder) is an error."""
        maps = AttentionMaps.load(self.path)
        name = printable(str(self.path))
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
