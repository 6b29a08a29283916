"""What one forward pass of a Hugging Face model keeps of its attention, layer by layer.

The attention function (:mod:`.interface`) hands every layer's :class:`~.interface.Call` to a
:class:`Recorder`, passed down with the model call. The recorder knows which kind and layer a
call is from the order of the calls (the encoder's layers first, then each decoder layer's
self-attention and, in an encoder-decoder, its cross-attention), checked against the keys'
lengths; it copies the weights of the layers and heads asked for, in the precision asked for,
to the host (a GPU's maps go to the host layer by layer), into arrays made once, and lets the
rest go. For ``explain`` it also keeps one head's queries, keys, values, mask and bias.

Given :class:`~.projections.Projections`, it keeps the norm-based weights of the same calls
instead (Kobayashi et al., 2020: each key's share of ‖α f(x)‖, from the call's values and its
module's output projection), computed only for the layers kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from attnviz.maps.keep import Keep

if TYPE_CHECKING:
    import torch

    from attnviz.sources.huggingface.interface import Call
    from attnviz.sources.huggingface.projections import Projections

ENCODER, DECODER = "encoder", "decoder"


class RecordingError(Exception):
    """The calls did not come as the model's layers promise (a layer called twice, cross-
    attention before self-attention): the maps could be mislabelled, so none are drawn."""


@dataclass
class Explained:
    """One head of one call, as ``attnviz explain`` shows it (torch tensors on the host).

    Shape: queries ``[T, d]``; keys, values ``[S, d]``; mask ``[T, S]`` (None: no mask);
    bias, weights ``[T, S]`` (bias None: none).
    """

    queries: Any
    keys: Any
    values: Any
    mask: Any
    bias: Any
    weights: Any
    scale: float
    heads: int
    key_value_heads: int


@dataclass
class Recorder:
    """Keeps, of one forward pass, the weights that ``keep`` asks for.

    Args:
        keep: which kinds, layers and heads, and the precision.
        layers: each kind's number of layers (``encoder_self``, ``decoder_self``, ``cross``).
        encoder: the ids of the encoder's modules (an encoder-decoder's), to tell its calls
            from the decoder's; None: every call is of ``single``'s kind.
        single: the kind of a model with one stack (``encoder_self`` or ``decoder_self``).
        explain: (kind, layer, head) of the one head to keep whole, or None.
        projections: the model's output projections, to keep norm-based weights instead of
            the attention weights; None: the attention weights.
    """

    keep: Keep
    layers: dict[str, int]
    encoder: frozenset[int] | None = None
    single: str | None = None
    explain: tuple[str, int, int] | None = None
    projections: Projections | None = None
    calls: dict[str, int] = field(default_factory=dict)  # the calls seen, by kind
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # (L_kept, H_kept, Q, K)
    heads: dict[str, list[int]] = field(default_factory=dict)  # the kept heads, by kind
    explained: Explained | None = None
    _decoder_calls: int = 0
    _source: int | None = None  # the encoder's length, once it ran

    def __call__(self, call: Call) -> None:
        kind, layer = self._place(call)
        count = self.layers.get(kind, 0)
        if layer >= count:
            raise RecordingError(f"{kind} was called more often than the model has layers "
                                 f"({count})")
        self.calls[kind] = self.calls.get(kind, 0) + 1
        if self.explain is not None and self.explain[:2] == (kind, layer):
            self._explain(call, self.explain[2])
        if not self.keep.wants(kind) or layer not in self.keep.layers_of(count):
            return  # computed, not stored
        weights = call.weights if self.projections is None else \
            self.projections.norm_based(call)  # (B, H, Q, K)
        weights = weights[0]  # (H, Q, K)
        heads = self.heads.setdefault(kind, self.keep.heads_of(weights.shape[0]))
        if kind not in self.kept:
            dtype = np.float32 if self.keep.precision == "float32" else np.float16
            self.kept[kind] = np.empty((len(self.keep.layers_of(count)), len(heads),
                                        *weights.shape[1:]), dtype=dtype)
        import torch

        target = torch.from_numpy(self.kept[kind][self.keep.layers_of(count).index(layer)])
        chosen = weights if heads == list(range(weights.shape[0])) else weights[heads]
        target.copy_(chosen)  # to the host, in the kept precision: (H_kept, Q, K)

    def finish(self) -> None:
        """Check that every layer of every kind called the function once."""
        for kind, count in self.layers.items():
            if self.calls.get(kind, 0) != count:
                raise RecordingError(f"{kind}: {self.calls.get(kind, 0)} calls for {count} "
                                     "layers")

    def _place(self, call: Call) -> tuple[str, int]:
        """The kind and layer of ``call``: from the order of the calls, and the module."""
        if self.encoder is None:
            kind = self.single
            return kind, self.calls.get(kind, 0)
        if id(call.module) in self.encoder:
            self._source = call.keys.shape[-2]
            return "encoder_self", self.calls.get("encoder_self", 0)
        # A decoder layer attends to its own input, then to the encoder's output.
        step, self._decoder_calls = self._decoder_calls, self._decoder_calls + 1
        kind = "cross" if step % 2 else "decoder_self"
        queries, keys = call.queries.shape[-2], call.keys.shape[-2]
        source = self._source
        if source is not None and source != queries and (
                (kind == "cross") != (keys == source)):
            raise RecordingError("a decoder layer's calls came in another order than self-"
                                 "attention, then cross-attention")
        return kind, step // 2

    def _explain(self, call: Call, head: int) -> None:
        import torch

        from attnviz.model.attention import key_value_head

        heads, key_value_heads = call.queries.shape[1], call.keys.shape[1]
        shared = key_value_head(head, heads, key_value_heads)

        def host(tensor: torch.Tensor | None, index: int) -> torch.Tensor | None:
            if tensor is None:
                return None
            tensor = tensor[0, index if tensor.shape[1] > 1 else 0].detach()
            return (tensor if tensor.dtype == torch.bool else tensor.float()).cpu()

        self.explained = Explained(
            queries=host(call.queries, head), keys=host(call.keys, shared),
            values=host(call.values, shared), mask=host(call.mask, 0),
            bias=host(call.bias, head), weights=host(call.weights, head), scale=call.scale,
            heads=heads, key_value_heads=key_value_heads)


def recorder_for(model: Any, kind: str, keep: Keep, layers: dict[str, int],
                 explain: tuple[str, int, int] | None = None,
                 projections: Projections | None = None) -> Recorder:
    """A recorder for one forward pass of ``model``: an encoder-decoder's (``kind`` is
    ``encoder-decoder``), or one stack's (``encoder_self`` or ``decoder_self``); keeping
    norm-based weights when given the model's ``projections``."""
    if kind == "encoder-decoder":
        encoder = frozenset(id(module) for module in model.get_encoder().modules())
        return Recorder(keep, layers, encoder=encoder, explain=explain,
                        projections=projections)
    return Recorder(keep, layers, single=kind, explain=explain, projections=projections)
