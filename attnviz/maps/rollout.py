"""Attention rollout of the encoder (Abnar and Zuidema, 2020, "Quantifying Attention Flow in
Transformers"), and the maps to draw of it.

At layer l, attention mixes the token vectors with the weights W_l, and the residual connection
adds each token's own vector back. Rollout models that as

    A_l = 0.5 · (W_l averaged over the heads) + 0.5 · I,   each row renormalised to sum to 1
    R_l = A_l · A_(l-1) · ... · A_0

so that row i of R_l says how much of each input token's identity reaches position i after
layer l, under the assumption that the residual stream carries half. It is a way to follow
how attention mixes tokens through the layers; it is not an explanation of the model's
prediction: it ignores the values, the feed-forward layers and the norms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.errors import AttnvizError
from attnviz.maps.caption import caption
from attnviz.maps.choice import check_kind, check_layer
from attnviz.maps.data import AttentionMaps, expect_maps
from attnviz.maps.kinds import TITLES
from attnviz.maps.views import Heatmap, head_name

RESIDUAL = 0.5  # the share of each token's own vector that the residual connection carries
KEY = "encoder_rollout"  # its key in saved files


def rollout(maps: AttentionMaps) -> np.ndarray:
    """The attention rollout of the encoder self-attention in ``maps``, for every layer.

    Args:
        maps: maps that hold ``encoder_self`` (what :func:`attnviz.trace` gives).

    Shape:
        - maps.encoder_self: ``[L, H, S, S]``
        - output: ``[L, S, S]``; layer l is the product through layers 0..l, and each row
          sums to 1.

    Raises:
        AttnvizError: when the maps hold no encoder self-attention.
    """
    if expect_maps(maps).encoder_self is None:
        raise AttnvizError("Encoder self-attention is not in these maps, and attention "
                           "rollout follows it: give the maps of encode, or of decode with an "
                           "encoder-decoder model")
    return encoder_rollout(maps.encoder_self)


def encoder_rollout(encoder_self: np.ndarray) -> np.ndarray:
    """Rollout of a stack of self-attention maps. Shape: ``[L, H, S, S] -> [L, S, S]``."""
    layers, _, size, _ = encoder_self.shape
    identity = np.eye(size)
    rolled = np.empty((layers, size, size), dtype=np.float64)
    product = identity  # (S, S)
    for layer in range(layers):
        mixed = (1 - RESIDUAL) * encoder_self[layer].mean(axis=0, dtype=np.float64) \
            + RESIDUAL * identity  # (S, S)
        # A row of zeros (a padding query that saw no key) becomes the identity's row here:
        # the diagonal is at least RESIDUAL, so no row sums to 0.
        mixed /= mixed.sum(axis=-1, keepdims=True)
        product = mixed @ product
        rolled[layer] = product
    return rolled.astype(np.float32)


@dataclass(frozen=True, eq=False)
class RolloutHeatmap(Heatmap):
    """The rollout through one layer, drawn as any heatmap; its title says what it is."""

    rolled_out = True  # not attention maps: a page, which holds maps, says so

    @property
    def title(self) -> str:
        through = "layer 0" if self.layer == 0 else f"layers 0 to {self.layer}"
        return f"Encoder attention rollout · {through} · {head_name(None, self.head_count)}"

    @property
    def query_axis(self) -> str:
        return "position (after the layer)" + self._positions(self.query_start,
                                                              len(self.query_tokens))

    @property
    def key_axis(self) -> str:
        return "input token whose identity reaches it" + self._positions(
            self.key_start, len(self.key_tokens))


def rollout_heatmaps(maps: AttentionMaps, layer: int | None = None, head: int | None = None,
                     kinds: Sequence[str] | None = None) -> list[Heatmap]:
    """The rollout to draw: through every layer (``layer=None``), or through ``layer``.

    Args:
        maps: maps that hold the encoder self-attention.
        layer: the last layer of the product, counting from 0; None: every layer.
        head: must be None: rollout averages the heads.
        kinds: the kinds asked for: None or empty (every kind, as :func:`attnviz.maps.views.plan`
            takes it), or the encoder self-attention alone (named once or more).

    Raises:
        AttnvizError: when the maps hold no encoder self-attention, a name is not a kind,
            another kind or a head is asked for, or the layer is out of range.
    """
    for kind in [check_kind(k) for k in ([kinds] if isinstance(kinds, str) else kinds or ())]:
        if kind != "encoder_self":
            raise AttnvizError(f"attention rollout follows the encoder self-attention, not the "
                               f"{TITLES[kind].lower()}: ask for the encoder kind (or every "
                               "kind)")
    if head is not None:
        raise AttnvizError(f"head {head} cannot be rolled out alone: rollout averages the "
                           "heads of each layer; leave the head out", setting="head")
    rolled = rollout(maps)  # (L, S, S)
    layers, heads = maps.encoder_self.shape[:2]
    if maps.layers_of("encoder_self") != list(range(layers)):
        raise AttnvizError("the rollout multiplies every encoder layer from the first on, and "
                           "these maps hold only some of them; trace again keeping every "
                           "\u27e8layer\u27e9", setting="layer")
    if layer is not None:
        check_layer(layer, layers, "encoder_self")
    chosen = range(layers) if layer is None else [layer]
    tokens = list(maps.source_tokens)
    visible = np.ones(rolled.shape[1:], dtype=bool)
    return [RolloutHeatmap(kind="encoder_self", layer=index, head=None, head_count=heads,
                           weights=rolled[index], query_tokens=tokens, key_tokens=tokens,
                           visible=visible, caption=caption(maps.provenance))
            for index in chosen]
