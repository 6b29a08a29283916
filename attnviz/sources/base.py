"""What every source takes and gives: a :class:`Request`, and the :class:`Source` protocol.

A source says what a person should know about its maps (an unknown word, a model's own code
that is not run) as Python warnings, :class:`attnviz.errors.AttnvizWarning`; the render cache
records them with the maps, and each caller shows them its own way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from attnviz.errors import AttnvizError
from attnviz.maps.choice import shown
from attnviz.maps.data import AttentionMaps
from attnviz.maps.keep import Keep

PARTS = ("encoder", "decoder")  # what a request may ask for alone


@dataclass(frozen=True)
class Request:
    """What a person asked to see, and nothing that only changes how it is drawn."""

    text: str | None = None  # the source text; None: the text a saved file holds
    target: str | None = None  # the decoder's text; None lets the model write one
    part: str | None = None  # "encoder", "decoder", or None: whatever the model has
    seed: int = 0  # the weights of the random model
    device: str = "cpu"  # cpu, cuda or auto
    threads: int | None = None  # torch's CPU threads; None: attnviz chooses (runtime.py)
    # What of the maps to keep (kinds, layers, heads, precision). A source that records maps
    # layer by layer (Hugging Face) stores only these; attnviz's own models, whose maps are
    # small, keep (and cache) every one, so that another layer is read back from the cache.
    keep: Keep = field(default_factory=Keep)
    memory: float | None = None  # GB the kept maps may take; None: what the machine has free

    def __post_init__(self) -> None:
        if self.part is not None and self.part not in PARTS:
            raise AttnvizError(f"part {shown(self.part)} is not a part: use 'encoder', "
                               "'decoder' or None", setting="part")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Source(Protocol):
    """A model (or a file of maps) that turns requests into attention maps."""

    name: str  # as the person named it

    def fingerprint(self, request: Request) -> str | None:
        """A digest of everything that decides the maps of ``request`` (the model's bytes,
        the texts, the options that matter), or None when the source cannot name them: then
        its maps are never cached. Needs no torch."""

    def maps(self, request: Request) -> AttentionMaps:
        """The maps of ``request``; AttnvizError when the request does not fit the source,
        and an AttnvizWarning for what the person should know about them."""


def digest(request: Request, weights: str, **more: Any) -> str:
    """A source's fingerprint of ``request``: its texts and options, what decides the
    weights (a digest of their bytes), and ``more`` (``seed=None`` where the seed decides
    nothing, the versions of the libraries that compute the maps, ``keep=request.keep`` for
    a source whose maps hold only what was kept). The thread count and the memory limit are
    left out: they decide how fast, or whether, not what; so is what is kept, unless
    ``more`` names it."""
    parts = {**request.to_dict(), "keep": None, "memory": None, **more, "weights": weights,
             "threads": None, "part": "encoder" if request.part == "encoder" else "decoder"}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def require_text(text: str | None, side: str = "source") -> str:
    """``text``, unless it is missing or blank. The target's message starts with the
    setting's name, so that the CLI calls it by its flag."""
    if text is None or not text.strip():
        subject = "\u27e8target\u27e9" if side == "target" else "the source text"
        raise AttnvizError(f"{subject} is empty; give a sentence in quotes, for example "
                           '"the black cat sees the red car"')
    return text
