"""What one forward pass of a Hugging Face model needs (:class:`Prepared`), and the checks
made before it runs: the layers and heads to keep exist, and the kept maps fit in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnviz.maps.budget import check_kept, memory_limit
from attnviz.maps.choice import check_head, check_layer
from attnviz.maps.keep import Keep
from attnviz.maps.kinds import TITLES

if TYPE_CHECKING:
    from attnviz.sources.base import Request

ENCODER_SELF, DECODER_SELF, CROSS = "encoder_self", "decoder_self", "cross"
WORKING_COPIES = 2  # one layer's float32 scores, and the weights the model's own code holds
NORM_COPIES = 3  # and, for norm-based weights, ‖α f(x)‖ and its row shares, as they are made


@dataclass
class Prepared:
    """What one forward pass needs, and what its maps are labelled with."""

    config: Any
    module: Any  # the model, or an encoder-decoder's encoder run alone
    stack: str  # ENCODER_DECODER, or the one kind of the module: ENCODER_SELF, DECODER_SELF
    inputs: dict[str, Any]  # input_ids (1, S or T), decoder_input_ids (1, T)
    source_tokens: list[str]
    target_tokens: list[str]
    source_text: str | None
    target_text: str | None
    generated: bool  # the model wrote the target
    next_token: str | None
    layers: dict[str, int]  # each kind's layers
    heads: int  # the most query heads a layer has
    threads: int | None
    device: Any
    # Of a repeated random sequence: where its first copy starts in each kind's queries.
    starts: dict[str, int] | None = None

    @property
    def lengths(self) -> dict[str, tuple[int, int]]:
        """Each kind's queries and keys: ``(Q, K)``."""
        s = len(self.source_tokens)
        t = len(self.target_tokens)
        return {ENCODER_SELF: (s, s), DECODER_SELF: (t, t), CROSS: (t, s)}


def file_digest(path: Path) -> str:
    import hashlib

    from attnviz.io.reading import open_regular

    digest_ = hashlib.sha256()
    with open_regular(path, "model file", "give a .gguf model file") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest_.update(block)
    return digest_.hexdigest()


def check_keep(prepared: Prepared, keep: Keep) -> None:
    """Refuse, before the pass, a layer or head to keep that the model lacks."""
    for kind, layers in prepared.layers.items():
        if not keep.wants(kind):
            continue
        for layer in keep.layers or ():
            check_layer(layer, layers, kind)
    for head in keep.heads or ():
        check_head(head, prepared.heads, "this model has", ", or the mean of all")


def check_memory(prepared: Prepared, request: Request, explained: str | None) -> None:
    """Refuse, before the pass, kept maps that would not fit in the memory there is
    (:func:`attnviz.maps.budget.check_kept`), saying how to keep less: of a text, how far
    to cut it; of a repeated random sequence, how short a one to read."""
    keep = request.keep
    heads = prepared.heads
    norm = request.weights == "norm"
    width = getattr(prepared.config, "hidden_size", None) or \
        getattr(prepared.config, "d_model", None) or 0

    def needs(source: int, target: int) -> tuple[int, int]:
        lengths = {ENCODER_SELF: (source, source), DECODER_SELF: (target, target),
                   CROSS: (target, source)}
        kept = working = 0
        for kind, layers in prepared.layers.items():
            q, k = lengths[kind]
            copies = WORKING_COPIES + (NORM_COPIES if norm and keep.wants(kind) else 0)
            values = 4 * heads * k * width if norm and keep.wants(kind) else 0  # f(x_j)
            working = max(working, copies * 4 * heads * q * k + values)
            if keep.wants(kind):
                kept += len(keep.layers_of(layers)) * len(keep.heads_of(heads)) * q * k * \
                    keep.itemsize
        return kept, working

    source, target = len(prepared.source_tokens), len(prepared.target_tokens)
    kept, working = needs(source, target)
    limit = memory_limit(request.memory)[0]
    if limit is None or kept + working <= limit:
        return
    repeated = request.repeated
    if repeated is None:  # the person's text decides one side's length
        text_is_target = prepared.stack == DECODER_SELF

        def lengths(n: int) -> tuple[int, int]:
            return (source, n) if text_is_target else (n, target)

        shortest, longest = 1, max(source, target)
    else:  # the sequence twice, on every side that reads it, decides both
        def lengths(n: int) -> tuple[int, int]:
            grown = 2 * (n - repeated.length)
            return source and source + grown, target and target + grown

        shortest, longest = 2, repeated.length
    most = _most(lambda n: sum(needs(*lengths(n))) <= limit, shortest, longest)
    layer_words = {kind: len(keep.layers_of(count)) for kind, count in prepared.layers.items()
                   if keep.wants(kind)}
    what = "; ".join(f"{count} layer(s) x {len(keep.heads_of(heads))} head(s) of "
                     f"{TITLES[kind].lower()}" for kind, count in layer_words.items())
    ways = [] if keep.layers is not None else ["keep one layer (\u27e8layer\u27e9 N)"]
    ways += [] if keep.heads is not None else ["keep one head (\u27e8head\u27e9 N)"]
    ways += [] if keep.precision != "float32" else ["keep them in \u27e8precision\u27e9 float16"]
    if repeated is not None and most:
        ways.append(f"read a shorter sequence (\u27e8induction_length\u27e9 {most:,} at most)")
    check_kept(kept, working, request.memory,
               what=f"{what or 'none'}, {keep.precision}" + (", norm-based" if norm else ""),
               longest=most if explained is None and repeated is None else None,
               ways_out=ways)


def _most(fits: Callable[[int], bool], low: int, high: int) -> int:
    """The largest n in [low, high] for which ``fits(n)`` (which holds up to some n and
    not past it); 0 when not even ``low`` fits."""
    if not fits(low):
        return 0
    while low < high:  # fits(low); not fits(high + 1)
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


@contextlib.contextmanager
def quiet_gguf(gguf: bool) -> Iterator[None]:
    """transformers' GGUF reader draws its own progress bar (tqdm, past its logging
    switches) while it expands the quantised weights: hidden, as every loading bar of a local
    model is."""
    if not gguf:
        yield
        return
    import functools

    from transformers import modeling_gguf_pytorch_utils as reader

    shown = reader.tqdm
    reader.tqdm = functools.partial(shown, disable=True)
    try:
        yield
    finally:
        reader.tqdm = shown
