"""The attention a forward pass produced, as plain numpy data, and the 2-D views renderers draw.

Every map has the layout ``[layer, head, query, key]``; layers and heads count from 0.
This module needs numpy only, so renderers and cached results never import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.text import display_label

KINDS = ("encoder_self", "decoder_self", "cross")
KEYS = ("source_tokens", "target_tokens", *KINDS)  # the keys of the npz and json files

TITLES = {
    "encoder_self": "Encoder self-attention",
    "decoder_self": "Masked decoder self-attention",
    "cross": "Cross-attention",
}
QUERY_AXES = {
    "encoder_self": "query: source token",
    "decoder_self": "query: decoder input token",
    "cross": "query: decoder input token",
}
KEY_AXES = {
    "encoder_self": "key: source token",
    "decoder_self": "key: decoder input token",
    "cross": "key: source token (encoder output)",
}


@dataclass(frozen=True, eq=False)
class AttentionMaps:
    """The three kinds of attention of one source/target pair.

    Shape:
        - encoder_self: ``[L_enc, H, S, S]``
        - decoder_self: ``[L_dec, H, T, T]``; T is 0 when only the encoder ran
        - cross: ``[L_dec, H, T, S]``
    """

    source_tokens: list[str]  # S labels: the encoder's input
    target_tokens: list[str]  # T labels: the decoder's input, starting with <bos>
    encoder_self: np.ndarray
    decoder_self: np.ndarray
    cross: np.ndarray

    def __post_init__(self) -> None:
        s, t = len(self.source_tokens), len(self.target_tokens)
        expected = {"encoder_self": (s, s), "decoder_self": (t, t), "cross": (t, s)}
        for kind, tail in expected.items():
            array = getattr(self, kind)
            if array.ndim != 4 or array.shape[2:] != tail:
                raise ValueError(f"{kind} must have shape [layers, heads, {tail[0]}, {tail[1]}], "
                                 f"got {list(array.shape)}")
        if self.decoder_self.shape[:2] != self.cross.shape[:2]:
            raise ValueError("decoder_self and cross must have the same layers and heads")

    def to_dict(self) -> dict[str, Any]:
        """The container under the keys of :data:`KEYS`: token lists and numpy arrays."""
        return {key: getattr(self, key) for key in KEYS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttentionMaps:
        missing = [key for key in KEYS if key not in data]
        if missing:
            raise ValueError(f"missing keys: {', '.join(missing)}")
        source = [str(t) for t in data["source_tokens"]]
        target = [str(t) for t in data["target_tokens"]]
        tails = {"encoder_self": (len(source),) * 2, "decoder_self": (len(target),) * 2,
                 "cross": (len(target), len(source))}
        arrays = {}
        for kind in KINDS:
            array = np.asarray(data[kind], dtype=np.float32)
            if array.size == 0 and array.ndim >= 2:  # nested lists lose the sizes of empty axes
                array = array.reshape(array.shape[:2] + tails[kind])
            arrays[kind] = array
        return cls(source_tokens=source, target_tokens=target, **arrays)

    def select(self, kind: str, layer: int, head: int | None) -> Heatmap:
        """One layer's map of one kind, for one head or (``head=None``) the mean over heads.

        Raises AttnvizError naming the valid range when ``layer`` or ``head`` is out of it.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        stack = getattr(self, kind)  # (L, H, Q, K)
        layers, heads = stack.shape[:2]
        if not 0 <= layer < layers:
            raise AttnvizError(f"--layer {layer} is out of range: this model's "
                               f"{TITLES[kind].lower()} has layers 0 to {layers - 1}")
        if head is not None and not 0 <= head < heads:
            raise AttnvizError(f"--head {head} is out of range: this model has heads 0 to "
                               f"{heads - 1}, or use --head mean")
        weights = stack[layer].mean(axis=0) if head is None else stack[layer, head]  # (Q, K)
        queries = self.source_tokens if kind == "encoder_self" else self.target_tokens
        keys = self.target_tokens if kind == "decoder_self" else self.source_tokens
        visible = np.ones(weights.shape, dtype=bool)
        if kind == "decoder_self":
            visible = np.tril(visible)
        return Heatmap(kind, layer, head, heads, np.asarray(weights, dtype=np.float32),
                       list(queries), list(keys), visible)


@dataclass(frozen=True)
class Result:
    """The attention of one run, with what the user should be told about it."""

    maps: AttentionMaps
    default_layers: dict[str, int]  # the layer shown by default, per kind
    warnings: list[str] = field(default_factory=list)
    generated: str | None = None  # the target the model wrote, when none was given

    def heatmaps(self, kinds: list[str], layer: int | None, head: int | None) -> list[Heatmap]:
        """The maps to draw: each kind at ``layer`` (None: its default layer) and ``head``."""
        return [self.maps.select(kind, self.default_layers[kind] if layer is None else layer,
                                 head) for kind in kinds]


@dataclass(frozen=True, eq=False)
class Heatmap:
    """A 2-D attention map with its labels: what every renderer draws.

    Shape: weights and visible ``[Q, K]``; query_tokens Q labels, key_tokens K labels.
    """

    kind: str  # one of KINDS
    layer: int
    head: int | None  # None: the mean over heads
    head_count: int
    weights: np.ndarray  # (Q, K) rows sum to 1 (0 for a query that saw no key)
    query_tokens: list[str]
    key_tokens: list[str]
    visible: np.ndarray  # (Q, K) bool; False where the mask hid the key (the future)

    @property
    def title(self) -> str:
        head = f"mean of {self.head_count} heads" if self.head is None else f"head {self.head}"
        return f"{TITLES[self.kind]} · layer {self.layer} · {head}"

    @property
    def query_labels(self) -> list[str]:
        return [display_label(t) for t in self.query_tokens]

    @property
    def key_labels(self) -> list[str]:
        return [display_label(t) for t in self.key_tokens]

    @property
    def scale_max(self) -> float:
        """The weight drawn brightest: the largest visible weight (at least 1e-6)."""
        shown = self.weights[self.visible]
        return max(float(shown.max()) if shown.size else 0.0, 1e-6)

    @property
    def query_axis(self) -> str:
        return QUERY_AXES[self.kind]

    @property
    def key_axis(self) -> str:
        return KEY_AXES[self.kind]
