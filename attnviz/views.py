"""The 2-D maps a picture shows, chosen from AttentionMaps by kind, layer and head.

Renderers draw :class:`Heatmap` objects and nothing else; this module decides what each one
holds and how it is labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.maps import KINDS, TITLES, AttentionMaps
from attnviz.text import display_label, printable

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
    caption: str = ""  # where the maps come from (model, attnviz version), or ""

    @property
    def title(self) -> str:
        if self.head is not None:
            head = f"head {self.head}"
        else:
            head = "the only head" if self.head_count == 1 else f"mean of {self.head_count} heads"
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


def heatmaps(maps: AttentionMaps, kinds: Sequence[str] | None = None, layer: int | None = None,
             head: int | None = None) -> list[Heatmap]:
    """The maps to draw: each kind (default: every kind the maps hold) at ``layer`` (default:
    the kind's default layer) and ``head`` (None: the mean over heads)."""
    return [heatmap(maps, kind, layer, head) for kind in (kinds or maps.kinds)]


def heatmap(maps: AttentionMaps, kind: str, layer: int | None = None, head: int | None = None
            ) -> Heatmap:
    """One layer's map of one kind, for one head or (``head=None``) the mean over heads.

    Raises AttnvizError naming the valid values when the kind is absent or the layer or head
    is out of range.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind not in maps.kinds:
        held = ", ".join(TITLES[k].lower() for k in maps.kinds)
        raise AttnvizError(f"kind {kind} is not in these maps: they hold {held}",
                           setting="kind")
    stack = maps.stack(kind)  # (L, H, Q, K)
    layers, heads = stack.shape[:2]
    layer = maps.default_layer(kind) if layer is None else layer
    if not 0 <= layer < layers:
        raise AttnvizError(f"layer {layer} is out of range: the {TITLES[kind].lower()} has "
                           f"layers 0 to {layers - 1}", setting="layer")
    if head is not None and not 0 <= head < heads:
        raise AttnvizError(f"head {head} is out of range: these maps have heads 0 to "
                           f"{heads - 1}, or the mean of all", setting="head")
    weights = stack[layer].mean(axis=0) if head is None else stack[layer, head]  # (Q, K)
    queries = maps.source_tokens if kind == "encoder_self" else maps.target_tokens
    keys = maps.target_tokens if kind == "decoder_self" else maps.source_tokens
    return Heatmap(kind, layer, head, heads, np.asarray(weights, dtype=np.float32),
                   list(queries), list(keys), _visible(kind, stack[layer]),
                   printable(maps.provenance.summary))


def _visible(kind: str, layer: np.ndarray) -> np.ndarray:
    """Where keys could be seen. Masked self-attention hides the future: the upper triangle,
    when every head's weights there are 0 (a saved map that has weight there was not masked,
    and is drawn whole rather than hatched over).

    Shape: layer ``[H, Q, K]`` -> ``[Q, K]``.
    """
    visible = np.ones(layer.shape[1:], dtype=bool)
    if kind == "decoder_self":
        future = ~np.tril(visible)
        if not layer[:, future].any():
            return ~future
    return visible
