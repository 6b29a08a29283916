"""What every source takes and gives: a :class:`Request`, and the :class:`Source` protocol.

A source says what a person should know about its maps (an unknown word, a model's own code
that is not run) as Python warnings, :class:`attnviz.errors.AttnvizWarning`; the render cache
records them with the maps, and each caller shows them its own way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from attnviz.errors import AttnvizError
from attnviz.maps.choice import is_integer, shown
from attnviz.maps.data import AttentionMaps
from attnviz.maps.keep import Keep
from attnviz.maps.kinds import WEIGHTS

PARTS = ("encoder", "decoder")  # what a request may ask for alone
REPEATED = "repeated"  # the provenance option of maps of a repeated sequence (see Repeated)
MAX_REPEATED = 4096  # tokens in one copy of a repeated sequence: more than any model here reads


@dataclass(frozen=True)
class Repeated:
    """A random token sequence read twice in a row, instead of a text: what the induction
    score needs (Olsson et al., 2022). ``length`` tokens drawn, with ``seed``, from the
    model's ordinary tokens (no special one), each at most once where the vocabulary has
    ``length`` of them, then the same tokens again.

    A source gives the maps of ``[specials] r r [specials]`` (the specials its model puts
    around a text) and says in the maps' provenance, ``options["repeated"]``, where the first
    copy starts in each kind's queries: ``{"length": n, "seed": s, "starts": {kind: i}}``.
    """

    length: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if not is_integer(self.length) or not 2 <= self.length <= MAX_REPEATED:
            raise AttnvizError(f"induction_length {shown(self.length)} is not a length: give "
                               f"2 to {MAX_REPEATED:,} tokens", setting="induction_length")

    def ids(self, ordinary: Sequence[int], stream: int = 0) -> list[int]:
        """The sequence twice, drawn from the ids ``ordinary``; ``stream`` tells apart the
        draws of one request (a decoder's and an encoder's vocabulary)."""
        import numpy as np

        if not ordinary:
            raise AttnvizError("the model has no ordinary token to draw a random sequence from")
        generator = np.random.default_rng([self.seed, stream])
        once = len(ordinary) >= self.length
        drawn = generator.choice(len(ordinary), self.length, replace=not once)
        sequence = [int(ordinary[i]) for i in drawn]
        return sequence + sequence

    def provenance(self, starts: dict[str, int]) -> dict[str, Any]:
        """What the maps' ``options["repeated"]`` say: the sequence, and where its first copy
        starts in each kind's queries."""
        return {"length": self.length, "seed": self.seed, "starts": dict(starts)}


@dataclass(frozen=True)
class Request:
    """What a person asked to see, and nothing that only changes how it is drawn."""

    text: str | None = None  # the source text; None: the text a saved file holds
    target: str | None = None  # the decoder's text; None lets the model write one
    part: str | None = None  # "encoder", "decoder", or None: whatever the model has
    seed: int = 0  # the weights of the random model
    device: str = "cpu"  # cpu, cuda or auto
    threads: int | None = None  # torch's CPU threads; None: attnviz chooses (runtime.py)
    weights: str = "attention"  # what the maps hold: one of WEIGHTS (norm: Kobayashi's)
    repeated: Repeated | None = None  # a repeated random sequence instead of the texts (the
    #   random model still builds its vocabulary from them)
    # What of the maps to keep (kinds, layers, heads, precision). A source that records maps
    # layer by layer (Hugging Face) stores only these; attnviz's own models, whose maps are
    # small, keep (and cache) every one, so that another layer is read back from the cache.
    keep: Keep = field(default_factory=Keep)
    memory: float | None = None  # GB the kept maps may take; None: what the machine has free

    def __post_init__(self) -> None:
        if self.part is not None and self.part not in PARTS:
            raise AttnvizError(f"part {shown(self.part)} is not a part: use 'encoder', "
                               "'decoder' or None", setting="part")
        if self.weights not in WEIGHTS:
            raise AttnvizError(f"weights {shown(self.weights)} is not a measure of attention: "
                               f"use {' or '.join(repr(w) for w in WEIGHTS)}", setting="weights")
        if self.repeated is not None and not isinstance(self.repeated, Repeated):
            raise AttnvizError(f"repeated must be a Repeated or None, not "
                               f"{type(self.repeated).__name__}")

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
    # The request's own "weights" (what the maps measure) is kept as "measure": "weights"
    # names the model's bytes here.
    parts = {**request.to_dict(), "keep": None, "memory": None, "measure": request.weights,
             **more, "weights": weights, "threads": None,
             "part": "encoder" if request.part == "encoder" else "decoder"}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def require_text(text: str | None, side: str = "source") -> str:
    """``text``, unless it is missing or blank. The target's message starts with the
    setting's name, so that the CLI calls it by its flag."""
    if text is None or not text.strip():
        subject = "\u27e8target\u27e9" if side == "target" else "the source text"
        raise AttnvizError(f"{subject} is empty; give a sentence in quotes, for example "
                           '"the black cat sees the red car"')
    return text
