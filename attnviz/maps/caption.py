"""The line written above a picture of maps: where they come from, in words."""

from __future__ import annotations

from attnviz.io.text import printable, shorten
from attnviz.maps.data import Provenance

TEXT_CHARS = 40  # of a text quoted in a caption


def caption(provenance: Provenance) -> str:
    """One printable line for a picture's title: the model, the attnviz that computed the
    maps, the texts (shortened) and the options."""
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
    return printable(" · ".join(parts))
